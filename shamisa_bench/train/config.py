"""What determines a pretraining run: :class:`PretrainConfig`, the presets, the run's error type.

``PretrainConfig.to_dict()`` is what a run folder's ``config.json`` (format
:data:`CONFIG_FORMAT`), its log header, its checkpoints and its exports record; a run is
resumed only with an equal config (``max_steps`` aside).
"""

from __future__ import annotations

import dataclasses
import math
import signal
from dataclasses import dataclass
from typing import Any

from shamisa_bench.graphs.config import ROUNDED_BRANCH_COEFFICIENTS, GraphConfig
from shamisa_bench.losses import LossConfig
from shamisa_bench.losses.shamisa import ROUNDED_LOSS_COEFFICIENTS
from shamisa_bench.model.projector import PROJECTOR_INITS
from shamisa_bench.train.steps import LayoutSpec

__all__ = [
    "COEFFICIENTS", "CONFIG_FORMAT", "GRAPH_FEATURES", "LR_STEPS", "PRESETS", "PretrainConfig", "PretrainError", "PretrainStopped", "preset_config",
]

CONFIG_FORMAT = 1
# what the relation graph's kNN and transport branches are built on (PretrainConfig.graph_features)
GRAPH_FEATURES = ("online", "initial")
# the loss and graph coefficients (PretrainConfig.coefficients): the reference's in full, or
# rounded to 4 significant digits as every run before them used
COEFFICIENTS = ("reference", "rounded")
# when the learning-rate schedule moves (PretrainConfig.lr_step): after each update, as the
# reference, or before it, as every run before that fix did (one step ahead)
LR_STEPS = ("after", "before")
# what a config.json written before these two fields existed was run with
_BEFORE_FIDELITY_FIELDS = {"coefficients": "rounded", "lr_step": "before"}


class PretrainError(RuntimeError):
    """A pretraining run cannot start or cannot go on; the message says why."""


