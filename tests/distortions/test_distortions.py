"""Distortion engine: catalog, severities, all 26 types, compositions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from shamisa_bench.distortions import (
    CATALOG,
    GROUPS,
    apply_composition_from_scratch,
    apply_composition_group,
    apply_distortion,
    distort,
    make_composition,
    sample_composition,
    sample_severities,
    severity_to_value,
    types_in_group,
    value_to_severity,
)
from shamisa_bench.distortions.catalog import parse_type_names
from shamisa_bench.distortions.colorspace import (
    hsv_to_rgb,
    lab_to_rgb,
    rgb_to_hsv,
    rgb_to_lab,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from shamisa_bench.distortions.compose import allowed_groups
from shamisa_bench.perf.engine import synthetic_images

SPEC_ANCHORS = {
    "gaussian_blur": (0.1, 0.5, 1, 2, 5),
    "lens_blur": (1, 2, 4, 6, 8),
    "motion_blur": (1, 2, 4, 6, 10),
    "color_diffusion": (1, 3, 6, 8, 12),
    "color_shift": (1, 3, 6, 8, 12),
    "color_saturation_hsv": (0.4, 0.2, 0.1, 0, -0.4),
    "color_saturation_lab": (1, 2, 3, 6, 9),
    "jpeg2000": (16, 32, 45, 120, 170),
    "jpeg": (43, 36, 24, 7, 4),
    "white_noise": (0.001, 0.002, 0.003, 0.005, 0.01),
    "white_noise_cc": (0.0001, 0.0005, 0.001, 0.002, 0.003),
    "impulse_noise": (0.001, 0.005, 0.01, 0.02, 0.03),
    "multiplicative_noise": (0.001, 0.005, 0.01, 0.02, 0.05),
    "brighten": (0.1, 0.2, 0.4, 0.7, 1.1),
    "darken": (0.05, 0.1, 0.2, 0.4, 0.8),
    "mean_shift_down": (0, -0.08, -0.115, -0.15, -0.185),
    "mean_shift_up": (0, 0.08, 0.115, 0.15, 0.185),
    "jitter": (0.05, 0.1, 0.2, 0.5, 1),
    "non_eccentricity_patch": (20, 40, 60, 80, 100),
    "pixelate": (0.01, 0.05, 0.1, 0.2, 0.5),
    "quantization": (20, 16, 13, 10, 7),
    "color_block": (2, 4, 6, 8, 10),
    "high_sharpen": (1, 2, 3, 6, 12),
    "contrast_down": (0, -0.15, -0.3, -0.4, -0.6),
    "contrast_up": (0, 0.15, 0.3, 0.4, 0.6),
    "nonlinear_contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}
INTEGER_TYPES = {
    "lens_blur",
    "motion_blur",
    "color_diffusion",
    "color_shift",
    "color_saturation_lab",
    "jpeg2000",
    "jpeg",
    "non_eccentricity_patch",
    "quantization",
    "color_block",
    "high_sharpen",
}
RANDOM_TYPES = {
    "motion_blur",
    "color_shift",
    "white_noise",
    "white_noise_cc",
    "impulse_noise",
    "multiplicative_noise",
    "jitter",
    "non_eccentricity_patch",
    "color_block",
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two photo-like 40x40 images (structure at several scales)."""
    return torch.stack(synthetic_images(2, 40, 40, seed=3))


# --- catalog and severities -------------------------------------------------------------


def test_catalog_matches_spec_table() -> None:
    assert GROUPS == ("blur", "color", "compression", "noise", "brightness", "spatial", "sharpness_contrast")
    assert len(CATALOG) == 26
    assert {k: tuple(float(a) for a in v.anchors) for k, v in CATALOG.items()} == {
        k: tuple(float(a) for a in v) for k, v in SPEC_ANCHORS.items()
    }
    assert {k for k, v in CATALOG.items() if v.integer} == INTEGER_TYPES
    assert sum(len(types_in_group(g)) for g in GROUPS) == 26
    assert types_in_group("blur") == ("gaussian_blur", "lens_blur", "motion_blur")
    for entry in CATALOG.values():
        assert entry.description and entry.group in GROUPS
        lo, hi = entry.domain
        assert all(lo <= a <= hi for a in entry.anchors)


