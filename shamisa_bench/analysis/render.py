"""Figures of the analyses: gMAD panels and embedding maps (PNG bytes, matplotlib Agg)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["render_embedding", "render_gmad_panels"]

_DPI = 90


def _pyplot() -> Any:
    # matplotlib: seconds to import, only the commands that draw need it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: lazy, as above

    return plt


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _short(name: str) -> str:
    """``test/100007.jpg/gaussian_blur@s2.5`` -> ``100007 · gaussian_blur @ 2.5``."""
    parts = name.split("/")
    if len(parts) >= 3:
        src = parts[-2].rsplit(".", 1)[0]
        op = parts[-1].replace("@s", " @ ")
        return f"{src} · {op}"
    return name if len(name) <= 40 else "…" + name[-39:]


def render_gmad_panels(block: Mapping[str, Any], images: Mapping[str, Any]) -> bytes:
    """One direction of a competition: a row per level, the attacker's better and worse image
    side by side, each titled with its name and both metrics' scores (raw, and percentile in
    the pool), the judge's verdict under the row when there is one.

    Args:
        block: a direction of ``gmad.json`` (defender, attacker, levels).
        images: pool image name -> ``(3, H, W)`` tensor.
    """
    plt = _pyplot()
    d, a = block["defender"], block["attacker"]
    levels = block["levels"]
    fig, axes = plt.subplots(len(levels), 2, figsize=(8.0, 4.25 * len(levels)), squeeze=False)
    fig.suptitle(f"gMAD: {d} defends (rates each pair alike),\n{a} attacks (its best vs its worst)",
                 fontsize=11, fontweight="bold")
    notes = []
    for row, lv in zip(axes, levels):
        for ax, role in zip(row, ("better", "worse")):
            e = lv[role]
            img = images.get(e["name"])
            if img is not None and not isinstance(img, BaseException):
                ax.imshow(np.asarray(img.permute(1, 2, 0).clamp(0, 1).numpy()), interpolation="lanczos")
            else:
                ax.text(0.5, 0.5, "image unavailable", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            label = f"{a}'s {'best' if role == 'better' else 'worst'}"
            sd, sa = e["scores"][d], e["scores"][a]
            pd_, pa = e["percentile"][d], e["percentile"][a]
            ax.set_title(f"{label}\n{_short(e['name'])}\n{d}: {sd:.3g} (p{pd_:.0f})  ·  {a}: {sa:.3g} (p{pa:.0f})",
                         fontsize=8.5)
        j = lv.get("judge")
        text = f"level {lv['level']} of {len(levels)} ({lv['n_candidates']} candidates)"
        if j:
            text += (f"  ·  MS-SSIM {j['ms_ssim_better']:.3f} vs {j['ms_ssim_worse']:.3f}: "
                     f"judge {j['verdict']} ({j['rule']})")
        notes.append((row, text))
    fig.text(0.5, 0.004, "pN: percentile of the quality in the pool (higher = better). "
             "Judge: an automated MS-SSIM proxy, not a human study.", ha="center", fontsize=7.5)
    fig.tight_layout(rect=(0, 0.03, 1, 0.975), h_pad=3.8)
    for row, text in notes:  # under each pair, centred on it (positions known after the layout)
        p0, p1 = row[0].get_position(), row[1].get_position()
        fig.text((p0.x0 + p1.x1) / 2, p0.y0 - 0.006, text, ha="center", va="top", fontsize=8.5, fontweight="bold")
    return _png(fig, plt)


def render_embedding(coords: NDArray[np.float64], groups: Sequence[str], severity: NDArray[np.float64],
                     *, color_by: str, title: str, subtitle: str, pristine: str = "pristine") -> bytes:
    """A 2-D map of a pool, coloured by distortion group or by severity.

    Args:
        coords: ``(N, 2)`` map coordinates.
        groups: ``(N,)`` distortion group per image (``pristine`` for a source).
        severity: ``(N,)`` severity index (NaN for a source).
        color_by: ``group`` or ``severity``.
        title, subtitle: the figure's title and the numbers line under it.
    """
    if color_by not in ("group", "severity"):
        raise ValueError(f"color_by must be 'group' or 'severity', got {color_by!r}")
    plt = _pyplot()
    g = np.asarray(groups)
    pr = g == pristine
    fig, ax = plt.subplots(figsize=(8.2, 7.2))
    if color_by == "group":
        names = [n for n in dict.fromkeys(g.tolist()) if n != pristine]
        cmap = plt.get_cmap("tab10")
        for k, n in enumerate(names):
            m = g == n
            ax.scatter(coords[m, 0], coords[m, 1], s=6, alpha=0.6, color=cmap(k % 10), label=f"{n} ({m.sum()})",
                       linewidths=0)
    else:
        m = ~pr
        sc = ax.scatter(coords[m, 0], coords[m, 1], s=6, alpha=0.6, c=severity[m], cmap="viridis",
                        vmin=0, vmax=4, linewidths=0)
        cb = fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02)
        cb.set_label("severity index (0 = mildest, 4 = strongest)")
    if pr.any():
        ax.scatter(coords[pr, 0], coords[pr, 1], s=40, marker="*", color="black", label=f"{pristine} ({pr.sum()})")
    if color_by == "group" or pr.any():
        ax.legend(loc="best", fontsize=8, markerscale=2, frameon=True, framealpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    fig.tight_layout()
    return _png(fig, plt)
