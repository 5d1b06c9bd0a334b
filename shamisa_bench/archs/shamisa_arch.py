r"""SHAMISA as a pyiqa architecture: frozen two-scale encoder + ridge head, score in [0, 1].

SHAMISA: SHAped Modeling of Implicit Structural Associations for Self-supervised
No-Reference Image Quality Assessment.

@article{naseri2026shamisa,
  title={SHAMISA: SHAped Modeling of Implicit Structural Associations for Self-supervised
         No-Reference Image Quality Assessment},
  author={Naseri and Wang},
  journal={arXiv preprint arXiv:2603.13669},
  year={2026}
}

Reference:
    - Arxiv link: https://arxiv.org/abs/2603.13669
    - This implementation: shamisa-bench (our own code; no reference code is used).

The shipped ``shamisa`` (its card: ``shamisa_bench/weights/README.md``) is a CPU-trained
SHAMISA-Lite, not the paper's model: an EfficientNet-Lite0 from its ImageNet weights,
pretrained with the SHAMISA objective for 20 ``lite`` steps on 324 pristine images, chosen by
a rule fixed in advance on the ``clive-sel`` images and tested once on ``clive-eval``. Its head
reads the ``multilevel`` features, a read-out beyond the paper's (``feature_mode='whole'``
with a ``whole`` head is the paper's). On ``clive-eval`` it scores a median SRCC of 0.773
against 0.769 for its ImageNet start read out the same way, a paired difference of +0.006
[-0.0004, +0.017]: at this scale the self-supervision's gain is not measurable. The paper's
model needs ``shamisa-bench pretrain --preset a0`` on GPUs.

Pipeline (``SHAMISA.forward``): images (N, C, H, W) in [0, 1] -> RGB, sides zero-padded to
the head's ``min_size`` (224; :func:`shamisa_bench.iqa.head.prepare_images`) -> frozen encoder
features at full and x0.5 scale, per ``feature_mode`` -> ridge head -> MOS -> [0, 1],
higher-better, through the head's ``mos_range`` and ``lower_better``, clipped
(:func:`shamisa_bench.iqa.head.scale_mos`; straight-through for gradients).

Feature modes (``feature_mode=`` keyword, formerly ``protocol=``, still accepted; default: the
mode the head was fit with):

* ``whole`` (the default of ``fit-head``, hence of shipped heads): the whole image at
  native size and at x0.5. Chosen as the default because it is what pyiqa's ARNIQA and
  CONTRIQUE do, every pixel contributes (so ``as_loss`` gradients cover the whole image),
  and it costs exactly one encoder pass per scale.
* ``crops5`` (the paper's reference mode): centre + four corner ``crop_size`` crops per
  scale, crop predictions averaged. Bounded memory on very large images.
* ``multilevel`` (beyond the paper's read-out): the whole image at both scales, as
  ``whole``, read out as ``h`` plus the spatial mean and standard deviation of every channel
  of every encoder stage (:meth:`shamisa_bench.model.Encoder.multilevel`); the head
  standardises each feature. One encoder pass per scale, as ``whole``. A head of another
  feature width than the chosen mode's is refused.

Weights = an encoder export (``shamisa-bench pretrain`` writes one in ``RUN/export``) plus a
head file (``shamisa-bench fit-head``). Each is resolved on its own, first match wins:

1. the explicit keyword: ``pretrained_model_path=`` (export folder or its config.json),
   ``head_path=`` (head file);
2. the environment variables :data:`ENCODER_ENV` (``SHAMISA_ENCODER``) and
   :data:`HEAD_ENV` (``SHAMISA_HEAD``; consulted for the default head only: a
   ``shamisa-<dataset>`` metric names its training set and never takes a head from it);
3. the cache ``$TORCH_HOME/shamisa/`` (``~/.cache/torch/shamisa/`` by default):
   ``encoder/`` (an export folder) and ``heads/<head_dataset>.pt``;
4. the same layout shipped inside the package, ``shamisa_bench/weights/``.

A keyword or environment variable that names a missing path is an error (it never falls
through to the next place). When nothing is found, :class:`WeightsNotFoundError` lists every
place looked at and the commands that make weights. Nothing is downloaded, ever. (The lookup
is :func:`shamisa_bench.iqa.weights.resolve_weights`, re-exported here with its constants.)

The head must have been fit on this encoder's features: its recorded ``encoder_sha256``
must equal the export's ``weights_sha256`` (checked when the head records one).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from shamisa_bench.common.imageio import ImageReadError, load_image, pil_to_tensor
from shamisa_bench.iqa.head import (
    MAX_SIDE,
    MIN_IMAGE_SIDE,
    HeadError,
    QualityHead,
    QualityHeadModule,
    head_features,
    load_head,
    scale_mos,
)
from shamisa_bench.iqa.weights import (
    DEFAULT_HEAD,
    ENCODER_ENV,
    ENCODER_SUBDIR,
    HEAD_ENV,
    HEADS_SUBDIR,
    ResolvedWeights,
    WeightsNotFoundError,
    cache_dir,
    resolve_weights,
    shipped_dir,
    shipped_head_datasets,
    torch_home,
)
from shamisa_bench.model.export import load_encoder_export
from shamisa_bench.model.features import check_feature_mode, feature_width

__all__ = [
    "DEFAULT_HEAD",
    "ENCODER_ENV",
    "ENCODER_SUBDIR",
    "HEADS_SUBDIR",
    "HEAD_ENV",
    "SHAMISA",
    "ResolvedWeights",
    "WeightsNotFoundError",
    "cache_dir",
    "check_images",
    "resolve_weights",
    "shipped_dir",
    "shipped_head_datasets",
    "torch_home",
]

_RANGE_EPS = 1e-6  # pyiqa's tolerance for [0, 1]


def check_images(x: object, check_range: bool = True) -> None:
    """Input checks of the SHAMISA metric, as real ``if`` tests (they hold under ``python -O``).

    Args:
        x: Candidate (N, C, H, W) float tensor.
        check_range: Also refuse values outside [0, 1] (tolerance 1e-6, as pyiqa's check).

    Raises:
        TypeError: Not a tensor, or not floating point (a uint8 tensor must be divided by 255).
        ValueError: Not 4-D, a channel count other than 1, 3 or 4, a tensor on the meta
            device, NaN or infinite values, or (``check_range``) values outside [0, 1], e.g.
            a [0, 255] image.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got dtype {x.dtype} (divide uint8 by 255)")
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] not in (1, 3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(x.shape)}")
    if x.device.type == "meta":  # shapes without values: nothing to score
        raise ValueError(f"images are on the meta device (shape {tuple(x.shape)}): a meta tensor has no "
                         "pixel values to score; give the images on the cpu or a GPU")
    detached = x.detach()
    if not bool(torch.isfinite(detached).all()):
        raise ValueError("images contain NaN or infinite pixel values")
    if check_range:
        lo, hi = float(detached.min()), float(detached.max())
        if lo < -_RANGE_EPS or hi > 1.0 + _RANGE_EPS:
            raise ValueError(
                f"images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                + (" (divide [0, 255] images by 255)" if hi > 1.5 else "")
            )


