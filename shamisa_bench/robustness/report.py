"""The robustness report, rebuilt from the JSON files of a run alone.

``write_report(results_dir, name)`` reads ``<results>/robustness/<name>/run.json`` and the
metric files next to it and writes ``<results>/robustness/<name>.md`` plus two PNGs next to
it (matplotlib, Agg backend):

* ``<name>_heatmap.png``: metrics x types, SRCC(severity, quality), green = falls steadily
  with damage, red = rises; blind cells (above the protocol's ``blind_srcc``) boxed;
* ``<name>_curves.png``: severity-response curves, one panel per distortion group, every
  metric on it: the change of quality from the pristine image, as a fraction of the
  metric's observed score range, mean over sources (thick: mean over the group's types;
  thin: each type).

Nothing is computed from images here; the cross-metric agreement is the Spearman
correlation of the stored grid qualities.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.distortions import CATALOG
from shamisa_bench.robustness.measure import agreement

__all__ = ["RECORD_SCHEMA", "load_results", "plot_curves", "plot_heatmap", "render_markdown", "weakest", "write_report"]

#: ``schema`` and ``schema_version`` of the robustness JSON files (written by
#: :mod:`~shamisa_bench.robustness.runner`, read here).
RECORD_SCHEMA = ("shamisa-bench/robustness", 1)


def load_results(results_dir: str | Path, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(manifest, records)`` of a run, records in the manifest's metric order.

    Raises:
        FileNotFoundError: no results under that name (the message says how to make them).
        ValueError: a file that is not a robustness record (naming it).
    """
    folder = Path(results_dir) / "robustness" / name
    man_path = folder / "run.json"
    if not man_path.is_file():
        raise FileNotFoundError(f"{man_path}: no robustness results named {name!r}; "
                                f"run `shamisa-bench robustness --name {name}` first")
    manifest = _read(man_path)
    records = []
    for m in manifest["metrics"]:
        path = folder / f"{m}.json"
        if not path.is_file():
            records.append({"status": "missing", "reason": f"{path.name} not found",
                            "metric": {"name": m}})
            continue
        rec = _read(path)
        if [rec.get("schema"), rec.get("schema_version")] != list(RECORD_SCHEMA):
            raise ValueError(f"{path}: not a {RECORD_SCHEMA[0]} v{RECORD_SCHEMA[1]} record")
        if rec.get("status") == "ok" and rec["set"]["sha256"] != manifest["set"]["sha256"]:
            rec = {**rec, "status": "stale",
                   "reason": "measured on another distorted set; rerun with --overwrite"}
        records.append(rec)
    return manifest, records


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _group(t: str) -> str:
    return CATALOG[t].group if t in CATALOG else "?"


def _fmt(v: Any, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "---:") -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def _srcc_matrix(ok: list[dict[str, Any]], types: Sequence[str]) -> np.ndarray:
    return np.asarray([[r["measurements"]["types"][t]["srcc"] if r["measurements"]["types"][t]["srcc"]
                        is not None else np.nan for t in types] for r in ok], dtype=np.float64)


def weakest(srcc: dict[str, Any], k: int = 3) -> list[str]:
    """The ``k`` types with the highest (least negative) SRCC; missing values count as weakest."""
    return sorted(srcc, key=lambda t: -math.inf if srcc[t] is None else -srcc[t])[:k]


