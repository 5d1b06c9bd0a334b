"""The step layout and builder: node order, crops of each item, collation into a step."""

from __future__ import annotations

import pytest
import torch

from shamisa_bench.distortions import apply_composition_group, sample_composition
from shamisa_bench.model.features import downscale_half
from shamisa_bench.perf.engine import synthetic_images
from shamisa_bench.train.steps import (
    CompositionMeta,
    ItemBatch,
    LayoutSpec,
    build_item,
    build_step,
    collate_items,
    crop_views,
    random_crop,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_build_step_reference_layout_sizes() -> None:
    spec = LayoutSpec(crop_size=24)  # the a0 layout with small crops: 252 nodes
    imgs = synthetic_images(6, 50, 60, seed=5)
    step = build_step([imgs[:3], imgs[3:]], spec, generator=gen(1))
    assert step.crops.shape == (252, 3, 24, 24)
    assert len(step.nodes) == 252 and step.spec == spec
    assert float(step.crops.min()) >= 0 and float(step.crops.max()) <= 1
    assert len(step.compositions) == 2 and all(len(c) == 4 for c in step.compositions)
    dist = ~step.nodes.is_ref
    for b in range(2):
        for c in range(4):
            meta = step.compositions[b][c]
            sel = dist & (step.nodes.item == b) & (step.nodes.comp == c)
            levels = step.nodes.level[sel]
            assert torch.equal(step.nodes.var_severity[sel], meta.var_severity[levels].float())
    small = LayoutSpec(n_items=2, n_contents=1, n_compositions=2, n_levels=2, crop_size=16)
    one = build_step([imgs[:1], imgs[1:2]], small, generator=gen(1))
    again = build_step([imgs[:1], imgs[1:2]], small, generator=gen(1))
    assert torch.equal(one.crops, again.crops)
    assert [[c.types for c in item] for item in one.compositions] == [
        [c.types for c in item] for item in again.compositions
    ]


def test_build_item_order_and_scales() -> None:
    spec = LayoutSpec(n_items=1, n_contents=2, n_compositions=2, n_levels=3, crop_size=16, max_distortions=3)
    h, w = 40, 64
    ramp = torch.linspace(0, 1, w).expand(3, h, w).contiguous()  # horizontal ramp, step 1/(w-1)
    item = build_item([ramp, ramp.flip(-1)], spec, generator=gen(4))
    assert item.crops.shape == (spec.nodes_per_item, 3, 16, 16)
    refs = item.crops[: spec.n_views]
    assert torch.equal(refs, crop_views([ramp, ramp.flip(-1)], 16, generator=gen(4)))
    step_full = (refs[0, 0, 0, 1:] - refs[0, 0, 0, :-1]).mean()
    step_half = (refs[1, 0, 0, 1:] - refs[1, 0, 0, :-1]).mean()
    assert float(step_full) == pytest.approx(1 / (w - 1), rel=1e-3)
    assert float(step_half) == pytest.approx(2 / (w - 1), rel=0.05)  # x0.5 view: twice the slope
    assert float(refs[2, 0, 0, 1] - refs[2, 0, 0, 0]) < 0  # content 1 is the flipped ramp
    # each composition's crops follow the references, level-major
    g = gen(4)
    views = crop_views([ramp, ramp.flip(-1)], 16, generator=g)
    plan = sample_composition(3, 3, "gaussian", generator=g)
    expected, _ = apply_composition_group(views, plan)
    assert torch.equal(item.crops[spec.n_views : spec.n_views + 3 * spec.n_views], expected)
    assert item.compositions[0].types == plan.types


def test_small_images_are_zero_padded() -> None:
    img = torch.ones(3, 20, 24)
    crop = random_crop(img, 32, generator=gen())
    assert crop.shape == (3, 32, 32)
    assert float(crop.sum()) == pytest.approx(3 * 20 * 24)
    # padded at the bottom and right, as the evaluation pads (iqa.head.prepare_images)
    assert float(crop[:, :20, :24].sum()) == 3 * 20 * 24
    assert float(crop[:, 20:].abs().sum()) == 0 and float(crop[:, :, 24:].abs().sum()) == 0
    assert downscale_half(img).shape == (3, 10, 12)
    views = crop_views([img], 32, generator=gen())
    assert float(views[1].sum()) == pytest.approx(3 * 10 * 12, rel=1e-5)


def test_builder_rejects_bad_contents() -> None:
    spec = LayoutSpec(n_items=1, n_contents=2, n_compositions=1, n_levels=2, crop_size=16)
    with pytest.raises(ValueError, match="2 contents"):
        build_item([torch.rand(3, 20, 20)], spec, generator=gen())
    with pytest.raises(ValueError, match=r"content 1 must have shape \(3, H, W\)"):
        build_item([torch.rand(3, 20, 20), torch.rand(20, 20)], spec, generator=gen())
    with pytest.raises(TypeError, match="content 0"):
        build_item([torch.zeros(3, 20, 20, dtype=torch.uint8), torch.rand(3, 20, 20)], spec, generator=gen())
    with pytest.raises(ValueError, match="items"):
        build_step([[torch.rand(3, 20, 20)] * 2] * 2, spec, generator=gen())


def test_collate_puts_each_crop_at_its_node():
    spec = LayoutSpec(n_items=2, n_contents=2, n_compositions=3, n_levels=2, crop_size=8)
    V, C, L = spec.n_views, spec.n_compositions, spec.n_levels
    items = []
    for b in range(spec.n_items):
        # per-item order: V references, then for each (comp, level) the V views; the pixel
        # value encodes (item, view, comp, level) so the step order can be read back
        codes = [1000 * b + 100 * v + 99 for v in range(V)]
        codes += [1000 * b + 100 * v + 10 * c + lv for c in range(C) for lv in range(L) for v in range(V)]
        crops = torch.tensor(codes, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 8, 8)
        comps = tuple(CompositionMeta(("jpeg",), torch.full((L, 1), float(c)), torch.zeros(L, 1), 0) for c in range(C))
        items.append(ItemBatch(crops=crops, compositions=comps))
    step = collate_items(items, spec)
    n = step.nodes
    got = step.crops[:, 0, 0, 0].long()
    want = torch.where(n.is_ref, 1000 * n.item + 100 * n.view + 99, 1000 * n.item + 100 * n.view + 10 * n.comp + n.level)
    assert torch.equal(got, want)
    assert float(n.var_severity[~n.is_ref][0]) == 0.0 and float(n.var_severity[-1]) == float(C - 1)


def test_a_layout_with_a_type_subset_builds_compositions_of_those_types_only() -> None:
    spec = LayoutSpec(n_items=2, n_contents=1, n_compositions=3, n_levels=2, crop_size=16,
                      distortion_types=["jpeg", "darken"])
    assert spec.distortion_types == ("jpeg", "darken")  # a list from a JSON config becomes a tuple
    images = [[torch.rand(3, 24, 24)] for _ in range(2)]
    step = build_step(images, spec, generator=gen(1))
    drawn = {t for item in step.compositions for meta in item for t in meta.types}
    assert drawn and drawn <= {"jpeg", "darken"}
    with pytest.raises(ValueError, match="unknown distortion type"):
        LayoutSpec(distortion_types=("fog",))
    with pytest.raises(TypeError, match="not one string"):
        LayoutSpec(distortion_types="jpeg")
