"""The `shamisa-bench` command line: a thin layer that parses and dispatches.

Each subpackage owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers)``; ``shamisa_bench.perf.cli`` adds ``perf`` and its targets. A
subcommand parser sets ``func`` (a callable taking the parsed namespace and returning an
exit code); a handler raises :class:`~shamisa_bench.cli.errors.CLIError` for a one-line
error message.

Only the command that is run is imported. The command modules load torch, pyiqa, pandas
and the rest (seconds), so :data:`COMMANDS` names, for every command, its one-line help
and the ``cli`` modules that declare it, and :func:`main` imports those modules only,
and only after reading the command's name from the command line: ``--version`` and
``--help`` import none of them (``tests/cli/test_startup.py`` holds them to it). The
modules are imported by name, as strings, not with import statements:
``tests/test_architecture.py`` reads :data:`COMMANDS` and checks that each is a ``cli``
module of the package.

Adding a command:

1. declare it in its subpackage's ``cli`` module, in ``register(subparsers)`` (a new
   module: a ``shamisa_bench/<subpackage>/cli.py`` with that function);
2. add it to :data:`COMMANDS` with the same one-line help as its ``add_parser(help=...)``
   (``tests/cli/test_main.py`` compares them) and the module, and to its group in
   :data:`COMMAND_GROUPS`. A module that also changes other commands' parsers (as
   ``robustness`` adds its suite handler to ``run`` and ``report``) is listed for those
   commands too, after the module declaring them.

Old spellings of renamed commands (``datasets``, ``distort``, ``bench``) have no help
(``None``): parsers missing from ``--help`` that print a note and run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shamisa_bench import __version__
from shamisa_bench.cli.errors import CLIError

__all__ = ["COMMANDS", "COMMAND_GROUPS", "CLIError", "build_parser", "main"]

COMMANDS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "run": ("run (or resume) a benchmark suite and write results/runs + results/tables",
            ("shamisa_bench.harness.cli", "shamisa_bench.robustness.cli")),
    "report": ("rebuild a suite's tables from its result JSON files (computes nothing)",
               ("shamisa_bench.harness.cli", "shamisa_bench.robustness.cli")),
    "robustness": ("how each metric reacts to each distortion: JSON + report under results/robustness/",
                   ("shamisa_bench.robustness.cli",)),
    "fit-head": ("fit the pyiqa metric's ridge head on a dataset (or a CSV of image,mos)", ("shamisa_bench.iqa.cli",)),
    "gmad": ("gMAD competition of two metrics on an unlabelled pool: pairs JSON + panels under results/gmad/",
             ("shamisa_bench.analysis.cli",)),
    "embed": ("2-D map of a metric's features on the synthetic pool, by distortion group and severity",
              ("shamisa_bench.analysis.cli",)),
    "pretrain": ("self-supervised SHAMISA pretraining on a folder of pristine images", ("shamisa_bench.train.cli",)),
    "pretrain-report": ("copy pretraining runs' config and log and draw their curves (PNG), for results/pretrain/",
                        ("shamisa_bench.train.cli",)),
    "pretrain-diagnose": (("per-term encoder gradients at a run's checkpoint on its own next batches: do the loss "
                           "terms cancel, is what is left consistent from batch to batch, and (--alignment) does it "
                           "point where the labels ask? (JSON)"), ("shamisa_bench.train.cli",)),
    "data": ("datasets: which are found and complete, corrupt images, downloads", ("shamisa_bench.harness.data.cli",)),
    "validate": ("check the registry's schema and cross-references (exit 1 on problems)",
                 ("shamisa_bench.harness.data.cli",)),
    "distortions": ("the distortion catalog and contact sheets", ("shamisa_bench.distortions.cli",)),
    "model": ("encoder weights and exports", ("shamisa_bench.model.cli",)),
    "perf": ("speed benchmarks that print JSON", ("shamisa_bench.perf.cli",)),
    # old spellings, kept for one release
    "datasets": (None, ("shamisa_bench.harness.data.cli",)),
    "distort": (None, ("shamisa_bench.distortions.cli",)),
    "bench": (None, ("shamisa_bench.perf.cli",)),
}
"""Every command: ``name -> (one line of --help or None, the cli modules declaring it)``,
in the order of ``--help``."""

COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("evaluate", ("run", "report", "robustness", "fit-head")),
    ("analyse", ("gmad", "embed")),
    ("train", ("pretrain", "pretrain-report", "pretrain-diagnose")),
    ("inspect", ("data", "validate", "distortions", "model")),
    ("performance", ("perf",)),
)
"""The commands of ``--help``, by group."""


def _epilog() -> str:
    width = max(len(name) for name, _ in COMMAND_GROUPS) + 2
    lines = [f"  {name + ':':<{width}}{', '.join(commands)}" for name, commands in COMMAND_GROUPS]
    return "command groups:\n" + "\n".join(lines) + "\n\n`shamisa-bench COMMAND --help` describes a command."


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option), or None.

    The top-level options (``--version``, ``--debug``, ``--help``) take no value, so the
    first other word is the command. ``--help`` before it asks for the top-level help: None.
    """
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser.

    Args:
        command: A name of :data:`COMMANDS`: only the modules declaring it are imported
            and only their commands are parsed. None (or an unknown name): every module
            is imported (for the tests and documentation that walk all commands).

    Returns:
        The parser; a command's parsed arguments carry its handler as ``func``.
    """
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _modules(command):
        importlib.import_module(name).register(sub)
    return parser


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shamisa-bench",
        description="SHAMISA self-supervised NR-IQA: engine, pretraining, metric and benchmark harness.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shamisa-bench {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of its one-line message")
    return parser


def _modules(command: str | None) -> list[str]:
    """The cli modules to import for ``command`` (all of them for None), each once, in order."""
    entries = [COMMANDS[command]] if command in COMMANDS else list(COMMANDS.values())
    return list(dict.fromkeys(module for _, modules in entries for module in modules))


def _listing_parser() -> argparse.ArgumentParser:
    """The parser of ``shamisa-bench`` with no known command: ``--help``, ``--version``, and the
    error for an unknown command. Its commands are names and help lines only (no module is
    imported); none of them is ever run from it."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_line, _) in COMMANDS.items():
        sub.add_parser(name, **({} if help_line is None else {"help": help_line}))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    parser = build_parser(command) if command in COMMANDS else _listing_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    for name, value in sorted(vars(args).items()):  # every --seed, --val-split-seed, ...: one check
        if name.endswith("seed") and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            print(f"shamisa-bench: error: --{name.replace('_', '-')} must be a non-negative integer, got {value}",
                  file=sys.stderr)
            return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"shamisa-bench: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as err:  # OSError: a file that cannot be read or written
        # Raised below the edge: usually bad input, but possibly a bug, so say how to see where.
        if args.debug:
            raise
        print(f"shamisa-bench: error: {err} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's 128 + SIGINT; outputs are written atomically
        print("shamisa-bench: interrupted; rerun to resume", file=sys.stderr)
        return 130
