"""Compositions of distortions and composition groups ("one factor varies").

A composition applies ``n ~ U{1..max_distortions}`` distortions in sequence, from ``n``
distinct groups in random order with one type drawn uniformly inside each group, clamping
to [0, 1] after each. A *composition group* applies one composition to a batch of views at
``n_levels`` severities of one varying position; every other position keeps one shared
severity.

Randomness. :func:`sample_composition` takes everything from the caller's generator: the
types, the varying position, the severities, and one 62-bit seed per position. Each
operation then draws its own randomness (noise fields, angles, patch positions...) from a
fresh CPU generator seeded with its position's seed, once for the ``V`` views; when it is
applied to all levels at once its draws are tiled over the levels. Operation ``k`` of view
``v`` therefore sees the same random numbers at every level and in either evaluation order,
so :func:`apply_composition_group` (prefix computed once, each operation one batched call)
and :func:`apply_composition_from_scratch` (every level on its own) give bitwise identical
crops. The arithmetic is arranged for this too: every elementwise step is exactly rounded
or batch-independent (see :mod:`~shamisa_bench.distortions.colorspace` and
:mod:`~shamisa_bench.distortions.filters`), and the few transcendental ``pow`` calls run
on blocks of ``V`` images (:func:`~shamisa_bench.distortions.colorspace.pow_blocks`). Sharing the draws across levels also means the levels of a group differ only in the
varying factor's severity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from shamisa_bench.distortions.base import tile_draws
from shamisa_bench.distortions.catalog import (
    GROUPS,
    SEVERITY_SAMPLERS,
    check_type,
    sample_severities,
    severity_to_value,
    types_in_group,
)
from shamisa_bench.distortions.colorspace import pow_blocks
from shamisa_bench.distortions.engine import (
    apply_with_draws,
    check_images,
    draw_randomness,
)

__all__ = [
    "CompositionMeta",
    "CompositionPlan",
    "allowed_groups",
    "apply_composition_from_scratch",
    "apply_composition_group",
    "make_composition",
    "sample_composition",
]

_SEED_HIGH = 2**62


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
class CompositionPlan:
    """Everything a composition group applies; applying a plan is deterministic.

    Attributes:
        types: the n type names, in application order.
        severities: ``(n_levels, n)`` float32 severity indices actually applied (after
            integer rounding); column ``var_pos`` varies, the others are constant.
        values: ``(n_levels, n)`` float64 parameter values actually applied.
        var_pos: the varying position, 0..n-1.
        op_seeds: one seed per position for that operation's own randomness.
    """

    types: tuple[str, ...]
    severities: Tensor
    values: Tensor
    var_pos: int
    op_seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.types)
        if n < 1:
            raise ValueError("a composition needs at least one distortion")
        for name in self.types:
            check_type(name)
        groups = [check_type(t).group for t in self.types]
        if len(set(groups)) != n:
            raise ValueError(f"composition types must come from distinct groups, got {self.types}")
        if self.severities.dim() != 2 or self.severities.shape[1] != n or self.values.shape != self.severities.shape:
            raise ValueError(
                f"severities and values must both have shape (n_levels, {n}), got "
                f"{tuple(self.severities.shape)} and {tuple(self.values.shape)}"
            )
        if not 0 <= self.var_pos < n:
            raise ValueError(f"var_pos must be in 0..{n - 1}, got {self.var_pos}")
        if len(self.op_seeds) != n:
            raise ValueError(f"need {n} op_seeds, got {len(self.op_seeds)}")

    @property
    def n_levels(self) -> int:
        return int(self.severities.shape[0])

    def meta(self) -> CompositionMeta:
        """The layout's metadata record of this composition group."""
        return CompositionMeta(
            types=self.types, severities=self.severities.clone(), values=self.values.clone(), var_pos=self.var_pos
        )