class PretrainStopped(PretrainError):
    """The run was asked to stop (SIGINT or SIGTERM) and did so cleanly.

    It finished the step under way, saved a checkpoint of it and logged a ``stopped``
    record; ``--resume`` continues from there.

    Attributes:
        step: steps done.
        total_steps: steps of the whole run.
        signum: the signal that asked for the stop.
    """

    def __init__(self, out: str, step: int, total_steps: int, signum: int) -> None:
        self.step, self.total_steps, self.signum = step, total_steps, signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step} of {total_steps}: the checkpoint of that "
            f"step is saved in {out}; continue with --resume"
        )


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
        train_stages: train the encoder's stages up to the Nth only (counted as for
            ``freeze_stages``, so 1 = the stem alone); the later stages and the layers after
            the last stage (EfficientNet: ``conv_head``, ``bn2``) are held fixed, weights and
            BatchNorm statistics. None (the reference) trains them all. With
            ``freeze_stages`` the trained stages are ``freeze_stages + 1 .. train_stages``.
        c_var, c_inv, c_cov: loss coefficients replacing the reference's (the defaults of
            :class:`~shamisa_bench.losses.shamisa.LossConfig`) when set; None keeps them.
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
        head_warmup_steps: for the run's first N steps only the projector and the relation
            graph (prototypes, aggregator) train; the encoder runs without gradient and keeps
            its weights (its BatchNorm statistics still update in train mode unless
            ``freeze_bn``). Their random initial gradients then never reach the encoder. (The
            name, kept because run folders' config.json store it, predates the one meaning
            of "head": the fitted quality regressor.)
        detach_graph: build the relation graph's feature branches (kNN, transport) on
            detached features (``GraphConfig.detach_structure``), so that R_graph and the
            graph pull reach the encoder only through z. Not the reference; off.
        graph_features: the features the kNN and transport branches are built on.
            ``"online"`` (the reference): the encoder being trained, so the neighbours it
            pulls together are the ones its own features choose, step after step.
            ``"initial"``: a frozen copy of the encoder as it was initialised (the ImageNet
            start), run in eval mode without gradient; the neighbours and affinities are
            then a fixed function of the crops and no longer follow the encoder, and those
            branches (with R_graph) send it no gradient. Not the reference; it costs one
            more forward pass of the step's crops.
        encoder_anchor: strength of a pull of the encoder's weights back towards their
            initialisation (L2-SP, Li et al. 2018): each step adds
            ``encoder_anchor * (w - w_init)`` to every trainable encoder weight's gradient,
            after clipping, so the encoder can learn but cannot drift far from its ImageNet
            start. 0 (the reference) turns it off.
        coefficients: ``"reference"``: the loss and relation-graph coefficients of the
            reference configuration to the last digit (the defaults of
            :class:`~shamisa_bench.losses.LossConfig` and
            :class:`~shamisa_bench.graphs.GraphConfig`); ``"rounded"``: the same rounded to 4
            significant digits, which the ``lite`` presets and the shipped encoder were trained
            with (relative differences below 6e-4).
        lr_step: ``"after"`` (the reference): the schedule moves after each update, so step
            ``i`` (from 0) runs at the cosine's value at ``max(i - 1, 0)``: steps 0 and 1 both
            at ``lr``, as the reference's ``scheduler.step(epoch + i / len)`` after
            ``optimizer.step()`` gives. ``"before"``: step ``i`` runs at the value at ``i``
            (one step ahead of the reference); the ``lite`` presets keep it.
        c_severity: coefficient of an added term, not the reference's: the within-group
            severity read-out error of the encoder's features
            (:func:`~shamisa_bench.losses.severity.severity_readout_loss`), which asks the
            features to order each composition group's crops by the severity of its varying
            factor. 0 (the reference) leaves it out.
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
    detach_graph: bool = False
    graph_features: str = "online"
    encoder_anchor: float = 0.0
    projector_steps: int | None = None
    train_stages: int | None = None
    c_severity: float = 0.0
    coefficients: str = "reference"
    lr_step: str = "after"

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
        if self.train_stages is not None and (
            not isinstance(self.train_stages, int) or isinstance(self.train_stages, bool)
            or self.train_stages <= self.freeze_stages
        ):
            raise ValueError(f"train_stages must be None or an int > freeze_stages ({self.freeze_stages}): "
                             f"got {self.train_stages!r}, which would leave no stage to train")
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
        for name in ("encoder_anchor", "c_severity"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.projector_steps is not None and (
            not isinstance(self.projector_steps, int)
            or isinstance(self.projector_steps, bool)
            or self.projector_steps < 0
        ):
            raise ValueError(f"projector_steps must be an int >= 0 or None, got {self.projector_steps!r}")
        if not isinstance(self.detach_graph, bool):
            raise TypeError(f"detach_graph must be a bool, got {self.detach_graph!r}")
        if self.graph_features not in GRAPH_FEATURES:
            raise ValueError(f"graph_features must be one of {GRAPH_FEATURES}, got {self.graph_features!r}")
        if self.coefficients not in COEFFICIENTS:
            raise ValueError(f"coefficients must be one of {COEFFICIENTS}, got {self.coefficients!r}")
        if self.lr_step not in LR_STEPS:
            raise ValueError(f"lr_step must be one of {LR_STEPS}, got {self.lr_step!r}")
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
        for name, before in _BEFORE_FIDELITY_FIELDS.items():
            data.setdefault(name, before)  # a run from before the field: resumed as it was run
        return cls(**data)

    def loss_config(self) -> LossConfig:
        """The loss of the run: the graph ablation's, with any coefficient overrides."""
        overrides: dict[str, Any] = dict(ROUNDED_LOSS_COEFFICIENTS) if self.coefficients == "rounded" else {}
        overrides.update(
            {k: float(getattr(self, k)) for k in ("c_var", "c_inv", "c_cov") if getattr(self, k) is not None})
        return LossConfig.ablation(self.graph, **overrides)

    def graph_config(self) -> GraphConfig:
        """The relation graph of the run: the graph ablation's, at the run's coefficients."""
        overrides: dict[str, Any] = dict(ROUNDED_BRANCH_COEFFICIENTS) if self.coefficients == "rounded" else {}
        return GraphConfig.ablation(self.graph, detach_structure=self.detach_graph, **overrides)

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


# efficientnet_lite0 with a CPU-sized layout that still has every graph branch:
# 2 contents give structural pairs (views 0 and 2 are both full scale), 2 items give
# ref-ref edges across items, 4 levels give dist-dist kernels, 2 * 4 * (1 + 3 * 4) = 104
# nodes leave kNN (k = 31) and transport (top 8N) meaningful.
_LITE: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "init": "imagenet",
    "layout": LayoutSpec(n_items=2, n_contents=2, n_compositions=3, n_levels=4, crop_size=192),
    "checkpoint_every": 25,
    # the coefficients and schedule timing every lite run (and the shipped encoder) used
    "coefficients": "rounded",
    "lr_step": "before",
}

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's reference configuration. Its cosine schedule has
    # T_0 = one epoch of KADIS-700k (about 70,000 steps), i.e. the whole one-epoch run:
    # lr_period_steps=None (the whole run) is that schedule on any pristine set.
    "a0": {"backbone": "resnet50", "init": "imagenet", "layout": LayoutSpec()},
    "lite": _LITE,
    # The CPU recipe of SHAMISA-Lite: the lite layout with a 160 px crop (so the x0.5 views of
    # 481 x 321 pristine images are not zero-padded), and the stabilisers measured in
    # results/pretrain: a 32-wide z, 50 projector-only steps, the encoder at 0.1x a 0.015 lr
    # and anchored to its ImageNet start, BatchNorm statistics fixed, unit-norm projector
    # init, gradients clipped to 1. One cosine over 1,000 steps. Seed 27 gives the shipped
    # encoder; seed 28 collapses (results/pretrain/lite-cpu-seed28), and so does seed 27 on
    # one thread (other rounding; results/pretrain/lite-cpu-exports).
    "lite-cpu": dict(
        _LITE,
        layout=dataclasses.replace(_LITE["layout"], crop_size=160),
        max_steps=1000,
        lr=0.015,
        backbone_lr_mult=0.1,
        projector_dim=32,
        head_warmup_steps=50,
        c_var=300.0,
        encoder_anchor=3.0,
        freeze_bn=True,
        projector_init="unit_norm_input",
        clip_grad_norm=1.0,
    ),
    # For tests: tiny crops, tiny layout, a random-init resnet18.
    "tiny": {
        "backbone": "resnet18",
        "init": "random",
        "layout": LayoutSpec(
            n_items=2, n_contents=2, n_compositions=2, n_levels=2, crop_size=64, max_distortions=3
        ),
        "max_steps": 4,
        "checkpoint_every": 2,
    },
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
