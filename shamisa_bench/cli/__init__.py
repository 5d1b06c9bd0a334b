"""The `shamisa-bench` command line: a thin layer that parses and dispatches.

Each subpackage owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers)``; ``shamisa_bench.perf.cli`` adds ``bench`` and its targets. A
subcommand parser sets ``func`` (a callable taking the parsed namespace and returning an
exit code); a handler raises :class:`~shamisa_bench.cli.errors.CLIError` for a one-line
error message.

The command modules are imported by name when the parser is built, in the order of
``_COMMAND_MODULES`` (the order of ``--help``), not when this package is imported: they
import ``shamisa_bench.cli.errors``, which runs this ``__init__`` first.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shamisa_bench import __version__
from shamisa_bench.cli.errors import CLIError

__all__ = ["CLIError", "build_parser", "main"]

_COMMAND_MODULES: tuple[str, ...] = (
    "shamisa_bench.perf.cli",  # bench
    "shamisa_bench.distortions.cli",  # distortions, distort
    "shamisa_bench.model.cli",  # model
    "shamisa_bench.train.cli",  # pretrain, pretrain-report
    "shamisa_bench.harness.data.cli",  # datasets, validate, data
    "shamisa_bench.harness.cli",  # run, report
    "shamisa_bench.iqa.cli",  # fit-head
    "shamisa_bench.robustness.cli",  # robustness
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shamisa-bench",
        description="SHAMISA self-supervised NR-IQA: engine, pretraining, metric and benchmark harness.",
    )
    parser.add_argument("--version", action="version", version=f"shamisa-bench {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of its one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"shamisa-bench: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"shamisa-bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's 128 + SIGINT; outputs are written atomically
        print("shamisa-bench: interrupted; rerun to resume", file=sys.stderr)
        return 130
