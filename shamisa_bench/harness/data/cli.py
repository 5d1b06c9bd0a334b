"""Subcommands of the data layer: ``data ls``, ``data verify``, ``data fetch`` and ``validate``.

``datasets [--verify]``, the old spelling of ``data ls`` / ``data verify``, still works for
one release and says so on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shamisa_bench.cli.args import renamed
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.harness.data.fetch import FetchError, fetch_dataset
from shamisa_bench.harness.data.table import (
    dataset_status,
    default_data_root,
    load_dataset,
    verify_images,
)
from shamisa_bench.harness.registry import (
    default_registry_root,
    load_registry,
    validate_registry,
)

__all__ = ["register"]


def _data_root_default() -> Path:
    return default_data_root()


def _add_common(p: argparse.ArgumentParser, *, data_root: bool = True) -> None:
    p.add_argument(
        "--registry", type=Path, default=None, help="registry folder (default: the one shipped with the package)"
    )
    if data_root:
        p.add_argument(
            "--data-root",
            type=Path,
            default=None,
            help="folder holding the datasets (default: $SHAMISA_BENCH_DATA or ./datasets)",
        )


def register(subparsers: Any) -> None:
    """Add ``data {ls,verify,fetch}`` and ``validate`` (and the hidden old ``datasets``) to the CLI."""
    p = subparsers.add_parser("data", help="datasets: which are found and complete, corrupt images, downloads")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    ls = sub.add_parser("ls", help="which registered datasets are found and complete at a data root")
    _add_listing(ls)
    ls.set_defaults(func=_cmd_datasets, verify=False)
    verify = sub.add_parser(
        "verify", help="as ls, and decode every image of the found datasets: list corrupt ones (exit status 1 if any)"
    )
    _add_listing(verify)
    verify.set_defaults(func=_cmd_datasets, verify=True)

    old = subparsers.add_parser("datasets")  # no help: hidden from the command list
    _add_listing(old)
    old.add_argument("--verify", action="store_true", help="as `data verify`")
    old.set_defaults(func=renamed("datasets", lambda args: "data verify" if args.verify else "data ls", _cmd_datasets))

    p = subparsers.add_parser("validate", help="check the registry's schema and cross-references (exit 1 on problems)")
    _add_common(p, data_root=False)
    p.set_defaults(func=_cmd_validate)

    f = sub.add_parser("fetch", help="download a dataset with pyiqa's downloader (atomic; fails fast offline)")
    f.add_argument("name", help="registered dataset name")
    _add_common(f)
    f.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the connectivity check")
    f.set_defaults(func=_cmd_fetch)


def _add_listing(p: argparse.ArgumentParser) -> None:
    """The arguments of ``data ls`` and ``data verify``."""
    _add_common(p)
    p.add_argument("names", nargs="*", help="datasets to show (default: all)")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache folder for built datasets (demo)")


def _registry(args: argparse.Namespace) -> Any:
    return load_registry(args.registry)


def _cmd_validate(args: argparse.Namespace) -> int:
    root = args.registry or default_registry_root()
    problems = validate_registry(root)
    if problems:
        print(f"registry {root}: {len(problems)} problem(s)", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    reg = load_registry(root)
    counts = []
    for kind in ("datasets", "metrics", "protocols", "suites"):
        research = len(getattr(reg, kind)) - len(reg.product(kind))
        counts.append(f"{len(reg.product(kind))} {kind}" + (f" (+{research} research)" if research else ""))
    print(f"registry {root}: OK ({', '.join(counts)}; research entries are under experiments/)")
    return 0


def _labels(spec: Any) -> str:
    return {"mos": "MOS", "dmos": "DMOS", "pseudo-mos": "pseudo-MOS"}[spec.label_type]


def _cmd_datasets(args: argparse.Namespace) -> int:
    reg = _registry(args)
    data_root = args.data_root or _data_root_default()
    names = args.names or sorted(reg.datasets)
    specs = [reg.dataset(n) for n in names]
    rows = []
    details: list[str] = []
    n_corrupt = 0
    unusable: list[str] = []
    for spec in specs:
        st = dataset_status(spec, data_root, cache_dir=args.cache_dir)
        if not st.found and spec.reader == "demo" and st.looked_for:
            where = f"built on first use in {st.looked_for[0].parent}"
            status = "not built"
        elif not st.found:
            more = f" (+{len(st.looked_for) - 1} other places)" if len(st.looked_for) > 1 else ""
            where = f"looked for {st.looked_for[0]}{more}" if st.looked_for else "-"
            status = "not found"
        elif st.complete:
            where = str(st.root)
            status = "complete"
        else:
            where = str(st.root) if st.root else "-"
            status = "unreadable" if st.n_listed == 0 and st.n_present == 0 else "partial"
            if st.no_split:
                status = "no split"
            if status != "partial":
                unusable.append(spec.name)
            details.append(f"{spec.name}: {st.problem}")
        if args.verify and st.found and st.n_present:
            table = load_dataset(spec, data_root, allow_partial=True, cache_dir=args.cache_dir)
            bad = verify_images(table)
            details.append(f"{spec.name}: verify decoded {table.n_images} images, {len(bad)} corrupt")
            details.extend(f"  {name}: {reason}" for name, reason in bad)
            if bad:
                status = f"{len(bad)} corrupt"
                n_corrupt += len(bad)
        if st.found and st.root is not None and st.image_dirs:
            dirs = [os.path.relpath(d, st.root) for d in st.image_dirs]
            where += f" (images: {', '.join(dirs)})"
        count = f"{st.n_present}/{spec.n_images}" if st.found else f"-/{spec.n_images}"
        rows.append([spec.name, spec.kind, _labels(spec), st.layout or "-", status, count, str(len(st.missing)), where])
    header = ["dataset", "kind", "labels", "layout", "status", "images", "missing", "where"]
    _print_table(f"Datasets at {data_root}", header, rows)
    for line in details:
        print(line)
    if any(r[2] == "pseudo-MOS" for r in rows):
        print("pseudo-MOS: labels computed by a full-reference metric, not human opinion.")
    if args.verify and unusable:
        print(f"verify: {', '.join(unusable)} found but unusable (see above; exit status 1)", file=sys.stderr)
    if n_corrupt:
        print(f"verify: {n_corrupt} corrupt image(s); the datasets listed above with them are not complete "
              "(exit status 1)", file=sys.stderr)
    return 1 if args.verify and (n_corrupt or unusable) else 0


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    Console(width=max(120, Console().width)).print(table)


def _cmd_fetch(args: argparse.Namespace) -> int:
    reg = _registry(args)
    spec = reg.dataset(args.name)
    data_root = args.data_root or _data_root_default()
    try:
        moved = fetch_dataset(spec, data_root, timeout=args.timeout)
    except FetchError as err:
        raise CLIError(str(err)) from None
    for p in moved:
        print(f"fetched {p}")
    return 0
