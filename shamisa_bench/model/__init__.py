"""SHAMISA model: encoder backbones, projector, encoder-only export, two-scale features.

The public names are importable from here; submodules are imported lazily on first
attribute access, so ``import shamisa_bench.model`` (e.g. by the CLI) does not pull in
torch.

Typical use::

    from shamisa_bench.model import build_encoder, encode_two_scale, load_encoder_export

    encoder = load_encoder_export("runs/a0/export").eval()
    with torch.no_grad():
        feats = encode_two_scale(encoder, images, protocol="whole")  # (N, 1, 2 * D)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # backbones
    "BACKBONES": "backbones",
    "INITS": "backbones",
    "MIN_INPUT_SIZE": "backbones",
    "BackboneSpec": "backbones",
    "Encoder": "backbones",
    "WeightsUnavailableError": "backbones",
    "backbone_spec": "backbones",
    "build_encoder": "backbones",
    "efficientnet_lite0_imagenet_state_dict": "backbones",
    "fetch_imagenet_weights": "backbones",
    "torchvision_weights_path": "backbones",
    # projector
    "Projector": "projector",
    "ShamisaModel": "projector",
    "build_model": "projector",
    "projector_dims": "projector",
    # export
    "EncoderExport": "export",
    "ExportError": "export",
    "load_encoder_export": "export",
    "read_encoder_export": "export",
    "save_encoder_export": "export",
    "sha256_file": "export",
    # features
    "CROP_NAMES": "features",
    "PROTOCOLS": "features",
    "SCALES": "features",
    "encode_two_scale": "features",
    "five_crop_boxes": "features",
    "five_crops": "features",
    "half_scale": "features",
}

__all__ = [
    "BACKBONES",
    "CROP_NAMES",
    "INITS",
    "MIN_INPUT_SIZE",
    "PROTOCOLS",
    "SCALES",
    "BackboneSpec",
    "Encoder",
    "EncoderExport",
    "ExportError",
    "Projector",
    "ShamisaModel",
    "WeightsUnavailableError",
    "backbone_spec",
    "build_encoder",
    "build_model",
    "efficientnet_lite0_imagenet_state_dict",
    "encode_two_scale",
    "fetch_imagenet_weights",
    "five_crop_boxes",
    "five_crops",
    "half_scale",
    "load_encoder_export",
    "projector_dims",
    "read_encoder_export",
    "save_encoder_export",
    "sha256_file",
    "torchvision_weights_path",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from shamisa_bench.model.backbones import (
        BACKBONES,
        INITS,
        MIN_INPUT_SIZE,
        BackboneSpec,
        Encoder,
        WeightsUnavailableError,
        backbone_spec,
        build_encoder,
        efficientnet_lite0_imagenet_state_dict,
        fetch_imagenet_weights,
        torchvision_weights_path,
    )
    from shamisa_bench.model.export import (
        EncoderExport,
        ExportError,
        load_encoder_export,
        read_encoder_export,
        save_encoder_export,
        sha256_file,
    )
    from shamisa_bench.model.features import (
        CROP_NAMES,
        PROTOCOLS,
        SCALES,
        encode_two_scale,
        five_crop_boxes,
        five_crops,
        half_scale,
    )
    from shamisa_bench.model.projector import Projector, ShamisaModel, build_model, projector_dims
