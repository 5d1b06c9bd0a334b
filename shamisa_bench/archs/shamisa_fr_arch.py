r"""SHAMISA's full-reference extension as a pyiqa architecture (metric ``shamisa-fr``).

The frozen SHAMISA encoder reads the distorted image and its reference at full and x0.5
scale; the pair's feature is ``u = |h_ref - h_dist|`` (:mod:`shamisa_bench.iqa.fr`).
``m(dist, ref)`` returns one score per pair in [0, 1], **lower is better**, 0 = the
encoder sees no difference from the reference:

* **distance** (the default, and what runs offline: no human full-reference labels ship
  with the package): the mean over the two scales of ``(1 - cos(h_ref, h_dist)) / 2``;
* **head** (a head from ``shamisa-bench fit-head --fr``, given by ``head_path=`` or
  ``$SHAMISA_FR_HEAD``): the quality drop the head predicts from ``u``, as a share of the
  head's label range: ``1 - q`` where ``q`` in [0, 1] is the predicted quality (1 = the
  best label). The FR head has no intercept, so ``u = 0`` predicts the best label.

An identical pair scores exactly 0 in both modes. Both images must have the same height
and width (a pixel-aligned pair); another size is refused with a ``ValueError``, never
resized. Inputs go through the loader of the ``shamisa`` metric
(:meth:`shamisa_bench.archs.shamisa_arch.SHAMISA.prepare_inputs`, the same function): files,
image bytes, PIL images and float tensors in [0, 1], with the same checks.

The encoder is found as the ``shamisa`` metric finds it: ``pretrained_model_path=``, then
``$SHAMISA_ENCODER``, then ``$TORCH_HOME/shamisa/encoder``, then the export shipped in the
package. The head must have been fit on that encoder (checked by ``encoder_sha256``), and a
no-reference head is refused (and the ``shamisa`` metric refuses an FR head).
:attr:`SHAMISAFR.mode` says which of the two scores runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shamisa_bench.archs.shamisa_arch import SHAMISA, check_images
from shamisa_bench.iqa.fr import encode_pair, feature_distance, load_fr_head, pair_difference
from shamisa_bench.iqa.head import DEFAULT_MIN_SIZE, HeadError, QualityHead, QualityHeadModule
from shamisa_bench.iqa.weights import (
    ENCODER_ENV,
    ENCODER_SUBDIR,
    WeightsNotFoundError,
    cache_dir,
    shipped_dir,
)
from shamisa_bench.model.export import load_encoder_export
from shamisa_bench.model.features import check_feature_mode

__all__ = ["FR_HEAD_ENV", "SHAMISAFR", "resolve_encoder"]

FR_HEAD_ENV = "SHAMISA_FR_HEAD"
"""Environment variable naming a full-reference head file (``fit-head --fr``)."""


def resolve_encoder(
    pretrained_model_path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """The encoder export, in the ``shamisa`` metric's order; ``(path, source)``.

    Raises:
        WeightsNotFoundError: A named path is missing, or nothing was found (lists the places).
    """
    env = os.environ if environ is None else environ
    for source, value in (("keyword", pretrained_model_path), ("env", env.get(ENCODER_ENV) or None)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.exists():
                what = "pretrained_model_path=" if source == "keyword" else f"${ENCODER_ENV}="
                raise WeightsNotFoundError(f"SHAMISA encoder export: {what}{str(value)!r} does not exist")
            return path, source
    places = [("cache", cache_dir(env) / ENCODER_SUBDIR), ("shipped", shipped_dir() / ENCODER_SUBDIR)]
    for source, path in places:
        if path.exists():
            return path, source
    raise WeightsNotFoundError(
        "no SHAMISA encoder export found. Looked at: pretrained_model_path=, "
        f"${ENCODER_ENV}, {', '.join(str(p) for _, p in places)}. Pretrain one with "
        "`shamisa-bench pretrain --images DIR --out RUN` and pass pretrained_model_path='RUN/export'"
    )


class SHAMISAFR(nn.Module):
    """SHAMISA full-reference metric (pyiqa arch ``SHAMISAFR``, metric ``shamisa-fr``).

    Args:
        pretrained_model_path: Encoder export folder (or its config.json); None = resolve.
        head_path: FR head file (``fit-head --fr``); None = ``$SHAMISA_FR_HEAD``, and when
            that is unset too, no head: the feature distance.
        feature_mode: None = the head's, or ``whole`` without a head.
        crop_size: Crop side for ``crops5``; None = the head's (224).
        min_size: Zero-pad small images to this side; None = the head's (224).
        environ: Environment for the lookups (default ``os.environ``).

    Attributes:
        mode: ``"distance"`` or ``"head"``, the score this instance computes.
        head_info: The :class:`~shamisa_bench.iqa.head.QualityHead`, or None.
        encoder_path, head_path: Where the weights came from (``head_path`` None without head).
        check_input_range: Refuse values outside [0, 1] (pyiqa's ``check_input_range``).

    Raises:
        WeightsNotFoundError: No encoder export, or a named head file is missing.
        shamisa_bench.iqa.head.HeadError: A no-reference or invalid head, or one fit on
            another encoder or feature width.
    """

    # The one input loader of the SHAMISA metrics: the same function as SHAMISA's.
    prepare_inputs = SHAMISA.prepare_inputs

    def __init__(
        self,
        pretrained_model_path: str | os.PathLike[str] | None = None,
        head_path: str | os.PathLike[str] | None = None,
        feature_mode: str | None = None,
        crop_size: int | None = None,
        min_size: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        env = os.environ if environ is None else environ
        self.encoder_path, self.encoder_source = resolve_encoder(pretrained_model_path, env)
        if head_path is None and env.get(FR_HEAD_ENV):
            head_path = env[FR_HEAD_ENV]
        if head_path is not None and not Path(head_path).expanduser().exists():
            raise WeightsNotFoundError(f"SHAMISA FR head: {str(head_path)!r} does not exist")
        self.head_path = None if head_path is None else Path(head_path).expanduser()
        head = None if self.head_path is None else load_fr_head(self.head_path)
        encoder = load_encoder_export(self.encoder_path).eval().requires_grad_(False)
        if head is not None and head.encoder_sha256 is not None and head.encoder_sha256 != encoder.weights_sha256:
            raise HeadError(
                f"{self.head_path}: FR head was fit on encoder weights {head.encoder_sha256[:12]}... but the encoder "
                f"at {self.encoder_path} has {encoder.weights_sha256[:12]}...; pass the matching "
                "pretrained_model_path=, or refit with shamisa-bench fit-head --fr"
            )
        default_mode = head.feature_mode if head is not None else "whole"
        self.feature_mode = check_feature_mode(default_mode if feature_mode is None else feature_mode)
        self.crop_size = int(crop_size) if crop_size is not None else (head.crop_size if head else 224)
        self.min_size = int(min_size) if min_size is not None else (head.min_size if head else DEFAULT_MIN_SIZE)
        self.encoder = encoder
        self.head_info: QualityHead | None = head
        self.head = QualityHeadModule(head) if head is not None else None
        self.mode = "head" if head is not None else "distance"
        self.check_input_range = True
        if head is not None:
            with torch.no_grad():  # the feature width of this mode, measured once on a blank image
                width = encode_pair(encoder, torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64),
                                    self.feature_mode, self.crop_size, self.min_size)[0].shape[-1]
            if width != head.dim:
                raise HeadError(
                    f"{self.head_path}: FR head expects {head.dim}-d {head.feature_mode!r} pair features but the "
                    f"{encoder.backbone} encoder gives {width}-d {self.feature_mode!r} features"
                )

    def forward(self, dist: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Score pairs.

        Args:
            dist: Distorted images (N, C, H, W) or (C, H, W), float in [0, 1], C in {1, 3, 4}.
            ref: Their references, the same size.

        Returns:
            (N, 1) scores in [0, 1], lower is better (0 = no difference seen); differentiable.

        Raises:
            TypeError, ValueError: Missing reference, bad tensors (as the ``shamisa`` metric),
                or a pair of different sizes.
        """
        if ref is None:
            raise ValueError("shamisa-fr is a full-reference metric: call it as m(distorted, reference)")
        dist = dist.unsqueeze(0) if isinstance(dist, torch.Tensor) and dist.dim() == 3 else dist
        ref = ref.unsqueeze(0) if isinstance(ref, torch.Tensor) and ref.dim() == 3 else ref
        check_images(dist, check_range=self.check_input_range)
        check_images(ref, check_range=self.check_input_range)
        f_dist, f_ref = encode_pair(self.encoder, dist.float(), ref.float(), self.feature_mode, self.crop_size,
                                    self.min_size)
        if self.head is None:
            return feature_distance(f_dist, f_ref).unsqueeze(1)
        return self.quality_drop(pair_difference(f_dist, f_ref)).unsqueeze(1)

    def quality_drop(self, u: torch.Tensor) -> torch.Tensor:
        """The head's predicted drop from the best label, as a share of its label range, in [0, 1].

        ``w . ((u - mean) / std)`` without the bias (the head's bias is the best label), so
        ``u = 0`` gives exactly 0. The clip is straight-through for gradients.

        Args:
            u: (N, K, F) pair features.

        Returns:
            (N,).
        """
        if self.head is None or self.head_info is None:
            raise RuntimeError("quality_drop needs an FR head")
        z = (u - self.head.feature_mean) / self.head.feature_std
        delta = F.linear(z, self.head.linear.weight).squeeze(-1).mean(dim=1)  # mos - best
        lo, hi = self.head_info.mos_range
        drop = (delta if self.head_info.lower_better else -delta) / (hi - lo)
        return drop + (drop.clamp(0.0, 1.0) - drop).detach() + 0.0

    def train(self, mode: bool = True) -> SHAMISAFR:
        """Set the mode; the frozen encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def extra_repr(self) -> str:
        head = "none (feature distance)" if self.head_info is None else f"{self.head_path} ({self.head_info.dataset})"
        return (f"mode={self.mode!r}, backbone={self.encoder.backbone!r}, feature_mode={self.feature_mode!r}, "
                f"head={head}, lower_better=True")
