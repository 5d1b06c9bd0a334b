"""Leaderboard tables, derived only from the unit JSON files of a suite.

``build_leaderboard(results_dir, suite)`` reads ``<results>/runs/<suite>/**.json``;
``write_tables`` writes ``<results>/tables/<suite>.md`` (one table per score key, the
median over splits with its 95% bootstrap interval, the best cell of each column in bold;
then the paired difference of every row to the best row over the same splits),
``<suite>.csv`` (long format: one row per metric x dataset x score x statistic, the
intervals and paired differences as columns of the median rows) and ``<suite>.png``
(per-split scores of every metric, :mod:`shamisa_bench.harness.results.plots`). A metric that
could not run keeps its row, with ``unavailable`` (or ``failed``) in its cells and the
reason in the notes.

Intervals are percentile bootstraps of the median over the splits
(:func:`shamisa_bench.common.scoring.bootstrap_median_interval`, fixed seed). The splits are
random partitions of the same images, so an interval says how much the median depends on
the choice of splits, not how it would move on new images. A cross-dataset cell scores the
whole test dataset once per pair, so it gets no interval and says so.
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

import numpy as np
from rich.console import Console
from rich.table import Table

from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.common.scoring import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_median_interval,
)
from shamisa_bench.harness.results.bytype import write_by_type
from shamisa_bench.harness.results.plots import SCORE_LABELS, render_png
from shamisa_bench.harness.results.schema import unit_token
from shamisa_bench.harness.results.store import iter_units

__all__ = [
    "CSV_FIELDS",
    "Cell",
    "Leaderboard",
    "PairedDifference",
    "build_leaderboard",
    "render_console",
    "render_csv",
    "render_markdown",
    "write_tables",
]

#: Columns of the long-format CSV.
CSV_FIELDS: tuple[str, ...] = (
    "suite", "protocol", "metric", "dataset", "train", "test", "score", "statistic",
    "value", "best", "ci95_low", "ci95_high", "ref_metric", "diff_to_ref", "diff_ci95_low",
    "diff_ci95_high", "diff_excludes_0", "status", "n_images", "n_excluded", "n_nonfinite",
    "n_splits", "note",
)

#: Marks, in the markdown, a paired difference whose interval excludes 0.
EXCLUDES_ZERO_MARK = "†"
#: Marks a cross-dataset cell (one test set per pair: no interval).
CROSS_MARK = "‡"
_CROSS_NOTE = "cross-dataset: the whole test set is scored once per pair, no interval over splits"

_STATS = ("median", "mean", "std")


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
        train, test: the pair (cross cells), else None.
        per_split: score key -> one value per split (None where undefined), in split order.
        split_ids: one identifier per split (its hash, else its index), for pairing.
        by_type: distortion type -> {"median", "n_splits", "n_images"} of its SRCC (typed datasets;
            :mod:`~shamisa_bench.harness.results.bytype`), else empty.
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
    per_split: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    split_ids: tuple[str, ...] = ()
    by_type: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def is_cross(self) -> bool:
        """A cross-dataset cell (one test set per pair)."""
        return self.train is not None

    def interval(self, key: str) -> tuple[float, float] | None:
        """95% bootstrap interval of the median of ``key`` over splits; None for cross
        cells, cells that are not ok, and fewer than 2 finite split values."""
        if self.status != "ok" or self.is_cross:
            return None
        vals = [v for v in self.per_split.get(key, ()) if v is not None]
        return bootstrap_median_interval(vals)

    def value(self, key: str, stat: str = "median") -> float | None:
        """The statistic of a score key, or None when absent or undefined."""
        v = self.stats.get(key, {}).get(stat)
        return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True)
class PairedDifference:
    """A row's score minus the best row's, split by split.

    Attributes:
        ref: the best row (reference) of the column.
        median: median over the shared splits of (row - ref); 0 for the reference itself;
            None when there is nothing to pair.
        interval: 95% bootstrap interval of that median (None with fewer than 2 splits).
        n: splits paired.
        excludes_zero: the interval lies entirely above or below 0.
        note: why there is no difference ("the best row", different splits), else None.
    """

    ref: str
    median: float | None
    interval: tuple[float, float] | None
    n: int
    excludes_zero: bool
    note: str | None


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
        baseline: a row every other row is also compared with, split by split (the
            suite's ``baseline``), or None.
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
    baseline: str | None = None

    def cell(self, metric: str, protocol: str, token: str) -> Cell | None:
        """The cell, or None when the unit was never run."""
        return self.cells.get((metric, protocol, token))

    def reference(self, key: str, protocol: str, token: str) -> str | None:
        """The best row of a column (the first in row order among ties), or None."""
        best = self.best(key, protocol, token)
        return next((m for m in self.metrics if m in best), None)

    def paired(self, key: str, metric: str, protocol: str, token: str,
               ref: str | None = None) -> PairedDifference | None:
        """Paired difference of ``metric`` to ``ref`` (default: the column's best row) over
        the same splits.

        Returns None for cells that are not ok, cross cells, and when there is no best row.
        """
        if ref is None:
            ref = self.reference(key, protocol, token)
        c, r = self.cell(metric, protocol, token), self.cell(ref or "", protocol, token)
        if ref is None or c is None or r is None or c.status != "ok" or c.is_cross:
            return None
        if metric == ref:
            return PairedDifference(ref, 0.0, None, 0, False, "the best row" if ref != self.baseline else "the baseline")
        mine = dict(zip(c.split_ids, c.per_split.get(key, ()), strict=False))
        theirs = dict(zip(r.split_ids, r.per_split.get(key, ()), strict=False))
        if set(mine) != set(theirs) or not mine:
            return PairedDifference(ref, None, None, 0, False, f"not on the same splits as {ref}")
        diffs = [mine[s] - theirs[s] for s in c.split_ids if mine[s] is not None and theirs[s] is not None]
        if not diffs:
            return PairedDifference(ref, None, None, 0, False, "no split where both are defined")
        median = float(np.median(diffs))
        ci = bootstrap_median_interval(diffs)
        excludes = ci is not None and (ci[0] > 0 or ci[1] < 0)
        return PairedDifference(ref, median, ci, len(diffs), excludes, None)

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


def build_leaderboard(results_dir: str | os.PathLike[str], suite: str, *, baseline: str | None = None) -> Leaderboard:
    """Read every unit file of ``suite`` and assemble the leaderboard.

    ``baseline`` (the suite's, e.g. the ImageNet encoder of an ablation) adds a comparison
    of every row with that row; ignored when it has no results.

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
        split_ids = tuple(str(e.get("hash") if e.get("hash") is not None else e.get("split", i))
                          for i, e in enumerate(per_split))
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
            per_split={k: tuple(e.get(k) for e in per_split) for k in keys},
            split_ids=split_ids,
            by_type=dict(((rec.get("by_type") or {}).get("aggregate")) or {}),
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
        baseline=baseline if baseline in metric_names else None,
    )


def _column_label(lb: Leaderboard, protocol: str, token: str) -> str:
    label = token.replace("--", " → ")
    return f"{protocol}: {label}" if len(lb.protocols) > 1 else label


def _fmt(v: float) -> str:
    return f"{v:.3f}".replace("-", "−")


def _fmt_signed(v: float) -> str:
    # 3 decimals, or down to the first significant digit of a tiny difference (never "-0.000")
    if v == 0:
        return "0.000"
    digits = 3 if abs(v) >= 0.0005 else min(6, 1 - math.floor(math.log10(abs(v))))
    text = f"{v:+.{digits}f}"
    return ("−" + text[1:]) if text.startswith("-") else text


def _cell_text(lb: Leaderboard, key: str, metric: str, protocol: str, token: str,
               *, bold: tuple[str, str], interval: bool = True) -> str:
    c = lb.cell(metric, protocol, token)
    if c is None:
        return "–"
    if c.status != "ok":
        return c.status
    v = c.value(key)
    if v is None:
        return "nan"
    text = _fmt(v)
    if metric in lb.best(key, protocol, token):
        text = f"{bold[0]}{text}{bold[1]}"
    if interval:
        if c.is_cross:
            text += f" {CROSS_MARK}"
        else:
            ci = c.interval(key)
            if ci is not None:
                text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def _diff_text(lb: Leaderboard, key: str, metric: str, protocol: str, token: str,
               ref: str | None = None) -> str:
    c = lb.cell(metric, protocol, token)
    if c is None:
        return "–"
    if c.status != "ok":
        return c.status
    if c.is_cross:
        return CROSS_MARK
    d = lb.paired(key, metric, protocol, token, ref=ref)
    if d is None or c.value(key) is None:
        return "nan"
    if d.note == "the best row":
        return "best"
    if d.note == "the baseline":
        return "baseline"
    if d.median is None:
        return d.note or "–"
    text = _fmt_signed(d.median)
    if d.interval is not None:
        text += f" [{_fmt_signed(d.interval[0])}, {_fmt_signed(d.interval[1])}]"
    if d.excludes_zero:
        text += f" {EXCLUDES_ZERO_MARK}"
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


def render_markdown(lb: Leaderboard, png: str | None = None) -> str:
    """The Markdown leaderboard: one table per score key (medians with 95% intervals, best in
    bold), the paired differences to the best row, and the picture ``png`` when given."""
    n_splits = sorted({c.n_splits for c in lb.cells.values() if c.status == "ok"})
    splits = "/".join(str(n) for n in n_splits) or "0"
    main_label = SCORE_LABELS.get(lb.main_score, lb.main_score)
    has_cross = any(c.is_cross for c in lb.cells.values())
    has_intra = any(not c.is_cross for c in lb.cells.values())
    lines = [
        f"# Leaderboard: `{lb.suite}`",
        "",
        (
            f"Median over {splits} split(s); protocol(s): {', '.join(lb.protocols)}. "
            "Best value per column in **bold**. Rows are ordered by the mean "
            f"{main_label} over columns. Generated by "
            f"`shamisa-bench report` from the unit JSON files under `runs/{lb.suite}/`; "
            "do not edit by hand."
        ),
    ]
    if has_intra:
        lines += ["", (
            "`0.777 [0.742, 0.801]`: the median and its 95% interval, a percentile bootstrap of the "
            f"median over the splits ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}). The splits "
            "are random partitions of the same images, so the interval shows how much the median "
            "depends on the choice of splits; it is not an interval for new images."
        )]
    if has_cross:
        cross_text = (f"{CROSS_MARK} {_CROSS_NOTE[0].upper()}{_CROSS_NOTE[1:]} (one fit per pair for score "
                      "metrics; feature probes fit one head per split of the training set, all tested on "
                      "the same images).")
        lines += ["", cross_text]
    if png:
        lines += ["", f"![per-split {main_label} of every metric]({png})"]
    header = "| metric | " + " | ".join(_column_label(lb, p, t) for p, t in lb.tokens) + " |"
    rule = "|---|" + "---:|" * len(lb.tokens)
    for key in lb.score_keys:
        lines += ["", f"## {SCORE_LABELS.get(key, key)}", "", header, rule]
        for m in lb.metrics:
            row = [_cell_text(lb, key, m, p, t, bold=("**", "**")) for p, t in lb.tokens]
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    if has_intra:
        diff_text = ("Each row minus the best row of the column, split by split over the same splits: the "
                     f"median difference and its 95% bootstrap interval. {EXCLUDES_ZERO_MARK} marks an "
                     "interval that excludes 0 (the row differs from the best row on these splits).")
        lines += ["", f"## Paired difference to the best row ({main_label})", "", diff_text, "", header, rule]
        for m in lb.metrics:
            row = [_diff_text(lb, lb.main_score, m, p, t) for p, t in lb.tokens]
            lines.append(f"| {m} | " + " | ".join(row) + " |")
        if lb.baseline is not None:
            base_text = (f"Each row minus `{lb.baseline}`, split by split over the same splits: the median "
                         f"paired gain and its 95% bootstrap interval; {EXCLUDES_ZERO_MARK} marks an interval "
                         "that excludes 0.")
            lines += ["", f"## Paired gain over `{lb.baseline}` ({main_label})", "", base_text, "", header, rule]
            for m in lb.metrics:
                row = [_diff_text(lb, lb.main_score, m, p, t, ref=lb.baseline) for p, t in lb.tokens]
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
                continue  # the csv writer leaves the interval columns empty
            for key in lb.score_keys:
                best = m in lb.best(key, p, t)
                ci = c.interval(key)
                d = lb.paired(key, m, p, t)
                for stat in _STATS:
                    v = c.value(key, stat)
                    row = {
                        **base, "score": key, "statistic": stat,
                        "value": "" if v is None else f"{v:.6f}",
                        "best": str(best and stat == "median").lower(),
                        "ci95_low": "", "ci95_high": "", "ref_metric": "", "diff_to_ref": "",
                        "diff_ci95_low": "", "diff_ci95_high": "", "diff_excludes_0": "",
                    }
                    if stat == "median":
                        if ci is not None:
                            row.update(ci95_low=f"{ci[0]:.6f}", ci95_high=f"{ci[1]:.6f}")
                        if d is not None:
                            row["ref_metric"] = d.ref
                            if d.median is not None:
                                row["diff_to_ref"] = f"{d.median:.6f}"
                                row["diff_excludes_0"] = str(d.excludes_zero).lower()
                            if d.interval is not None:
                                row.update(diff_ci95_low=f"{d.interval[0]:.6f}",
                                           diff_ci95_high=f"{d.interval[1]:.6f}")
                        if c.is_cross:
                            row["note"] = "; ".join(x for x in (row["note"], _CROSS_NOTE) if x)
                    rows.append(row)
    return rows


def render_csv(lb: Leaderboard) -> str:
    """The long-format CSV (see :data:`CSV_FIELDS`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for row in _long_rows(lb):
        w.writerow(row)
    return buf.getvalue()


def write_tables(lb: Leaderboard, results_dir: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Atomically write ``<results>/tables/<suite>.md``, ``.csv`` and ``.png``, and the
    ``<suite>-by-type`` files when some dataset carries distortion types; returns the paths
    (md, csv, png first)."""
    out = Path(results_dir) / "tables"
    md, cs, png = out / f"{lb.suite}.md", out / f"{lb.suite}.csv", out / f"{lb.suite}.png"
    atomic_write_bytes(png, render_png(lb))
    atomic_write_bytes(md, render_markdown(lb, png.name).encode())
    atomic_write_bytes(cs, render_csv(lb).encode())
    return (md, cs, png, *write_by_type(lb, results_dir))


def render_console(lb: Leaderboard, console: Any = None,
                   keys: Sequence[str] | None = None) -> None:
    """Print the leaderboard as rich tables (best cell bold green).

    Args:
        lb: the leaderboard.
        console: a rich Console (default: a new one on stdout).
        keys: score keys to show (default: the main score only; the files hold them all).
    """
    con = console or Console()
    for key in keys or (lb.main_score,):
        table = Table(title=f"{lb.suite}: {SCORE_LABELS.get(key, key)} (median over splits)")
        table.add_column("metric", style="bold")
        for p, t in lb.tokens:
            table.add_column(_column_label(lb, p, t), justify="right")
        for m in lb.metrics:
            table.add_row(m, *[_cell_text(lb, key, m, p, t, bold=("[bold green]", "[/]"))
                               for p, t in lb.tokens])
        con.print(table)
    for n in _notes(lb):
        con.print(f"note: {n}", markup=False, highlight=False)
