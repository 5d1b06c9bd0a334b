"""Leaderboard tables, derived only from the unit JSON files of a suite.

``build_leaderboard(results_dir, suite)`` reads ``<results>/runs/<suite>/**.json``;
``write_tables`` writes ``<results>/tables/<suite>.md`` (one table per score key, the
median over splits, the best cell of each column in bold) and ``<suite>.csv`` (long
format: one row per metric x dataset x score x statistic, one value per cell). A metric
that could not run keeps its row, with ``unavailable`` (or ``failed``) in its cells and
the reason in the notes.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shamisa_bench.cache import atomic_write_bytes
from shamisa_bench.results.schema import unit_token
from shamisa_bench.results.store import iter_units

__all__ = [
    "CSV_FIELDS",
    "Cell",
    "Leaderboard",
    "build_leaderboard",
    "render_console",
    "render_csv",
    "render_markdown",
    "write_tables",
]

#: Columns of the long-format CSV.
CSV_FIELDS: tuple[str, ...] = (
    "suite", "protocol", "metric", "dataset", "train", "test", "score", "statistic",
    "value", "best", "status", "n_images", "n_excluded", "n_nonfinite", "n_splits", "note",
)

_STATS = ("median", "mean", "std")
_LABELS = {"srcc": "SRCC", "plcc": "PLCC", "plcc_logistic": "PLCC (logistic)",
           "krcc": "KRCC"}


@dataclass(frozen=True)
class Cell:
    """One metric x dataset (or pair) entry, read from one unit file.

    Attributes:
        metric: metric name.
        protocol: protocol name.
        token: dataset name or ``<train>--<test>``.
        status: ``ok``, ``unavailable`` or ``failed``.
        stats: score key -> {"median", "mean", "std"} (floats or None).
        n_images: images scored.
        n_excluded: images left out (failures and non-finite outputs).
        n_nonfinite: NaN/Inf outputs among them.
        n_splits: number of splits aggregated.
        reason: why the unit is not ok.
        source: the unit file.
    """

    metric: str
    protocol: str
    token: str
    status: str
    stats: Mapping[str, Mapping[str, float | None]]
    n_images: int
    n_excluded: int
    n_nonfinite: int
    n_splits: int
    reason: str | None
    source: str
    train: str | None = None
    test: str | None = None

    def value(self, key: str, stat: str = "median") -> float | None:
        """The statistic of a score key, or None when absent or undefined."""
        v = self.stats.get(key, {}).get(stat)
        return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True)
class Leaderboard:
    """All cells of a suite plus what is needed to lay them out.

    Attributes:
        suite: suite name.
        score_keys: the columns the suite declares (e.g. srcc, plcc).
        higher_is_better: per score key, the direction used to mark the best cell.
        main_score: the score key that orders the rows.
        metrics: row order (best mean of ``main_score`` over columns first).
        tokens: column order (the suite's dataset/pair order as stored in the units).
        cells: (metric, protocol, token) -> cell.
        protocols: protocols present.
        datasets: name -> the dataset block of the first unit that used it.
    """

    suite: str
    score_keys: tuple[str, ...]
    higher_is_better: Mapping[str, bool]
    main_score: str
    metrics: tuple[str, ...]
    tokens: tuple[tuple[str, str], ...]
    cells: Mapping[tuple[str, str, str], Cell]
    protocols: tuple[str, ...] = field(default_factory=tuple)
    datasets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def cell(self, metric: str, protocol: str, token: str) -> Cell | None:
        """The cell, or None when the unit was never run."""
        return self.cells.get((metric, protocol, token))

    def best(self, key: str, protocol: str, token: str) -> set[str]:
        """Metrics holding the best median of ``key`` in one column (ties all count)."""
        vals = {}
        for m in self.metrics:
            c = self.cell(m, protocol, token)
            if c is not None and c.status == "ok":
                v = c.value(key)
                if v is not None:
                    vals[m] = round(v, 6)
        if not vals:
            return set()
        hib = self.higher_is_better.get(key, True)
        target = max(vals.values()) if hib else min(vals.values())
        return {m for m, v in vals.items() if v == target}


def build_leaderboard(results_dir: str | os.PathLike[str], suite: str) -> Leaderboard:
    """Read every unit file of ``suite`` and assemble the leaderboard.

    Raises:
        FileNotFoundError: when the suite has no results.
        ValueError: for an invalid unit file, or units disagreeing on the table columns.
    """
    cells: dict[tuple[str, str, str], Cell] = {}
    score_keys: tuple[str, ...] | None = None
    hib: dict[str, bool] = {}
    main = ""
    order: list[str] = []
    proto_order: list[str] = []
    datasets: dict[str, Mapping[str, Any]] = {}
    for path, rec in iter_units(results_dir, suite):
        unit = rec["unit"]
        if unit["suite"] != suite:
            raise ValueError(f"{path}: unit of suite {unit['suite']!r} inside suite {suite!r}")
        keys = tuple(rec["table"]["columns"])
        if score_keys is None:
            score_keys = keys
            raw = rec["table"].get("higher_is_better", True)
            hib = {k: bool(raw.get(k, True)) if isinstance(raw, dict) else bool(raw) for k in keys}
            main = str(rec["table"].get("main_score") or (keys[0] if keys else ""))
        elif keys != score_keys:
            raise ValueError(f"{path}: table columns {list(keys)} differ from {list(score_keys)}")
        for t in rec["table"].get("order", []):
            if t not in order:
                order.append(t)
        for dname, info in (rec.get("datasets") or {}).items():
            datasets.setdefault(dname, info)
        token = unit_token(unit)
        if token not in order:
            order.append(token)
        if unit["protocol"] not in proto_order:
            proto_order.append(unit["protocol"])
        agg = (rec.get("scores") or {}).get("aggregate") or {}
        nonf = rec.get("nonfinite") or {}
        per_split = (rec.get("scores") or {}).get("per_split") or []
        cells[(unit["metric"], unit["protocol"], token)] = Cell(
            metric=unit["metric"],
            protocol=unit["protocol"],
            token=token,
            status=rec["status"],
            stats={k: {s: (agg.get(k) or {}).get(s) for s in _STATS} for k in keys},
            n_images=int(rec.get("n_images") or 0),
            n_excluded=int(rec.get("n_excluded") or 0),
            n_nonfinite=int((nonf.get("nan") or 0) + (nonf.get("inf") or 0)),
            n_splits=len(per_split),
            reason=rec.get("reason"),
            source=str(path),
            train=unit.get("train"),
            test=unit.get("test"),
        )
    if score_keys is None:
        raise FileNotFoundError(f"{Path(results_dir) / 'runs' / suite}: no unit files")
    present = {(c.protocol, c.token) for c in cells.values()}
    tokens = tuple((p, t) for p in proto_order for t in order if (p, t) in present)
    metric_names = sorted({c.metric for c in cells.values()})
    sign = -1.0 if hib.get(main, True) else 1.0

    def rank(m: str) -> tuple[float, str]:
        vals = [c.value(main) for c in cells.values() if c.metric == m and main
                and c.status == "ok"]
        vals = [v for v in vals if v is not None]
        return (sign * sum(vals) / len(vals) if vals else math.inf, m)

    return Leaderboard(
        suite=suite,
        score_keys=score_keys,
        higher_is_better=hib,
        main_score=main,
        metrics=tuple(sorted(metric_names, key=rank)),
        tokens=tokens,
        cells=cells,
        protocols=tuple(proto_order),
        datasets=dict(sorted(datasets.items())),
    )


def _column_label(lb: Leaderboard, protocol: str, token: str) -> str:
    label = token.replace("--", " → ")
    return f"{protocol}: {label}" if len(lb.protocols) > 1 else label


def _cell_text(lb: Leaderboard, key: str, metric: str, protocol: str, token: str,
               *, bold: tuple[str, str]) -> str:
    c = lb.cell(metric, protocol, token)
    if c is None:
        return "–"
    if c.status != "ok":
        return c.status
    v = c.value(key)
    if v is None:
        return "nan"
    text = f"{v:.3f}"
    if metric in lb.best(key, protocol, token):
        text = f"{bold[0]}{text}{bold[1]}"
    return text


def _notes(lb: Leaderboard) -> list[str]:
    notes = []
    for m in lb.metrics:
        reasons = sorted({c.reason or "" for c in lb.cells.values()
                          if c.metric == m and c.status != "ok"})
        statuses = sorted({c.status for c in lb.cells.values()
                           if c.metric == m and c.status != "ok"})
        if statuses:
            why = "; ".join(r for r in reasons if r)
            why = why if len(why) <= 240 else why[:239] + "…"
            notes.append(f"`{m}`: {'/'.join(statuses)} — {why} (full reason in its unit files)")
    for (m, p, t), c in sorted(lb.cells.items()):
        if c.status == "ok" and (c.n_excluded or c.n_nonfinite):
            notes.append(
                f"`{m}` on `{t}`: {c.n_excluded} image(s) excluded, of which "
                f"{c.n_nonfinite} with a NaN/Inf output (see {Path(c.source).name})"
            )
    return notes


def render_markdown(lb: Leaderboard) -> str:
    """The Markdown leaderboard: one table per score key, medians, best in bold."""
    n_splits = sorted({c.n_splits for c in lb.cells.values() if c.status == "ok"})
    splits = "/".join(str(n) for n in n_splits) or "0"
    lines = [
        f"# Leaderboard: `{lb.suite}`",
        "",
        (
            f"Median over {splits} split(s); protocol(s): {', '.join(lb.protocols)}. "
            "Best value per column in **bold**. Rows are ordered by the mean "
            f"{_LABELS.get(lb.main_score, lb.main_score)} over columns. Generated by "
            f"`shamisa-bench report` from the unit JSON files under `runs/{lb.suite}/`; "
            "do not edit by hand."
        ),
    ]
    header = "| metric | " + " | ".join(_column_label(lb, p, t) for p, t in lb.tokens) + " |"
    rule = "|---|" + "---:|" * len(lb.tokens)
    for key in lb.score_keys:
        lines += ["", f"## {_LABELS.get(key, key)}", "", header, rule]
        for m in lb.metrics:
            row = [_cell_text(lb, key, m, p, t, bold=("**", "**")) for p, t in lb.tokens]
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines += ["", "## Images scored", "", header, rule]
    for m in lb.metrics:
        row = []
        for p, t in lb.tokens:
            c = lb.cell(m, p, t)
            row.append("–" if c is None or c.status != "ok" else str(c.n_images))
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    if lb.datasets:
        lines += ["", "## Datasets", ""]
        for dname, info in lb.datasets.items():
            title = info.get("title") or dname
            extra = []
            if info.get("label_type"):
                extra.append(f"labels: {info['label_type']}")
            if info.get("partial"):
                extra.append(f"partial copy ({info.get('partial_reason') or 'images missing'})")
            lines.append(f"- `{dname}`: {title}; {info.get('n_images', '?')} images"
                         + ("; " + "; ".join(extra) if extra else ""))
    notes = _notes(lb)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _long_rows(lb: Leaderboard) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for m in lb.metrics:
        for p, t in lb.tokens:
            c = lb.cell(m, p, t)
            if c is None:
                continue
            base = {
                "suite": lb.suite, "protocol": p, "metric": m,
                "dataset": t if c.train is None else "", "train": c.train or "",
                "test": c.test or "", "status": c.status, "n_images": c.n_images,
                "n_excluded": c.n_excluded, "n_nonfinite": c.n_nonfinite,
                "n_splits": c.n_splits, "note": c.reason or "",
            }
            if c.status != "ok":
                rows.append({**base, "score": "", "statistic": "", "value": "", "best": ""})
                continue
            for key in lb.score_keys:
                best = m in lb.best(key, p, t)
                for stat in _STATS:
                    v = c.value(key, stat)
                    rows.append({
                        **base, "score": key, "statistic": stat,
                        "value": "" if v is None else f"{v:.6f}",
                        "best": str(best and stat == "median").lower(),
                    })
    return rows


def render_csv(lb: Leaderboard) -> str:
    """The long-format CSV (see :data:`CSV_FIELDS`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for row in _long_rows(lb):
        w.writerow(row)
    return buf.getvalue()


def write_tables(lb: Leaderboard, results_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Atomically write ``<results>/tables/<suite>.md`` and ``.csv``; returns both paths."""
    out = Path(results_dir) / "tables"
    md, cs = out / f"{lb.suite}.md", out / f"{lb.suite}.csv"
    atomic_write_bytes(md, render_markdown(lb).encode())
    atomic_write_bytes(cs, render_csv(lb).encode())
    return md, cs


def render_console(lb: Leaderboard, console: Any = None,
                   keys: Sequence[str] | None = None) -> None:
    """Print the leaderboard as rich tables (best cell bold green).

    Args:
        lb: the leaderboard.
        console: a rich Console (default: a new one on stdout).
        keys: score keys to show (default: the main score only; the files hold them all).
    """
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    for key in keys or (lb.main_score,):
        table = Table(title=f"{lb.suite}: {_LABELS.get(key, key)} (median over splits)")
        table.add_column("metric", style="bold")
        for p, t in lb.tokens:
            table.add_column(_column_label(lb, p, t), justify="right")
        for m in lb.metrics:
            table.add_row(m, *[_cell_text(lb, key, m, p, t, bold=("[bold green]", "[/]"))
                               for p, t in lb.tokens])
        con.print(table)
    for n in _notes(lb):
        con.print(f"note: {n}", markup=False, highlight=False)
