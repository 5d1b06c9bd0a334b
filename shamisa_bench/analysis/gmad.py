"""gMAD competition (group maximum differentiation; Ma et al., 2016 and 2018).

On an unlabelled pool, the **defender** metric's quality range is cut into L levels of equal
score; within each level the images the defender rates alike (its quality within a narrow
band around the level's centre) are candidates, and the **attacker** picks the pair it
rates most differently: its best and its worst candidate. Then the roles swap. A pair whose
two images look clearly different in quality shows the defender failing; a pair that looks
alike shows the attacker failing.

Level centres: the midpoints of L equal bins between the 1st and 99th percentiles of the
defender's quality (percentiles, so that a few outliers do not stretch the levels); the band
is the centre plus or minus ``tolerance`` times that range (default 0.02). Every level needs
at least two candidates; a pool too small for the levels is an error that says so.

On a synthetic pool every pair also gets the verdict of a full-reference judge
(:mod:`~shamisa_bench.analysis.judge`, MS-SSIM), and each direction reports how often the
attacker's order agrees with it: an automated proxy, not a human study.

Outputs, under ``<results>/gmad/<A>-vs-<B>/``: ``gmad.json`` (pairs with both metrics'
scores, the judge, the pool and provenance), ``gmad.md`` (a summary) and one PNG of
panels per direction, ``<defender>-defends.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shamisa_bench.analysis.judge import MIN_SIDE, judge_pair
from shamisa_bench.analysis.pool import Pool
from shamisa_bench.analysis.render import render_gmad_panels
from shamisa_bench.analysis.scoring import metric_quality, score_pool
from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.common.provenance import collect_provenance, git_state, utc_now
from shamisa_bench.harness.adapters import build_metric, describe_device
from shamisa_bench.harness.results import clean_json

__all__ = [
    "GMAD_SCHEMA",
    "GmadConfig",
    "GmadLevel",
    "run_gmad",
    "select_pairs",
]

#: (schema, version) of ``gmad.json``.
GMAD_SCHEMA = ("shamisa-bench/gmad", 1)
#: Percentiles of the defender's quality that bound the levels.
RANGE_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class GmadLevel:
    """The pair chosen in one level of one direction.

    Attributes:
        level: 0 (the defender's worst level) to L - 1 (its best).
        centre: the level's defender quality.
        band: ``(lo, hi)`` defender qualities of the candidates.
        n_candidates: images in the band.
        better: pool index of the attacker's best candidate.
        worse: pool index of the attacker's worst candidate.
    """

    level: int
    centre: float
    band: tuple[float, float]
    n_candidates: int
    better: int
    worse: int


def select_pairs(defender: ArrayLike, attacker: ArrayLike, *, levels: int = 6,
                 tolerance: float = 0.02) -> list[GmadLevel]:
    """Choose one pair per defender level (see the module docstring).

    Args:
        defender, attacker: ``(N,)`` qualities, higher = better (NaN: not scored, left out).
        levels: number of levels L (>= 1).
        tolerance: half-width of a level's band, as a fraction of the defender's range.

    Returns:
        L :class:`GmadLevel`, worst level first. Ties in the attacker's quality go to the
        image that comes first in the pool.

    Raises:
        ValueError: bad arguments, a pool too small for the levels, a defender that gives
            every image the same quality, or a level with fewer than two candidates.
    """
    d = np.asarray(defender, dtype=np.float64).reshape(-1)
    a = np.asarray(attacker, dtype=np.float64).reshape(-1)
    if d.shape != a.shape:
        raise ValueError(f"defender and attacker score {d.size} and {a.size} images")
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    if not 0.0 < float(tolerance) <= 0.5:
        raise ValueError(f"tolerance must be in (0, 0.5], got {tolerance!r}")
    ok = np.flatnonzero(np.isfinite(d) & np.isfinite(a))
    if ok.size < 2 * levels:
        raise ValueError(f"the pool has {ok.size} image(s) scored by both metrics, too few for {levels} "
                         f"levels (at least {2 * levels} needed): use fewer --levels or a larger pool")
    lo, hi = (float(v) for v in np.percentile(d[ok], RANGE_PERCENTILES))
    if not hi > lo:
        raise ValueError("the defender gives (almost) every pool image the same quality; no levels to compare")
    width = (hi - lo) / levels
    half = float(tolerance) * (hi - lo)
    out = []
    for level in range(levels):
        centre = lo + (level + 0.5) * width
        cand = ok[np.abs(d[ok] - centre) <= half]
        if cand.size < 2:
            raise ValueError(
                f"level {level + 1} of {levels} (defender quality {centre:.4g} +- {half:.3g}) holds "
                f"{cand.size} image(s), at least 2 are needed: the pool is too small for {levels} levels; "
                "use fewer --levels, a larger --tolerance or a larger pool")
        best = int(cand[np.argmax(a[cand])])
        worst = int(cand[np.argmin(a[cand])])
        out.append(GmadLevel(level, centre, (centre - half, centre + half), int(cand.size), best, worst))
    return out


@dataclass(frozen=True)
class GmadConfig:
    """A gMAD competition.

    Attributes:
        defender, attacker: registered metric names (both directions are run).
        levels: defender levels per direction.
        tolerance: band half-width as a fraction of the defender's range.
        head_dataset: labelled dataset the ridge heads of feature probes are fit on.
        results_dir: results folder (outputs under ``gmad/<defender>-vs-<attacker>/``).
        cache_dir: the score/feature cache (None: nothing cached).
        data_root: where datasets live (the head dataset).
        device: where the metrics run.
        seed: seed of the heads' splits.
        allow_partial: accept an incomplete head dataset.
        name: output folder name (default ``<defender>-vs-<attacker>``).
    """

    defender: str
    attacker: str
    levels: int = 6
    tolerance: float = 0.02
    head_dataset: str = "demo"
    results_dir: Path = Path("results")
    cache_dir: Path | None = None
    data_root: Path | None = None
    device: str = "cpu"
    seed: int = 0
    allow_partial: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        if self.defender == self.attacker:
            raise ValueError(f"defender and attacker are both {self.defender!r}; name two different metrics")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")

    @property
    def out_dir(self) -> Path:
        """Where the outputs go."""
        return Path(self.results_dir) / "gmad" / (self.name or f"{self.defender}-vs-{self.attacker}")


def judge_note(pool: Pool) -> str | None:
    """Why a pool's pairs get no judge, or None when they do."""
    if not pool.has_references:
        return "no judge: the references of the pool images are unknown (a folder pool)"
    if min(pool.sources.shape[-2:]) < MIN_SIDE:
        return f"no judge: MS-SSIM needs images of at least {MIN_SIDE} px, the pool's are {pool.sources.shape[-1]} px"
    return None


def _direction(pool: Pool, defender: str, attacker: str, q: dict[str, NDArray[np.float64]],
               raw: dict[str, NDArray[np.float64]], pairs: list[GmadLevel],
               images: dict[int, Any]) -> dict[str, Any]:
    """The JSON block of one direction (pairs, judge, agreement)."""
    pct = {m: _percentiles(v) for m, v in q.items()}
    src_names = (pool.record.get("sources") or {}).get("names") or []
    judged = judge_note(pool) is None
    levels = []
    tally: dict[str, dict[str, int]] = {}
    for p in pairs:
        entry: dict[str, Any] = {
            "level": p.level + 1, "centre": p.centre, "band": list(p.band), "n_candidates": p.n_candidates,
        }
        for role, i in (("better", p.better), ("worse", p.worse)):
            entry[role] = {
                "name": pool.names[i], "key": pool.keys[i],
                "type": pool.types[i] or None, "group": pool.groups[i] or None,
                "severity": None if not np.isfinite(pool.severity[i]) else float(pool.severity[i]),
                "reference": src_names[int(pool.reference[i])] if pool.reference[i] >= 0 else None,
                "scores": {m: float(raw[m][i]) for m in (defender, attacker)},
                "quality": {m: float(q[m][i]) for m in (defender, attacker)},
                "percentile": {m: float(pct[m][i]) for m in (defender, attacker)},
            }
        entry["attacker_gap"] = float(q[attacker][p.better] - q[attacker][p.worse])
        entry["attacker_gap_percentile"] = float(pct[attacker][p.better] - pct[attacker][p.worse])
        entry["defender_gap"] = float(q[defender][p.better] - q[defender][p.worse])
        if judged and p.better in images and p.worse in images:
            rb, rw = int(pool.reference[p.better]), int(pool.reference[p.worse])
            j = judge_pair(images[p.better], images[p.worse], pool.sources[rb], pool.sources[rw], rb == rw)
            entry["judge"] = j
            t = tally.setdefault(j["rule"], {"agrees": 0, "disagrees": 0, "tie": 0})
            t[j["verdict"]] += 1
        else:
            entry["judge"] = None
        levels.append(entry)
    agreement: dict[str, Any] | None = None
    if judged:
        total = {v: sum(t.get(v, 0) for t in tally.values()) for v in ("agrees", "disagrees", "tie")}
        agreement = {"by_rule": tally, "all": total,
                     "rate": _rate(total), "rate_same_reference": _rate(tally.get("same-reference", {}))}
    return {"defender": defender, "attacker": attacker, "levels": levels, "judge_agreement": agreement}


def _rate(t: dict[str, int]) -> float | None:
    """Agreements over decided pairs (ties left out); None without a decided pair."""
    n = t.get("agrees", 0) + t.get("disagrees", 0)
    return None if n == 0 else t.get("agrees", 0) / n


def _percentiles(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Percentile rank (0-100) of every finite value among the finite values; NaN elsewhere."""
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    if ok.sum() > 1:
        order = np.argsort(np.argsort(v[ok], kind="stable"), kind="stable")
        out[ok] = 100.0 * order / (ok.sum() - 1)
    return out


def run_gmad(cfg: GmadConfig, pool: Pool, *, registry: Any, console: Any = None, progress: bool = False,
             adapters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a competition in both directions and write its outputs.

    Args:
        cfg: the configuration.
        pool: the pool (:mod:`~shamisa_bench.analysis.pool`).
        registry: the loaded Registry.
        console: a rich Console for progress and messages.
        progress: show progress bars.
        adapters: metric adapters to use instead of the registry's (tests), by name.

    Returns:
        the ``gmad.json`` record (with ``files``: the paths written).

    Raises:
        ValueError: an unknown metric (listing the valid names), a pool too small for the
            levels; MetricUnavailable: a metric cannot run here.
    """
    t0 = time.perf_counter()
    started = utc_now()
    names = (cfg.defender, cfg.attacker)
    specs = {m: registry.metric(m) for m in names}  # unknown: ValueError listing the valid names
    ads = [(m, (adapters or {}).get(m) or build_metric(specs[m], seed=cfg.seed)) for m in names]
    if console is not None:
        console.print(f"gmad {cfg.defender} vs {cfg.attacker}: pool {pool.name}, {len(pool)} images, "
                      f"{cfg.levels} levels", highlight=False)
    states = score_pool(pool, ads, cache_dir=cfg.cache_dir, device=cfg.device, console=console,
                        progress=progress)
    q: dict[str, NDArray[np.float64]] = {}
    raw: dict[str, NDArray[np.float64]] = {}
    for st in states:
        q[st.name] = metric_quality(st, registry=registry, head_dataset=cfg.head_dataset,
                                    cache_dir=cfg.cache_dir, device=cfg.device, data_root=cfg.data_root,
                                    seed=cfg.seed, allow_partial=cfg.allow_partial)
        raw[st.name] = q[st.name] if st.adapter.output == "features" else st.values.reshape(-1)
    chosen = {}
    for d, a in (names, names[::-1]):
        chosen[d] = select_pairs(q[d], q[a], levels=cfg.levels, tolerance=cfg.tolerance)
    want = sorted({i for pairs in chosen.values() for p in pairs for i in (p.better, p.worse)})
    images = pool.images(want)
    directions = [_direction(pool, d, a, q, raw, chosen[d], images) for d, a in (names, names[::-1])]
    out = cfg.out_dir
    files = []
    for block in directions:
        png = out / f"{block['defender']}-defends.png"
        atomic_write_bytes(png, render_gmad_panels(block, {pool.names[i]: img for i, img in images.items()}))
        block["png"] = png.name
        files.append(png)
    git = git_state()
    record = {
        "schema": GMAD_SCHEMA[0], "schema_version": GMAD_SCHEMA[1],
        "defender_first": cfg.defender, "metrics": [st.record() for st in states],
        "levels": cfg.levels, "tolerance": cfg.tolerance,
        "range_percentiles": list(RANGE_PERCENTILES),
        "pool": {"name": pool.name, **pool.record},
        "judge": ({"metric": "MS-SSIM (luma)", "note": "an automated full-reference proxy, not a human study; "
                   "same-reference pairs compare MS-SSIM against their common source, different-reference "
                   "pairs compare each image's MS-SSIM against its own source (a weaker rule)"}
                  if judge_note(pool) is None else {"metric": None, "note": judge_note(pool)}),
        "directions": directions,
        "provenance": collect_provenance(
            device=describe_device(cfg.device), seed=cfg.seed, started_at=started,
            duration_s=time.perf_counter() - t0,
            checkpoint_sha256=None,
            registry_versions={f"metrics/{m}": getattr(specs[m], "version", None) for m in names}, git=git),
    }
    record = clean_json(record)
    js = out / "gmad.json"
    atomic_write_bytes(js, (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())
    md = out / "gmad.md"
    atomic_write_bytes(md, render_summary(record).encode())
    record["files"] = [js, md, *files]
    return record


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def render_summary(record: dict[str, Any]) -> str:
    """``gmad.md``: the pairs of each direction and the judge's agreement, from the record."""
    pool = record["pool"]
    metrics = {m["name"]: m for m in record["metrics"]}
    lines = [f"# gMAD: `{record['directions'][0]['defender']}` vs `{record['directions'][0]['attacker']}`", ""]
    src = pool.get("sources") or {}
    if pool.get("kind") == "synthetic":
        lines.append(f"Pool `{pool['name']}`: {pool['n_images']} images, {src.get('n')} pristine source images "
                     f"(folder `{src.get('folder')}`, {pool.get('image_size')} px) under {len(pool.get('types', []))} "
                     f"distortion types at severities {', '.join(f'{s:g}' for s in pool.get('severities', []))}, "
                     "plus the sources.")
    else:
        lines.append(f"Pool `{pool['name']}`: {pool['n_images']} images of a folder, as they are.")
    lines += ["", f"{record['levels']} defender levels between percentiles {record['range_percentiles'][0]:g} and "
              f"{record['range_percentiles'][1]:g} of its quality; candidates within "
              f"{record['tolerance']:g} of that range of a level's centre. Quality: "
              + "; ".join(f"`{n}`: {m['quality']}" + (f" (head fit on {m['head']['dataset']})" if m.get("head") else "")
                          for n, m in metrics.items()) + "."]
    if record["judge"]["metric"]:
        lines += ["", "**Judge**: MS-SSIM against each image's own pristine source; " + record["judge"]["note"].split(
            "; ", 1)[1] + ". It is an automated proxy, not a human study."]
    else:
        lines += ["", record["judge"]["note"][0].upper() + record["judge"]["note"][1:] + "."]
    for block in record["directions"]:
        d, a = block["defender"], block["attacker"]
        lines += ["", f"## `{d}` defends, `{a}` attacks", "", f"![panels]({block['png']})", ""]
        agr = block.get("judge_agreement")
        if agr:
            al = agr["all"]
            rate = "–" if agr["rate"] is None else f"{agr['rate']:.0%}"
            same = agr["by_rule"].get("same-reference", {})
            rs = "–" if agr["rate_same_reference"] is None else f"{agr['rate_same_reference']:.0%}"
            lines += [(f"The judge agrees with the attacker's order in {al['agrees']} of "
                       f"{al['agrees'] + al['disagrees']} decided pairs ({rate}; ties: {al['tie']}); "
                       f"same-reference pairs: {same.get('agrees', 0)} of "
                       f"{same.get('agrees', 0) + same.get('disagrees', 0)} ({rs})."), ""]
        head = "| level | attacker's better image | attacker's worse image | " + f"`{a}` gap (percentile) | judge |"
        lines += [head, "|---:|---|---|---:|---|"]
        for lv in block["levels"]:
            j = lv.get("judge")
            jt = "–" if not j else f"{j['verdict']} ({j['ms_ssim_better']:.3f} vs {j['ms_ssim_worse']:.3f}, {j['rule']})"
            lines.append(f"| {lv['level']} | `{lv['better']['name']}` | `{lv['worse']['name']}` | "
                         f"{lv['attacker_gap_percentile']:.0f} | {jt} |")
    prov = record["provenance"]
    lines += ["", (f"Generated by `shamisa-bench gmad` (git {prov.get('git_sha') or '?'}, "
                   f"{prov.get('duration_s', 0):.0f} s on {prov.get('device')}); do not edit by hand."), ""]
    return "\n".join(lines)

