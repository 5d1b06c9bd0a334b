"""SHAMISA model: encoder backbones, projector, encoder-only export, two-scale features,
and the network pretraining trains (:class:`PretrainNet`).

The public names are importable from here.

Typical use::

    from shamisa_bench.model import build_encoder, encode_two_scale, load_encoder_export

    encoder = load_encoder_export("runs/a0/export").eval()
    with torch.no_grad():
        feats = encode_two_scale(encoder, images, feature_mode="whole")  # (N, 1, 2 * D)
"""

from __future__ import annotations

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
    FEATURE_MODES,
    SCALES,
    STANDARDIZED_MODES,
    check_feature_mode,
    downscale_half,
    encode_two_scale,
    feature_width,
    five_crop_boxes,
    five_crops,
    half_scale,
)
from shamisa_bench.model.network import PretrainNet, encoder_stages
from shamisa_bench.model.projector import (
    EncoderWithProjector,
    Projector,
    build_model,
    projector_dims,
)

__all__ = [
    "BACKBONES",
    "CROP_NAMES",
    "FEATURE_MODES",
    "INITS",
    "MIN_INPUT_SIZE",
    "SCALES",
    "STANDARDIZED_MODES",
    "BackboneSpec",
    "Encoder",
    "EncoderExport",
    "EncoderWithProjector",
    "ExportError",
    "PretrainNet",
    "Projector",
    "WeightsUnavailableError",
    "backbone_spec",
    "build_encoder",
    "build_model",
    "check_feature_mode",
    "downscale_half",
    "efficientnet_lite0_imagenet_state_dict",
    "encode_two_scale",
    "encoder_stages",
    "feature_width",
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