def make_composition(
    types: Sequence[str],
    shared_severities: Sequence[float],
    var_severities: Sequence[float],
    var_pos: int,
    op_seeds: Sequence[int] | None = None,
) -> CompositionPlan:
    """Build a plan from explicit choices (integer types rounded, severities recomputed).

    Args:
        types: n type names from distinct groups, in application order.
        shared_severities: n severities in [0, 4]; entry ``var_pos`` is ignored.
        var_severities: one severity per level for position ``var_pos``.
        var_pos: the varying position.
        op_seeds: n seeds for the operations' randomness (default 0, 1, ...).

    Raises:
        ValueError: for unknown types, repeated groups, bad lengths or severities.
    """
    n = len(types)
    if len(shared_severities) != n:
        raise ValueError(f"need {n} shared severities, got {len(shared_severities)}")
    if len(var_severities) < 1:
        raise ValueError("need at least one level")
    if not 0 <= var_pos < n:
        raise ValueError(f"var_pos must be in 0..{n - 1}, got {var_pos}")
    sev = torch.empty(len(var_severities), n, dtype=torch.float32)
    val = torch.empty(len(var_severities), n, dtype=torch.float64)
    for k, name in enumerate(types):
        for lvl in range(len(var_severities)):
            s = var_severities[lvl] if k == var_pos else shared_severities[k]
            # Severities are stored as float32: derive the value from the float32 severity,
            # so the value recomputed from the metadata is exactly the value applied.
            s32 = float(torch.tensor(float(s), dtype=torch.float32))
            val[lvl, k], sev[lvl, k] = severity_to_value(name, s32)
    seeds = tuple(int(s) for s in op_seeds) if op_seeds is not None else tuple(range(n))
    return CompositionPlan(types=tuple(types), severities=sev, values=val, var_pos=int(var_pos), op_seeds=seeds)


