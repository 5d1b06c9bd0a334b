"""The `shamisa-bench` command line: a thin layer that parses and dispatches.

Each subpackage owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers)``; ``shamisa_bench.perf.cli`` adds ``perf`` and its targets. A
subcommand parser sets ``func`` (a callable taking the parsed namespace and returning an
exit code); a handler raises :class:`~shamisa_bench.cli.errors.CLIError` for a one-line
error message.

The command modules are imported by name when the parser is built, in the order of
``_COMMAND_MODULES`` (the order of ``--help``, group by group: :data:`COMMAND_GROUPS`), not
when this package is imported: they import ``shamisa_bench.cli.errors``, which runs this
``__init__`` first. Old spellings of renamed commands (``datasets``, ``distort``, ``bench``)
are parsers without help, hence missing from ``--help``; they print a note and run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shamisa_bench import __version__
from shamisa_bench.cli.errors import CLIError

__all__ = ["COMMAND_GROUPS", "CLIError", "build_parser", "main"]

_COMMAND_MODULES: tuple[str, ...] = (
    "shamisa_bench.harness.cli",  # run, report
    "shamisa_bench.robustness.cli",  # robustness (after run and report: it handles their robustness suites)
    "shamisa_bench.iqa.cli",  # fit-head
    "shamisa_bench.analysis.cli",  # gmad, embed
    "shamisa_bench.train.cli",  # pretrain, pretrain-report, pretrain-diagnose
    "shamisa_bench.harness.data.cli",  # data, validate (and the old datasets)
    "shamisa_bench.distortions.cli",  # distortions (and the old distort)
    "shamisa_bench.model.cli",  # model
    "shamisa_bench.perf.cli",  # perf (and the old bench)
)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shamisa-bench",
        description="SHAMISA self-supervised NR-IQA: engine, pretraining, metric and benchmark harness.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
