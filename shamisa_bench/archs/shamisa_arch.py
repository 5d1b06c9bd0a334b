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

Pipeline (``SHAMISA.forward``): images (N, C, H, W) in [0, 1] -> RGB, sides zero-padded to
the head's ``min_size`` (224; :func:`shamisa_bench.heads.prepare_images`) -> frozen encoder
features at full and x0.5 scale, per ``protocol`` -> ridge head -> MOS -> [0, 1],
higher-better, through the head's ``mos_range`` and ``lower_better``, clipped
(:func:`shamisa_bench.heads.scale_mos`; straight-through for gradients).

Protocols (``protocol=`` keyword; default: the protocol the head was fit with):

* ``whole`` (the default of ``fit-head``, hence of shipped heads): the whole image at
  native size and at x0.5. Chosen as the default because it is what pyiqa's ARNIQA and
  CONTRIQUE do, every pixel contributes (so ``as_loss`` gradients cover the whole image),
  and it costs exactly one encoder pass per scale.
* ``crops5`` (the paper's reference protocol): centre + four corner ``crop_size`` crops per
  scale, crop predictions averaged. Bounded memory on very large images.

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
place looked at and the commands that make weights. Nothing is downloaded, ever.

The head must have been fit on this encoder's features: its recorded ``encoder_sha256``
must equal the export's ``weights_sha256`` (checked when the head records one).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shamisa_bench.heads import (
    QualityHead,
    RidgeHeadModule,
    head_features,
    load_head,
    scale_mos,
)