def test_severity_interpolates_between_anchors() -> None:
    for name, anchors in SPEC_ANCHORS.items():
        for i, a in enumerate(anchors):
            value, actual = severity_to_value(name, i)
            assert value == pytest.approx(a) and actual == pytest.approx(i)
    assert severity_to_value("gaussian_blur", 2.5) == pytest.approx((1.5, 2.5))
    assert severity_to_value("color_saturation_hsv", 3.5) == pytest.approx((-0.2, 3.5))  # decreasing anchors
    assert severity_to_value("white_noise", 0.25)[0] == pytest.approx(0.00125)


def test_integer_rounding_keeps_metadata_truthful() -> None:
    # jpeg: 43 -> 36 at s = 0.5 is 39.5, rounded half-up to 40; 40 sits at 3/7 of the segment.
    assert severity_to_value("jpeg", 0.5) == pytest.approx((40.0, 3.0 / 7.0))
    assert severity_to_value("lens_blur", 1.25) == pytest.approx((3.0, 1.5))  # 2.5 -> 3 (not banker's 2)
    for name in INTEGER_TYPES:
        for s in torch.linspace(0, 4, 81).tolist():
            value, actual = severity_to_value(name, s)
            assert value == math.floor(value), (name, s, value)
            assert 0.0 <= actual <= 4.0
            seg = min(math.floor(s), 3)
            assert seg <= actual <= seg + 1  # on the segment the severity came from
            # The reported severity gives back exactly the applied value ...
            assert severity_to_value(name, actual)[0] == value, (name, s, actual)
            # ... and is the inverse of the value (anchors are strictly monotone).
            assert value_to_severity(name, value) == pytest.approx(actual), (name, s)
    for name in set(CATALOG) - INTEGER_TYPES:
        assert severity_to_value(name, 1.37)[1] == 1.37


@pytest.mark.parametrize("bad", [-0.01, 4.01, float("nan"), "x", None])
def test_severity_out_of_range_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="severity"):
        severity_to_value("jpeg", bad)  # type: ignore[arg-type]


def test_unknown_type_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="gaussian_blur.*nonlinear_contrast"):
        severity_to_value("gausian_blur", 1.0)
    with pytest.raises(ValueError, match="valid types"):
        apply_distortion(torch.rand(1, 3, 8, 8), "blurry", 1.0)
    with pytest.raises(ValueError, match="blur"):
        types_in_group("blurs")


