"""Build the crops of a pretraining step in the layout of :mod:`shamisa_bench.layout`.

Per item: every content gives two reference views, a random ``crop_size`` crop at full
scale (view ``2c``) and one of the image down-scaled by 0.5 with an antialiased bilinear
filter (view ``2c + 1``). Each of the item's compositions is then applied to all views as a
composition group. An image (or half-scale image) smaller than the crop is zero-padded at
the bottom and right up to the crop size first, as the evaluation pads small images
(``shamisa_bench.heads.prepare_images``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from shamisa_bench.distortions.compose import apply_composition_group, sample_composition
from shamisa_bench.layout import ItemBatch, LayoutSpec, StepBatch, collate_items

__all__ = ["build_item", "build_step", "crop_views", "half_scale", "random_crop"]


def _check_content(img: object, i: int) -> Tensor:
    if not isinstance(img, Tensor) or not img.is_floating_point():
        raise TypeError(
            f"content {i} must be a floating-point (3, H, W) tensor in [0, 1], got {type(img).__name__}"
            + (f" of dtype {img.dtype}" if isinstance(img, Tensor) else "")
        )
    if img.dim() != 3 or img.shape[0] != 3 or min(img.shape) < 1:
        raise ValueError(f"content {i} must have shape (3, H, W), got {tuple(img.shape)}")
    return img


def half_scale(img: Tensor) -> Tensor:
    """``(3, H, W)`` -> ``(3, max(1, H // 2), max(1, W // 2))``, antialiased bilinear."""
    h, w = img.shape[-2:]
    size = (max(1, h // 2), max(1, w // 2))
    return F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def random_crop(img: Tensor, size: int, *, generator: torch.Generator) -> Tensor:
    """A uniformly placed ``size x size`` crop; zero-padded (bottom/right, as the evaluation
    pads) when the image is smaller.

    Always draws two integers (top, left) from ``generator``, whatever the image size.
    """
    h, w = img.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph))
        h, w = img.shape[-2:]
    dev = generator.device
    top = int(torch.randint(h - size + 1, (1,), generator=generator, device=dev).item())
    left = int(torch.randint(w - size + 1, (1,), generator=generator, device=dev).item())
    return img[:, top : top + size, left : left + size]


def crop_views(contents: Sequence[Tensor], crop_size: int, *, generator: torch.Generator) -> Tensor:
    """Reference views of the contents: ``(2 * len(contents), 3, S, S)``, full then half scale.

    Raises:
        TypeError: if a content is not a floating-point tensor.
        ValueError: if a content is not ``(3, H, W)``.
    """
    views = []
    for i, img in enumerate(contents):
        img = _check_content(img, i)
        views.append(random_crop(img, crop_size, generator=generator))
        views.append(random_crop(half_scale(img), crop_size, generator=generator))
    return torch.stack(views).clamp(0.0, 1.0)


def build_item(contents: Sequence[Tensor], spec: LayoutSpec, *, generator: torch.Generator) -> ItemBatch:
    """Crops and composition metadata of one item, in the layout's node order.

    Args:
        contents: ``spec.n_contents`` images ``(3, H, W)`` float in [0, 1] (any sizes, one device).
        spec: the layout sizes.
        generator: the only source of randomness (crops, then compositions).

    Returns:
        ItemBatch with ``spec.nodes_per_item`` crops: the ``n_views`` references, then each
        composition's ``n_levels * n_views`` crops, level-major.

    Raises:
        ValueError: if the number of contents does not match ``spec.n_contents``.
    """
    if len(contents) != spec.n_contents:
        raise ValueError(f"the layout needs {spec.n_contents} contents per item, got {len(contents)}")
    views = crop_views(contents, spec.crop_size, generator=generator)
    crops = [views]
    metas = []
    for _ in range(spec.n_compositions):
        plan = sample_composition(spec.max_distortions, spec.n_levels, spec.severity_sampler, generator=generator)
        out, meta = apply_composition_group(views, plan)
        crops.append(out)
        metas.append(meta)
    return ItemBatch(crops=torch.cat(crops), compositions=tuple(metas))


def build_step(
    images_per_item: Sequence[Sequence[Tensor]], spec: LayoutSpec, *, generator: torch.Generator
) -> StepBatch:
    """A whole step: ``spec.n_items`` items built with :func:`build_item`, collated.

    Args:
        images_per_item: for each item, its ``spec.n_contents`` images ``(3, H, W)``.
        spec: the layout sizes (``LayoutSpec()`` is the reference a0 layout, 252 crops).
        generator: the only source of randomness.

    Raises:
        ValueError: if the numbers of items or contents do not match ``spec``.
    """
    if len(images_per_item) != spec.n_items:
        raise ValueError(f"the layout needs {spec.n_items} items per step, got {len(images_per_item)}")
    items = [build_item(contents, spec, generator=generator) for contents in images_per_item]
    return collate_items(items, spec)
