"""Gradient diagnosis of a pretraining run: what each loss term asks of the encoder.

At a run's checkpoint, on the run's own next step batches, this takes the gradient of each
weighted loss term with respect to the encoder's trainable parameters and reports

* each term's gradient norm and the cosines between terms (do they cancel?), and
* across batches, how consistent each term's gradient is: the mean pairwise cosine and
  ``|mean g| / mean |g|``. For gradients of equal norm that are pure batch noise, the ratio
  is ``1 / sqrt(n)`` over ``n`` batches and the mean cosine 0; a consistent direction (one
  that training can follow) lifts both.
* for the total, the same mean pairwise cosine between averages of ``k`` consecutive
  batches (``k`` = 1, 2, 4, ... up to half of them): what accumulating ``k`` batches per
  step would give. If a share ``rho`` of each batch gradient's energy is a direction
  common to all batches and the rest independent noise, the k-batch cosine is about
  ``k rho / (1 + (k - 1) rho)``.

Nothing is written and no weight changes.

:func:`line_search_run` moves the encoder along the total's mean gradient and along noise
controls and reads a validation probe at each point; :func:`alignment_run` asks the same
question to first order: the cosine of the objective's gradient with the gradient of the
probe's labelled error. :func:`bn_recalibration_run` reads the probe with the encoder's
BatchNorm statistics re-estimated on the run's step batches (all crops, or the undistorted
references only), and halfway between those and the run's own.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..common.provenance import git_state, package_versions, utc_now
from ..graphs.nodes import NodeMeta
from ..losses.severity import add_severity_term, severity_readout_loss
from ..losses.shamisa import ShamisaLoss
from ..model.export import save_encoder_export
from ..model.network import PretrainNet, batchnorm_layers
from .checkpoint import load_resume
from .config import PretrainConfig, PretrainError
from .data import StepDataset, scan_images
from .probe import SupervisedGradient

#: the weighted parts of the SHAMISA loss: var + cov + pull + ot + r_graph (a run with c_severity > 0
#: adds its severity term to the total on top of them)
PARTS = ("var", "cov", "pull", "ot", "r_graph")


def _weighted_parts(config: PretrainConfig, terms: dict[str, Tensor]) -> dict[str, Tensor]:
    lc = config.loss_config()
    return {
        "var": lc.c_var * terms["var"],
        "cov": lc.c_cov * terms["cov"],
        "pull": 2.0 * lc.c_inv * terms["graph_pull"],
        "ot": 2.0 * lc.c_inv * terms["ot"],
        "r_graph": 2.0 * lc.c_inv * terms["r_graph"],
    }


def _objective(net: PretrainNet, loss_fn: ShamisaLoss, config: PretrainConfig, batch: Any) -> tuple[Any, Tensor]:
    """The run's loss on a step batch: the SHAMISA loss's output, and the total the run trains
    (with its severity term when ``config.c_severity`` > 0)."""
    z, graph_out, h = net(batch.crops, batch.nodes, with_features=True)
    out = loss_fn(z, graph_out)
    total, _ = add_severity_term(out.total, h, batch.nodes, config.c_severity)
    return out, total


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


def severity_gradient(net: PretrainNet, batch: Any, params: list[Tensor]) -> Tensor:
    """The encoder gradient of :func:`~shamisa_bench.losses.severity.severity_readout_loss` on a step batch.

    The distorted crops go through the encoder in the net's mode (the reference crops are
    not used). Like the supervised gradient of the probe, it is the first-order change of a
    refit read-out's error: the direction in which a severity-ranking objective would move
    the encoder.

    Raises:
        ValueError: the step has no composition group with two different severities.
    """
    nodes = batch.nodes
    dist = torch.nonzero(~nodes.is_ref).flatten()
    h = net.model.encoder(batch.crops[dist].contiguous(memory_format=net.memory_format))
    sub = NodeMeta(**{k: getattr(nodes, k)[dist] for k in NodeMeta.__dataclass_fields__})
    return _flat_grad(severity_readout_loss(h, sub), params)


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

    def step_gradients(self, batches: int, skip: int = 0, *, parts: bool = False,
                       severity: bool = False) -> Iterator[dict[str, Tensor]]:
        """The flat encoder gradient of the total loss (and of each weighted part) on each step batch.

        Yields one dict per batch, ``{"total": g}`` and, with ``parts``, one entry per name of
        :data:`PARTS`; with ``severity``, also ``"severity"``: see :func:`severity_gradient`.
        The batches are those of steps ``step + skip`` onwards (``skip`` = 0: the run's next ones).
        """
        loss_fn = ShamisaLoss(self.config.loss_config())
        first = self.step + skip
        dataset = StepDataset(self.paths, self.config.layout, seed=self.config.seed, start=first,
                              stop=first + batches)
        for step in range(first, first + batches):
            batch = dataset.build(step)
            out, total = _objective(self.net, loss_fn, self.config, batch)
            grads = {"total": _flat_grad(total, self.params)}
            if parts:
                grads.update({name: _flat_grad(value, self.params)
                              for name, value in _weighted_parts(self.config, out.terms).items()})
            del out, total
            if severity:
                grads["severity"] = severity_gradient(self.net, batch, self.params)
            yield grads

    def step_totals(self, batches: int, skip: int = 0) -> list[Tensor]:
        """The flat encoder gradient of the total loss on each of ``batches`` step batches of the run."""
        return [g["total"] for g in self.step_gradients(batches, skip)]

    def header(self, t_start: float) -> dict[str, Any]:
        """The provenance every diagnosis reports: run, step, checkpoint, seed, images, versions, duration."""
        sha, dirty = self.git
        return {
            "run": self.run.name,
            "step": self.step,
            "checkpoint_sha256": self.checkpoint_sha256,
            "seed": self.config.seed,
            # the types the measured batches drew from (None: all 26)
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


def _open_trainable(run: Path, images: Sequence[Path] | None,
                    distortion_types: Sequence[str] | None = None) -> _OpenedRun:
    """:func:`_open_run`, refusing an encoder with nothing to train (no direction to measure).

    With ``distortion_types``, the batches replay the run's layout with compositions drawn
    from those types only (the crops, contents and seeds are the run's).
    """
    opened = _open_run(run, images)
    if not opened.params:
        raise ValueError(f"{opened.run}: the encoder has no trainable weights (every stage frozen); "
                         "there is no direction to measure")
    if distortion_types is not None:
        layout = dataclasses.replace(opened.config.layout, distortion_types=tuple(distortion_types))
        opened.config = dataclasses.replace(opened.config, layout=layout)
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
    config, net, params, step0 = opened.config, opened.net, opened.params, opened.step
    loss_fn = ShamisaLoss(config.loss_config())
    dataset = StepDataset(opened.paths, config.layout, seed=config.seed, start=step0, stop=step0 + batches)

    per_batch, grads = [], []
    for step in range(step0, step0 + batches):
        batch = dataset.build(step)
        out, total = _objective(net, loss_fn, config, batch)
        parts = _weighted_parts(config, out.terms)
        g = {name: _flat_grad(value, params) for name, value in parts.items()}
        g["total"] = _flat_grad(total, params)
        grads.append(g)
        per_batch.append({
            "step": step,
            "loss": round(float(total.detach()), 4),
            "parts": {k: round(float(v.detach()), 4) for k, v in parts.items()},
            "grad_norm": {k: round(float(v.norm()), 4) for k, v in g.items()},
            "cos": {f"{a}/{b}": _cos(g[a], g[b]) for i, a in enumerate(PARTS) for b in PARTS[i + 1:]},
        })
        del out, total, parts

    consistency = {}
    for name in (*PARTS, "total"):
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


def _check_counts(batches: int, noise_directions: int, skip_batches: int) -> None:
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 4:
        raise ValueError(f"batches must be an int >= 4 (two halves of at least 2), got {batches!r}")
    if isinstance(noise_directions, bool) or not isinstance(noise_directions, int) or noise_directions < 1:
        raise ValueError(f"noise_directions must be an int >= 1 (the control), got {noise_directions!r}")
    if isinstance(skip_batches, bool) or not isinstance(skip_batches, int) or skip_batches < 0:
        raise ValueError(f"skip_batches must be an int >= 0, got {skip_batches!r}")


def _check_line_search(batches: int, rels: Sequence[float], noise_directions: int, skip_batches: int) -> list[float]:
    _check_counts(batches, noise_directions, skip_batches)
    rels = list(rels)
    if not rels or any(isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r <= 0
                       for r in rels):
        raise ValueError(f"rels must be one or more finite lengths > 0 (relative to |w|), got {rels!r}")
    return [float(r) for r in rels]


def line_search_run(
    run: Path,
    probe: Callable[[torch.nn.Module], Any],
    images: Sequence[Path] | None = None,
    *,
    batches: int = 48,
    rels: Sequence[float] = (1e-4, 3e-4, 1e-3),
    noise_directions: int = 2,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
    export_dir: Path | None = None,
    skip_batches: int = 0,
    distortion_types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Does the objective's common encoder direction raise validation more than noise does?

    At ``run/checkpoint.pt`` this averages the total loss's encoder gradient over the run's
    next ``batches`` step batches, and moves the encoder's weights ``w`` by ``r |w|`` (for
    each ``r`` in ``rels``) along the descent direction of that mean, then along each of
    ``noise_directions`` controls: half the difference between the means of two random
    halves of the same batches (a direction with the batch noise's structure and none of
    the common part). ``probe`` measures each, and the base weights first.

    The mean gradient's energy is its common part's plus ``1/batches`` of the noise's; the
    controls' energy estimates the latter, so ``rho`` (the common share of one batch
    gradient's energy, as in :func:`diagnose_run`'s ladder) and the common share of the
    mean are reported too.

    Args:
        run: a pretraining run folder.
        probe: called with the encoder (e.g. a
            :class:`~shamisa_bench.train.probe.ValidationProbe`); returns an object with
            ``srcc`` (and optionally ``alpha``).
        images: the pristine folders; default: those recorded in the run's log.
        batches: consecutive step batches to average (>= 4).
        rels: step lengths relative to the norm of the encoder's trainable weights.
        noise_directions: random half splits measured as controls (>= 1).
        seed: seed of the ``torch.Generator`` that draws the half splits.
        report: called with a line of progress after the gradients and after each
            measurement (a search takes minutes per measurement on a CPU).
        export_dir: when given, every measured encoder is also written there as an
            encoder export (``base``, ``descent-R``, ``noiseK-R``; fp32), its provenance
            and validation under ``extra.line_search``: so that a point can be scored
            on the full protocol (``shamisa-bench run``) as a control.
        skip_batches: average the batches of steps ``step + skip_batches`` onwards instead
            of the run's next ones (another sample of the same objective at the same weights).
        distortion_types: replay the batches with compositions drawn from these catalog
            types only (default: the run's own).

    Returns:
        A JSON-ready dict: the provenance of :func:`diagnose_run`; ``gradient`` (norms of the
        mean, of each control and of a batch; ``rho``; ``common_share_of_mean``); ``base``;
        ``steps`` (per ``r``: the descent's and each control's validation, the controls'
        mean, and descent minus that mean); ``split_seed``, the seed of the random halves.
        The weights are restored, and nothing is written outside ``export_dir``.

    Raises:
        ValueError: bad ``batches``, ``rels``, ``noise_directions`` or ``skip_batches``; or
            a zero mean gradient or control (an encoder with nothing to train).
        PretrainError: not a readable run folder, or its images cannot be found.
    """
    rels = _check_line_search(batches, rels, noise_directions, skip_batches)
    t_start = time.perf_counter()
    opened = _open_trainable(run, images, distortion_types)
    encoder = opened.net.encoder
    saved = {k: v.detach().clone() for k, v in encoder.state_dict().items()}  # BN statistics too
    totals = torch.stack(opened.step_totals(batches, skip_batches))
    encoder.load_state_dict(saved)  # a forward in train mode may have moved unfrozen BN statistics
    say = report if report is not None else (lambda line: None)
    say(f"{batches} batch gradients in {time.perf_counter() - t_start:.0f} s")

    mean = totals.mean(0)
    controls = _noise_controls(totals, noise_directions, seed)
    if float(mean.norm()) == 0.0 or any(float(c.norm()) == 0.0 for c in controls):
        raise ValueError(f"{opened.run}: the encoder's mean gradient or a noise control is zero at step "
                         f"{opened.step}; there is no direction to search")
    noise_energy = float(torch.stack([c.norm() ** 2 for c in controls]).mean())
    mean_energy = float(mean.norm() ** 2)
    common_energy = max(0.0, mean_energy - noise_energy)
    batch_energy = float((totals.norm(dim=1) ** 2).mean())

    w0 = torch.cat([p.detach().flatten() for p in opened.params])  # not parameters_to_vector: it cannot view channels-last weights
    w_norm = float(w0.norm())

    def place(delta: Tensor | None) -> None:
        # copied in place, not vector_to_parameters: that rebinds each weight to a contiguous
        # view and would drop the encoder's channels-last format
        with torch.no_grad():
            offset = 0
            for p in opened.params:
                n = p.numel()
                w = w0[offset:offset + n] if delta is None else w0[offset:offset + n] + delta[offset:offset + n]
                p.copy_(w.view_as(p))
                offset += n

    ident = {k: v for k, v in opened.header(t_start).items() if k not in ("images", "seconds")}

    def measure(delta: Tensor | None, label: str) -> dict[str, float]:
        place(delta)
        result = probe(encoder)
        out = {"srcc": round(float(result.srcc), 6)}
        if export_dir is not None:
            name = label.replace(" at ", "-").replace(" ", "")
            save_encoder_export(encoder, Path(export_dir) / name, extra={"line_search": {
                **ident,
                "point": name, "n_batches": batches, "first_batch_step": opened.step + skip_batches,
                "split_seed": seed, "val_srcc": out["srcc"]}})
        say(f"{label}: srcc {out['srcc']:.4f}")
        if getattr(result, "alpha", None) is not None:
            out["alpha"] = result.alpha
        return out

    directions = [-mean / mean.norm()] + [c / c.norm() for c in controls]
    try:
        base = measure(None, "base")
        steps = []
        for r in rels:
            seen = [measure(d * (r * w_norm), f"{'descent' if i == 0 else f'noise{i}'} at {r:g}")
                    for i, d in enumerate(directions)]
            noise = [s["srcc"] for s in seen[1:]]
            noise_mean = sum(noise) / len(noise)
            steps.append({
                "rel": r,
                "descent": seen[0]["srcc"],
                "noise": noise,
                "noise_mean": round(noise_mean, 6),
                "descent_minus_noise_mean": round(seen[0]["srcc"] - noise_mean, 6),
                "descent_minus_base": round(seen[0]["srcc"] - base["srcc"], 6),
            })
    finally:
        place(None)  # the weights as they were
    return {
        **opened.header(t_start),
        "n_batches": batches,
        "first_batch_step": opened.step + skip_batches,
        "noise_directions": noise_directions,
        "split_seed": seed,
        "weight_norm": round(w_norm, 4),
        "gradient": {
            "mean_norm": round(math.sqrt(mean_energy), 4),
            "control_norms": [round(float(c.norm()), 4) for c in controls],
            "batch_norm_rms": round(math.sqrt(batch_energy), 4),
            "rho": round(common_energy / batch_energy, 4) if batch_energy else None,
            "common_share_of_mean": round(math.sqrt(common_energy / mean_energy), 4) if mean_energy else None,
        },
        "base": base,
        "steps": steps,
    }


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


def _supervised_key(probe: Any, encoder: torch.nn.Module, names: Sequence[str], seed: int) -> str:
    """What the supervised gradient depends on, hashed: the cache key of :func:`_supervised`."""
    digest = hashlib.sha256()
    head = {"dataset": probe.dataset, "split_hash": probe.split_hash, "feature_mode": probe.feature_mode,
            "seed": seed, "params": list(names), "torch": torch.__version__}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for name, value in encoder.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _supervised(probe: Any, encoder: torch.nn.Module, opened: _OpenedRun, seed: int,
                cache: Path | None) -> tuple[Any, bool]:
    """The probe's supervised gradient at the opened encoder, read from ``cache`` when it holds it.

    Returns:
        ``(gradient, cached)``.
    """
    if cache is None:
        return probe.supervised_gradient(encoder, opened.params, seed=seed), False
    key = _supervised_key(probe, encoder, opened.names, seed)
    path = Path(cache) / f"supervised-{key[:24]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"{path}: unreadable supervised-gradient cache entry ({err}); delete it") from err
        if not isinstance(saved, dict) or saved.get("key") != key:
            raise ValueError(f"{path}: the cache entry's key does not match its name; delete it")
        fields = {k: saved[k] for k in ("alpha", "rmse", "n_images")}
        return SupervisedGradient(mean=saved["mean"], halves=tuple(saved["halves"]), **fields), True
    sup = probe.supervised_gradient(encoder, opened.params, seed=seed)
    Path(cache).mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "mean": sup.mean, "halves": list(sup.halves), "alpha": float(sup.alpha),
                "rmse": float(sup.rmse), "n_images": int(sup.n_images)}, tmp)
    tmp.replace(path)  # whole or absent, even when the run is killed while writing
    return sup, False