def test_sample_severities() -> None:
    g = gen(5)
    s = sample_severities(20000, "gaussian", generator=g)
    assert s.shape == (20000,) and s.dtype == torch.float32
    assert float(s.min()) >= 0 and float(s.max()) <= 4
    # clip(|N(0, 2.5)|, 0, 4): P(s = 4) = P(|z| > 1.6) = 0.1096, E[s] ~ 1.84
    assert 0.095 < float((s == 4).float().mean()) < 0.125
    assert 1.75 < float(s.mean()) < 1.93
    u = sample_severities(5000, "uniform", generator=g)
    assert 1.9 < float(u.mean()) < 2.1 and float(u.max()) <= 4
    d = sample_severities(5000, "discrete", generator=g)
    assert set(d.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.equal(sample_severities(7, generator=gen(1)), sample_severities(7, generator=gen(1)))
    with pytest.raises(ValueError, match="sampler"):
        sample_severities(3, "beta", generator=g)


# --- every type at every anchor -----------------------------------------------------------


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_type_at_every_anchor(name: str, images: torch.Tensor) -> None:
    for level in range(5):
        out = distort(images, name, float(level), generator=gen(level))
        assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.isfinite(out).all()
        again = distort(images, name, float(level), generator=gen(level))
        assert torch.equal(out, again), f"{name} level {level} is not deterministic"
    if name in RANDOM_TYPES:
        a = distort(images, name, 4.0, generator=gen(1))
        b = distort(images, name, 4.0, generator=gen(2))
        assert not torch.equal(a, b), f"{name} ignores its generator"
    top = distort(images, name, 4.0, generator=gen(0))
    assert float((top - images).abs().mean()) > 1e-3, f"{name} at level 5 barely changes the image"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtype_is_preserved(dtype: torch.dtype, images: torch.Tensor) -> None:
    x = images.to(dtype)
    for name in ("gaussian_blur", "jpeg", "white_noise_cc", "brighten", "quantization"):
        out = distort(x, name, 2.0, generator=gen())
        assert out.dtype == dtype and out.shape == x.shape
        ref = distort(images, name, 2.0, generator=gen())
        # float16 rounds the input itself; codecs and quantisation may then flip a level.
        assert float((out.float() - ref).abs().mean()) < (2e-3 if dtype == torch.float16 else 1e-5)


MONOTONE = [
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "jpeg",
    "jpeg2000",
    "white_noise",
    "white_noise_cc",
    "impulse_noise",
    "multiplicative_noise",
]


@pytest.mark.parametrize("name", MONOTONE)
def test_distance_grows_with_severity(name: str) -> None:
    # JPEG 2000 needs 128 px: on smaller images the codestream's headers cap high ratios.
    size = 128 if name == "jpeg2000" else 48
    x = torch.stack(synthetic_images(2, size, size, seed=1))
    dist = []
    for level in range(5):
        y = distort(x, name, float(level), generator=gen(7))
        dist.append(float((y - x).pow(2).mean().sqrt()))
    assert all(a < b for a, b in itertools.pairwise(dist)), (name, dist)


def test_per_image_values_match_separate_calls(images: torch.Tensor) -> None:
    for name, values in [
        ("gaussian_blur", [0.5, 3.0]),
        ("jpeg", [40, 5]),
        ("quantization", [16, 3]),
        ("pixelate", [0.05, 0.4]),
        ("brighten", [0.1, 1.0]),
        ("lens_blur", [1, 6]),
    ]:
        both = apply_distortion(images, name, torch.tensor(values))
        for i, v in enumerate(values):
            one = apply_distortion(images[i : i + 1], name, v)
            assert torch.allclose(both[i : i + 1], one, atol=1e-6), name


def test_integer_values_are_rounded(images: torch.Tensor) -> None:
    assert torch.equal(apply_distortion(images, "lens_blur", 2.4), apply_distortion(images, "lens_blur", 2))
    assert torch.equal(apply_distortion(images, "jpeg", 23.5), apply_distortion(images, "jpeg", 24))


def test_bad_inputs_are_rejected(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="domain"):
        apply_distortion(images, "jpeg", 0)
    with pytest.raises(ValueError, match="domain"):
        apply_distortion(images, "white_noise", float("nan"))
    with pytest.raises(ValueError, match="per-image"):
        apply_distortion(images, "jpeg", [10, 20, 30])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        apply_distortion(images[0], "jpeg", 10)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        apply_distortion(images[:, :1], "jpeg", 10)
    with pytest.raises(TypeError, match="floating"):
        apply_distortion((images * 255).to(torch.uint8), "jpeg", 10)
    with pytest.raises(TypeError, match="Tensor"):
        apply_distortion(images.numpy(), "jpeg", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="generator"):
        apply_distortion(images, "white_noise", 0.01)


# --- semantics of individual types -----------------------------------------------------


def test_salt_and_pepper_sets_half_the_hits_to_each_extreme() -> None:
    x = torch.full((1, 3, 96, 96), 0.5)
    y = apply_distortion(x, "impulse_noise", 0.3, generator=gen(3))
    zeros, ones = float((y == 0).float().mean()), float((y == 1).float().mean())
    assert abs(zeros - 0.15) < 0.015 and abs(ones - 0.15) < 0.015
    assert float(((y != 0) & (y != 1) & (y != 0.5)).float().sum()) == 0


def test_simple_curves_hit_their_defining_points() -> None:
    # The contrast spline passes (0.3, 0.25 - a/4) and (0.7, 0.75 + a/4) for |a| >= the second
    # anchor, as the reference's; nearer 0 it bends towards the identity (contrast_offset).
    knots = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5).contiguous()
    up = apply_distortion(knots, "contrast_up", 0.4)[0, 0, 0]
    assert up.tolist() == pytest.approx([0.0, 0.15, 0.5, 0.85, 1.0], abs=1e-6)
    down = apply_distortion(knots, "contrast_down", -0.6)[0, 0, 0]
    assert down.tolist() == pytest.approx([0.0, 0.4, 0.5, 0.6, 1.0], abs=1e-6)
    assert torch.equal(apply_distortion(knots, "contrast_up", 0.0), knots)
    assert torch.equal(apply_distortion(knots, "contrast_down", 0.0), knots)
    mild = apply_distortion(knots, "contrast_down", -0.15)[0, 0, 0]  # |d| = 0.0125, contrast lowered
    assert mild.tolist() == pytest.approx([0.0, 0.3125, 0.5, 0.6875, 1.0], abs=1e-6)
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5).contiguous()
    nl = apply_distortion(x, "nonlinear_contrast", 0.25)[0, 0, 0]  # [0, 1] onto [0.25, 0.75]
    assert nl.tolist() == pytest.approx([0.25, 0.375, 0.5, 0.625, 0.75])
    shift = apply_distortion(x, "mean_shift_down", -0.1)[0, 0, 0]
    assert shift.tolist() == pytest.approx([0.0, 0.15, 0.4, 0.65, 0.9])
    # The RGB part of the brighten/darken mix (2/3) passes (0.5, 0.5 +- a/2) exactly; the Lab-L
    # part (1/3) applies the same curve to L*/100 (0.534 for sRGB grey 0.5), so the mix is
    # close to, not at, 0.5 +- a/2.
    grey = torch.full((1, 3, 4, 4), 0.5)
    bright = [float(apply_distortion(grey, "brighten", a).mean()) for a in (0.1, 0.4, 1.1)]
    dark = [float(apply_distortion(grey, "darken", a).mean()) for a in (0.05, 0.4, 0.8)]
    assert bright[1] == pytest.approx(0.7, abs=0.01) and dark[1] == pytest.approx(0.3, abs=0.01)
    assert 0.5 < bright[0] < bright[1] < bright[2] <= 1.0 and 0.5 > dark[0] > dark[1] > dark[2] >= 0.0
    assert torch.allclose(apply_distortion(torch.ones(1, 3, 2, 2), "brighten", 0.7), torch.ones(1, 3, 2, 2), atol=1e-5)


