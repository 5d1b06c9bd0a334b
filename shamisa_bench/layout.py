"""The structured step layout shared by the distortion engine and the relation graphs.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CompositionMeta",
    "ItemBatch",
    "LayoutSpec",
    "NodeMeta",
    "StepBatch",
    "build_node_meta",
    "collate_items",
    "step_order",
]

SEVERITY_SAMPLERS = ("gaussian", "uniform", "discrete")


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
    """

    n_items: int = 2
    n_contents: int = 3
    n_compositions: int = 4
    n_levels: int = 5
    crop_size: int = 224
    max_distortions: int = 7
    severity_sampler: str = "gaussian"

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

    @property
    def n_views(self) -> int:
        return 2 * self.n_contents

    @property
    def nodes_per_item(self) -> int:
        return self.n_views * (1 + self.n_compositions * self.n_levels)

    @property
    def n_nodes(self) -> int:
        return self.n_items * self.nodes_per_item


@dataclass(frozen=True)
class NodeMeta:
    """Per-node metadata of a step; every field has shape ``(N,)``.

    Attributes:
        item: item index of the node.
        view: view index (even = full scale, odd = x0.5 scale).
        is_ref: True for the reference (undistorted) crops.
        comp: composition index, -1 for references.
        level: level index inside the composition group, -1 for references.
        var_severity: severity index in [0, 4] of the composition's varying factor at this
            node (after integer rounding), NaN for references.
    """

    item: Tensor
    view: Tensor
    is_ref: Tensor
    comp: Tensor
    level: Tensor
    var_severity: Tensor

    def __len__(self) -> int:
        return int(self.item.numel())

    def to(self, device: torch.device | str) -> NodeMeta:
        return NodeMeta(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


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
class CompositionMeta:
    """What one composition group applied.

    Attributes:
        types: the n distortion type names, in the order they were applied.
        severities: ``(n_levels, n)`` severity indices actually applied (integer types
            rounded, then the index recomputed from the rounded value).
        values: ``(n_levels, n)`` parameter values actually applied.
        var_pos: the position (0..n-1) that varies across levels; every other column of
            ``severities`` is constant.
    """

    types: tuple[str, ...]
    severities: Tensor
    values: Tensor
    var_pos: int

    @property
    def var_severity(self) -> Tensor:
        """``(n_levels,)`` severity indices of the varying factor."""
        return self.severities[:, self.var_pos]


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
    return StepBatch(
        crops=torch.cat([item.crops for item in items])[step_order(spec)],
        nodes=build_node_meta(spec, var),
        compositions=tuple(item.compositions for item in items),
        spec=spec,
    )
