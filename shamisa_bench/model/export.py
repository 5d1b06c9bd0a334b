"""Encoder-only export: the artifact that the pyiqa metric and the harness load.

An export is a folder with two files:

* ``encoder.pt``: the encoder's plain state dict (``torch.save`` of a dict of tensors,
  keys ``trunk.*``), readable with ``torch.load(..., weights_only=True)``; floating
  tensors in float32, float16 or bfloat16.
* ``config.json``: ``format_version``, ``backbone``, ``feature_dim``, ``init``,
  ``normalisation`` (mean/std, applied inside the encoder to [0, 1] RGB),
  ``preprocessing`` (input contract, the two scales 1.0 and 0.5, the ``whole`` and
  ``crops5`` feature modes, stored under the keys ``protocols`` and ``protocol_names``,
  their names in format 1), ``dtype``, ``weights_file``, ``weights_sha256`` (of
  ``encoder.pt``), ``package_version``, ``torch_version`` and the caller's ``extra``.

:func:`load_encoder_export` checks everything it can before it trusts the weights and
raises :class:`ExportError` (a ``ValueError``) naming the offending file otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shamisa_bench import __version__
from shamisa_bench.common.atomic import atomic_torch_save, atomic_write_text
from shamisa_bench.model.backbones import (
    BACKBONES,
    INITS,
    MIN_INPUT_SIZE,
    Encoder,
    backbone_spec,
    build_encoder,
)
from shamisa_bench.model.features import CROP_NAMES, FEATURE_MODES, SCALES

__all__ = [
    "CONFIG_FILE",
    "EXPORT_DTYPES",
    "EXPORT_FORMAT_VERSION",
    "WEIGHTS_FILE",
    "EncoderExport",
    "ExportError",
    "load_encoder_export",
    "read_encoder_export",
    "save_encoder_export",
    "sha256_file",
]

EXPORT_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "encoder.pt"
EXPORT_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_DEFAULT_CROP_SIZE = 224


class ExportError(ValueError):
    """An encoder export is missing, malformed, inconsistent or fails its checksum."""


@dataclass(frozen=True)
class EncoderExport:
    """A validated export config (weights not yet loaded).

    Attributes:
        config_path: Path of ``config.json``.
        weights_path: Path of the weights file named in the config.
        backbone: Backbone name.
        feature_dim: Encoder width D (two-scale features are 2 * D wide).
        init: Initialisation the encoder was trained from (``imagenet``/``random``).
        dtype: Storage dtype of the floating weights (``float32``/``float16``/``bfloat16``).
        weights_sha256: sha256 of the weights file, as recorded.
        config: The whole parsed config, including ``extra``.
    """

    config_path: Path
    weights_path: Path
    backbone: str
    feature_dim: int
    init: str
    dtype: str
    weights_sha256: str
    config: Mapping[str, Any]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _preprocessing(feature_dim: int) -> dict[str, Any]:
    return {
        "input": "RGB float tensor (N, 3, H, W) in [0, 1]; mean/std normalisation is applied inside the encoder",
        "min_input_size": MIN_INPUT_SIZE,
        "h": "global average pool of the backbone's last feature map, L2-normalised",
        "scales": list(SCALES),
        "downscale": "bilinear, antialias=True, align_corners=False, to (H // 2, W // 2), clamped to [0, 1]",
        "two_scale_feature": "concat [h(scale 1.0), h(scale 0.5)]",
        "two_scale_feature_dim": 2 * feature_dim,
        "two_scale_min_input_size": 2 * MIN_INPUT_SIZE,
        "protocols": {  # the feature modes (key kept: file format)
            "whole": {"crops": 1, "description": "whole image at each scale"},
            "crops5": {
                "crops": len(CROP_NAMES),
                "crop_size": _DEFAULT_CROP_SIZE,
                "order": list(CROP_NAMES),
                "pairing": "crop k at scale 1.0 is concatenated with crop k at scale 0.5",
                "padding": "a side shorter than crop_size is zero-padded (black, [0, 1] space) at the bottom/right",
                "aggregation": "regress on each crop (score repeated), average the crop predictions",
            },
        },
        "protocol_names": list(FEATURE_MODES),  # the feature modes (key kept: file format)
    }


def save_encoder_export(
    encoder: Encoder,
    out_dir: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an encoder-only export (``encoder.pt`` + ``config.json``) into ``out_dir``.

    Each file is written atomically (temp file, then rename), the weights first, so a
    crash never leaves a ``config.json`` pointing at missing or partial weights.
    Existing files of the same names are replaced.

    Args:
        encoder: The encoder to export (any device; the weights are copied to CPU).
        out_dir: Destination folder, created if needed.
        dtype: Storage dtype for floating tensors: float32, float16 or bfloat16.
            Integer buffers (BatchNorm's ``num_batches_tracked``) are kept as they are.
        extra: JSON-serialisable provenance stored under ``"extra"`` (e.g. run config,
            step, git sha).

    Returns:
        The export folder.

    Raises:
        TypeError: ``encoder`` is not an :class:`Encoder`, or ``extra`` is not JSON-serialisable.
        ValueError: Unsupported ``dtype``.
    """
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be an Encoder, got {type(encoder).__name__}")
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unsupported export dtype {dtype}; choose one of {', '.join(EXPORT_DTYPES.values())}")
    extra_dict = dict(extra) if extra is not None else {}
    try:
        json.dumps(extra_dict)
    except (TypeError, ValueError) as err:
        raise TypeError(f"extra must be JSON-serialisable: {err}") from err

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        key: (value.detach().to("cpu", dtype=dtype) if value.is_floating_point() else value.detach().to("cpu"))
        .contiguous()
        .clone()
        for key, value in encoder.state_dict().items()
    }
    weights = out / WEIGHTS_FILE
    atomic_torch_save(state, weights)

    spec = backbone_spec(encoder.backbone)
    config = {
        "format_version": EXPORT_FORMAT_VERSION,
        "kind": "shamisa_encoder",
        "backbone": spec.name,
        "feature_dim": spec.feature_dim,
        "init": encoder.init,
        "normalisation": {"mean": list(spec.mean), "std": list(spec.std), "applied_inside_encoder": True},
        "preprocessing": _preprocessing(spec.feature_dim),
        "dtype": EXPORT_DTYPES[dtype],
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "package_version": __version__,
        "torch_version": torch.__version__,
        "extra": extra_dict,
    }
    text = json.dumps(config, indent=2, sort_keys=False) + "\n"
    atomic_write_text(out / CONFIG_FILE, text)
    return out