def test_colour_types_touch_the_right_channels(images: torch.Tensor) -> None:
    shifted = apply_distortion(images, "color_shift", 8, generator=gen())
    assert torch.equal(shifted[:, 0], images[:, 0]) and torch.equal(shifted[:, 2], images[:, 2])
    assert not torch.equal(shifted[:, 1], images[:, 1])
    grey = apply_distortion(images, "color_saturation_hsv", 0.0)
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-6)
    # HSV value (the channel maximum) is unchanged by a saturation factor in [0, 1].
    half = apply_distortion(images, "color_saturation_hsv", 0.5)
    assert torch.allclose(half.amax(1), images.amax(1), atol=1e-5)
    # Lab factor 1 and HSV factor 1 are identities.
    assert torch.allclose(apply_distortion(images, "color_saturation_lab", 1), images, atol=1e-4)
    assert torch.allclose(apply_distortion(images, "color_saturation_hsv", 1.0), images, atol=1e-5)
    # Lab saturation keeps L* (up to gamut clipping, hence a mean over pixels) of the image with
    # R and B exchanged: the reference's Lab convention, kept for the severity scale.
    muted = apply_distortion(images, "color_saturation_lab", 0.5) * 0.5 + 0.25
    sat = apply_distortion(muted, "color_saturation_lab", 2)
    lab_sat, lab_muted = rgb_to_lab(sat.flip(1)), rgb_to_lab(muted.flip(1))
    assert float((lab_sat[:, 0] - lab_muted[:, 0]).abs().mean()) < 0.5
    assert float(lab_sat[:, 1:].abs().mean()) > 1.5 * float(lab_muted[:, 1:].abs().mean())
    assert float((rgb_to_lab(sat)[:, 0] - rgb_to_lab(muted)[:, 0]).abs().mean()) > 1.0  # not true-RGB Lab