def alignment_run(
    run: Path,
    probe: Any,
    images: Sequence[Path] | None = None,
    *,
    batches: int = 48,
    noise_directions: int = 20,
    seed: int = 0,
    parts: bool = False,
    severity: bool = False,
    skip_batches: int = 0,
    report: Callable[[str], None] | None = None,
    distortion_types: Sequence[str] | None = None,
    supervised_cache: Path | None = None,
) -> dict[str, Any]:
    """Does a step down the objective also step down the labels' error? Cosines with the supervised gradient.

    At ``run/checkpoint.pt`` this takes the supervised gradient ``s`` of the probe's own
    squared error (:meth:`~shamisa_bench.train.probe.ValidationProbe.supervised_gradient`:
    the ridge head fit on the probe's labelled images and held fixed), and the objective's
    encoder gradient ``g_b`` on each of the run's next ``batches`` step batches. A positive
    cosine means that descending the objective also descends the labels' error.

    Unlike a line search, which reads the probe's SRCC at a moved encoder (and moves of
    1e-4 of the weights' norm in any direction change it by about +-0.02), a cosine is
    first-order and measured once. It is judged against two nulls:

    * the batches: the cosine of each ``g_b`` with ``s``, their mean and standard error
      (``t`` = mean / standard error; the batches are independent draws of the objective);
    * the noise controls of :func:`line_search_run` (half differences of random halves of
      the batches, ``noise_directions`` of them): where the mean gradient's cosine falls
      among theirs. The controls carry the batch noise of the mean and none of its common part.

    The supervised gradient's two halves (disjoint random halves of the labelled images)
    give its own reliability: their cosine, and the objective's cosine with each.

    Args:
        run: a pretraining run folder.
        probe: a :class:`~shamisa_bench.train.probe.ValidationProbe`.
        images: the pristine folders; default: those recorded in the run's log.
        batches: consecutive step batches (>= 4).
        noise_directions: noise controls (>= 1).
        seed: seed of the controls' halves and of the labelled images' halves.
        parts: also the cosines of each weighted loss part (:data:`PARTS`): which term
            points where (about five times the compute).
        severity: also the cosines of :func:`severity_gradient` (the direction of a
            severity read-out on the same batches): would such an objective point better?
        skip_batches: start ``skip_batches`` steps after the checkpoint's.
        report: called with a line of progress.
        distortion_types: replay the batches with compositions drawn from these catalog
            types only (default: the run's own): which distortions point where the labels ask?
        supervised_cache: a folder where the supervised gradient is kept, keyed by the
            encoder's weights and statistics, the probe's dataset, split and feature mode,
            the halves' seed and the torch version (see :func:`_supervised_key`); a hit
            skips its computation (minutes on a CPU), a miss computes and writes it.

    Returns:
        A JSON-ready dict: the provenance of :func:`diagnose_run`; ``supervised`` (alpha, rmse,
        images, norm, the cosine of its halves); ``alignment`` per measured gradient (the
        total, and the parts and severity when asked): ``cos_mean``, ``cos_mean_halves``,
        ``batch_cos`` (mean, standard error, t), ``controls_cos`` (the controls drawn from
        that gradient's own batches, with the same halves for all), the share of controls
        whose cosine is at least the mean's, and ``by_stage``: the same restricted to each
        stage's weights (stem, each block stage, head); None for a part whose gradient is
        zero (a part the graph does not have). Every batch gradient is held until the end:
        ``batches`` x (1 + parts + severity) vectors of the encoder's size.

    Raises:
        ValueError: bad ``batches``, ``noise_directions`` or ``skip_batches``; or a zero
            supervised gradient or mean gradient of the total.
        PretrainError: not a readable run folder, or its images cannot be found.
    """
    _check_counts(batches, noise_directions, skip_batches)
    say = report if report is not None else (lambda line: None)
    t_start = time.perf_counter()
    opened = _open_trainable(run, images, distortion_types)
    encoder = opened.net.encoder
    saved = {k: v.detach().clone() for k, v in encoder.state_dict().items()}  # BN statistics too
    sup, cached = _supervised(probe, encoder, opened, seed, supervised_cache)
    if not bool(torch.isfinite(sup.mean).all()):
        raise ValueError(f"{opened.run}: the supervised gradient is not finite at step {opened.step} "
                         "(non-finite features or labels)")
    if float(sup.mean.norm()) == 0.0:
        raise ValueError(f"{opened.run}: the supervised gradient is zero; there is nothing to compare with")
    say(f"supervised gradient over {sup.n_images} images {'read from the cache' if cached else 'computed'} "
        f"in {time.perf_counter() - t_start:.0f} s")

    per_batch, batch_cos = {}, {}
    for i, grads in enumerate(opened.step_gradients(batches, skip_batches, parts=parts, severity=severity)):
        for name, g in grads.items():
            if not bool(torch.isfinite(g).all()):
                raise ValueError(f"{opened.run}: the encoder gradient of {name!r} is not finite on the batch of "
                                 f"step {opened.step + skip_batches + i}")
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
        "first_batch_step": opened.step + skip_batches,
        "noise_directions": noise_directions,
        "split_seed": seed,
        "supervised": {
            "alpha": sup.alpha, "rmse": round(sup.rmse, 4), "n_images": sup.n_images,
            "norm": round(float(sup.mean.norm()), 6),
            "halves_cos": _cos(*sup.halves, digits=6),
            "cached": cached,
        },
        "alignment": alignment,
    }


