"""Subcommands of the distortion engine: ``distortions ls`` and ``distortions sheet``.

The old spellings ``distortions [--json]`` and ``distort IMAGE ...`` still work for one
release and say so on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shamisa_bench.cli.args import renamed
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.imageio import load_image
from shamisa_bench.distortions.catalog import CATALOG, GROUPS
from shamisa_bench.distortions.sheet import contact_sheet

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distortions {ls,sheet}`` (and the hidden old ``distort``) to the command line."""
    group = subparsers.add_parser("distortions", help="the distortion catalog and contact sheets")
    # the old spelling `distortions [--json]` (no action): listed as before, with a note
    group.add_argument("--json", dest="legacy_json", action="store_true", help=argparse.SUPPRESS)
    group.set_defaults(func=renamed("distortions", "distortions ls", _cmd_distortions_legacy))
    sub = group.add_subparsers(dest="distortions_command", metavar="ACTION")

    p = sub.add_parser("ls", help="list the distortion catalog (26 types, 7 groups)")
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=_cmd_distortions)

    d = sub.add_parser(
        "sheet",
        help="write a contact sheet: every type at its 5 anchor levels, plus a composition group",
    )
    _add_sheet_arguments(d)
    d.set_defaults(func=_cmd_distort)

    old = subparsers.add_parser("distort")  # no help: hidden from the command list
    _add_sheet_arguments(old)
    old.set_defaults(func=renamed("distort", "distortions sheet", _cmd_distort))


def _add_sheet_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("image", help="input image (JPEG, PNG, BMP, TIFF)")
    d.add_argument("--out", required=True, help="output PNG path")
    d.add_argument("--types", nargs="+", metavar="TYPE", help="rows to draw (default: all types)")
    d.add_argument("--seed", type=int, default=0, help="seed of the random types and the composition (default 0)")
    d.add_argument("--size", type=int, default=224, help="side of the centre crop shown, in pixels (default 224)")
    d.add_argument("--no-composition", action="store_true", help="leave out the composition-group row")


def _cmd_distortions_legacy(args: argparse.Namespace) -> int:
    args.json = args.legacy_json
    return _cmd_distortions(args)


def _cmd_distortions(args: argparse.Namespace) -> int:
    rows = [
        {
            "type": e.name,
            "group": e.group,
            "anchors": list(e.anchors),
            "integer": e.integer,
            "description": e.description,
        }
        for g in GROUPS
        for e in CATALOG.values()
        if e.group == g
    ]
    if args.json:
        print(json.dumps(rows, indent=2, allow_nan=False))
        return 0

    table = Table(title=f"SHAMISA distortion catalog: {len(rows)} types in {len(GROUPS)} groups")
    table.add_column("type", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("anchors (levels 1-5)", overflow="fold")
    table.add_column("int", no_wrap=True)
    table.add_column("description", overflow="fold")
    for r in rows:
        anchors = ", ".join(f"{a:g}" for a in r["anchors"])
        table.add_row(r["type"], r["group"], anchors, "yes" if r["integer"] else "", r["description"])
    Console().print(table)
    return 0


def _cmd_distort(args: argparse.Namespace) -> int:
    if args.size < 16:
        raise CLIError(f"--size must be at least 16 pixels, got {args.size}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must be a .png file, got {out}")
    image = load_image(args.image)
    sheet = contact_sheet(image, args.types, seed=args.seed, size=args.size, composition=not args.no_composition)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    n_rows = len(args.types or []) or 26
    print(
        f"wrote {out} ({sheet.width}x{sheet.height}, {n_rows} types x 5 levels"
        f"{'' if args.no_composition else ' + a composition group'})"
    )
    return 0
