"""Gradient diagnosis of a pretraining run: what each loss term asks of the encoder.

At a run's checkpoint, on the run's own next step batches (the objective replayed exactly
as the run would train it), this takes the gradient of each weighted loss term with
respect to the encoder's trainable parameters. Nothing is written and no weight changes.

:func:`diagnose_run` needs no labels. It reports

* each term's gradient norm and the cosines between terms (do they cancel?), and
* across batches, how consistent each term's gradient is: the mean pairwise cosine and
  ``|mean g| / mean |g|``. For gradients of equal norm that are pure batch noise, the ratio
  is ``1 / sqrt(n)`` over ``n`` batches and the mean cosine 0; a consistent direction (one
  that training can follow) lifts both.
* for the total, the same mean pairwise cosine between averages of ``k`` consecutive
  batches (``k`` = 1, 2, 4, ... up to half of them): what accumulating ``k`` batches per
  step (or a ``k`` times larger batch) would give. If a share ``rho`` of each batch
  gradient's energy is a direction common to all batches and the rest independent noise,
  the k-batch cosine is about ``k rho / (1 + (k - 1) rho)``.

:func:`alignment_run` asks whether a step down the objective is a step down the labels'
error: the cosine of the objective's encoder gradient (and of each term's) with the
gradient of a validation probe's labelled error, judged against noise controls and the
spread of the per-batch cosines, in total and stage by stage.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..common.provenance import git_state, package_versions, utc_now
from ..losses.severity import add_severity_term
from ..losses.shamisa import ShamisaLoss
from ..model.network import PretrainNet
from .checkpoint import load_resume
from .config import PretrainConfig, PretrainError
from .data import StepDataset, scan_images

#: the weighted parts of the SHAMISA loss: var + cov + pull + ot + r_graph. A run with
#: ``c_severity`` > 0 trains a sixth, ``severity`` (see :func:`weighted_parts`).
PARTS = ("var", "cov", "pull", "ot", "r_graph")


def part_names(config: PretrainConfig) -> tuple[str, ...]:
    """The weighted parts of ``config``'s objective: :data:`PARTS`, and ``severity`` when the run trains it."""
    return (*PARTS, "severity") if config.c_severity > 0 else PARTS


def weighted_parts(config: PretrainConfig, terms: dict[str, Tensor], severity: Tensor | None) -> dict[str, Tensor]:
    """Each weighted term of the objective the run trains; they sum to its total loss.

    Args:
        config: the run's configuration (coefficients).
        terms: the SHAMISA loss's unweighted terms (``LossOutput.terms``).
        severity: the severity read-out error of the step (``add_severity_term``'s second
            value), or None when the run does not train it.
    """
    lc = config.loss_config()
    parts = {
        "var": lc.c_var * terms["var"],
        "cov": lc.c_cov * terms["cov"],
        "pull": 2.0 * lc.c_inv * terms["graph_pull"],
        "ot": 2.0 * lc.c_inv * terms["ot"],
        "r_graph": 2.0 * lc.c_inv * terms["r_graph"],
    }
    if severity is not None:
        parts["severity"] = config.c_severity * severity
    return parts


def _flat_grad(value: Tensor, params: list[Tensor]) -> Tensor:
    if not value.requires_grad:
        return torch.zeros(sum(p.numel() for p in params))
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)])


def _cos(a: Tensor, b: Tensor, digits: int = 4) -> float | None:
    a, b = a.double(), b.double()  # a float32 dot product over an encoder's weights is off by up to ~3e-3
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return None
    return round(float(a @ b) / (na * nb), digits)


def _mean_pairwise_cos(vecs: list[Tensor]) -> float | None:
    """Mean cosine over all pairs of ``vecs`` (pairs with a zero vector left out)."""
    pair = [_cos(vecs[i], vecs[j]) for i in range(len(vecs)) for j in range(i + 1, len(vecs))]
    pair = [c for c in pair if c is not None]
    return round(sum(pair) / len(pair), 4) if pair else None


@dataclass
class _Replayed:
    """One step batch of the run, replayed: its loss, weighted parts and their encoder gradients."""

    step: int
    loss: float
    parts: dict[str, float]
    grads: dict[str, Tensor]  # "total", and each part's when asked