def bn_recalibration_run(
    run: Path,
    probe: Any,
    images: Sequence[Path] | None = None,
    *,
    batches: int = 32,
    blend: float = 0.5,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Would re-estimating the encoder's BatchNorm statistics on pristine or distorted crops help?

    At ``run/checkpoint.pt``, the probe reads the encoder three ways: with its statistics as
    the run left them (``as_run``), and with every BatchNorm layer's running mean and
    variance re-estimated, as a plain average over the run's next ``batches`` step batches
    (no weight changes, no gradients), on all their crops (``all_crops``: the references and
    their distorted copies) or on the undistorted references only (``references``). Each
    re-estimate is also read ``blend`` of the way from the run's statistics to it
    (``..._blend``). The run's files are not touched.

    Args:
        run: a pretraining run folder.
        probe: a :class:`~shamisa_bench.train.probe.ValidationProbe` (or any callable that
            takes an encoder and returns an object with ``srcc`` and ``alpha``).
        images: the pristine folders; default: those recorded in the run's log.
        batches: step batches to estimate from (>= 1).
        blend: the share of the re-estimate in the blended statistics, in (0, 1).
        report: called with a line of progress.

    Raises:
        ValueError: ``batches`` < 1, ``blend`` outside (0, 1), or an encoder without
            BatchNorm layers.
    """
    t_start = time.perf_counter()
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an int >= 1, got {batches!r}")
    if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0 < blend < 1:
        raise ValueError(f"blend must be a number in (0, 1), got {blend!r}")
    opened = _open_run(run, images)
    base = copy.deepcopy(opened.net.encoder).eval()
    if not batchnorm_layers(base):
        raise ValueError(f"{opened.run}: the encoder has no BatchNorm layer to re-estimate")
    estimates = {"all_crops": copy.deepcopy(base), "references": copy.deepcopy(base)}
    for encoder in estimates.values():
        for bn in batchnorm_layers(encoder):
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over the batches
            bn.train()  # only the BatchNorm layers: everything else stays in eval mode
    counts = dict.fromkeys(estimates, 0)
    dataset = StepDataset(opened.paths, opened.config.layout, seed=opened.config.seed, start=opened.step,
                          stop=opened.step + batches)
    with torch.no_grad():
        for step in range(opened.step, opened.step + batches):
            batch = dataset.build(step)
            for name, crops in (("all_crops", batch.crops), ("references", batch.crops[batch.nodes.is_ref])):
                estimates[name](crops)
                counts[name] += len(crops)
    for encoder in estimates.values():
        encoder.eval()
    if report:
        report(f"statistics re-estimated on {batches} batches in {time.perf_counter() - t_start:.0f} s")
    variants: dict[str, torch.nn.Module] = {"as_run": base}
    for name, encoder in estimates.items():
        variants[name] = encoder
        mixed = copy.deepcopy(base)
        for ours, theirs in zip(batchnorm_layers(mixed), batchnorm_layers(encoder), strict=True):
            ours.running_mean.lerp_(theirs.running_mean, blend)
            ours.running_var.lerp_(theirs.running_var, blend)
        variants[f"{name}_blend"] = mixed
    readings = {}
    for name, encoder in variants.items():
        result = probe(encoder)
        readings[name] = {"srcc": round(float(result.srcc), 6), "alpha": float(result.alpha)}
        if report:
            report(f"{name}: {result.srcc:.4f}")
    return {
        **opened.header(t_start),
        "n_batches": batches,
        "blend": blend,
        "crops": counts,
        "bn_recalibration": readings,
    }