def allowed_groups(types: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """The groups a composition may draw from, each with its allowed types, in catalog order.

    Args:
        types: a subset of the catalog's type names; None allows all 26.

    Raises:
        ValueError: for an empty subset, an unknown or repeated type name.
    """
    if types is None:
        return {group: types_in_group(group) for group in GROUPS}
    if isinstance(types, str):
        raise TypeError("types must be a sequence of type names, not one string")
    names = list(types)
    if not names:
        raise ValueError("the distortion-type subset is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"the distortion-type subset repeats a name: {names}")
    for name in names:
        check_type(name)
    chosen = set(names)
    out = {group: tuple(t for t in types_in_group(group) if t in chosen) for group in GROUPS}
    return {group: members for group, members in out.items() if members}


def sample_composition(
    max_distortions: int = 7,
    n_levels: int = 5,
    sampler: str = "gaussian",
    *,
    generator: torch.Generator,
    types: Sequence[str] | None = None,
) -> CompositionPlan:
    """Draw a composition group: types, varying position, severities and operation seeds.

    Args:
        max_distortions: n is drawn from U{1..max_distortions} (1..7).
        n_levels: severities of the varying position (>= 1).
        sampler: severity sampler, see :func:`sample_severities`.
        generator: the only source of randomness.
        types: draw only these catalog types (default: all). The groups that keep a type
            are the ones drawn from, uniformly, with the kept types uniform inside each;
            n is capped at the number of such groups. With None the draws are exactly
            those of the full catalog.

    Raises:
        ValueError: for ``max_distortions`` outside 1..7, ``n_levels < 1``, an unknown
            sampler, or a bad ``types`` subset (see :func:`allowed_groups`).
    """
    if not isinstance(max_distortions, int) or not 1 <= max_distortions <= len(GROUPS):
        raise ValueError(f"max_distortions must be in 1..{len(GROUPS)}, got {max_distortions!r}")
    if not isinstance(n_levels, int) or n_levels < 1:
        raise ValueError(f"n_levels must be a positive int, got {n_levels!r}")
    if sampler not in SEVERITY_SAMPLERS:
        raise ValueError(f"unknown severity sampler {sampler!r}; choose one of {', '.join(SEVERITY_SAMPLERS)}")
    groups = list(allowed_groups(types).values())
    dev = generator.device
    n_max = min(max_distortions, len(groups))
    n = int(torch.randint(1, n_max + 1, (1,), generator=generator, device=dev).item())
    group_idx = torch.randperm(len(groups), generator=generator, device=dev)[:n].tolist()
    drawn = []
    for g in group_idx:
        members = groups[g]
        drawn.append(members[int(torch.randint(len(members), (1,), generator=generator, device=dev).item())])
    var_pos = int(torch.randint(n, (1,), generator=generator, device=dev).item())
    shared = sample_severities(n, sampler, generator=generator).tolist()
    varying = sample_severities(n_levels, sampler, generator=generator).tolist()
    seeds = torch.randint(0, _SEED_HIGH, (n,), generator=generator, device=dev).tolist()
    return make_composition(drawn, shared, varying, var_pos, seeds)


def _op_draws(plan: CompositionPlan, k: int, n_views: int, h: int, w: int) -> tuple[Tensor, ...]:
    gen = torch.Generator(device="cpu").manual_seed(plan.op_seeds[k])
    vmax = float(plan.values[:, k].max())
    return draw_randomness(plan.types[k], gen, n_views, h, w, vmax)


def _resolve_plan(
    plan: CompositionPlan | None,
    max_distortions: int,
    n_levels: int,
    sampler: str,
    generator: torch.Generator | None,
) -> CompositionPlan:
    if plan is not None:
        if generator is not None:
            raise TypeError("pass either a plan or a generator to sample one, not both")
        if not isinstance(plan, CompositionPlan):
            raise TypeError(f"plan must be a CompositionPlan, got {type(plan).__name__}")
        return plan
    if generator is None:
        raise TypeError("pass a plan, or a generator to sample one")
    return sample_composition(max_distortions, n_levels, sampler, generator=generator)


def apply_composition_group(
    views: Tensor,
    plan: CompositionPlan | None = None,
    *,
    max_distortions: int = 7,
    n_levels: int = 5,
    sampler: str = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, CompositionMeta]:
    """Apply a composition group to ``V`` views, sharing the prefix across levels.

    Operations before ``plan.var_pos`` run once on the ``V`` views; from the varying
    position on, each operation runs once on all ``n_levels * V`` crops.

    Args:
        views: ``(V, 3, H, W)`` float in [0, 1] (CPU or CUDA).
        plan: from :func:`sample_composition` or :func:`make_composition`; when omitted,
            one is sampled from ``generator`` with ``max_distortions``, ``n_levels`` and
            ``sampler``.
        generator: only to sample the plan (applying a plan needs no generator).

    Returns:
        ``(n_levels * V, 3, H, W)`` crops, level-major (``[level 0: views 0..V-1, level 1: ...]``),
        and the group's :class:`CompositionMeta`.

    Raises:
        TypeError: if neither or both of ``plan`` and ``generator`` are given.
        ValueError: for views that are not ``(V, 3, H, W)`` or bad sampling arguments.
    """
    views = check_images(views, "views")
    plan = _resolve_plan(plan, max_distortions, n_levels, sampler, generator)
    n_views, _, h, w = views.shape
    levels = plan.n_levels
    y = views
    with pow_blocks(n_views):
        y = _apply_shared(y, plan, n_views, h, w, levels)
    return y, plan.meta()


def _apply_shared(y: Tensor, plan: CompositionPlan, n_views: int, h: int, w: int, levels: int) -> Tensor:
    for k, name in enumerate(plan.types):
        draws = _op_draws(plan, k, n_views, h, w)
        if k < plan.var_pos:
            y = apply_with_draws(y, name, plan.values[0, k].expand(n_views).contiguous(), draws)
        elif k == plan.var_pos:
            y = y.repeat(levels, 1, 1, 1)
            vals = plan.values[:, k].repeat_interleave(n_views).contiguous()
            y = apply_with_draws(y, name, vals, tile_draws(draws, levels))
        else:
            vals = plan.values[0, k].expand(levels * n_views).contiguous()
            y = apply_with_draws(y, name, vals, tile_draws(draws, levels))
    return y


def apply_composition_from_scratch(
    views: Tensor,
    plan: CompositionPlan | None = None,
    *,
    max_distortions: int = 7,
    n_levels: int = 5,
    sampler: str = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, CompositionMeta]:
    """Reference path: apply every level's whole composition on its own.

    Same contract and, given the same plan (or the same generator state), bitwise the same
    output as :func:`apply_composition_group`, without any sharing or batching of levels.
    """
    views = check_images(views, "views")
    plan = _resolve_plan(plan, max_distortions, n_levels, sampler, generator)
    n_views, _, h, w = views.shape
    out = []
    with pow_blocks(n_views):
        for lvl in range(plan.n_levels):
            y = views
            for k, name in enumerate(plan.types):
                draws = _op_draws(plan, k, n_views, h, w)
                y = apply_with_draws(y, name, plan.values[lvl, k].expand(n_views).contiguous(), draws)
            out.append(y)
    return torch.cat(out), plan.meta()
