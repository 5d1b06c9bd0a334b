"""`shamisa-bench pretrain`: SHAMISA self-supervised pretraining, one CPU to many GPUs.

The loop follows the reference a0 run: SGD with momentum, cosine annealing with warm
restarts stepped per iteration (period in steps, by default the whole run), fp16 autocast with gradient
scaling on CUDA and fp32 on CPU. The same command runs under ``torchrun`` with
DistributedDataParallel (NCCL on GPU, gloo on CPU); each rank builds a disjoint shard of
every step's items and only rank 0 writes.

A run folder holds::

    config.json        the resolved configuration (checked on --resume)
    log.jsonl          first line: command + config; then one record per step
    checkpoint.pt      the latest full checkpoint (model, graph, optimiser, scaler, step)
    export/            the final encoder-only export (encoder.pt + config.json)

Every step's batch is a pure function of (seed, step, rank): the images it uses and every
random draw of the distortion engine come from generators seeded from those three numbers,
so a resumed run sees exactly the batches an uninterrupted run would, whatever the number
of DataLoader workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shamisa_bench.common.atomic import atomic_torch_save, atomic_write_text
from shamisa_bench.common.progress import StepProgress
from shamisa_bench.model.network import ShamisaNet
from shamisa_bench.train.steps import LayoutSpec, StepBatch, collate_items

__all__ = [
    "PRESETS",
    "PretrainConfig",
    "PretrainError",
    "StepDataset",
    "preset_config",
    "run_pretrain",
]

CONFIG_FORMAT = 1


class PretrainError(RuntimeError):
    """A pretraining run cannot start or cannot go on; the message says why."""


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretraining run's weights.

    Attributes:
        preset: the preset this config started from.
        backbone: encoder backbone name (see ``shamisa_bench.model.BACKBONES``).
        init: ``imagenet`` or ``random``.
        layout: the step layout (items, contents, compositions, levels, crop size).
        graph: the ablation name (``shamisa_bench.graphs.ABLATIONS``); it picks both the
            relation-graph config and the loss config (``full`` is the method itself).
        lr: base learning rate of SGD.
        backbone_lr_mult: learning-rate multiplier for the encoder (1.0 in the reference).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        lr_period_steps: first period of the cosine warm-restart schedule (T_0), in
            optimiser steps; None means the whole run (one cosine from ``lr`` to
            ``eta_min``, no restart). The reference sets T_0 to one epoch of KADIS-700k,
            about 70,000 steps, which is its whole one-epoch run: None reproduces that.
        t_mult: CosineAnnealingWarmRestarts T_mult (period growth after each restart).
        eta_min: CosineAnnealingWarmRestarts eta_min.
        epochs: passes over the pristine set; ``max_steps`` (if set) caps the run.
        max_steps: number of optimiser steps; None means ``epochs`` worth of steps.
        seed: the run seed; every random draw derives from it.
        checkpoint_every: steps between full checkpoints.
        max_unreadable_fraction: the run fails if more of the image files are unreadable.
        projector_init: ``torch`` (PyTorch's default, as the reference) or ``unit_norm_input``
            (see ``shamisa_bench.model.projector``).
        projector_gain: gain of the ``unit_norm_input`` init.
        clip_grad_norm: clip the global gradient norm to this (None: no clipping, as the
            reference).
        freeze_stages: keep the encoder's first N stages fixed (weights and BatchNorm
            statistics): the stem counts as stage 1, then each block stage (ResNet: layer1-4;
            EfficientNet-Lite0: blocks 0-6). 0 (the reference) trains everything.
        c_var, c_inv, c_cov: loss coefficients replacing the reference's (11.976, 88.369,
            57.212) when set; None keeps them.
        channels_last: run the encoder in channels-last memory format (about 2-3x faster
            convolutions on CPU; the same function, float rounding aside).
        freeze_bn: keep the encoder's BatchNorm layers in eval mode (running statistics
            fixed at their initialisation; affine parameters still train). The reference
            updates them; with few, small, heavily distorted crops per step the updated
            statistics drift from those of whole natural images that evaluation sees.
        projector_dim: width of z (the projector's output); None keeps the reference's
            ``0.375 * feature_dim`` (480 for EfficientNet-Lite0, 768 for ResNet-50). The
            VICReg terms are computed on each half of a step's nodes: when z is wider than
            a half has rows, no z can have unit variance and zero covariance at once (the
            half's covariance has rank below the width), and the weighted var + cov
            minimum is a shrunken z (about 0.15 of unit scale for the lite layout). A
            width below the half's row count removes that floor.
        head_warmup_steps: for the run's first N steps only the heads (projector,
            prototypes, aggregator) train; the encoder runs without gradient and keeps its
            weights. The random heads' first gradients then never reach the encoder.
    """

    preset: str
    backbone: str
    init: str
    layout: LayoutSpec
    graph: str = "full"
    lr: float = 0.0015
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_period_steps: int | None = None
    t_mult: int = 2
    eta_min: float = 1e-6
    epochs: float = 1.0
    max_steps: int | None = None
    seed: int = 27
    checkpoint_every: int = 50
    max_unreadable_fraction: float = 0.05
    projector_init: str = "torch"
    projector_gain: float = 1.0
    clip_grad_norm: float | None = None
    freeze_bn: bool = False
    freeze_stages: int = 0
    channels_last: bool = True
    c_var: float | None = None
    c_inv: float | None = None
    c_cov: float | None = None
    projector_dim: int | None = None
    head_warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.init not in ("imagenet", "random"):
            raise ValueError(f"init must be 'imagenet' or 'random', got {self.init!r}")
        for name in ("lr", "backbone_lr_mult", "epochs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps!r}")
        if self.lr_period_steps is not None and (
            not isinstance(self.lr_period_steps, int) or isinstance(self.lr_period_steps, bool) or self.lr_period_steps < 1
        ):
            raise ValueError(f"lr_period_steps must be a positive int or None, got {self.lr_period_steps!r}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every!r}")
        from shamisa_bench.model.projector import PROJECTOR_INITS

        if self.projector_init not in PROJECTOR_INITS:
            raise ValueError(f"projector_init must be one of {PROJECTOR_INITS}, got {self.projector_init!r}")
        if not self.projector_gain > 0:
            raise ValueError(f"projector_gain must be > 0, got {self.projector_gain!r}")
        for name in ("c_var", "c_inv", "c_cov"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}")
        if not isinstance(self.freeze_stages, int) or isinstance(self.freeze_stages, bool) or self.freeze_stages < 0:
            raise ValueError(f"freeze_stages must be an int >= 0, got {self.freeze_stages!r}")
        if self.projector_dim is not None and (
            not isinstance(self.projector_dim, int) or isinstance(self.projector_dim, bool) or self.projector_dim < 1
        ):
            raise ValueError(f"projector_dim must be a positive int or None, got {self.projector_dim!r}")
        if (
            not isinstance(self.head_warmup_steps, int)
            or isinstance(self.head_warmup_steps, bool)
            or self.head_warmup_steps < 0
        ):
            raise ValueError(f"head_warmup_steps must be an int >= 0, got {self.head_warmup_steps!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm!r}")
        if not 0 <= self.max_unreadable_fraction < 1:
            raise ValueError(f"max_unreadable_fraction must be in [0, 1), got {self.max_unreadable_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """Rebuild a config written by :meth:`to_dict`.

        Raises:
            ValueError: for a config written before the schedule period was counted in
                steps (it has ``t_0``, in epochs): such a run cannot be resumed as it was.
        """
        data = dict(data)
        if "t_0" in data:
            raise ValueError(
                "this run config is from an older version (cosine period 't_0' in epochs); "
                "its schedule cannot be reproduced: start a new run"
            )
        data["layout"] = LayoutSpec(**data["layout"])
        return cls(**data)

    def loss_config(self) -> Any:
        """The loss of the run: the graph ablation's, with any coefficient overrides."""
        from shamisa_bench.losses import LossConfig

        overrides = {k: float(getattr(self, k)) for k in ("c_var", "c_inv", "c_cov") if getattr(self, k) is not None}
        return LossConfig.ablation(self.graph, **overrides)

    def lr_period(self, total_steps: int) -> int:
        """T_0 of the schedule, in steps (the whole run when ``lr_period_steps`` is None)."""
        return self.lr_period_steps if self.lr_period_steps is not None else max(1, total_steps)

    def total_steps(self, n_images: int, world_size: int = 1) -> int:
        """Optimiser steps of the run for a pristine set of ``n_images`` images."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch(n_images, world_size)))

    def steps_per_epoch(self, n_images: int, world_size: int = 1) -> int:
        return max(1, n_images // (self.layout.n_items * world_size))


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's reference configuration. Its cosine schedule has
    # T_0 = one epoch of KADIS-700k (about 70,000 steps), i.e. the whole one-epoch run:
    # lr_period_steps=None (the whole run) is that schedule on any pristine set.
    "a0": dict(backbone="resnet50", init="imagenet", layout=LayoutSpec()),
    # efficientnet_lite0 with a CPU-sized layout that still has every graph branch:
    # 2 contents give structural pairs (views 0 and 2 are both full scale), 2 items give
    # ref-ref edges across items, 4 levels give dist-dist kernels, 2 * 4 * (1 + 3 * 4) = 104
    # nodes leave kNN (k = 31) and transport (top 8N) meaningful.
    "lite": dict(
        backbone="efficientnet_lite0",
        init="imagenet",
        layout=LayoutSpec(n_items=2, n_contents=2, n_compositions=3, n_levels=4, crop_size=192),
        checkpoint_every=25,
    ),
    # For tests: tiny crops, tiny layout, a random-init resnet18.
    "tiny": dict(
        backbone="resnet18",
        init="random",
        layout=LayoutSpec(
            n_items=2, n_contents=2, n_compositions=2, n_levels=2, crop_size=64, max_distortions=3
        ),
        max_steps=4,
        checkpoint_every=2,
    ),
}


def preset_config(preset: str, **overrides: Any) -> PretrainConfig:
    """The config of a preset with some fields overridden (None values are ignored).

    Raises:
        ValueError: for an unknown preset or field.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; valid: {sorted(fields)}")
    values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig(**values)


# --------------------------------------------------------------------------- data


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (independent streams per step and rank)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def scan_images(folders: Path | Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """All readable pristine images under ``folders`` and the unreadable ones with reasons.

    Every file is decoded once, so a corrupt file is found here and not in a worker.

    Raises:
        PretrainError: if a folder does not exist or they hold no image file.
    """
    from shamisa_bench.common.imageio import list_images, load_image

    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    paths: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise PretrainError(f"image folder {folder} does not exist or is not a folder")
        paths.extend(list_images(folder))
    if not paths:
        where = ", ".join(str(f) for f in folders)
        raise PretrainError(f"no JPEG, PNG, BMP or TIFF images found under {where}")
    good: list[Path] = []
    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            load_image(path)
        except (ValueError, OSError) as err:
            bad.append((str(path), str(err)))
        else:
            good.append(Path(path))
    if not good:
        raise PretrainError(f"none of the {len(paths)} image files under {', '.join(map(str, folders))} could be read")
    return good, bad


def image_set(folders: Path | Sequence[Path], paths: Sequence[Path]) -> dict[str, Any]:
    """What identifies a run's pristine set: its size and a digest of its files.

    The digest covers, for each given folder in order, the sorted paths of its readable
    images relative to that folder and their sizes in bytes, so the same folders named from
    another working directory give the same digest, and an added, removed, renamed or
    rewritten file changes it.

    Returns:
        ``{"count": int, "sha256": str}``.
    """
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    digest = hashlib.sha256()
    remaining = {Path(p) for p in paths}
    for index, folder in enumerate(folders):
        inside = sorted((p for p in remaining if p.is_relative_to(folder)), key=lambda p: p.relative_to(folder).as_posix())
        for path in inside:
            digest.update(f"{index}\t{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\n".encode())
        remaining.difference_update(inside)
    return {"count": len(paths), "sha256": digest.hexdigest()}


def small_images(paths: Sequence[Path], crop_size: int) -> tuple[list[tuple[str, tuple[int, int]]], int]:
    """Images with a side below ``crop_size`` (their crops are zero-padded), with their sizes,
    and how many others have a side below ``2 * crop_size`` (their x0.5 views are padded).

    Only the image headers are read."""
    from PIL import Image

    small, half = [], 0
    for path in paths:
        with Image.open(path) as im:
            side = min(im.size)
            if side < crop_size:
                small.append((str(path), im.size))
            elif side < 2 * crop_size:
                half += 1
    return small, half


class StepDataset(torch.utils.data.Dataset):
    """Builds the structured batches of steps ``start..stop-1`` for one rank.

    The items of global step ``s`` are the images at positions ``(s * world + rank) * B``
    onwards of an epoch-wise permutation (B = items per rank), so ranks get disjoint shards.
    Each item's extra contents and every distortion draw come from a generator seeded from
    (seed, step, rank, item).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        layout: LayoutSpec,
        *,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if stop < start:
            raise ValueError(f"stop ({stop}) must be >= start ({start})")
        self.paths = [str(p) for p in paths]
        self.layout = layout
        self.seed = seed
        self.start = start
        self.stop = stop
        self.rank = rank
        self.world_size = world_size
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.stop - self.start

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            rng = np.random.default_rng(_mix_seed(self.seed, epoch, 0xE90C))
            self._perms[epoch] = rng.permutation(len(self.paths))
        return self._perms[epoch]

    def item_indices(self, step: int) -> list[int]:
        """Indices (into ``paths``) of the indexed image of each of this rank's items."""
        n = len(self.paths)
        per_step = self.layout.n_items * self.world_size
        steps_per_epoch = max(1, n // per_step)
        epoch, within = divmod(step, steps_per_epoch)
        perm = self._permutation(epoch)
        first = within * per_step + self.rank * self.layout.n_items
        return [int(perm[(first + i) % n]) for i in range(self.layout.n_items)]

    def build(self, step: int) -> StepBatch:
        from shamisa_bench.common.imageio import load_image
        from shamisa_bench.train.steps import build_item

        items = []
        for slot, index in enumerate(self.item_indices(step)):
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, step, self.rank, slot))
            extra = torch.randint(0, len(self.paths), (self.layout.n_contents - 1,), generator=gen)
            contents = [load_image(self.paths[index])] + [load_image(self.paths[int(j)]) for j in extra]
            items.append(build_item(contents, self.layout, generator=gen))
        return collate_items(items, self.layout)

    def __getitem__(self, i: int) -> tuple[int, StepBatch, float]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        t0 = time.perf_counter()
        step = self.start + i
        batch = self.build(step)
        return step, batch, time.perf_counter() - t0


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _identity(x: Any) -> Any:
    return x


# --------------------------------------------------------------------------- run


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(name: str, dist_info: _Dist | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PretrainError("--device cuda was asked for, but torch sees no CUDA device")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", device.index if device.index is not None else local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise PretrainError(f"unsupported device {name!r}; use cpu, cuda or auto")
    return device


def _param_groups(net: ShamisaNet, config: PretrainConfig) -> list[dict[str, Any]]:
    encoder = [p for p in net.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in encoder}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
    return [
        {"params": encoder, "lr": config.lr * config.backbone_lr_mult, "name": "encoder"},
        {"params": rest, "lr": config.lr, "name": "heads"},
    ]


def _load_resume(run_dir: Path, config: PretrainConfig) -> dict[str, Any]:
    """Reads and checks a run folder for --resume without writing anything."""
    cfg_path = run_dir / "config.json"
    ckpt_path = run_dir / "checkpoint.pt"
    if not cfg_path.is_file():
        raise PretrainError(f"cannot resume: {cfg_path} is missing (is {run_dir} a pretraining run folder?)")
    try:
        stored = json.loads(cfg_path.read_text())
        stored_cfg = PretrainConfig.from_dict(stored["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainError(f"cannot resume: {cfg_path} is not a valid run config ({err})") from err
    ours, theirs = config.to_dict(), stored_cfg.to_dict()
    ours.pop("max_steps"), theirs.pop("max_steps")
    if ours != theirs:
        diff = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise PretrainError(
            f"cannot resume: the run in {run_dir} was made with another config (differs in {diff}); "
            "pass the same options, or start a new --out folder"
        )
    if not ckpt_path.is_file():
        raise PretrainError(f"cannot resume: {ckpt_path} is missing")
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise PretrainError(f"cannot resume: checkpoint {ckpt_path} is corrupt or unreadable ({err})") from err
    for key in ("net", "optimizer", "step", "scaler"):
        if key not in state:
            raise PretrainError(f"cannot resume: checkpoint {ckpt_path} lacks '{key}'")
    return state


def _check_finite(step: int, total: Tensor, terms: dict[str, Tensor]) -> None:
    bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
    if bad or not torch.isfinite(total):
        names = ", ".join(bad) if bad else "total"
        raise PretrainError(
            f"non-finite loss at step {step} (term: {names}; values "
            + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            + "); the last good checkpoint is kept"
        )


def run_pretrain(
    config: PretrainConfig,
    images: Path | Sequence[Path],
    out: Path,
    *,
    device: str = "auto",
    resume: bool = False,
    num_workers: int = 1,
    progress: bool = True,
    command: Sequence[str] | None = None,
    export_every: int | None = None,
    validation: Any = None,
    val_every: int | None = None,
    tune_allocator: bool = False,
) -> dict[str, Any]:
    """Runs (or resumes) one pretraining run.

    Args:
        config: the resolved configuration.
        images: folder(s) of pristine images, searched recursively.
        out: the run folder.
        device: ``cpu``, ``cuda`` or ``auto``.
        resume: continue from ``out/checkpoint.pt`` (the config must match).
        num_workers: DataLoader worker processes building batches (0 = in the main process).
        progress: show a rich progress bar (rank 0 only).
        command: the command line, recorded as the log's first line.
        export_every: also write an encoder export every this many steps to
            ``out/exports/stepNNNNNN`` (for choosing a checkpoint by validation SRCC).
        validation: a :class:`~shamisa_bench.validation.ValidationProbe` (rank 0 runs it):
            measured before the first step (the baseline), every ``val_every`` steps and
            after the last; each value is logged and the trained export with the best one
            is kept in ``out/best``.
        val_every: steps between validations (required with ``validation``).
        tune_allocator: serve every allocation from glibc's heap (no mmap), process-wide:
            about 2x faster steps on CPU (activations are no longer page-faulted afresh each
            step), at the price of a larger resident set (about twice the memory). Off by
            default, since it changes the allocator of the whole calling process; the
            ``pretrain`` command turns it on unless ``--no-malloc-tuning``. See
            ``shamisa_bench.distortions.allocator.tune_malloc``.

    Returns:
        A summary dict: steps done, final loss, export path, best validation, seconds.

    Raises:
        PretrainError: bad folders, bad resume state, unreadable data, non-finite loss.
    """
    from shamisa_bench.distortions.allocator import tune_malloc
    from shamisa_bench.losses import ShamisaLoss
    from shamisa_bench.model import save_encoder_export

    t_start = time.perf_counter()
    if tune_allocator:
        tune_malloc(trim_threshold=1 << 31, use_mmap=False)  # workers fork with it
    dev = _resolve_device(device)
    dist_info = _init_distributed(dev)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PretrainError(f"--out {out} is a file; give a folder for the run")
    state = _load_resume(out, config) if resume else None
    if not resume and (out / "checkpoint.pt").exists():
        raise PretrainError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")

    if export_every is not None and export_every < 1:
        raise PretrainError(f"export_every must be >= 1, got {export_every}")
    if (validation is not None and val_every is None) or (val_every is not None and val_every < 1):
        raise PretrainError(f"val_every must be >= 1 (and is required with validation), got {val_every}")
    paths, unreadable = scan_images(images)
    n_files = len(paths) + len(unreadable)
    if len(unreadable) > config.max_unreadable_fraction * n_files:
        raise PretrainError(
            f"{len(unreadable)} of {n_files} image files are unreadable "
            f"(more than {config.max_unreadable_fraction:.0%}), e.g. {unreadable[0][0]}: {unreadable[0][1]}"
        )
    images_id = image_set(images, paths)
    if resume:
        stored_images = json.loads((out / "config.json").read_text()).get("images")
        if stored_images is not None and stored_images != images_id:
            raise PretrainError(
                f"cannot resume: the run in {out} was made on another image set ({stored_images['count']} images, "
                f"sha256 {stored_images['sha256'][:12]}), these --images give {images_id['count']} images "
                f"(sha256 {images_id['sha256'][:12]}); pass the same folders, or start a new --out folder"
            )
    if dist_info.is_main:
        if unreadable:
            print(f"pretrain: skipping {len(unreadable)} unreadable image file(s), e.g. {unreadable[0][0]}: "
                  f"{unreadable[0][1]}", file=sys.stderr)
        crop = config.layout.crop_size
        small, half = small_images(paths, crop)
        if small:
            w, h = small[0][1]
            print(f"pretrain: {len(small)} image(s) have a side below the {crop} px crop and are "
                  f"zero-padded to it, e.g. {small[0][0]} ({w}x{h})", file=sys.stderr)
        if half:
            print(f"pretrain: {half} more image(s) have a side below {2 * crop} px: their x0.5 views are "
                  f"zero-padded to the {crop} px crop", file=sys.stderr)
    total_steps = config.total_steps(len(paths), dist_info.world_size)

    torch.manual_seed(config.seed)  # the one place model init draws from
    net = ShamisaNet(config).to(dev)
    loss_fn = ShamisaLoss(config.loss_config())
    optimizer = torch.optim.SGD(
        _param_groups(net, config), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    # The schedule's period is fixed when a run starts: a run resumed with another
    # --max-steps keeps the period it started with (the checkpoint records it).
    lr_period = config.lr_period(total_steps)
    if state is not None and "lr_period" in state:
        if int(state["lr_period"]) != lr_period and dist_info.is_main:
            print(
                f"note: the learning-rate period stays at the {int(state['lr_period'])} steps this run started "
                f"with (not {lr_period}); pass --lr-period-steps to a new run to choose it",
                file=sys.stderr,
            )
        lr_period = int(state["lr_period"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=lr_period, T_mult=config.t_mult, eta_min=config.eta_min
    )
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_step = 0
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
    if start_step >= total_steps and dist_info.is_main:
        print(f"run in {out} already finished {start_step} of {total_steps} steps", file=sys.stderr)

    train_net: nn.Module = net
    if dist_info.enabled:
        # Ablations that switch off transport/L_ot leave the prototypes without gradient.
        train_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=config.graph != "full" or config.head_warmup_steps > 0,
        )

    log_path = out / "log.jsonl"
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        header = {
            "command": list(command) if command is not None else sys.argv,
            "config": config.to_dict(),
            "images": [str(p) for p in ([images] if isinstance(images, (str, Path)) else images)],
            "n_images": len(paths),
            "unreadable": len(unreadable),
            "unreadable_files": unreadable[:50],
            "world_size": dist_info.world_size,
            "device": str(dev),
            "total_steps": total_steps,
            "image_set": images_id,
            "resumed_from": start_step if resume else None,
            "provenance": _provenance(),
        }
        if not resume:
            atomic_write_text(out / "config.json", json.dumps(
                {"format": CONFIG_FORMAT, "config": config.to_dict(), "images": images_id}, indent=2))
            log_path.write_text("")
        else:
            header["dropped_records"] = _truncate_log(log_path, start_step)
        with log_path.open("a") as fh:
            fh.write(json.dumps(header) + "\n")

    dataset = StepDataset(
        paths, config.layout, seed=config.seed, start=start_step, stop=total_steps,
        rank=dist_info.rank, world_size=dist_info.world_size,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=2 if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=dev.type == "cuda",
    )

    def save_checkpoint(step: int) -> None:
        if dist_info.is_main:
            atomic_torch_save(
                {
                    "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "lr_period": lr_period,
                    "config": config.to_dict(),
                },
                out / "checkpoint.pt",
            )

    best = {"val_srcc": float("-inf"), "step": None}
    if resume and dist_info.is_main:
        best.update(_best_logged_validation(log_path, start_step))

    def validate(done: int) -> None:
        """Rank 0 measures (it holds ``validation``); the other ranks wait at the barrier."""
        if not val_every:
            return
        if dist_info.is_main and validation is not None:
            result = validation(net.encoder)
            # Step 0 is the initialisation: logged as the baseline to beat, never kept as "best".
            improved = done > 0 and result.srcc > best["val_srcc"]
            if improved:
                best.update(val_srcc=result.srcc, step=done)
                extra = _export_extra(config, done, images_id)
                _replace_export(net.encoder, out / "best", extra={**extra, "validation": {
                    "dataset": validation.dataset, "split_hash": validation.split_hash, **result.to_dict()}})
            net.train()  # the probe restored the encoder's own mode; re-apply freeze_bn
            with log_path.open("a") as fh:
                fh.write(json.dumps({"step": done, **result.to_dict(), "val_best": improved}) + "\n")
        if dist_info.enabled:
            import torch.distributed as dist

            dist.barrier()

    if start_step == 0 and total_steps > 0:
        validate(0)
    last = {"loss": float("nan")}
    bar = StepProgress(total_steps, start_step, enabled=progress and dist_info.is_main)
    net.train()
    step = start_step
    wait_start = time.perf_counter()
    try:
        for step, batch, build_s in loader:
            data_s = time.perf_counter() - wait_start
            t0 = time.perf_counter()
            scheduler.step(step)
            net.encoder_fixed = step < config.head_warmup_steps
            x = batch.crops.to(dev, non_blocking=True)
            nodes = batch.nodes.to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                z, graph_out = train_net(x, nodes)
            out_loss = loss_fn(z, graph_out)
            total = out_loss.total
            finite = torch.isfinite(total.detach()).to(torch.float32)
            if dist_info.enabled:  # every rank stops together if any rank's loss is bad
                import torch.distributed as dist

                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if not bool(finite):
                _check_finite(step, total, out_loss.terms)
                raise PretrainError(f"non-finite loss on another rank at step {step}; the last good checkpoint is kept")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if config.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            compute_s = time.perf_counter() - t0
            loss_value = float(total.detach())
            if dist_info.enabled:
                import torch.distributed as dist

                t = torch.tensor([loss_value], device=dev)
                dist.all_reduce(t)
                loss_value = float(t) / dist_info.world_size
            last["loss"] = loss_value
            if dist_info.is_main:
                record = {
                    "step": step,
                    "loss": round(loss_value, 6),
                    **{k: round(float(v.detach()), 6) for k, v in out_loss.terms.items()},
                    "lr": optimizer.param_groups[1]["lr"],
                    "lr_encoder": optimizer.param_groups[0]["lr"],
                    "branch_weights": [round(float(w), 4) for w in graph_out.branch_weights],
                    "data_s": round(data_s, 4),
                    "build_s": round(build_s, 4),
                    "compute_s": round(compute_s, 4),
                }
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            bar.update(step + 1, loss_value)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps:
                save_checkpoint(step + 1)
            if export_every and (step + 1) % export_every == 0 and dist_info.is_main:
                save_encoder_export(net.encoder, out / "exports" / f"step{step + 1:06d}",
                                    extra=_export_extra(config, step + 1, images_id))
            if val_every and ((step + 1) % val_every == 0 or step + 1 == total_steps):
                validate(step + 1)
            wait_start = time.perf_counter()
    finally:
        bar.close()
    if dist_info.enabled:
        # DDP keeps parameters in sync; BatchNorm running statistics are broadcast from rank 0
        # at each forward, so after the last step every rank takes rank 0's.
        import torch.distributed as dist

        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)
    export_dir = out / "export"
    if dist_info.is_main and start_step < total_steps:
        save_checkpoint(total_steps)
        save_encoder_export(net.encoder, export_dir, extra=_export_extra(config, total_steps, images_id))
    checksums = [_param_checksum(net)]
    if dist_info.enabled:
        import torch.distributed as dist

        gathered: list[Any] = [None] * dist_info.world_size
        dist.all_gather_object(gathered, checksums[0])
        checksums = gathered
        dist.barrier()
        if len(set(checksums)) != 1:
            raise PretrainError(f"ranks ended with different weights (checksums {checksums})")
    summary = {
        "steps": total_steps,
        "start_step": start_step,
        "final_loss": last["loss"] if math.isfinite(last["loss"]) else None,
        "export": str(export_dir) if export_dir.is_dir() else None,
        "best_val_srcc": best["val_srcc"] if best["step"] is not None else None,
        "best_step": best["step"],
        "seconds": round(time.perf_counter() - t_start, 3),
        "rank": dist_info.rank,
        "world_size": dist_info.world_size,
        "rank_checksums": checksums,
    }
    if dist_info.is_main and start_step < total_steps:
        from shamisa_bench.model import read_encoder_export

        end = {"summary": {k: v for k, v in summary.items() if k not in ("rank", "export")},
               "export_sha256": read_encoder_export(export_dir, verify=False).weights_sha256}
        if (out / "best").exists():
            end["best_sha256"] = read_encoder_export(out / "best", verify=False).weights_sha256
        with log_path.open("a") as fh:
            fh.write(json.dumps(end) + "\n")
    return summary


def _param_checksum(net: nn.Module) -> str:
    """A sha256 over every parameter and buffer (to prove DDP ranks agree exactly)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _provenance() -> dict[str, Any]:
    """Package versions, git sha and start time, for the log's first record."""
    from shamisa_bench.results.provenance import git_state, package_versions, utc_now

    sha, dirty = git_state()
    return {**package_versions(), "git_sha": sha, "git_dirty": dirty, "started_at": utc_now()}


def _best_logged_validation(log_path: Path, upto: int) -> dict[str, Any]:
    """The best validation logged at or before step ``upto`` (what ``out/best`` holds)."""
    found: dict[str, Any] = {}
    if not log_path.exists():
        return found
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "val_srcc" in record and 0 < record["step"] <= upto and record["val_srcc"] > found.get("val_srcc", float("-inf")):
            found = {"val_srcc": record["val_srcc"], "step": record["step"]}
    return found


def _replace_export(encoder: nn.Module, target: Path, *, extra: dict[str, Any]) -> None:
    """Writes an export beside ``target`` and swaps it in, so ``target`` is never half written."""
    import shutil

    from shamisa_bench.model import save_encoder_export

    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    save_encoder_export(encoder, staging, extra=extra)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _export_extra(config: PretrainConfig, steps: int, images: dict[str, Any]) -> dict[str, Any]:
    return {"pretrain": {"preset": config.preset, "steps": steps, "seed": config.seed, "graph": config.graph,
                         "config": config.to_dict(), "images": images}}


def _truncate_log(log_path: Path, start_step: int) -> int:
    """Drop the records of steps a resumed run does again; returns how many were dropped.

    A run killed after its last checkpoint has logged steps it will redo: step records
    with ``step >= start_step`` and validations after ``start_step`` go, so each step is
    logged once. Header lines (those with a command) are kept.
    """
    if not log_path.is_file():
        return 0
    kept, dropped = [], 0
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            dropped += 1
            continue
        step = record.get("step") if isinstance(record, dict) else None
        is_val = isinstance(record, dict) and "val_srcc" in record
        if isinstance(step, int) and ((is_val and step > start_step) or (not is_val and step >= start_step)):
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_text(log_path, "".join(line + "\n" for line in kept))
    return dropped


# --------------------------------------------------------------------------- CLI


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="lite", choices=sorted(PRESETS), help="starting configuration (default: lite)")
    p.add_argument("--backbone", default=None, help="override the preset's backbone")
    p.add_argument("--init", default=None, choices=("imagenet", "random"), help="encoder initialisation")
    p.add_argument("--graph", default=None, help="relation-graph ablation (default: full)")
    p.add_argument("--lr", type=float, default=None, help="SGD learning rate (a0: 0.0015)")
    p.add_argument("--backbone-lr-mult", type=float, default=None, help="encoder lr = lr x this (default 1)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the images (default 1)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps")
    p.add_argument("--lr-period-steps", type=int, default=None,
                   help="cosine warm-restart period T_0 in steps (default: the whole run, one decay)")
    p.add_argument("--seed", type=int, default=None, help="run seed (a0: 27)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--projector-init", default=None, choices=("torch", "unit_norm_input"),
                   help="projector initialisation (default torch, as the reference)")
    p.add_argument("--projector-gain", type=float, default=None, help="gain of the unit_norm_input init")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm (default: off)")
    p.add_argument("--freeze-bn", action="store_true", default=None,
                   help="keep the encoder's BatchNorm statistics fixed (default: updated, as the reference)")
    p.add_argument("--freeze-stages", type=int, default=None,
                   help="keep the encoder's first N stages fixed (stem = 1; default 0, as the reference)")
    p.add_argument("--c-var", type=float, default=None, help="coefficient of L_var (default: the reference's 11.976)")
    p.add_argument("--c-inv", type=float, default=None, help="coefficient of L_inv' (default: the reference's 88.369)")
    p.add_argument("--c-cov", type=float, default=None, help="coefficient of L_cov (default: the reference's 57.212)")
    p.add_argument("--projector-dim", type=int, default=None,
                   help="width of z (default: 0.375 x the encoder width, as the reference); keep it below the "
                        "rows of a VICReg half (52 for the lite layout) so unit variance and zero covariance can meet")
    p.add_argument("--head-warmup-steps", type=int, default=None,
                   help="train only the projector and graph heads for the first N steps (default 0)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep the encoder in the default memory format (channels-last is 2-3x faster on CPU)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers building batches (default 1)")


def _config_from_args(args: argparse.Namespace) -> PretrainConfig:
    return preset_config(
        args.preset,
        backbone=args.backbone,
        init=args.init,
        graph=args.graph,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr_period_steps=args.lr_period_steps,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        projector_init=args.projector_init,
        projector_gain=args.projector_gain,
        clip_grad_norm=args.clip_grad_norm,
        freeze_bn=args.freeze_bn,
        freeze_stages=args.freeze_stages,
        c_var=args.c_var,
        c_inv=args.c_inv,
        c_cov=args.c_cov,
        projector_dim=args.projector_dim,
        head_warmup_steps=args.head_warmup_steps,
        channels_last=False if args.no_channels_last else None,
    )


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from shamisa_bench.cli.errors import CLIError

    config = _config_from_args(args)
    validation = None
    if args.val_dataset:
        if int(os.environ.get("RANK", "0")) == 0:
            from shamisa_bench.validation import ValidationProbe

            try:
                validation = ValidationProbe(args.val_dataset, args.data_root, split_seed=args.val_split_seed,
                                             registry=args.registry)
            except (OSError, ValueError, KeyError) as err:
                raise CLIError(f"--val-dataset {args.val_dataset}: {err}") from err
            if validation.skipped:
                print(f"validation: skipped {len(validation.skipped)} unreadable images, e.g. "
                      f"{validation.skipped[0][0]}: {validation.skipped[0][1]}", file=sys.stderr)
    val_every = args.val_every if args.val_dataset else None  # every rank waits while rank 0 measures
    try:
        summary = run_pretrain(
            config, [Path(p) for p in args.images], Path(args.out), device=args.device, resume=args.resume,
            num_workers=args.workers, progress=not args.no_progress, command=["shamisa-bench", *sys.argv[1:]],
            export_every=args.export_every, validation=validation, val_every=val_every,
            tune_allocator=not args.no_malloc_tuning,
        )
    except PretrainError as err:
        raise CLIError(str(err)) from err
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if summary["rank"] == 0:
        print(json.dumps(summary))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Times a short run: steps/s and the fraction of step time spent waiting for data."""
    import tempfile

    config = _config_from_args(args)
    config = dataclasses.replace(config, max_steps=args.steps, checkpoint_every=10**9)
    images = Path(args.images) if args.images else None
    with tempfile.TemporaryDirectory() as tmp:
        if images is None:
            images = Path(tmp) / "images"
            _write_bench_images(images, n=8, size=(480, 320))
        run_dir = Path(tmp) / "run"
        run_pretrain(config, images, run_dir, device=args.device, num_workers=args.workers, progress=False)
        records = [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()[1:]) if "loss" in r]
    timed = records[args.warmup:] or records
    data = sum(r["data_s"] for r in timed)
    compute = sum(r["compute_s"] for r in timed)
    result = {
        "preset": config.preset,
        "backbone": config.backbone,
        "layout": dataclasses.asdict(config.layout),
        "crops_per_step": config.layout.n_nodes,
        "device": args.device,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "steps_timed": len(timed),
        "steps_per_s": round(len(timed) / (data + compute), 4),
        "seconds_per_step_median": round(float(np.median([r["data_s"] + r["compute_s"] for r in timed])), 4),
        "data_wait_fraction": round(data / (data + compute), 4),
        "batch_build_s_median": round(float(np.median([r["build_s"] for r in timed])), 4),
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _write_bench_images(folder: Path, *, n: int, size: tuple[int, int]) -> None:
    """Writes ``n`` smooth random RGB images (a stand-in for pristine photos)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    w, h = size
    for i in range(n):
        low = torch.rand(3, h // 16, w // 16, generator=gen)
        img = torch.nn.functional.interpolate(low[None], size=(h, w), mode="bicubic", align_corners=False)[0]
        img = (img + 0.05 * torch.rand(3, h, w, generator=gen)).clamp(0, 1)
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised SHAMISA pretraining on a folder of pristine images",
        description="Pretrains the SHAMISA encoder. Works under torchrun for DDP (NCCL on GPU, gloo on CPU).",
    )
    p.add_argument("--images", required=True, nargs="+", help="folder(s) of pristine images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder (log, checkpoints, export)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--export-every", type=int, default=None,
                   help="also write an encoder export every N steps under OUT/exports/ (checkpoint selection)")
    p.add_argument("--val-dataset", default=None,
                   help="registered labelled dataset (e.g. clive-dev) whose split-0 train/val parts give a "
                        "validation SRCC; the best export is kept in OUT/best (never the test part)")
    p.add_argument("--data-root", default=None, help="folder holding --val-dataset (default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--val-every", type=int, default=50, help="steps between validations (default 50)")
    p.add_argument("--val-split-seed", type=int, default=0, help="seed of the validation split (default 0)")
    p.add_argument("--registry", default=None, help="registry folder (default: the shipped one)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="leave glibc's allocator as it is: slower steps, about half the resident memory")
    _add_config_args(p)
    p.set_defaults(func=_cmd_pretrain)


def register_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("pretrain", help="pretraining steps/s and data-wait fraction (JSON)")
    p.add_argument("--images", default=None, help="pristine images (default: 8 generated 480x320 images)")
    p.add_argument("--steps", type=int, default=6, help="steps to run (default 6)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing (default 1)")
    p.add_argument("--json", action="store_true", help="compact JSON")
    _add_config_args(p)
    p.set_defaults(func=_cmd_bench)
