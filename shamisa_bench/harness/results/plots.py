"""The picture of a leaderboard: per-split scores of every metric, one row per metric.

``render_png(lb)`` draws, for each column of the suite (dataset or train--test pair), a
strip plot of the main score (SRCC) on every split (columns where no metric has a result,
such as cross pairs whose datasets are missing, are left out and counted in the title): one row per metric, best first (the
leaderboard's row order), the splits as dots, the median as a black tick, its 95%
bootstrap interval as a grey bar, and the best row's median as a dashed line. Metrics
that could not run keep their row, labelled with their status. Cross-dataset cells have
no interval (one test set per pair). matplotlib's Agg backend renders it without a
display; the PNG carries no software/version stamp, so the same results give the same bytes.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

__all__ = ["SCORE_LABELS", "render_png"]

_ROW_IN = 0.36  # inches per metric row
_PANEL_W_IN = 6.4


#: Display names of the score keys (tables and plots).
SCORE_LABELS = {"srcc": "SRCC", "plcc": "PLCC", "plcc_logistic": "PLCC (logistic)",
                "krcc": "KRCC"}


def _label(lb: Any, protocol: str, token: str) -> str:
    label = token.replace("--", " → ")
    return f"{protocol}: {label}" if len(lb.protocols) > 1 else label


def render_png(lb: Any, *, dpi: int = 110) -> bytes:
    """PNG bytes of the per-split main score of every metric in ``lb`` (a Leaderboard).

    Layout: one panel per column (up to 3 panels across), ``len(lb.metrics)`` rows each.
    """
    # lazy: matplotlib takes seconds to import and only the tables' PNG needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = lb.main_score
    label = SCORE_LABELS.get(key, key)
    metrics = list(lb.metrics)
    n_rows = max(len(metrics), 1)
    def has_result(pt: tuple[str, str]) -> bool:
        return any((c := lb.cell(m, *pt)) is not None and c.status == "ok" for m in metrics)

    panels = [pt for pt in lb.tokens if has_result(pt)] or list(lb.tokens) or [("", "")]
    left_out = [pt for pt in lb.tokens if pt not in panels]
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    name_in = 0.075 * max((len(m) for m in metrics), default=8) + 0.35  # room for the row labels
    width = _PANEL_W_IN * ncol + name_in + 0.3 * ncol
    panel_h = _ROW_IN * n_rows + 0.35
    height = nrow * (panel_h + 0.85) + 0.9
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    jitter_rng = np.random.default_rng(0)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(panels):
            ax.set_visible(False)
            continue
        protocol, token = panels[idx]
        ref = lb.reference(key, protocol, token)
        values_all: list[float] = []
        for i, m in enumerate(metrics):
            c = lb.cell(m, protocol, token)
            if c is None or c.status != "ok":
                continue
            values_all += [v for v in c.per_split.get(key, ()) if v is not None]
        lo_x = min(values_all) if values_all else 0.0
        hi_x = max(values_all) if values_all else 1.0
        pad = max(0.04, 0.06 * (hi_x - lo_x))
        x_min, x_max = lo_x - pad, hi_x + pad
        for i, m in enumerate(metrics):
            y = n_rows - 1 - i
            if i % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", zorder=0, linewidth=0)
            c = lb.cell(m, protocol, token)
            if c is None or c.status != "ok":
                status = "not run" if c is None else c.status
                ax.text(x_min + 0.01 * (x_max - x_min), y, status, va="center", ha="left",
                        fontsize=9, color="#888888", style="italic")
                continue
            vals = np.asarray([v for v in c.per_split.get(key, ()) if v is not None], dtype=np.float64)
            if vals.size:
                offsets = jitter_rng.permutation(np.linspace(-0.22, 0.22, vals.size))
                color = "#d95f02" if m == ref else "#1f78b4"
                ax.scatter(vals, y + offsets, s=16, color=color, alpha=0.75, linewidths=0, zorder=3)
            ci = c.interval(key)
            if ci is not None:
                ax.plot([ci[0], ci[1]], [y, y], color="#555555", linewidth=5, alpha=0.35,
                        solid_capstyle="butt", zorder=2)
            med = c.value(key)
            if med is not None:
                ax.plot([med, med], [y - 0.32, y + 0.32], color="black", linewidth=2, zorder=4)
        ref_cell = lb.cell(ref, protocol, token) if ref else None
        if ref_cell is not None and ref_cell.value(key) is not None:
            ax.axvline(ref_cell.value(key), color="#d95f02", linestyle="--", linewidth=1, zorder=1)
        if x_min < 0 < x_max:
            ax.axvline(0, color="#999999", linewidth=0.8, zorder=1)
        ax.set_xlim(x_min, x_max)
        ax.set_ylim(-0.5, n_rows - 0.5)
        ax.set_yticks(range(n_rows))
        ax.set_yticklabels(list(reversed(metrics)) if idx % ncol == 0 else [""] * n_rows, fontsize=9)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6, zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel(f"{label} per split", fontsize=9)
        cross = any(lb.cell(m, protocol, token) is not None and lb.cell(m, protocol, token).is_cross
                    for m in metrics)
        ax.set_title(_label(lb, protocol, token) + (" (one test set: no interval)" if cross else ""),
                     fontsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    title = f"{lb.suite}: {label} on each split, best row first"
    if left_out:
        title += f" ({len(left_out)} of {len(lb.tokens)} columns have no result and are not drawn)"
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.text(0.5, 0.08 / height, "dots: the splits (orange: best row)  ·  black tick: median\n"
             "grey bar: 95% bootstrap interval of the median  ·  dashed line: best median",
             ha="center", va="bottom", fontsize=8.5, color="#444444", linespacing=1.4)
    fig.subplots_adjust(left=name_in / width, right=1 - 0.25 / width, top=1 - 0.75 / height,
                        bottom=0.95 / height, wspace=0.08, hspace=0.85 / panel_h)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