class SHAMISA(nn.Module):
    """SHAMISA no-reference quality metric (pyiqa arch ``SHAMISA``).

    Args:
        pretrained_model_path: Encoder export folder (or its config.json); None = resolve.
        head_path: Head file; None = resolve by ``head_dataset``.
        head_dataset: Name of the head to resolve (``default`` for the ``shamisa`` metric,
            the training set for ``shamisa-<dataset>``).
        feature_mode: ``whole``, ``crops5`` or ``multilevel``; None = the head's. Switching
            between ``whole`` and ``crops5`` is allowed but warned about (feature statistics
            differ); a mode of another feature width than the head's is refused.
        crop_size: Crop side for ``crops5``; None = the head's.
        min_size: Zero-pad small images to this side; None = the head's (224).
        environ: Environment for the resolver (default ``os.environ``).
        protocol: The former name of ``feature_mode``, still accepted.

    Through ``pyiqa.create_metric``, inputs go through :meth:`prepare_inputs` (our image
    loader and checks) instead of pyiqa's loader and ``assert`` checks
    (:mod:`shamisa_bench.iqa.plugin`).

    Attributes:
        encoder: The frozen :class:`shamisa_bench.model.Encoder`.
        head: The frozen :class:`shamisa_bench.iqa.head.QualityHeadModule`.
        head_info: The loaded :class:`shamisa_bench.iqa.head.QualityHead` (metadata).
        weights: The :class:`ResolvedWeights` used.
        check_input_range: Whether :meth:`forward` refuses values outside [0, 1] (True;
            pyiqa's ``check_input_range=False`` and ``as_loss=True`` turn it off).

    Raises:
        WeightsNotFoundError: No weights (see :func:`resolve_weights`).
        shamisa_bench.model.ExportError: The export is invalid.
        shamisa_bench.iqa.head.HeadError: The head is invalid or does not fit the encoder.
        ValueError: Unknown feature mode, or ``feature_mode`` and ``protocol`` disagree.
    """

    def __init__(
        self,
        pretrained_model_path: str | os.PathLike[str] | None = None,
        head_path: str | os.PathLike[str] | None = None,
        head_dataset: str = DEFAULT_HEAD,
        feature_mode: str | None = None,
        crop_size: int | None = None,
        min_size: int | None = None,
        environ: Mapping[str, str] | None = None,
        protocol: str | None = None,
    ) -> None:
        super().__init__()
        if protocol is not None:
            if feature_mode is not None and feature_mode != protocol:
                raise ValueError(
                    f"feature_mode={feature_mode!r} and protocol={protocol!r} disagree; pass feature_mode only "
                    "(protocol is its former name)"
                )
            feature_mode = protocol

        self.weights = resolve_weights(pretrained_model_path, head_path, head_dataset, environ=environ)
        head = load_head(self.weights.head)
        encoder = load_encoder_export(self.weights.encoder)
        if head.dim != feature_width(encoder, head.feature_mode):
            raise HeadError(
                f"{self.weights.head}: head expects {head.dim}-d {head.feature_mode!r} features but the "
                f"{encoder.backbone} encoder at {self.weights.encoder} gives "
                f"{feature_width(encoder, head.feature_mode)}-d two-scale {head.feature_mode!r} features"
            )
        if head.encoder_sha256 is not None and head.encoder_sha256 != encoder.weights_sha256:
            raise HeadError(
                f"{self.weights.head}: head was fit on encoder weights {head.encoder_sha256[:12]}... but the "
                f"encoder at {self.weights.encoder} ({self.weights.encoder_source}) has {encoder.weights_sha256[:12]}...; "
                "pass the matching pretrained_model_path= / head_path=, or refit with shamisa-bench fit-head"
            )
        self.feature_mode = check_feature_mode(head.feature_mode if feature_mode is None else feature_mode)
        if feature_width(encoder, self.feature_mode) != head.dim:
            raise HeadError(
                f"{self.weights.head} is a {head.feature_mode!r} head ({head.dim}-d features); "
                f"feature_mode={self.feature_mode!r} gives {feature_width(encoder, self.feature_mode)}-d "
                f"features. Use feature_mode={head.feature_mode!r}, or a head fit with "
                f"`shamisa-bench fit-head --feature-mode {self.feature_mode}`"
            )
        if self.feature_mode != head.feature_mode:
            warnings.warn(
                f"SHAMISA head {self.weights.head} was fit on {head.feature_mode!r} features; scoring with "
                f"{self.feature_mode!r} features shifts the predictions",
                UserWarning,
                stacklevel=2,
            )
        self.crop_size = head.crop_size if crop_size is None else int(crop_size)
        self.min_size = head.min_size if min_size is None else int(min_size)
        self.head_info: QualityHead = head
        self.check_input_range = True  # refuse values outside [0, 1]; pyiqa's check_input_range sets it
        self.encoder = encoder.eval().requires_grad_(False)
        self.head = QualityHeadModule(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images.

        Args:
            x: (N, C, H, W) or (C, H, W) float in [0, 1], C in {1, 3, 4}; sides >= 32 (smaller sides
                are zero-padded to ``min_size``; a longer side above 1024 is downscaled to
                1024, see :func:`shamisa_bench.iqa.head.prepare_images`).

        Returns:
            (N, 1) scores in [0, 1], higher is better; differentiable w.r.t. ``x``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: Wrong shape, NaN or infinite values, values outside [0, 1] (when
                ``check_input_range``), or images smaller than 32 pixels on a side.
        """
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            x = x.unsqueeze(0)  # one (C, H, W) image
        check_images(x, check_range=self.check_input_range)
        dtype = self.head.feature_mean.dtype
        feats = head_features(self.encoder, x.to(dtype), self.feature_mode, self.crop_size, self.min_size)
        mos = self.head(feats.to(dtype))
        return scale_mos(mos, self.head_info.mos_range, self.head_info.lower_better).unsqueeze(1)

    def prepare_inputs(self, target: object, check_range: bool = True) -> torch.Tensor:
        """What pyiqa's ``create_metric('shamisa...')`` calls instead of its own loader and asserts.

        Files (``str`` / ``os.PathLike``) are read with :func:`shamisa_bench.common.imageio.load_image`
        and PIL images converted with :func:`shamisa_bench.common.imageio.pil_to_tensor`, as the
        harness reads images: 16-bit PNGs and ``I;16`` images are scaled by 65535, never
        clipped at 255, and errors name the file. Tensors are checked with real ``if`` tests
        (they hold under ``python -O``).

        Args:
            target: Image file path, ``bytes`` of an image file, PIL image, or (N, C, H, W)
                tensor in [0, 1].
            check_range: Refuse tensor values outside [0, 1] (pyiqa's ``check_input_range``).

        Returns:
            (N, C, H, W) float tensor.
        """
        if isinstance(target, (str, os.PathLike)):
            # Decoded straight to at most MAX_SIDE (the same values prepare_images would give),
            # so a 48 MP photo never exists as a full-size float image.

            x = load_image(target, max_side=MAX_SIDE, min_side=MIN_IMAGE_SIDE).unsqueeze(0)
        elif isinstance(target, (bytes, bytearray)):
            try:
                with Image.open(io.BytesIO(target)) as img:
                    x = pil_to_tensor(img, "image bytes").unsqueeze(0)
            except UnidentifiedImageError:
                raise ImageReadError("image bytes: not a readable image (unknown or corrupt format)") from None
        elif torch.is_tensor(target):
            x = target
        else:
            if not isinstance(target, Image.Image):
                raise TypeError(
                    f"SHAMISA scores an image file path, image bytes, a PIL image or a (N, C, H, W) tensor, "
                    f"got {type(target).__name__}"
                )
            x = pil_to_tensor(target).unsqueeze(0)
        if x.dim() == 3:
            x = x.unsqueeze(0)  # one (C, H, W) image
        check_images(x, check_range=check_range)
        return x

    def train(self, mode: bool = True) -> SHAMISA:
        """Set the mode; the frozen encoder stays in eval mode (BatchNorm statistics never change)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def extra_repr(self) -> str:
        info = self.head_info
        return (
            f"backbone={self.encoder.backbone!r}, head_dataset={info.dataset!r}, feature_mode={self.feature_mode!r}, "
            f"mos_range={info.mos_range}, lower_better={info.lower_better}"
        )