def read_encoder_export(path: str | os.PathLike[str], *, verify: bool = True) -> EncoderExport:
    """Read and validate an export's config without loading the weights.

    Args:
        path: The export folder, or its ``config.json``.
        verify: Also check the weights file's sha256 against the config.

    Returns:
        The validated :class:`EncoderExport`.

    Raises:
        ExportError: Missing config or weights file, invalid JSON, unsupported format
            version, unknown backbone, inconsistent fields, or sha256 mismatch. The
            message names the file.
    """
    given = Path(path)
    config_path = given / CONFIG_FILE if given.is_dir() else given
    if not config_path.is_file():
        where = f"{given} has no {CONFIG_FILE}" if given.is_dir() else f"{config_path}: no such file"
        raise ExportError(f"not an encoder export: {where}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ExportError(f"{config_path}: expected a JSON object, got {type(config).__name__}")

    def field(name: str, kind: type) -> Any:
        if name not in config:
            raise ExportError(f"{config_path}: missing field {name!r}")
        value = config[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ExportError(f"{config_path}: field {name!r} must be {kind.__name__}, got {value!r}")
        return value

    version = field("format_version", int)
    if version != EXPORT_FORMAT_VERSION:
        raise ExportError(
            f"{config_path}: unsupported format_version {version} (this shamisa-bench reads {EXPORT_FORMAT_VERSION})"
        )
    backbone = field("backbone", str)
    if backbone not in BACKBONES:
        raise ExportError(f"{config_path}: unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    spec = backbone_spec(backbone)
    feature_dim = field("feature_dim", int)
    if feature_dim != spec.feature_dim:
        raise ExportError(f"{config_path}: feature_dim {feature_dim} does not match {backbone} ({spec.feature_dim})")
    init = field("init", str)
    if init not in INITS:
        raise ExportError(f"{config_path}: unknown init {init!r}; known: {', '.join(INITS)}")
    norm = field("normalisation", dict)
    expected_norm = {"mean": list(spec.mean), "std": list(spec.std)}
    if {k: norm.get(k) for k in expected_norm} != expected_norm:
        raise ExportError(
            f"{config_path}: normalisation {norm!r} differs from the {backbone} encoder's {expected_norm!r}"
        )
    dtype = field("dtype", str)
    if dtype not in EXPORT_DTYPES.values():
        raise ExportError(f"{config_path}: unsupported dtype {dtype!r}")
    weights_name = field("weights_file", str)
    if Path(weights_name).name != weights_name:
        raise ExportError(f"{config_path}: weights_file must be a bare file name, got {weights_name!r}")
    weights_path = config_path.parent / weights_name
    recorded = field("weights_sha256", str)
    if not weights_path.is_file():
        raise ExportError(f"{config_path}: weights file {weights_path} is missing")
    if verify:
        actual = sha256_file(weights_path)
        if actual != recorded:
            raise ExportError(
                f"{weights_path}: sha256 {actual} does not match {recorded} recorded in {config_path} "
                "(file modified or corrupt)"
            )
    return EncoderExport(
        config_path=config_path,
        weights_path=weights_path,
        backbone=backbone,
        feature_dim=feature_dim,
        init=init,
        dtype=dtype,
        weights_sha256=recorded,
        config=config,
    )


def load_encoder_export(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Encoder:
    """Load an export into a float32 :class:`Encoder` in eval mode.

    The backbone is built with random init (no downloads), then the weights are loaded
    strictly (no missing, unexpected or mis-shaped tensors); float16/bfloat16 weights are
    cast back to float32. The returned encoder's ``weights_sha256`` is the verified
    checksum, for provenance records.

    Args:
        path: The export folder, or its ``config.json``.
        map_location: Device to put the encoder on.

    Returns:
        The encoder on ``map_location``, in eval mode.

    Raises:
        ExportError: See :func:`read_encoder_export`; also unreadable weights, a tensor
            holding NaN or infinite values, or a state dict that does not fit the backbone.
    """
    info = read_encoder_export(path, verify=True)
    try:
        state = torch.load(info.weights_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ExportError(f"{info.weights_path}: cannot read weights ({err})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{info.weights_path}: expected a state dict of tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ExportError(f"{info.weights_path}: tensor {key!r} holds {bad} NaN or infinite value(s) of "
                              f"{value.numel()}; such an encoder cannot score images")
    encoder = build_encoder(info.backbone, "random", seed=0)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExportError(f"{info.weights_path}: weights do not fit a {info.backbone} encoder: {err}") from err
    encoder.init = info.init
    encoder.weights_sha256 = info.weights_sha256
    return encoder.to(map_location).eval()