@dataclass
class _OpenedRun:
    """A run's checkpoint, loaded for measurement: the network in train mode, encoder unfrozen."""

    run: Path
    config: PretrainConfig
    step: int
    net: PretrainNet
    params: list[Tensor]  # the encoder's trainable parameters
    names: list[str]  # their names, in the same order
    paths: list[Path]
    unreadable: list[tuple[str, str]]
    images: list[Path]
    git: tuple[str | None, bool | None]  # (sha, dirty) when the run was opened: the code that measures
    checkpoint_sha256: str  # hashed once, when the run was opened

    def replay(self, batches: int, *, parts: bool) -> Iterator[_Replayed]:
        """The run's next ``batches`` step batches through its objective, one :class:`_Replayed` each.

        The gradient of the total (the loss the run trains, severity term included) is always
        taken; with ``parts``, also that of each weighted part (:func:`weighted_parts`).
        """
        loss_fn = ShamisaLoss(self.config.loss_config())
        dataset = StepDataset(self.paths, self.config.layout, seed=self.config.seed, start=self.step,
                              stop=self.step + batches)
        for step in range(self.step, self.step + batches):
            batch = dataset.build(step)
            z, graph_out, h = self.net(batch.crops, batch.nodes, with_features=True)
            out = loss_fn(z, graph_out)
            total, severity = add_severity_term(out.total, h, batch.nodes, self.config.c_severity)
            values = weighted_parts(self.config, out.terms, severity)
            grads = {"total": _flat_grad(total, self.params)}
            if parts:
                grads.update({name: _flat_grad(value, self.params) for name, value in values.items()})
            yield _Replayed(step, float(total.detach()), {k: float(v.detach()) for k, v in values.items()}, grads)
            del z, graph_out, h, out, total, values

    def header(self, t_start: float) -> dict[str, Any]:
        """The provenance every diagnosis reports: run, step, checkpoint, seed, images, versions, duration."""
        sha, dirty = self.git
        return {
            "run": self.run.name,
            "step": self.step,
            "checkpoint_sha256": self.checkpoint_sha256,
            "seed": self.config.seed,
            # the types the run's batches draw from (None: all 26)
            "distortion_types": (list(self.config.layout.distortion_types)
                                 if self.config.layout.distortion_types is not None else None),
            # skipped like pretrain skips them (so the batches are the run's), and counted here
            "images": {"count": len(self.paths), "folders": [str(p) for p in self.images],
                       "unreadable": len(self.unreadable), "unreadable_files": self.unreadable[:10]},
            "provenance": {**package_versions(), "git_sha": sha, "git_dirty": dirty, "at": utc_now()},
            "seconds": round(time.perf_counter() - t_start, 3),
        }


