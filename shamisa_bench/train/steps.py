"""A pretraining step: its structured layout, its node order, and the crops that fill it.

One pretraining step holds ``n_items`` items. Each item has ``n_views`` reference views
(``n_contents`` contents, each cut at full scale and at x0.5 scale), and each of its
``n_compositions`` compositions is applied to every view at ``n_levels`` severities of
its varying position (a *composition group*).

Node order inside a step is fixed and is the reference implementation's: every
reference crop of the step first, then every distorted crop::

    for item in range(n_items):
        for view in range(n_views):
            node(item, view, ref)                    # reference crops
    for item in range(n_items):
        for view in range(n_views):
            for comp in range(n_compositions):
                for level in range(n_levels):
                    node(item, view, comp, level)    # distorted crops

The order decides which of two directed links is an ``i < j`` entry of the graph, and the
two VICReg halves (first half of the references plus first half of the distorted crops).
An :class:`ItemBatch` keeps its own per-item order (references, then compositions, levels
and views, as the engine makes them); :func:`collate_items` reorders.

View ``v`` is cut at full scale when ``v`` is even and at x0.5 scale when ``v`` is odd, so
views ``2c`` and ``2c + 1`` come from content ``c``. The reference a0 layout (2 items,
3 contents, 4 compositions, 5 levels) has 2 * (6 + 6 * 4 * 5) = 252 nodes.

Building the crops (:func:`build_item`, :func:`build_step`). Per item: every content gives
two reference views, a random ``crop_size`` crop at full scale (view ``2c``) and one of the
image down-scaled by 0.5 with an antialiased bilinear filter (view ``2c + 1``). Each of the
item's compositions is then applied to all views as a composition group
(:func:`shamisa_bench.distortions.apply_composition_group`). An image (or half-scale image)
smaller than the crop is zero-padded at the bottom and right up to the crop size first, as
the evaluation pads small images (``shamisa_bench.iqa.head.prepare_images``).

The per-node metadata type :class:`~shamisa_bench.graphs.nodes.NodeMeta` (what the graphs
read) and the per-composition record
:class:`~shamisa_bench.distortions.compose.CompositionMeta` (what the engine applied) live
with their readers and writers; they are importable from here as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from shamisa_bench.distortions.catalog import SEVERITY_SAMPLERS
from shamisa_bench.distortions.compose import (
    CompositionMeta,
    allowed_groups,
    apply_composition_group,
    sample_composition,
)
from shamisa_bench.graphs.nodes import NodeMeta
from shamisa_bench.model.features import downscale_half

__all__ = [
    "SEVERITY_SAMPLERS",
    "CompositionMeta",
    "ItemBatch",
    "LayoutSpec",
    "NodeMeta",
    "StepBatch",
    "build_item",
    "build_node_meta",
    "build_step",
    "collate_items",
    "crop_views",
    "random_crop",
    "step_order",
]

@dataclass(frozen=True)
class LayoutSpec:
    """Sizes of one step's layout.

    Attributes:
        n_items: items per step (the reference uses 2).
        n_contents: contents per item; each gives a full-scale and a x0.5 view.
        n_compositions: compositions per item, each shared by all of the item's views.
        n_levels: severities of the varying position per composition.
        crop_size: side of the square crops, in pixels.
        max_distortions: compositions draw n ~ U{1..max_distortions} distortions (at most 7,
            the number of groups).
        severity_sampler: ``gaussian`` (clip(|N(0, 2.5)|, 0, 4)), ``uniform`` or ``discrete``.
        distortion_types: draw compositions from these catalog types only (default None:
            all 26, as the reference); see :func:`~shamisa_bench.distortions.sample_composition`.
    """

    n_items: int = 2
    n_contents: int = 3
    n_compositions: int = 4
    n_levels: int = 5
    crop_size: int = 224
    max_distortions: int = 7
    severity_sampler: str = "gaussian"
    distortion_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("n_items", "n_contents", "n_compositions", "n_levels", "crop_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LayoutSpec.{name} must be a positive int, got {value!r}")
        if not 1 <= self.max_distortions <= 7:
            raise ValueError(
                f"LayoutSpec.max_distortions must be in 1..7 (one per group), got {self.max_distortions!r}"
            )
        if self.severity_sampler not in SEVERITY_SAMPLERS:
            raise ValueError(
                f"unknown severity_sampler {self.severity_sampler!r}; choose one of {SEVERITY_SAMPLERS}"
            )
        if self.distortion_types is not None:
            if isinstance(self.distortion_types, str):
                raise TypeError("LayoutSpec.distortion_types must be a sequence of type names, not one string")
            # a config read back from JSON holds a list: keep the spec hashable and comparable
            object.__setattr__(self, "distortion_types", tuple(self.distortion_types))
            allowed_groups(self.distortion_types)  # raises on an empty, unknown or repeated name

    @property
    def n_views(self) -> int:
        return 2 * self.n_contents

    @property
    def nodes_per_item(self) -> int:
        return self.n_views * (1 + self.n_compositions * self.n_levels)

    @property
    def n_nodes(self) -> int:
        return self.n_items * self.nodes_per_item


def build_node_meta(spec: LayoutSpec, var_severity: Tensor) -> NodeMeta:
    """Node metadata of a step in the module's fixed node order.

    Args:
        spec: the layout sizes.
        var_severity: ``(n_items, n_compositions, n_levels)`` severity indices of each
            composition's varying factor.

    Returns:
        NodeMeta with ``spec.n_nodes`` nodes.

    Raises:
        ValueError: if ``var_severity`` does not have the layout's shape.
    """
    expected = (spec.n_items, spec.n_compositions, spec.n_levels)
    if tuple(var_severity.shape) != expected:
        raise ValueError(f"var_severity must have shape {expected}, got {tuple(var_severity.shape)}")
    B, V, C, L = spec.n_items, spec.n_views, spec.n_compositions, spec.n_levels
    ref_item = torch.arange(B).repeat_interleave(V)
    ref_view = torch.arange(V).repeat(B)
    # distorted nodes: (item, view, comp, level), level fastest
    dist_item = torch.arange(B).repeat_interleave(V * C * L)
    dist_view = torch.arange(V).repeat_interleave(C * L).repeat(B)
    dist_comp = torch.arange(C).repeat_interleave(L).repeat(B * V)
    dist_level = torch.arange(L).repeat(B * V * C)
    sev = var_severity.to(torch.float32)[dist_item, dist_comp, dist_level]
    n_ref = B * V
    return NodeMeta(
        item=torch.cat([ref_item, dist_item]),
        view=torch.cat([ref_view, dist_view]),
        is_ref=torch.cat([torch.ones(n_ref, dtype=torch.bool), torch.zeros(sev.numel(), dtype=torch.bool)]),
        comp=torch.cat([torch.full((n_ref,), -1), dist_comp]),
        level=torch.cat([torch.full((n_ref,), -1), dist_level]),
        var_severity=torch.cat([torch.full((n_ref,), float("nan")), sev]),
    )


def step_order(spec: LayoutSpec) -> Tensor:
    """Where each node of the step comes from in the concatenated per-item crops.

    ``torch.cat([item.crops for item in items])[step_order(spec)]`` puts the crops in the
    step's node order (:func:`build_node_meta`). Per item, crops are the ``n_views``
    references, then for each composition and level the ``n_views`` distorted views.

    Returns:
        ``(n_nodes,)`` long indices.
    """
    B, V, C, L = spec.n_items, spec.n_views, spec.n_compositions, spec.n_levels
    per_item = spec.nodes_per_item
    item = torch.arange(B)
    refs = (item[:, None] * per_item + torch.arange(V)[None, :]).reshape(-1)
    b, v, c, lv = torch.meshgrid(item, torch.arange(V), torch.arange(C), torch.arange(L), indexing="ij")
    dists = (b * per_item + V + (c * L + lv) * V + v).reshape(-1)
    return torch.cat([refs, dists])


@dataclass(frozen=True)
class ItemBatch:
    """One item of a step: its crops in node order plus what each composition applied.

    Attributes:
        crops: ``(nodes_per_item, 3, S, S)`` float in [0, 1]: the ``n_views`` references,
            then for each composition and level the ``n_views`` distorted views.
        compositions: one CompositionMeta per composition.
    """

    crops: Tensor
    compositions: tuple[CompositionMeta, ...]


@dataclass(frozen=True)
class StepBatch:
    """A whole step: crops, per-node metadata and the compositions of every item.

    Attributes:
        crops: ``(N, 3, S, S)`` float in [0, 1].
        nodes: per-node metadata, ``N`` nodes.
        compositions: ``compositions[item][comp]``.
        spec: the layout sizes.
    """

    crops: Tensor
    nodes: NodeMeta
    compositions: tuple[tuple[CompositionMeta, ...], ...]
    spec: LayoutSpec


def collate_items(items: Sequence[ItemBatch], spec: LayoutSpec) -> StepBatch:
    """Concatenate ``spec.n_items`` items into a step.

    Raises:
        ValueError: if the number of items or their sizes do not match ``spec``.
    """
    if len(items) != spec.n_items:
        raise ValueError(f"expected {spec.n_items} items for this layout, got {len(items)}")
    for i, item in enumerate(items):
        if item.crops.shape[0] != spec.nodes_per_item or len(item.compositions) != spec.n_compositions:
            raise ValueError(
                f"item {i} has {item.crops.shape[0]} crops and {len(item.compositions)} compositions; "
                f"the layout needs {spec.nodes_per_item} and {spec.n_compositions}"
            )
    var = torch.stack(
        [torch.stack([c.var_severity.to(torch.float32) for c in item.compositions]) for item in items]
    )
    # each item's crops copied once, straight to their rows in node order: the same tensor as
    # torch.cat(crops)[step_order(spec)], without the intermediate copy (a whole step is 150 MB
    # in the a0 layout, and the gather of advanced indexing is slower than a row copy)
    order = step_order(spec)
    rows = torch.empty_like(order)
    rows[order] = torch.arange(order.numel())
    first = items[0].crops
    crops = torch.empty((order.numel(), *first.shape[1:]), dtype=first.dtype, device=first.device)
    per_item = spec.nodes_per_item
    for i, item in enumerate(items):
        crops.index_copy_(0, rows[i * per_item:(i + 1) * per_item].to(first.device), item.crops)
    return StepBatch(
        crops=crops,
        nodes=build_node_meta(spec, var),
        compositions=tuple(item.compositions for item in items),
        spec=spec,
    )


# --------------------------------------------------------------------------- building the crops


def _check_content(img: object, i: int) -> Tensor:
    if not isinstance(img, Tensor) or not img.is_floating_point():
        raise TypeError(
            f"content {i} must be a floating-point (3, H, W) tensor in [0, 1], got {type(img).__name__}"
            + (f" of dtype {img.dtype}" if isinstance(img, Tensor) else "")
        )
    if img.dim() != 3 or img.shape[0] != 3 or min(img.shape) < 1:
        raise ValueError(f"content {i} must have shape (3, H, W), got {tuple(img.shape)}")
    return img


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
        views.append(random_crop(downscale_half(img), crop_size, generator=generator))
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
        plan = sample_composition(spec.max_distortions, spec.n_levels, spec.severity_sampler, generator=generator,
                                  types=spec.distortion_types)
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