def render_markdown(manifest: dict[str, Any], records: list[dict[str, Any]],
                    figures: dict[str, str]) -> str:
    """The report text (see the module docstring)."""
    s = manifest["set"]
    p = s["params"]
    name = manifest["name"]
    blind = float(p["blind_srcc"])
    types = [g["type"] for g in s["grid"]]
    ok = _ok(records)
    names = [r["metric"]["name"] for r in ok]
    comp_n = len(s["compositions"])
    lines = [
        f"# Robustness report: `{name}`",
        "",
        f"{s['n_sources']} source image(s) ({'; '.join(s['origins'])}), centre-cropped and resized to "
        f"{p['image_size']} px; {len(types)} distortion types at {len(p['severities'])} severities "
        f"over [{p['severities'][0]:g}, {p['severities'][-1]:g}]; {comp_n} random compositions of "
        f"{p['compositions']['min_distortions']} to {p['compositions']['max_distortions']} distortions; "
        f"invariance under {', '.join(p['invariance'])}. {s['n_images']} images per metric, each generated "
        f"once and scored once per metric (score cache). Wall time of the run: "
        f"{manifest['wall_time_s']:.1f} s (generating images: {manifest['generation_s']:.1f} s).",
        "",
        "Quality is each metric's score turned so that higher means better (minus the score for "
        "lower-is-better metrics; the ridge head's prediction for feature probes). "
        "SRCC(severity, quality), averaged over the source images, should be -1: quality falls "
        f"steadily as the damage grows. A type with SRCC above {blind:g} is marked **blind** (†). "
        f"Generated by `shamisa-bench report --suite {name}` from `robustness/{name}/*.json`; "
        "do not edit by hand.",
    ]
    lines += ["", "## At a glance: where each metric is blind", ""]
    for r in records:
        m = r["metric"]["name"]
        if r.get("status") != "ok":
            reason = str(r.get("reason"))
            lines.append(f"- **{m}**: {r.get('status')} ({reason[:100]}{'...' if len(reason) > 100 else ''}; "
                         "see *Metrics that did not run*)")
            continue
        tr = r["measurements"]["types"]
        bl = [t for t in types if tr[t]["srcc"] is None or tr[t]["srcc"] > blind]
        weak = ", ".join(f"{t} ({_fmt(tr[t]['srcc'])})" for t in weakest({t: tr[t]["srcc"] for t in types}))
        lines.append(f"- **{m}**: blind to {len(bl)} of {len(types)} types"
                     + (f": {', '.join(bl)}" if bl else "") + f". Weakest: {weak}.")
    for key, title in (("heatmap", "SRCC heatmap"), ("curves", "Severity-response curves")):
        if key in figures:
            lines += ["", f"![{title}]({figures[key]})"]

    if ok:
        weak_sets = {r["metric"]["name"]: set(weakest({t: r["measurements"]["types"][t]["srcc"] for t in types}))
                     for r in ok}
        lines += ["", "## Monotonicity: SRCC(severity, quality) per type", "",
                  "Mean over source images; -1 = quality falls steadily with severity. "
                  f"**Bold**: the metric's 3 weakest types; †: blind (above {blind:g}).", ""]
        rows = []
        for t in types:
            row = [_group(t), t]
            for r in ok:
                v = r["measurements"]["types"][t]["srcc"]
                cell = _fmt(v) + (" †" if v is None or v > blind else "")
                row.append(f"**{cell}**" if t in weak_sets[r["metric"]["name"]] else cell)
            rows.append(row)
        mat = _srcc_matrix(ok, types)
        rows.append(["", "*mean*"] + [_fmt(float(np.nanmean(v))) if np.isfinite(v).any() else "–" for v in mat])
        rows.append(["", "*blind types*"] + [str(int(np.sum(~(v <= blind)))) for v in mat])
        lines += _table(["group", "type", *names], rows)

        lines += ["", "## Steps where quality does not drop", "",
                  "Fraction of adjacent severity steps (pooled over sources) where quality stays or "
                  "rises: 0 = every step lowers quality (ideal), 1 = the metric never sees it.", ""]
        rows = [[_group(t), t] + [_fmt(r["measurements"]["types"][t]["non_drop_fraction"]) for r in ok]
                for t in types]
        lines += _table(["group", "type", *names], rows)

        inv_names = list(p["invariance"])
        lines += ["", "## Invariance: quality-preserving transforms", "",
                  "Median (max) over source images of |q(T(x)) - q(x)| as a percentage of the metric's "
                  "score range. The range is the observed one (max - min of the metric's scores over the "
                  "pristine images and the whole type x severity grid), the same definition for every "
                  "metric since several have open ranges. *all*: per-source spread (max - min) over the "
                  "image and all its transforms. For scale: the last column is the mean drop from the "
                  "mildest to the strongest severity over all types, in the same units.", ""]
        rows = []
        for r in ok:
            meas = r["measurements"]
            rng = meas["range"]
            cells = [f"{_pct(meas['invariance'][t]['median'])} ({_pct(meas['invariance'][t]['max'])})"
                     for t in [*inv_names, "all"]]
            drops = [meas["types"][t]["drop"] for t in types if meas["types"][t]["drop"] is not None]
            lo, hi = (-rng["hi"], -rng["lo"]) if r["metric"]["lower_better"] else (rng["lo"], rng["hi"])
            unit = " (lower = better)" if r["metric"]["lower_better"] else ""
            rows.append([r["metric"]["name"], f"{lo:.4g} .. {hi:.4g}{unit}", *cells,
                         _pct(float(np.mean(drops))) if drops else "–"])
        lines += _table(["metric", "score range", *inv_names, "all", "mean drop s0→s4"], rows)

        counts = sorted({k for r in ok for k in r["measurements"]["compositions"]["by_count"]}, key=int)
        lines += ["", "## Composition sensitivity", "",
                  f"{comp_n} random compositions applied to every source one distortion at a time. "
                  "Fraction of steps where adding one more distortion to an already distorted image "
                  "lowers quality (ideal 100%), overall and by the number of distortions after the step; "
                  "then the first distortion on the pristine image, and the fraction of full "
                  "compositions that score below the pristine image.", ""]
        rows = []
        for r in ok:
            c = r["measurements"]["compositions"]
            rows.append([r["metric"]["name"], _pct(c["lowered_fraction"]),
                         *[_pct(c["by_count"].get(k)) for k in counts], _pct(c["first_lowered"]),
                         _pct(c["full_below_pristine"]), str(c["n_steps"])])
        lines += _table(["metric", "adding lowers quality", *[f"→ {k}" for k in counts], "first distortion",
                         "full below pristine", "steps"], rows)

        agr = agreement({r["metric"]["name"]: _grid_vector(r, types) for r in ok})
        n_grid = len(_grid_vector(ok[0], types))
        lines += ["", "## Cross-metric agreement", "",
                  f"Spearman correlation between the metrics' qualities over the same {n_grid} grid "
                  "images (every source x type x severity), each pair on the images both scored.", ""]
        rows = [[a] + [_fmt(v) for v in row] for a, row in zip(agr["metrics"], agr["srcc"])]
        lines += _table(["", *agr["metrics"]], rows)

        lines += ["", "## Missing scores (NaN, Inf or failed) per type", ""]
        rows = []
        for r in ok:
            meas = r["measurements"]
            per = {t: meas["types"][t]["n_nan"] for t in types if meas["types"][t]["n_nan"]}
            detail = ", ".join(f"{t}: {n}" for t, n in per.items()) or "none"
            rows.append([r["metric"]["name"], str(meas["n_nan"]), str(r.get("n_failures", 0)), detail])
        lines += _table(["metric", "missing", "failed", "by type"], rows, align="---")
        fails = [(r["metric"]["name"], f) for r in ok for f in r.get("failures", [])[:5]]
        if fails:
            lines += ["", "First failures:", ""] + [f"- {m}: `{f['name']}`: {f['reason']}" for m, f in fails]

    heads = [r for r in records if r.get("head")]
    if heads:
        lines += ["", "## Ridge heads of the feature probes", "",
                  "Fit on the head dataset with alpha chosen by median validation SRCC over the intra "
                  "protocol's splits (held-out SRCC = median test SRCC over those splits), then refit on "
                  "all its usable images.", ""]
        rows = [[r["metric"]["name"], f"{h['dataset']} v{h['dataset_version']}", str(h.get("label_type")),
                 str(h["n_images"]), f"{h['alpha']:.4g}", _fmt(h.get("heldout_srcc_median"), 3),
                 str(h.get("label_sha256") or "–")[:12], h["head_sha256"][:12]]
                for r in heads for h in [r["head"]]]
        lines += _table(["metric", "dataset", "labels", "images", "alpha", "held-out SRCC", "label sha256",
                         "head sha256"], rows, align="---")

    down = [r for r in records if r.get("status") != "ok"]
    if down:
        lines += ["", "## Metrics that did not run", ""]
        lines += [f"- **{r['metric']['name']}**: {r.get('status')}: {r.get('reason')}" for r in down]

    prov = manifest["provenance"]
    lines += ["", "## Provenance", "",
              f"- package {prov.get('package_version')}, git {str(prov.get('git_sha'))[:12]}"
              f"{' (dirty)' if prov.get('git_dirty') else ''}, torch {prov.get('torch_version')}, "
              f"pyiqa {prov.get('pyiqa_version')}, device {prov.get('device')}, started {prov.get('started_at')}",
              f"- set sha256 {s['sha256']}, engine fingerprint {s['engine']}, seed {p['seed']}, "
              f"wall time {manifest['wall_time_s']:.1f} s",
              f"- sources: {', '.join(s['sources'])}"]
    if s.get("skipped_sources"):
        lines.append("- skipped sources: " + "; ".join(f"{x['name']}: {x['reason']}" for x in s["skipped_sources"]))
    lines.append("")
    rows = []
    for r in records:
        pv = r.get("provenance") or {}
        cache = r.get("cache") or {}
        rows.append([r["metric"]["name"], str(r.get("status")), str(cache.get("n_computed", "–")),
                     str(cache.get("n_cached", "–")), _fmt(r.get("compute_s"), 1),
                     str(pv.get("checkpoint_sha256") or "–")[:12], str(pv.get("started_at", "–"))])
    lines += _table(["metric", "status", "computed", "from cache", "seconds", "checkpoint", "started"],
                    rows, align="---")
    return "\n".join(lines) + "\n"