def test_patches_and_blocks_copy_pixels(images: torch.Tensor) -> None:
    patched = apply_distortion(images, "non_eccentricity_patch", 20, generator=gen(2))
    changed = (patched != images).any(1)
    assert changed.any()
    # Every output pixel is a pixel of the input image (copied, not blended).
    for i in range(images.shape[0]):
        src = images[i].reshape(3, -1).T
        out = patched[i].reshape(3, -1).T
        assert all(bool((src == row).all(1).any()) for row in out[changed[i].reshape(-1)][:50])
    blocks = apply_distortion(images, "color_block", 2, generator=gen(2))
    diff = (blocks != images).any(1)
    assert 0 < int(diff[0].sum()) <= 2 * 32 * 32
    assert int(torch.unique(blocks[0].reshape(3, -1)[:, diff[0].reshape(-1)], dim=1).shape[1]) <= 2


def test_quantization_uses_the_requested_number_of_levels(images: torch.Tensor) -> None:
    for levels in (7, 13, 20):
        out = apply_distortion(images, "quantization", levels)
        # ``levels`` equal-width bins plus the bin of exact black, stretched onto [0, 1].
        assert int(torch.unique(out[0]).numel()) <= levels + 1
        assert int(torch.unique(out[0]).numel()) >= levels - 2
        assert float(out[0].min()) == 0.0 and float(out[0].max()) == 1.0
    # The thresholds are floor(255 k / levels): with 10 levels, 8-bit value 25 is in bin 1, 26 in bin 2.
    ramp = torch.tensor([1, 25, 26, 51, 52, 255], dtype=torch.float32).div(255).reshape(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert apply_distortion(ramp.contiguous(), "quantization", 10)[0, 0, 0].mul(9).round().tolist() == [0, 0, 1, 1, 2, 9]


def test_colorspace_round_trips_and_reference_values() -> None:
    x = torch.rand(2, 3, 8, 8, generator=gen(4), dtype=torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-9)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-9)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)
    white = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    assert rgb_to_lab(white).flatten().tolist() == pytest.approx([100.0, 0.0, 0.0], abs=1e-3)
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    assert rgb_to_lab(red).flatten().tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.05)  # sRGB red, D65
    assert rgb_to_hsv(red).flatten().tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert rgb_to_ycbcr(red).flatten().tolist() == pytest.approx([0.299, 0.331264, 1.0], abs=1e-6)


def test_filters_match_direct_convolution() -> None:
    import torch.nn.functional as F

    from shamisa_bench.distortions.filters import (
        box_disk_kernel,
        fft_filter,
        gaussian_kernel,
        motion_kernels,
    )

    assert gaussian_kernel(2.0).shape == (9, 9) and gaussian_kernel(5.0).shape == (21, 21)  # 2 ceil(2 s) + 1
    assert gaussian_kernel(0.1).shape == (3, 3)
    disk = box_disk_kernel(3)
    assert disk.shape == (7, 7) and float(disk.sum()) == pytest.approx(1.0) and float(disk[0, 0]) == 0.0
    flat = motion_kernels(3, torch.tensor([0.0, 90.0]))  # a line of 3 pixels
    assert flat.shape == (2, 1, 5, 5)
    assert flat[0, 0, 2].tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3, 0.0])  # 0 degrees: middle row
    assert flat[1, 0, :, 2].tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3, 0.0])  # 90 degrees: middle column
    assert torch.equal(motion_kernels(1, torch.tensor([37.0])), torch.ones(1, 1, 1, 1, dtype=torch.float64))
    x = torch.rand(2, 3, 20, 23, generator=gen(1), dtype=torch.float64)
    for k in (gaussian_kernel(1.5), disk, torch.rand(5, 3, generator=gen(2), dtype=torch.float64)):
        kh, kw = k.shape
        ref = F.conv2d(
            F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate").reshape(-1, 1, 20 + kh - 1, 23 + kw - 1),
            k.flip(-2, -1)[None, None],
        ).reshape(2, 3, 20, 23)
        assert torch.allclose(fft_filter(x, k[None, None]), ref, atol=1e-10)


