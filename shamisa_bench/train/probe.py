"""Validation SRCC during pretraining: how a checkpoint is chosen.

A :class:`ValidationProbe` holds the train and validation parts of one split of a labelled
dataset (never its test part). Called with an encoder, it extracts the two-scale features
of those images (feature mode ``whole`` by default, as the harness's probes) and, over 10
random train/validation divisions of them, chooses the ridge alpha exactly as ``fit-head``
does (:func:`shamisa_bench.iqa.head.select_alpha`); the result is the median validation SRCC
at that alpha. One division of a few dozen images is too noisy to choose checkpoints by. ``shamisa-bench pretrain
--val-dataset clive-sel`` logs it every ``--val-every`` steps and keeps the export with the
best value in ``RUN/best``. Choose on a selection part (``clive-sel``), never on data a
figure is reported on: the evaluation part of a partition (``clive-eval``) is refused.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shamisa_bench.common.imageio import ImageReadError, load_image
from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.data.splits import make_splits
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.iqa.head import (
    FitConfig,
    extract_features,
    head_features,
    select_alpha,
)
from shamisa_bench.iqa.ridge import fit_ridge

__all__ = ["SupervisedGradient", "ValidationProbe", "ValidationResult", "open_probe"]


@dataclass(frozen=True)
class ValidationResult:
    """One validation measurement.

    Attributes:
        srcc: median validation SRCC over the divisions, at the chosen alpha.
        alpha: the chosen alpha.
        n_images: images measured (train and val parts of the dataset split).
        n_divisions: train/validation divisions.
        seconds: wall time of the measurement.
    """

    srcc: float
    alpha: float
    n_images: int
    n_divisions: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "val_srcc": round(self.srcc, 6),
            "val_alpha": self.alpha,
            "val_n_images": self.n_images,
            "val_divisions": self.n_divisions,
            "val_s": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class SupervisedGradient:
    """The encoder gradient of the probe's own squared error: the direction labels ask for.

    Attributes:
        mean: flat gradient, over all the probe's images, of ``0.5 (head(f(x)) - mos)^2``
            with respect to the given parameters, the ridge head held fixed.
        halves: the same over two disjoint random halves of the images.
        alpha: the head's ridge alpha (chosen as the probe chooses it).
        rmse: the head's root mean squared error on the images (in MOS units).
        n_images: images used.
    """

    mean: torch.Tensor
    halves: tuple[torch.Tensor, torch.Tensor]
    alpha: float
    rmse: float
    n_images: int


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode, then every submodule back in its own mode.

    Not ``module.train(was_training)``: that would set every submodule alike, and turn on
    the batch statistics of BatchNorm layers a run keeps frozen (``freeze_bn``, frozen
    stages) inside a module in train mode.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


class ValidationProbe:
    """Ridge-probe validation SRCC of an encoder on one split of a registered dataset.

    Args:
        dataset: registry name (e.g. ``clive-sel``); an evaluation part is refused.
        data_root: folder holding the datasets.
        split_seed: seed of the dataset split whose train and val parts are used.
        feature_mode: how features are extracted (``whole`` or ``crops5``), as the harness evaluates.
        cache_dir: cache folder (only the built ``demo`` dataset lives there).
        device: where features are computed (None: wherever the encoder's weights are).
        n_divisions: random train/validation divisions of the images.
        val_fraction: share of the images in each division's validation part.
        registry: registry folder (default: the shipped one).

    Raises:
        ValueError: unknown dataset, or fewer than 5 readable images.
        shamisa_bench.harness.data.DatasetNotFoundError: the dataset is not under ``data_root``.
    """

    def __init__(
        self,
        dataset: str,
        data_root: Path | str | None = None,
        *,
        split_seed: int = 0,
        feature_mode: str = "whole",
        cache_dir: Path | str | None = None,
        device: str | torch.device | None = None,
        n_divisions: int = 10,
        val_fraction: float = 0.2,
        registry: Path | str | None = None,
    ) -> None:
        spec = load_registry(registry).dataset(dataset)
        if spec.partition is not None and spec.partition["part"] == "evaluation":
            raise ValueError(
                f"{dataset} is the evaluation part of {spec.partition['of']}: reported figures are measured "
                "there, so nothing may be chosen on it; validate on its selection part (e.g. clive-sel)"
            )
        table = load_dataset(spec, data_root, cache_dir=cache_dir)
        split = make_splits(table, split_seed)
        self.dataset = dataset
        self.feature_mode = feature_mode
        self.device = torch.device(device) if device is not None else None
        self.split_hash = split.hash
        self.skipped: list[tuple[str, str]] = []
        frame = table.frame
        self._images: list[torch.Tensor] = []
        mos: list[float] = []
        groups: list[str] = []
        for i in np.concatenate([split.train, split.val]):
            path = frame["image"].iloc[int(i)]
            try:
                image = load_image(path)
            except ImageReadError as err:
                self.skipped.append((str(path), str(err)))
                continue
            self._images.append((image * 255).round().to(torch.uint8))  # 4x less memory than float
            mos.append(float(frame["mos"].iloc[int(i)]))
            groups.append(str(frame["ref"].iloc[int(i)]))
        if len(self._images) < 5:
            raise ValueError(f"validation dataset {dataset!r}: only {len(self._images)} readable images")
        self._mos = np.asarray(mos, dtype=np.float64)
        self._groups = groups
        self._fit = FitConfig(n_splits=n_divisions, val_fraction=val_fraction, seed=split_seed)

    def _device(self, encoder: torch.nn.Module) -> torch.device:
        return self.device if self.device is not None else next(encoder.parameters()).device

    def _features(self, encoder: torch.nn.Module) -> np.ndarray:
        """The probe images' two-scale features (the encoder already in eval mode)."""
        return extract_features(encoder, (im.float() / 255 for im in self._images), feature_mode=self.feature_mode,
                                device=self._device(encoder))

    def __call__(self, encoder: torch.nn.Module) -> ValidationResult:
        """Measures ``encoder`` (left in the train/eval mode it came in)."""
        t0 = time.perf_counter()
        with _eval_mode(encoder):
            feats = self._features(encoder)
        index, alpha, medians, n_divisions = select_alpha(
            feats.astype(np.float64), self._mos, self._fit, self._groups
        )
        return ValidationResult(
            srcc=float(medians[index]),
            alpha=alpha,
            n_images=len(self._images),
            n_divisions=n_divisions,
            seconds=time.perf_counter() - t0,
        )


    def supervised_gradient(
        self, encoder: torch.nn.Module, params: list[torch.Tensor], *, seed: int = 0
    ) -> SupervisedGradient:
        """The gradient the labels ask of ``params``: the probe's squared error, its head held fixed.

        The ridge head is fit on every image of the probe, its alpha chosen as :meth:`__call__`
        chooses it; then each image's ``0.5 (prediction - mos)^2`` is differentiated through
        the encoder (in eval mode, as features are extracted) with respect to ``params``.
        The halves are drawn by a ``torch.Generator`` seeded with ``seed``. These are the
        labels of the split's train and val parts: a direction to compare other directions
        with, not one to train on. With feature mode ``whole`` (one row per image, the
        default) it is exactly the gradient of the refit head's optimum (envelope theorem);
        with ``crops5`` the head is fit on crop rows and the error read on averaged
        predictions, so it is that gradient only approximately.

        Raises:
            ValueError: ``params`` is empty.
        """
        if not params:
            raise ValueError("no parameters to differentiate")
        device = self._device(encoder)
        with _eval_mode(encoder):
            feats = self._features(encoder).astype(np.float64)
            _, alpha, _, _ = select_alpha(feats, self._mos, self._fit, self._groups)
            n, k, dim = feats.shape
            fit = fit_ridge(feats.reshape(-1, dim), np.repeat(self._mos, k), alpha)
            weight = torch.as_tensor(fit.weight, dtype=torch.float32, device=device)
            pred = feats.reshape(-1, dim) @ fit.weight + fit.bias
            rmse = float(np.sqrt(np.mean((pred.reshape(n, k).mean(axis=1) - self._mos) ** 2)))
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            half_of = torch.zeros(n, dtype=torch.long)
            half_of[order[n // 2:]] = 1
            sums = [torch.zeros(sum(p.numel() for p in params)) for _ in range(2)]
            for i, image in enumerate(self._images):
                out = head_features(encoder, (image.float() / 255).to(device), self.feature_mode)
                residual = (out.float() @ weight).mean() + fit.bias - float(self._mos[i])
                grads = torch.autograd.grad(0.5 * residual**2, params, allow_unused=True)
                sums[int(half_of[i])] += torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().cpu()
                                                    for g, p in zip(grads, params, strict=True)])
        counts = [int((half_of == h).sum()) for h in (0, 1)]
        return SupervisedGradient(
            mean=(sums[0] + sums[1]) / n,
            halves=(sums[0] / counts[0], sums[1] / counts[1]),
            alpha=alpha,
            rmse=rmse,
            n_images=n,
        )


def open_probe(dataset: str, data_root: Path | str | None, *, option: str, **kwargs: Any) -> ValidationProbe:
    """A :class:`ValidationProbe` for a command line option, its skips reported on stderr.

    Args:
        dataset: registry name.
        data_root: folder holding the datasets.
        option: the option that named the dataset (e.g. ``--val-dataset``), for messages.
        **kwargs: passed to :class:`ValidationProbe`.

    Raises:
        ValueError: the dataset is unknown, missing or unreadable; the message names ``option``.
    """
    try:
        probe = ValidationProbe(dataset, data_root, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{option} {dataset}: {err}") from err
    if probe.skipped:
        print(f"{option} {dataset}: skipped {len(probe.skipped)} unreadable images, e.g. {probe.skipped[0][0]}: "
              f"{probe.skipped[0][1]}", file=sys.stderr)
    return probe
