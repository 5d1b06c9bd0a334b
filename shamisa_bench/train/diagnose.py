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
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..common.provenance import git_state, package_versions, utc_now
from ..losses.shamisa import ShamisaLoss
from ..model.network import PretrainNet
from .checkpoint import load_resume
from .config import PretrainConfig, PretrainError
from .data import StepDataset, scan_images

#: the weighted parts of the total loss: total = var + cov + pull + ot + r_graph
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


def _flat_grad(value: Tensor, params: list[Tensor]) -> Tensor:
    if not value.requires_grad:
        return torch.zeros(sum(p.numel() for p in params))
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)])


def _cos(a: Tensor, b: Tensor) -> float | None:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return None
    return round(float(a @ b) / (na * nb), 4)


def _mean_pairwise_cos(vecs: list[Tensor]) -> float | None:
    """Mean cosine over all pairs of ``vecs`` (pairs with a zero vector left out)."""
    pair = [_cos(vecs[i], vecs[j]) for i in range(len(vecs)) for j in range(i + 1, len(vecs))]
    pair = [c for c in pair if c is not None]
    return round(sum(pair) / len(pair), 4) if pair else None


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
    params = [p for p in net.encoder.parameters() if p.requires_grad]
    loss_fn = ShamisaLoss(config.loss_config())
    step0 = int(state["step"])
    dataset = StepDataset(paths, config.layout, seed=config.seed, start=step0, stop=step0 + batches)

    per_batch, grads = [], []
    for step in range(step0, step0 + batches):
        batch = dataset.build(step)
        z, graph_out = net(batch.crops, batch.nodes)
        out = loss_fn(z, graph_out)
        parts = _weighted_parts(config, out.terms)
        g = {name: _flat_grad(value, params) for name, value in parts.items()}
        g["total"] = _flat_grad(out.total, params)
        grads.append(g)
        per_batch.append({
            "step": step,
            "loss": round(float(out.total.detach()), 4),
            "parts": {k: round(float(v.detach()), 4) for k, v in parts.items()},
            "grad_norm": {k: round(float(v.norm()), 4) for k, v in g.items()},
            "cos": {f"{a}/{b}": _cos(g[a], g[b]) for i, a in enumerate(PARTS) for b in PARTS[i + 1:]},
        })
        del z, graph_out, out, parts

    sha, dirty = git_state()
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
        "run": run.name,
        "step": step0,
        "checkpoint_sha256": hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest(),
        "seed": config.seed,
        # skipped like pretrain skips them (so the batches are the run's), and counted here
        "images": {"count": len(paths), "folders": [str(p) for p in images],
                   "unreadable": len(unreadable), "unreadable_files": unreadable[:10]},
        "provenance": {**package_versions(), "git_sha": sha, "git_dirty": dirty, "at": utc_now()},
        "seconds": round(time.perf_counter() - t_start, 3),
        "n_batches": batches,
        "noise_mean_over_norm": round(1.0 / math.sqrt(batches), 4),
        "consistency": consistency,
        "total_averaged": averaged,
        "batches": per_batch,
    }