# --- compositions ----------------------------------------------------------------------


def test_composition_metadata_is_consistent() -> None:
    g = gen(11)
    seen_n = set()
    for _ in range(150):
        plan = sample_composition(7, 5, "gaussian", generator=g)
        meta = plan.meta()
        n = len(meta.types)
        seen_n.add(n)
        assert 1 <= n <= 7
        assert len({CATALOG[t].group for t in meta.types}) == n  # distinct groups
        assert meta.severities.shape == (5, n) and meta.values.shape == (5, n)
        assert 0 <= meta.var_pos < n
        for k, t in enumerate(meta.types):
            if k != meta.var_pos:  # every other position is fixed across levels
                assert torch.all(meta.severities[:, k] == meta.severities[0, k])
                assert torch.all(meta.values[:, k] == meta.values[0, k])
            for lvl in range(5):
                value, actual = severity_to_value(t, float(meta.severities[lvl, k]))
                assert value == pytest.approx(float(meta.values[lvl, k]))
                assert actual == pytest.approx(float(meta.severities[lvl, k]), abs=1e-6)
        assert torch.equal(meta.var_severity, meta.severities[:, meta.var_pos])
    assert seen_n == set(range(1, 8))
    with pytest.raises(ValueError, match="max_distortions"):
        sample_composition(8, 5, generator=g)
    with pytest.raises(ValueError, match="sampler"):
        sample_composition(3, 5, "nope", generator=g)
    with pytest.raises(ValueError, match="distinct groups"):
        make_composition(["jpeg", "jpeg2000"], [1, 1], [0, 1], 0)


def test_composition_sampling_is_seeded() -> None:
    a = sample_composition(7, 5, generator=gen(3))
    b = sample_composition(7, 5, generator=gen(3))
    assert a.types == b.types and a.var_pos == b.var_pos and a.op_seeds == b.op_seeds
    assert torch.equal(a.severities, b.severities)


def test_prefix_sharing_equals_from_scratch() -> None:
    views = torch.stack(synthetic_images(2, 24, 24, seed=9))
    plans = [sample_composition(7, 4, "gaussian", generator=gen(s)) for s in range(6)]
    # Every type as the varying factor, behind a random prefix and before a random suffix.
    for i, name in enumerate(CATALOG):
        others = [types_in_group(g)[i % len(types_in_group(g))] for g in GROUPS if g != CATALOG[name].group][:2]
        types = [others[0], name, others[1]]
        plans.append(make_composition(types, [1.5, 0, 2.5], [0.0, 3.7, 1.2, 3.7], 1, [i, i + 100, i + 200]))
    for plan in plans:
        shared, _meta = apply_composition_group(views, plan)
        scratch, _ = apply_composition_from_scratch(views, plan)
        assert shared.shape == (4 * 2, 3, 24, 24)
        assert torch.equal(shared, scratch), plan.types  # bitwise
        assert float(shared.min()) >= 0 and float(shared.max()) <= 1
    # Level-major order: level l of the group is the composition at that level alone.
    for plan in plans[:6]:
        shared, _ = apply_composition_group(views, plan)
        lvl = 2
        alone = make_composition(
            plan.types,
            plan.severities[0].tolist(),
            [float(plan.severities[lvl, plan.var_pos])],
            plan.var_pos,
            plan.op_seeds,
        )
        single, _ = apply_composition_group(views, alone)
        assert torch.equal(shared[lvl * 2 : (lvl + 1) * 2], single)