def _open_run(run: Path, images: Sequence[Path] | None) -> _OpenedRun:
    git = git_state()
    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise PretrainError(f"{cfg_path} is missing (is {run} a pretraining run folder?)")
    try:
        config = PretrainConfig.from_dict(json.loads(cfg_path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainError(f"{cfg_path} is not a valid run config ({err})") from err
    state = load_resume(run, config)
    if images is None:
        header = None
        log_path = run / "log.jsonl"
        if log_path.is_file():
            for line in log_path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed run; headers are whole
                if isinstance(record, dict) and "images" in record and "config" in record:
                    header = record
        if header is None:
            raise PretrainError(f"{log_path} records no image folders; pass them with --images")
        images = [Path(p) for p in header["images"]]
    paths, unreadable = scan_images(list(images))  # raises when none can be read

    torch.manual_seed(config.seed)  # the run's init: the frozen initial encoder of --graph-features initial
    net = PretrainNet(config)
    net.load_state_dict(state["net"])
    net.train()
    net.encoder_fixed = False
    named = [(n, p) for n, p in net.encoder.named_parameters() if p.requires_grad]
    params, names = [p for _, p in named], [n for n, _ in named]
    sha256 = hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    return _OpenedRun(run, config, int(state["step"]), net, params, names, paths, unreadable, list(images), git, sha256)


def _open_trainable(run: Path, images: Sequence[Path] | None) -> _OpenedRun:
    """:func:`_open_run`, refusing an encoder with nothing to train (no direction to measure)."""
    opened = _open_run(run, images)
    if not opened.params:
        raise ValueError(f"{opened.run}: the encoder has no trainable weights (every stage frozen); "
                         "there is no direction to measure")
    return opened


def diagnose_run(run: Path, images: Sequence[Path] | None = None, *, batches: int = 6) -> dict[str, Any]:
    """Gradient diagnosis at ``run/checkpoint.pt`` on the run's next ``batches`` step batches.

    Args:
        run: a pretraining run folder (``config.json``, ``checkpoint.pt``, ``log.jsonl``).
        images: the pristine folders; default: those recorded in the run's log.
        batches: consecutive step batches to measure (>= 2).

    Returns:
        A JSON-ready dict: ``step``, the checkpoint's sha256, seed, images, provenance and
        duration; ``batches`` (per batch: the weighted parts, the encoder gradient norm of
        each and of the total, the cosines between parts); ``consistency`` (per part and
        the total: the mean pairwise cosine across batches and ``|mean g| / mean |g|``);
        ``noise_mean_over_norm``, that ratio for pure noise, ``1 / sqrt(batches)``; and
        ``total_averaged``, the total's mean pairwise cosine between k-batch averages.

    Raises:
        ValueError: ``batches`` < 2.
        PretrainError: not a readable run folder, or its images cannot be found.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 2:
        raise ValueError(f"batches must be an int >= 2, got {batches!r}")
    t_start = time.perf_counter()
    opened = _open_run(run, images)
    names = part_names(opened.config)
    per_batch, grads = [], []
    for replayed in opened.replay(batches, parts=True):
        g = replayed.grads
        grads.append(g)
        per_batch.append({
            "step": replayed.step,
            "loss": round(replayed.loss, 4),
            "parts": {k: round(v, 4) for k, v in replayed.parts.items()},
            "grad_norm": {k: round(float(v.norm()), 4) for k, v in g.items()},
            "cos": {f"{a}/{b}": _cos(g[a], g[b]) for i, a in enumerate(names) for b in names[i + 1:]},
        })

    consistency = {}
    for name in (*names, "total"):
        vecs = [g[name] for g in grads]
        mean_norm = sum(float(v.norm()) for v in vecs) / batches
        consistency[name] = {
            "mean_pairwise_cos": _mean_pairwise_cos(vecs),
            "mean_over_norm": round(float(torch.stack(vecs).mean(0).norm()) / mean_norm, 4) if mean_norm else None,
        }
    totals = [g["total"] for g in grads]
    averaged = []
    k = 1
    while 2 * k <= batches:
        means = [torch.stack(totals[i:i + k]).mean(0) for i in range(0, batches - k + 1, k)]
        averaged.append({"k": k, "groups": len(means), "mean_pairwise_cos": _mean_pairwise_cos(means)})
        k *= 2
    return {
        **opened.header(t_start),
        "n_batches": batches,
        "noise_mean_over_norm": round(1.0 / math.sqrt(batches), 4),
        "consistency": consistency,
        "total_averaged": averaged,
        "batches": per_batch,
    }


def _noise_controls(totals: Tensor, count: int, seed: int) -> list[Tensor]:
    """``count`` directions with the batch noise's structure and none of the common part.

    Each is half the difference between the means of two random halves of the batches
    ``totals`` (B, P); the halves are drawn by a ``torch.Generator`` seeded with ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    half = totals.shape[0] // 2
    controls = []
    for _ in range(count):
        perm = torch.randperm(totals.shape[0], generator=gen)
        controls.append((totals[perm[:half]].mean(0) - totals[perm[half:2 * half]].mean(0)) / 2)
    return controls


def _stage(name: str) -> str:
    """The stage a parameter belongs to: its module under the encoder's wrapper, a block stage by index.

    ``trunk.blocks.3.1.conv_dw.weight`` -> ``blocks.3``; ``trunk.conv_head.weight`` ->
    ``conv_head``; ``trunk.layer2.0.conv1.weight`` -> ``layer2``.
    """
    parts = name.split(".")[1:-1] or name.split(".")[:1]
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        return f"blocks.{parts[1]}"
    return parts[0]


def _stage_slices(names: Sequence[str], params: Sequence[Tensor]) -> dict[str, list[slice]]:
    """Where each stage's weights lie in the flat vector of ``params``, stages in order of appearance."""
    out: dict[str, list[slice]] = {}
    offset = 0
    for name, p in zip(names, params, strict=True):
        out.setdefault(_stage(name), []).append(slice(offset, offset + p.numel()))
        offset += p.numel()
    return out


def _check_counts(batches: int, noise_directions: int) -> None:
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 4:
        raise ValueError(f"batches must be an int >= 4 (two halves of at least 2), got {batches!r}")
    if isinstance(noise_directions, bool) or not isinstance(noise_directions, int) or noise_directions < 1:
        raise ValueError(f"noise_directions must be an int >= 1 (the control), got {noise_directions!r}")


def _share_at_least(values: Sequence[float | None], threshold: float | None) -> float | None:
    kept = [v for v in values if v is not None]
    if threshold is None or not kept:
        return None
    return round(sum(1 for v in kept if v >= threshold) / len(kept), 4)


def _alignment_by_stage(stages: dict[str, list[slice]], mean: Tensor, batches: Tensor, controls: list[Tensor],
                        target: Tensor) -> dict[str, dict[str, Any]]:
    """The total's alignment restricted to each stage's weights: which part of the encoder points where."""
    out = {}
    for stage, slices in stages.items():
        def part(v: Tensor, slices: list[slice] = slices) -> Tensor:
            return torch.cat([v[..., s] for s in slices], dim=-1)

        t_part = part(target)
        cos_mean = _cos(part(mean), t_part, 6)
        per_batch = [c for c in (_cos(b, t_part, 9) for b in part(batches)) if c is not None]
        control_cos = [_cos(part(c), t_part, 6) for c in controls]
        values = torch.tensor(per_batch, dtype=torch.float64)
        se = float(values.std(unbiased=True)) / math.sqrt(len(per_batch)) if len(per_batch) > 1 else 0.0
        out[stage] = {
            "weights": sum(s.stop - s.start for s in slices),
            "cos_mean": cos_mean,
            "batch_t": round(float(values.mean()) / se, 3) if se else None,
            "controls_range": [min(c for c in control_cos if c is not None), max(c for c in control_cos if c is not None)]
            if any(c is not None for c in control_cos) else None,
            "controls_at_least_mean": _share_at_least(control_cos, cos_mean),
        }
    return out


def alignment_run(
    run: Path,
    probe: Any,
    images: Sequence[Path] | None = None,
    *,
    batches: int = 48,
    noise_directions: int = 20,
    seed: int = 0,
    parts: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Does a step down the objective also step down the labels' error? Cosines with the supervised gradient.

    At ``run/checkpoint.pt`` this takes the supervised gradient ``s`` of the probe's own
    squared error (:meth:`~shamisa_bench.train.probe.ValidationProbe.supervised_gradient`:
    the ridge head fit on the probe's labelled images and held fixed), and the objective's
    encoder gradient ``g_b`` on each of the run's next ``batches`` step batches. A positive
    cosine means that descending the objective also descends the labels' error (to first
    order, and in-sample: on the probe's own images).

    A probe's SRCC read at a moved encoder is noisy (moves of 1e-4 of the weights' norm in
    any direction change it by about +-0.02 on clive-dev); a cosine is first-order and
    measured once. It is judged against two nulls:

    * the batches: the cosine of each ``g_b`` with ``s``, their mean and standard error
      (``t`` = mean / standard error; the batches are independent draws of the objective);
    * ``noise_directions`` noise controls: half the difference between the mean gradients
      of two random halves of the batches (:func:`_noise_controls`), a direction with the
      batch noise of the mean and none of its common part; the share of controls whose
      cosine is at least the mean's says where the mean falls among them.

    The supervised gradient's two halves (disjoint random halves of the labelled images)
    give its own reliability: their cosine, and the objective's cosine with each.

    Args:
        run: a pretraining run folder.
        probe: a :class:`~shamisa_bench.train.probe.ValidationProbe`.
        images: the pristine folders; default: those recorded in the run's log.
        batches: consecutive step batches (>= 4).
        noise_directions: noise controls (>= 1).
        seed: seed of the controls' halves and of the labelled images' halves.
        parts: also the cosines of each weighted part of the objective
            (:func:`weighted_parts`): which term points where (about five times the compute).
        report: called with a line of progress.

    Returns:
        A JSON-ready dict: the provenance of :func:`diagnose_run`; ``supervised`` (alpha, rmse,
        images, norm, the cosine of its halves); ``alignment`` per measured gradient (the
        total, and the parts when asked): ``cos_mean``, ``cos_mean_halves``, ``batch_cos``
        (mean, standard error, t), ``controls_cos`` (the controls drawn from that gradient's
        own batches, with the same halves for all), the share of controls whose cosine is at
        least the mean's, and ``by_stage``: the same restricted to each stage's weights (stem,
        each block stage, head); None for a part whose gradient is zero (a part the graph
        does not have). Every batch gradient is held until the end: ``batches`` x (1 + parts)
        vectors of the encoder's size.

    Raises:
        ValueError: bad ``batches`` or ``noise_directions``; an encoder with nothing to train;
            or a zero or non-finite supervised gradient, batch gradient or mean gradient of the total.
        PretrainError: not a readable run folder, or its images cannot be found.
    """
    _check_counts(batches, noise_directions)
    say = report if report is not None else (lambda line: None)
    t_start = time.perf_counter()
    opened = _open_trainable(run, images)
    encoder = opened.net.encoder
    saved = {k: v.detach().clone() for k, v in encoder.state_dict().items()}  # BN statistics too
    sup = probe.supervised_gradient(encoder, opened.params, seed=seed)
    if not bool(torch.isfinite(sup.mean).all()):
        raise ValueError(f"{opened.run}: the supervised gradient is not finite at step {opened.step} "
                         "(non-finite features or labels)")
    if float(sup.mean.norm()) == 0.0:
        raise ValueError(f"{opened.run}: the supervised gradient is zero; there is nothing to compare with")
    say(f"supervised gradient over {sup.n_images} images in {time.perf_counter() - t_start:.0f} s")

    per_batch, batch_cos = {}, {}
    for i, replayed in enumerate(opened.replay(batches, parts=parts)):
        for name, g in replayed.grads.items():
            if not bool(torch.isfinite(g).all()):
                raise ValueError(f"{opened.run}: the encoder gradient of {name!r} is not finite on the batch of "
                                 f"step {replayed.step}")
            per_batch.setdefault(name, []).append(g)
            batch_cos.setdefault(name, []).append(_cos(g, sup.mean, 9) or 0.0)  # a zero gradient: 0
        say(f"batch {i + 1}/{batches}: cos(total, supervised) {batch_cos['total'][-1]:+.4f}")
    encoder.load_state_dict(saved)  # a forward in train mode may have moved unfrozen BN statistics
    stages = _stage_slices(opened.names, opened.params)

    alignment = {}
    for name in list(per_batch):
        stacked = torch.stack(per_batch.pop(name))
        mean = stacked.mean(0)
        if float(mean.norm()) == 0.0:
            if name == "total":
                raise ValueError(f"{opened.run}: the objective's mean gradient is zero at step {opened.step}")
            alignment[name] = None  # a part that does not reach the encoder (e.g. ot without transport)
            continue
        values = torch.tensor(batch_cos[name], dtype=torch.float64)
        se = float(values.std(unbiased=True)) / math.sqrt(batches)
        entry = {
            "cos_mean": _cos(mean, sup.mean, 6),
            "cos_mean_halves": [_cos(mean, h, 6) for h in sup.halves],
            "batch_cos": {"mean": round(float(values.mean()), 6), "se": round(se, 6),
                          "t": round(float(values.mean()) / se, 3) if se else None,
                          "min": round(float(values.min()), 6), "max": round(float(values.max()), 6)},
        }
        # the same halves for every gradient: its controls carry the batch noise of that gradient
        controls = _noise_controls(stacked, noise_directions, seed)
        control_cos = [_cos(c, sup.mean, 6) for c in controls]
        entry["controls_cos"] = control_cos
        entry["controls_at_least_mean"] = _share_at_least(control_cos, entry["cos_mean"])
        entry["by_stage"] = _alignment_by_stage(stages, mean, stacked, controls, sup.mean)
        alignment[name] = entry
        del stacked, controls
    return {
        **opened.header(t_start),
        "n_batches": batches,
        "first_batch_step": opened.step,
        "noise_directions": noise_directions,
        "split_seed": seed,
        "supervised": {
            "alpha": sup.alpha, "rmse": round(sup.rmse, 4), "n_images": sup.n_images,
            "norm": round(float(sup.mean.norm()), 6),
            "halves_cos": _cos(*sup.halves, digits=6),
        },
        "alignment": alignment,
    }
