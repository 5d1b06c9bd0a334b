"""The ``multilevel`` feature mode: width per backbone, layout, batch equals single."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shamisa_bench.model import (
    Encoder,
    backbone_spec,
    build_encoder,
    encode_two_scale,
    feature_width,
    half_scale,
)


def _images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("backbone", "width"),
    # Lite0: 2 * (1280 + 2 * (16+24+40+80+112+192+320)); ResNet-50: 2 * (2048 + 2 * (256+512+1024+2048))
    [("efficientnet_lite0", 5696), ("resnet50", 19456), ("resnet18", 4864)],
)
def test_multilevel_width_per_backbone(backbone: str, width: int) -> None:
    encoder = build_encoder(backbone, "random", seed=0).eval()
    assert feature_width(encoder, "multilevel") == width
    assert feature_width(encoder, "whole") == feature_width(encoder, "crops5") == 2 * encoder.feature_dim
    with torch.no_grad():
        feats = encode_two_scale(encoder, _images(1, 64, 64), "multilevel")
    assert feats.shape == (1, 1, width)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_multilevel_layout_is_h_then_each_stage_mean_and_std() -> None:
    encoder = build_encoder("resnet18", "random", seed=2).eval()
    x = _images(2, 80, 72, seed=1)
    spec = backbone_spec("resnet18")
    seen: list[torch.Tensor] = []
    modules = dict(encoder.trunk.named_modules())
    handles = [modules[n].register_forward_hook(lambda _m, _i, out: seen.append(out)) for n in spec.stages]
    with torch.no_grad():
        row = encoder.multilevel(x)
        for handle in handles:
            handle.remove()
        torch.testing.assert_close(row[:, : encoder.feature_dim], encoder(x))
    offset = encoder.feature_dim
    for out, channels in zip(seen, spec.stage_channels, strict=True):
        assert out.shape[1] == channels
        torch.testing.assert_close(row[:, offset : offset + channels], out.mean(dim=(2, 3)))
        torch.testing.assert_close(row[:, offset + channels : offset + 2 * channels], out.std(dim=(2, 3), unbiased=False))
        offset += 2 * channels
    assert offset == spec.multilevel_dim == row.shape[1]
    # No hook is left behind: the plain forward is untouched.
    assert all(not modules[n]._forward_hooks for n in spec.stages)
    with torch.no_grad():
        both = encode_two_scale(encoder, x, "multilevel")[:, 0]
        torch.testing.assert_close(both[:, : spec.multilevel_dim], row)
        torch.testing.assert_close(both[:, spec.multilevel_dim :], encoder.multilevel(half_scale(x)))


def test_multilevel_batch_equals_single() -> None:
    encoder = build_encoder("efficientnet_lite0", "random", seed=1).eval()
    x = _images(3, 64, 96, seed=4)
    with torch.no_grad():
        batch = encode_two_scale(encoder, x, "multilevel")
        single = torch.cat([encode_two_scale(encoder, x[i : i + 1], "multilevel") for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-5)


def test_multilevel_needs_an_encoder_and_gives_gradients() -> None:
    with pytest.raises(TypeError, match="multilevel"):
        encode_two_scale(nn.Flatten(), _images(1, 64, 64), "multilevel")
    encoder = build_encoder("resnet18", "random", seed=1).eval()
    x = _images(1, 64, 64).requires_grad_(True)
    encode_two_scale(encoder, x, "multilevel").sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert isinstance(encoder, Encoder)