def test_group_can_sample_its_own_plan() -> None:
    views = torch.stack(synthetic_images(2, 24, 24, seed=4))
    out, meta = apply_composition_group(views, max_distortions=3, n_levels=4, generator=gen(8))
    plan = sample_composition(3, 4, "gaussian", generator=gen(8))
    assert meta.types == plan.types and torch.equal(meta.severities, plan.severities)
    assert torch.equal(out, apply_composition_group(views, plan)[0])
    assert torch.equal(out, apply_composition_from_scratch(views, generator=gen(8), max_distortions=3, n_levels=4)[0])
    with pytest.raises(TypeError, match="plan"):
        apply_composition_group(views)
    with pytest.raises(TypeError, match="not both"):
        apply_composition_group(views, plan, generator=gen(8))


def test_levels_differ_only_in_the_varying_factor() -> None:
    views = torch.stack(synthetic_images(2, 32, 32, seed=2))
    plan = make_composition(["white_noise", "gaussian_blur"], [3.0, 0.0], [0.0, 0.0, 4.0], 1, [5, 6])
    out, _ = apply_composition_group(views, plan)
    assert torch.equal(out[0:2], out[2:4])  # equal severities -> identical crops (noise shared)
    assert not torch.equal(out[0:2], out[4:6])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_matches_cpu(images: torch.Tensor) -> None:
    x = images.cuda()
    for name in CATALOG:
        cpu = distort(images, name, 2.0, generator=gen(1))
        gpu = distort(x, name, 2.0, generator=gen(1))
        assert gpu.device.type == "cuda" and gpu.dtype == x.dtype
        tol = 2.5 / 255 if name in ("jpeg", "jpeg2000", "quantization") else 1e-4
        assert float((gpu.cpu() - cpu).abs().mean()) < tol, name
    plan = sample_composition(7, 5, generator=gen(2))
    shared, _ = apply_composition_group(x, plan)
    scratch, _ = apply_composition_from_scratch(x, plan)
    assert torch.allclose(shared, scratch, atol=1e-5)


def test_a_type_subset_draws_only_its_types_and_all_types_draw_as_none() -> None:
    # every type listed is the catalog itself: the same draws as no subset at all
    for seed in range(20):
        a = sample_composition(7, 3, generator=gen(seed))
        b = sample_composition(7, 3, generator=gen(seed), types=tuple(CATALOG))
        assert (a.types, a.var_pos, a.op_seeds) == (b.types, b.var_pos, b.op_seeds)
        assert torch.equal(a.severities, b.severities) and torch.equal(a.values, b.values)
    subset = ("gaussian_blur", "motion_blur", "jpeg", "darken")
    g, seen, sizes = gen(7), set(), set()
    for _ in range(200):
        plan = sample_composition(7, 3, generator=g, types=subset)
        seen.update(plan.types)
        sizes.add(len(plan.types))
    assert seen == set(subset)  # each kept type is drawn, and nothing else
    assert sizes == {1, 2, 3}  # n is capped at the groups the subset keeps (blur, compression, brightness)
    one_group = {sample_composition(7, 2, generator=g, types=("lens_blur",)).types for _ in range(20)}
    assert one_group == {("lens_blur",)}
    assert allowed_groups(subset) == {"blur": ("gaussian_blur", "motion_blur"), "compression": ("jpeg",),
                                      "brightness": ("darken",)}
    for bad, message in (((), "empty"), (("jpeg", "jpeg"), "repeats"), (("fog",), "unknown distortion type")):
        with pytest.raises(ValueError, match=message):
            sample_composition(3, 2, generator=g, types=bad)
    with pytest.raises(TypeError, match="not one string"):
        allowed_groups("jpeg")


def test_type_names_expand_groups_in_catalog_order() -> None:
    assert parse_type_names("jpeg, blur") == ("gaussian_blur", "lens_blur", "motion_blur", "jpeg")
    assert parse_type_names("blur,gaussian_blur") == ("gaussian_blur", "lens_blur", "motion_blur")
    assert len(parse_type_names(",".join(GROUPS))) == len(CATALOG) == 26
    with pytest.raises(ValueError, match="'fog' is neither"):
        parse_type_names("blur,fog")
    with pytest.raises(ValueError, match="no distortion type"):
        parse_type_names(" , ")