__all__ = [
    "DEFAULT_HEAD",
    "ENCODER_ENV",
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

ENCODER_ENV = "SHAMISA_ENCODER"
"""Environment variable naming an encoder export folder (or its config.json)."""

HEAD_ENV = "SHAMISA_HEAD"
"""Environment variable naming the default head file."""

DEFAULT_HEAD = "default"
"""``head_dataset`` of the ``shamisa`` metric: the head file ``heads/default.pt``."""

ENCODER_SUBDIR = "encoder"
HEADS_SUBDIR = "heads"
_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WeightsNotFoundError(FileNotFoundError):
    """No encoder export or head was found; the message says where we looked and what to do."""


def torch_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (torch's rule)."""
    env = os.environ if environ is None else environ
    if env.get("TORCH_HOME"):
        return Path(env["TORCH_HOME"]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "torch"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user weights folder, ``<torch_home>/shamisa``."""
    return torch_home(environ) / "shamisa"


def shipped_dir() -> Path:
    """The weights folder inside the package, ``shamisa_bench/weights``."""
    return Path(__file__).resolve().parent.parent / "weights"


def shipped_head_datasets() -> tuple[str, ...]:
    """Training sets of the heads shipped in the package (``weights/heads/<name>.pt``), sorted.

    The default head (``default.pt``) is not listed: it backs the plain ``shamisa`` metric.
    """
    folder = shipped_dir() / HEADS_SUBDIR
    if not folder.is_dir():
        return ()
    names = (p.stem for p in folder.glob("*.pt") if p.is_file())
    return tuple(sorted(n for n in names if n != DEFAULT_HEAD and _HEAD_NAME.match(n)))


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the metric's weights come from.

    Attributes:
        encoder: Export folder or config.json.
        head: Head file.
        encoder_source: ``keyword``, ``env``, ``cache`` or ``shipped``.
        head_source: Same, for the head.
    """

    encoder: Path
    head: Path
    encoder_source: str
    head_source: str


def _how_to_get(head_dataset: str, cache: Path) -> str:
    head_file = f"{HEADS_SUBDIR}/{head_dataset}.pt"
    return (
        "To get weights (nothing is downloaded automatically):\n"
        "  1. pretrain an encoder:   shamisa-bench pretrain --images PRISTINE_DIR --out RUN  (export in RUN/export)\n"
        "  2. fit a quality head:    shamisa-bench fit-head --encoder RUN/export --dataset NAME [--data-root DIR] "
        "--out HEAD.pt\n"
        "                            (or --csv LABELS.csv with columns image,mos)\n"
        "  3. point the metric at them, any one of:\n"
        "       pyiqa.create_metric('shamisa', pretrained_model_path='RUN/export', head_path='HEAD.pt')\n"
        f"       export {ENCODER_ENV}=RUN/export {HEAD_ENV}=HEAD.pt\n"
        f"       copy the export folder to {cache / ENCODER_SUBDIR} and the head to {cache / head_file}"
    )


def resolve_weights(
    pretrained_model_path: str | os.PathLike[str] | None = None,
    head_path: str | os.PathLike[str] | None = None,
    head_dataset: str = DEFAULT_HEAD,
    *,
    environ: Mapping[str, str] | None = None,
) -> ResolvedWeights:
    """Find the encoder export and the head (see the module docstring for the order).

    Args:
        pretrained_model_path: Explicit export folder or config.json.
        head_path: Explicit head file.
        head_dataset: Head to look up by name (``heads/<head_dataset>.pt``).
        environ: Environment to read (default ``os.environ``).

    Returns:
        The resolved paths and where each came from.

    Raises:
        ValueError: ``head_dataset`` is not a plain name.
        WeightsNotFoundError: A named path does not exist, or nothing was found.
    """
    if not isinstance(head_dataset, str) or not _HEAD_NAME.match(head_dataset):
        raise ValueError(f"head_dataset must be a plain name such as 'koniq10k', got {head_dataset!r}")
    env = os.environ if environ is None else environ
    cache = cache_dir(env)
    shipped = shipped_dir()
    hint = _how_to_get(head_dataset, cache)

    def pick(
        what: str,
        explicit: str | os.PathLike[str] | None,
        keyword: str,
        env_name: str | None,
        relative: str,
    ) -> tuple[Path, str]:
        looked: list[str] = []
        if explicit is not None:
            path = Path(explicit).expanduser()
            if path.exists():
                return path, "keyword"
            raise WeightsNotFoundError(f"SHAMISA {what}: {keyword}={str(explicit)!r} does not exist.\n{hint}")
        looked.append(f"{keyword}= (not given)")
        if env_name is not None:
            value = env.get(env_name)
            if value:
                path = Path(value).expanduser()
                if path.exists():
                    return path, "env"
                raise WeightsNotFoundError(f"SHAMISA {what}: ${env_name}={value!r} does not exist.\n{hint}")
            looked.append(f"${env_name} (not set)")
        for source, root in (("cache", cache), ("shipped", shipped)):
            path = root / relative
            if path.exists():
                return path, source
            note = "no weights ship with this installation" if source == "shipped" else "missing"
            looked.append(f"{path} ({note})")
        places = "\n  - ".join(looked)
        raise WeightsNotFoundError(f"no SHAMISA {what} found. Looked at:\n  - {places}\n{hint}")

    encoder, encoder_source = pick(
        "encoder export", pretrained_model_path, "pretrained_model_path", ENCODER_ENV, ENCODER_SUBDIR
    )
    head, head_source = pick(
        f"head {head_dataset!r}",
        head_path,
        "head_path",
        HEAD_ENV if head_dataset == DEFAULT_HEAD else None,
        f"{HEADS_SUBDIR}/{head_dataset}.pt",
    )
    return ResolvedWeights(encoder=encoder, head=head, encoder_source=encoder_source, head_source=head_source)


_RANGE_EPS = 1e-6  # pyiqa's tolerance for [0, 1]


def check_images(x: object, check_range: bool = True) -> None:
    """Input checks of the SHAMISA metric, as real ``if`` tests (they hold under ``python -O``).

    Args:
        x: Candidate (N, C, H, W) float tensor.
        check_range: Also refuse values outside [0, 1] (tolerance 1e-6, as pyiqa's check).

    Raises:
        TypeError: Not a tensor, or not floating point (a uint8 tensor must be divided by 255).
        ValueError: Not 4-D, a channel count other than 1, 3 or 4, NaN or infinite values,
            or (``check_range``) values outside [0, 1], e.g. a [0, 255] image.
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
        protocol: ``whole`` or ``crops5``; None = the head's. Using another protocol than
            the head was fit with is allowed but warned about (feature statistics differ).
        crop_size: Crop side for ``crops5``; None = the head's.
        min_size: Zero-pad small images to this side; None = the head's (224).
        environ: Environment for the resolver (default ``os.environ``).

    Through ``pyiqa.create_metric``, inputs go through :meth:`prepare_inputs` (our image
    loader and checks) instead of pyiqa's loader and ``assert`` checks
    (:mod:`shamisa_bench.pyiqa_plugin`).

    Attributes:
        encoder: The frozen :class:`shamisa_bench.model.Encoder`.
        head: The frozen :class:`shamisa_bench.heads.RidgeHeadModule`.
        head_info: The loaded :class:`shamisa_bench.heads.QualityHead` (metadata).
        weights: The :class:`ResolvedWeights` used.
        check_input_range: Whether :meth:`forward` refuses values outside [0, 1] (True;
            pyiqa's ``check_input_range=False`` and ``as_loss=True`` turn it off).

    Raises:
        WeightsNotFoundError: No weights (see :func:`resolve_weights`).
        shamisa_bench.model.ExportError: The export is invalid.
        shamisa_bench.heads.HeadError: The head is invalid or does not fit the encoder.
    """

    def __init__(
        self,
        pretrained_model_path: str | os.PathLike[str] | None = None,
        head_path: str | os.PathLike[str] | None = None,
        head_dataset: str = DEFAULT_HEAD,
        protocol: str | None = None,
        crop_size: int | None = None,
        min_size: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        from shamisa_bench.heads import HeadError
        from shamisa_bench.model.export import load_encoder_export

        self.weights = resolve_weights(pretrained_model_path, head_path, head_dataset, environ=environ)
        head = load_head(self.weights.head)
        encoder = load_encoder_export(self.weights.encoder)
        if head.dim != 2 * encoder.feature_dim:
            raise HeadError(
                f"{self.weights.head}: head expects {head.dim}-d features but the {encoder.backbone} encoder at "
                f"{self.weights.encoder} gives {2 * encoder.feature_dim}-d two-scale features"
            )
        if head.encoder_sha256 is not None and head.encoder_sha256 != encoder.weights_sha256:
            raise HeadError(
                f"{self.weights.head}: head was fit on encoder weights {head.encoder_sha256[:12]}... but the "
                f"encoder at {self.weights.encoder} ({self.weights.encoder_source}) has {encoder.weights_sha256[:12]}...; "
                "pass the matching pretrained_model_path= / head_path=, or refit with shamisa-bench fit-head"
            )
        self.protocol = head.protocol if protocol is None else protocol
        if self.protocol not in ("whole", "crops5"):
            raise ValueError(f"unknown protocol {self.protocol!r}; choose whole or crops5")
        if self.protocol != head.protocol:
            warnings.warn(
                f"SHAMISA head {self.weights.head} was fit on {head.protocol!r} features; scoring with "
                f"{self.protocol!r} features shifts the predictions",
                UserWarning,
                stacklevel=2,
            )
        self.crop_size = head.crop_size if crop_size is None else int(crop_size)
        self.min_size = head.min_size if min_size is None else int(min_size)
        self.head_info: QualityHead = head
        self.check_input_range = True  # refuse values outside [0, 1]; pyiqa's check_input_range sets it
        self.encoder = encoder.eval().requires_grad_(False)
        self.head = RidgeHeadModule(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score images.

        Args:
            x: (N, C, H, W) or (C, H, W) float in [0, 1], C in {1, 3, 4}; sides >= 32 (smaller sides
                are zero-padded to ``min_size``; a longer side above 1024 is downscaled to
                1024, see :func:`shamisa_bench.heads.prepare_images`).

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
        feats = head_features(self.encoder, x.to(dtype), self.protocol, self.crop_size, self.min_size)
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
        from shamisa_bench.common.imageio import load_image, pil_to_tensor

        if isinstance(target, (str, os.PathLike)):
            # Decoded straight to at most MAX_SIDE (the same values prepare_images would give),
            # so a 48 MP photo never exists as a full-size float image.
            from shamisa_bench.heads import MAX_SIDE

            x = load_image(target, max_side=MAX_SIDE).unsqueeze(0)
        elif isinstance(target, (bytes, bytearray)):
            import io

            from PIL import Image, UnidentifiedImageError

            from shamisa_bench.common.imageio import ImageReadError

            try:
                with Image.open(io.BytesIO(target)) as img:
                    x = pil_to_tensor(img, "image bytes").unsqueeze(0)
            except UnidentifiedImageError:
                raise ImageReadError("image bytes: not a readable image (unknown or corrupt format)") from None
        elif torch.is_tensor(target):
            x = target
        else:
            from PIL import Image

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
            f"backbone={self.encoder.backbone!r}, head_dataset={info.dataset!r}, protocol={self.protocol!r}, "
            f"mos_range={info.mos_range}, lower_better={info.lower_better}"
        )