def _grid_vector(record: dict[str, Any], types: Sequence[str]) -> np.ndarray:
    grid = record["raw"]["grid"]
    return np.concatenate([np.asarray(grid[t]["quality"], dtype=np.float64).reshape(-1) for t in types])


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` that gives NaN for all-NaN slices without a warning."""
    ok = np.isfinite(a)
    n = ok.sum(axis=axis)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _curve(record: dict[str, Any], t: str, xs: np.ndarray) -> np.ndarray:
    """Mean over sources of (quality - pristine quality) / range for type ``t``, on ``xs``."""
    width = record["measurements"]["range"]["width"]
    g = record["raw"]["grid"][t]
    q = np.asarray(g["quality"], dtype=np.float64)
    pristine = np.asarray(record["raw"]["pristine"], dtype=np.float64)
    mean = _nanmean((q - pristine[:, None]) / width if width else q * np.nan, axis=0)
    sev = np.asarray(g["severities"], dtype=np.float64)
    ok = np.isfinite(mean)
    if ok.sum() < 2:
        return np.full(xs.shape, np.nan)
    return np.interp(xs, sev[ok], mean[ok])


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt  # lazy: seconds to import, only the report draws

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def curve_style(index: int) -> dict[str, Any]:
    """Line style of the ``index``-th metric of the curves: ten colours, then the same colours
    with the next dash pattern and marker, so that no two of up to 40 metrics look alike."""
    import matplotlib.pyplot as plt  # lazy: as in plot_curves

    turn = (index // 10) % len(_LINESTYLES)
    return {"color": plt.get_cmap("tab10")(index % 10), "linestyle": _LINESTYLES[turn], "marker": _MARKERS[turn]}


def plot_curves(manifest: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Severity-response curves: one panel per group, every metric on it."""
    import matplotlib  # lazy: seconds to import, only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    ok = _ok(records)
    s = manifest["set"]
    types = [g["type"] for g in s["grid"]]
    groups = list(dict.fromkeys(_group(t) for t in types))
    xs = np.asarray(s["params"]["severities"], dtype=np.float64)
    ncol = 4
    nrow = math.ceil((len(groups) + 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.8 * nrow), squeeze=False)
    for gi, grp in enumerate(groups):
        ax = axes[gi // ncol][gi % ncol]
        members = [t for t in types if _group(t) == grp]
        for mi, r in enumerate(ok):
            curves = np.stack([_curve(r, t, xs) for t in members])
            style = curve_style(mi)
            for c in curves:
                ax.plot(xs, c, color=style["color"], linestyle=style["linestyle"], alpha=0.25, linewidth=0.9)
            mean = _nanmean(curves, axis=0)
            ax.plot(xs, mean, **style, linewidth=2.4, markersize=3, label=r["metric"]["name"])
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(grp, fontsize=11, fontweight="bold", loc="left")
        ax.set_xlabel("severity index\n" + "\n".join(textwrap.wrap(", ".join(members), 48)), fontsize=8)
        ax.set_ylabel("quality change / score range")
        ax.grid(alpha=0.3)
    for k in range(len(groups), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    legend_ax = axes[(nrow * ncol - 1) // ncol][ncol - 1]
    handles = [plt.Line2D([], [], **curve_style(mi), linewidth=2.4, markersize=4, label=r["metric"]["name"])
               for mi, r in enumerate(ok)]
    handles.append(plt.Line2D([], [], color="grey", alpha=0.4, linewidth=0.9, label="single type"))
    legend_ax.legend(handles=handles, loc="center", title="metric (thick: group mean)", fontsize=9)
    fig.suptitle(f"{manifest['name']}: quality change from the pristine image (dashed) as severity grows, "
                 "as a fraction of each metric's observed score range; a metric that sees the damage falls, "
                 "a blind one stays flat or rises", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    _save(fig, path)


def plot_heatmap(manifest: dict[str, Any], records: list[dict[str, Any]], path: Path) -> None:
    """Heatmap metrics x types of SRCC(severity, quality); blind cells boxed."""
    import matplotlib  # lazy: seconds to import, only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above
    from matplotlib.patches import Rectangle  # lazy: as above

    ok = _ok(records)
    s = manifest["set"]
    blind = float(s["params"]["blind_srcc"])
    types = [g["type"] for g in s["grid"]]
    mat = _srcc_matrix(ok, types)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(types) + 2.5), 1.6 + 0.55 * max(len(ok), 1)))
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="RdYlGn_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            v = mat[i, j]
            ax.text(j, i, "nan" if np.isnan(v) else f"{v:.2f}".replace("0.", "."), ha="center",
                    va="center", fontsize=7)
            if not v <= blind:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    ax.set_yticks(range(len(ok)), [r["metric"]["name"] for r in ok])
    ax.set_xticks(range(len(types)), types, rotation=60, ha="right", fontsize=8)
    prev = None
    for j, t in enumerate(types):
        if _group(t) != prev:
            if j:
                ax.axvline(j - 0.5, color="white", linewidth=2.5)
            ax.text(j - 0.4, -0.75, _group(t), fontsize=8, ha="left", va="bottom")
            prev = _group(t)
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label="SRCC(severity, quality)")
    ax.set_title(f"{manifest['name']}: does quality fall with severity? (-1 green = yes; boxed = blind, "
                 f"SRCC > {blind:g})", fontsize=10, pad=22)
    fig.tight_layout()
    _save(fig, path)


def write_report(results_dir: str | Path, name: str) -> tuple[Path, ...]:
    """Rebuild ``<results>/robustness/<name>.md`` and its PNGs from the JSON files.

    Returns:
        the files written: the markdown first, then the PNGs (none when no metric is ok).
    """
    manifest, records = load_results(results_dir, name)
    out = Path(results_dir) / "robustness"
    figures: dict[str, str] = {}
    written: list[Path] = []
    if _ok(records):
        for key, fn in (("heatmap", plot_heatmap), ("curves", plot_curves)):
            path = out / f"{name}_{key}.png"
            fn(manifest, records, path)
            figures[key] = path.name
            written.append(path)
    md = out / f"{name}.md"
    atomic_write_bytes(md, render_markdown(manifest, records, figures).encode())
    return (md, *written)
