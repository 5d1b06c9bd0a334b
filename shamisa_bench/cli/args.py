"""What several commands share, declared once: ``--feature-mode``, ``--device``, and the
note that a renamed command's old spelling prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.device import DEVICE_HELP, check_device, resolve_device_name
from shamisa_bench.model.features import FEATURE_MODES

__all__ = [
    "RENAMED_NOTE",
    "add_device_argument",
    "add_feature_mode_argument",
    "device_from_args",
    "renamed",
    "renamed_parsers",
]

RENAMED_NOTE = (
    "note: 'shamisa-bench {old}' is now 'shamisa-bench {new}'; the old spelling will be removed in the next release"
)
"""The line an old spelling of a command prints on stderr before it runs."""

Handler = Callable[[argparse.Namespace], int]


def renamed(old: str, new: str | Callable[[argparse.Namespace], str], handler: Handler) -> Handler:
    """``handler`` run by an old spelling: it prints :data:`RENAMED_NOTE` first.

    Args:
        old: The old spelling, after ``shamisa-bench`` (e.g. ``datasets``).
        new: The new spelling, or a function of the parsed arguments giving it.
        handler: The command's handler.

    Returns:
        The handler of the old spelling.
    """

    def run(args: argparse.Namespace) -> int:
        print(RENAMED_NOTE.format(old=old, new=new(args) if callable(new) else new), file=sys.stderr)
        return handler(args)

    return run


def renamed_parsers(subparsers: Any, old: str, new: str) -> None:
    """Make every parser of ``subparsers`` (an old command group) print the renamed note.

    Args:
        subparsers: The old group's subparsers, each with its ``func`` set.
        old: The old group's spelling (e.g. ``bench``).
        new: The new one (e.g. ``perf``).
    """
    for name, parser in subparsers.choices.items():
        parser.set_defaults(func=renamed(f"{old} {name}", f"{new} {name}", parser.get_default("func")))


def add_feature_mode_argument(parser: argparse.ArgumentParser, *, repeat: bool = False, help: str) -> None:
    """Add ``--feature-mode`` (one of :data:`~shamisa_bench.model.features.FEATURE_MODES`).

    ``--protocol``, its former name, stays accepted as a hidden alias of the same option.

    Args:
        parser: The command's parser.
        repeat: True: the option may be given several times and collects a list (default
            None, meaning all modes); False: one value, default ``whole``.
        help: The option's help text.
    """
    kw: dict[str, Any] = {"choices": FEATURE_MODES, "dest": "feature_mode"}
    if repeat:
        kw["action"] = "append"
    parser.add_argument("--feature-mode", default=None if repeat else "whole", help=help, **kw)
    parser.add_argument("--protocol", default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def add_device_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Add ``--device`` with the commands' one default policy: ``auto`` (cuda when present).

    Args:
        parser: The command's parser.
        note: A sentence appended to the help text (e.g. a changed default).
    """
    parser.add_argument("--device", default="auto", help=f"{DEVICE_HELP}; {note}" if note else DEVICE_HELP)


def device_from_args(args: argparse.Namespace) -> str:
    """The checked device name that ``--device`` asks for (``auto`` resolved).

    Args:
        args: Parsed arguments of a command that called :func:`add_device_argument`.

    Returns:
        ``cpu`` or ``cuda[:N]``.

    Raises:
        CLIError: CUDA asked for but absent, or not a device name.
    """
    try:
        return check_device(resolve_device_name(args.device))
    except ValueError as err:
        raise CLIError(str(err)) from err
