"""Projector and the pretraining model (encoder + projector).

The spec's projector for ResNet-50 is Linear 2048->3072, ReLU, Linear 3072->768, without
BatchNorm; ``z`` is not normalised. For other backbones the widths scale with the
encoder width: hidden = 1.5 * D, out = 0.375 * D (resnet18: 512->768->192,
efficientnet_lite0: 1280->1920->480).

Initialisation (the spec does not fix it): PyTorch's default ``nn.Linear`` init assumes
inputs of unit variance per coordinate, but h is L2-normalised, so each coordinate has
variance about 1/D. With the default init z starts with a spread of about 0.005, L_var sits
at its collapsed value (~0.99) and the only gradient out of it is second order in that
spread: in our CPU runs of a few hundred steps z never left collapse, the graph pull term
stayed ~0 and the encoder was shaped by R_graph alone. ``init="unit_norm_input"`` draws the first layer from N(0, 1) (for a unit-norm input, unit-variance
pre-activations) and the second with Kaiming-normal for ReLU, so z starts with unit-scale
coordinates; ``gain`` scales both. ``init="torch"`` (the default) keeps PyTorch's.
"""

from __future__ import annotations

import torch
from torch import nn

from shamisa_bench.model.backbones import Encoder, build_encoder, seeded

__all__ = ["PROJECTOR_INITS", "EncoderWithProjector", "Projector", "build_model", "projector_dims"]

#: Projector initialisations (see the module docstring).
PROJECTOR_INITS: tuple[str, ...] = ("unit_norm_input", "torch")

_HIDDEN_RATIO = 1.5  # 3072 / 2048
_OUT_RATIO = 0.375  # 768 / 2048


def projector_dims(in_dim: int) -> tuple[int, int]:
    """Default (hidden_dim, out_dim) for an encoder of width ``in_dim``.

    Args:
        in_dim: Encoder feature width D.

    Returns:
        ``(round(1.5 * D), round(0.375 * D))``; (3072, 768) for D = 2048.

    Raises:
        ValueError: If ``in_dim`` is not a positive int or gives a zero-width output.
    """
    _check_dim("in_dim", in_dim)
    hidden, out = round(_HIDDEN_RATIO * in_dim), round(_OUT_RATIO * in_dim)
    if out < 1:
        raise ValueError(f"in_dim={in_dim} is too small for the default projector widths")
    return hidden, out


def _check_dim(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class Projector(nn.Sequential):
    """Linear -> ReLU -> Linear (no BatchNorm), mapping h (N, in_dim) to z (N, out_dim).

    Args:
        in_dim: Input width (the encoder's ``feature_dim``).
        hidden_dim: Hidden width; default ``round(1.5 * in_dim)``.
        out_dim: Output width; default ``round(0.375 * in_dim)``.
        seed: If given, the initial weights are a pure function of it (the global RNG
            is forked, not consumed). ``None`` draws from the global RNG.
        init: ``"torch"`` (default, PyTorch's) or ``"unit_norm_input"`` (see the module docstring).
        gain: scale of the ``unit_norm_input`` init (z starts with coordinates of about ``gain**2``).

    Attributes:
        in_dim, hidden_dim, out_dim: The widths.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int | None = None,
        out_dim: int | None = None,
        *,
        seed: int | None = None,
        init: str = "torch",
        gain: float = 1.0,
    ) -> None:
        default_hidden, default_out = projector_dims(in_dim)
        hidden_dim = default_hidden if hidden_dim is None else hidden_dim
        out_dim = default_out if out_dim is None else out_dim
        _check_dim("hidden_dim", hidden_dim)
        _check_dim("out_dim", out_dim)
        if init not in PROJECTOR_INITS:
            raise ValueError(f"init must be one of {PROJECTOR_INITS}, got {init!r}")
        with seeded(seed):
            super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
            if init == "unit_norm_input":
                with torch.no_grad():
                    nn.init.normal_(self[0].weight, 0.0, float(gain))
                    nn.init.zeros_(self[0].bias)
                    nn.init.kaiming_normal_(self[2].weight, nonlinearity="relu")
                    self[2].weight.mul_(float(gain))
                    nn.init.zeros_(self[2].bias)
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim


class EncoderWithProjector(nn.Module):
    """Encoder + projector, as trained by SHAMISA pretraining.

    Args:
        encoder: The :class:`~shamisa_bench.model.backbones.Encoder`.
        projector: Projector whose ``in_dim`` equals ``encoder.feature_dim``; default a
            :class:`Projector` with the default widths (seed 0).

    Attributes:
        encoder, projector: The two parts; export ``encoder`` alone after training.
    """

    def __init__(self, encoder: Encoder, projector: Projector | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be an Encoder, got {type(encoder).__name__}")
        if projector is None:
            projector = Projector(encoder.feature_dim, seed=0)
        if projector.in_dim != encoder.feature_dim:
            raise ValueError(
                f"projector.in_dim={projector.in_dim} does not match encoder.feature_dim={encoder.feature_dim}"
            )
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and project.

        Args:
            x: Images (N, 3, H, W), float RGB in [0, 1], H and W >= 32.

        Returns:
            ``(h, z)``: h (N, D) unit-norm encoder features, z (N, out_dim) projections.
        """
        h = self.encoder(x)
        return h, self.projector(h)


def build_model(
    backbone: str,
    init: str = "imagenet",
    *,
    seed: int | None = 0,
    hidden_dim: int | None = None,
    out_dim: int | None = None,
    download: bool = False,
) -> EncoderWithProjector:
    """Build encoder + projector in one call.

    Args:
        backbone: One of ``BACKBONES``.
        init: ``"imagenet"`` or ``"random"`` (encoder only; the projector is always random).
        seed: Seeds every randomly initialised weight (encoder with ``seed``, projector
            with ``seed + 1``); ``None`` uses the global RNG.
        hidden_dim, out_dim: Projector widths; default scaled from the encoder width.
        download: Passed to :func:`~shamisa_bench.model.backbones.build_encoder`.

    Returns:
        The model on CPU, in training mode.
    """
    encoder = build_encoder(backbone, init, seed=seed, download=download)
    projector = Projector(encoder.feature_dim, hidden_dim, out_dim, seed=None if seed is None else seed + 1)
    return EncoderWithProjector(encoder, projector)
