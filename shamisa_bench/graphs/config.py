"""Configuration of the SHAMISA relation graphs and the named ablations.

Every branch can be switched off and scaled from configuration, so each ablation of the
paper is one :class:`GraphConfig` (plus, for the loss-side ablations, one
:class:`shamisa_bench.losses.LossConfig`; both accept every name in :data:`ABLATIONS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

__all__ = ["ABLATIONS", "AGGREGATORS", "BRANCHES", "ROUNDED_BRANCH_COEFFICIENTS", "GraphConfig"]

#: The six branches, in the fixed order used by every per-branch tensor ``(6,)``.
BRANCHES: tuple[str, ...] = ("ref_dist", "dist_dist", "ref_ref", "structural", "knn", "transport")

#: Metadata branches (known distortion parameters) and feature-structure branches (on h).
METADATA_BRANCHES: tuple[str, ...] = ("ref_dist", "dist_dist", "ref_ref", "structural")
STRUCTURE_BRANCHES: tuple[str, ...] = ("knn", "transport")

AGGREGATORS: tuple[str, ...] = ("learned", "fixed")

#: The branch coefficients rounded to 4 significant digits: what every run before the exact
#: values were adopted used (the ``lite`` and ``lite-cpu`` presets and the shipped encoder keep
#: them; ``PretrainConfig.coefficients == "rounded"``). The defaults of :class:`GraphConfig`
#: are the reference configuration's values in full.
ROUNDED_BRANCH_COEFFICIENTS: dict[str, float] = {
    "ref_dist_coef": 0.8039,
    "dist_dist_coef": 0.1790,
    "ref_ref_coef": 0.5766,
    "structural_coef": 0.6011,
    "knn_coef": 0.2087,
    "transport_coef": 0.3670,
}

#: Ablation names accepted by :meth:`GraphConfig.ablation` and ``LossConfig.ablation``.
#: Graph-side: ``full``, ``binary``, ``fixed_weights``, ``no_<branch>``, ``metadata_only``,
#: ``structure_only``, ``vicreg_binary``. Loss-side: ``no_regulariser``, ``no_ot`` (these
#: leave the graph at its defaults), and ``vicreg_binary`` (changes both).
ABLATIONS: tuple[str, ...] = (
    "full",
    "binary",
    "fixed_weights",
    *(f"no_{b}" for b in BRANCHES),
    "metadata_only",
    "structure_only",
    "vicreg_binary",
    "no_regulariser",
    "no_ot",
)


@dataclass(frozen=True)
class GraphConfig:
    """Relation-graph settings; defaults are the reference a0 configuration.

    The branch coefficients are the reference configuration's (``configs/shamisa_a0.yaml``)
    to the last digit; :data:`ROUNDED_BRANCH_COEFFICIENTS` holds the 4-digit values that
    earlier runs used.

    Attributes:
        enable_ref_dist: reference view -> its distorted crops, weight k(s).
        enable_dist_dist: distorted pairs of one item and composition, weight k(|s_i - s_j|).
        enable_ref_ref: all reference views of the step, weight 1.
        enable_structural: same item, composition and level, other view of equal parity.
        enable_knn: k-nearest neighbours on the current h (not detached).
        enable_transport: prototype / Sinkhorn transport affinities.
        ref_dist_coef: coefficient of the ref-dist branch (0.80387...).
        dist_dist_coef: coefficient of the dist-dist branch (0.17896...).
        ref_ref_coef: coefficient of the ref-ref branch (0.57657...).
        structural_coef: coefficient of the structural branch (0.60108...).
        knn_coef: coefficient of the kNN branch (0.20874...).
        transport_coef: coefficient of the transport branch (0.36703...).
        severity_rate: the severity kernel is ``k(d) = exp(-severity_rate * d)`` (3/4).
        binary: metadata weights all 1 instead of ``k(.)`` (the "binary relations" ablation).
        dist_dist_topk: the dist-dist branch keeps its ``topk`` heaviest directed entries (4096).
        knn_k: neighbours per node of the kNN branch (31); clipped to ``N - 1``.
        knn_residual: add ``knn_coef * A_knn`` to G a second time, on top of its
            aggregator-weighted share. Not the reference (where kNN enters G once); off.
        n_prototypes: outputs of the prototype layer (32).
        temperature: ``P = softmax(logits / temperature)`` (0.1).
        sinkhorn_eps: entropic regularisation of the Sinkhorn codes (0.05).
        sinkhorn_iters: Sinkhorn iterations (6).
        transport_topk_factor: the transport branch keeps the global top ``factor * N`` of the
            ``N^2`` directed entries (8).
        aggregator: ``learned`` (the MLP reads edge counts and weight sums) or ``fixed``
            (uniform weights over the enabled branches).
        aggregator_hidden: hidden width of the aggregator MLP (24).
        stop_grad: detach the aggregator's branch weights (as in the reference run).
        detach_structure: build the kNN and transport branches on detached features, so G
            carries no gradient to the encoder (L_ot still trains the prototypes and h).
            Not the reference, where the kNN affinities are differentiable; off. With it on,
            R_graph (which rewards heavier edges) can no longer pull feature-space
            neighbours together, and the graph pull can no longer push them apart: the
            encoder learns only through z and L_ot.
    """

    enable_ref_dist: bool = True
    enable_dist_dist: bool = True
    enable_ref_ref: bool = True
    enable_structural: bool = True
    enable_knn: bool = True
    enable_transport: bool = True
    ref_dist_coef: float = 0.8038735892351129
    dist_dist_coef: float = 0.1789641360878255
    ref_ref_coef: float = 0.5765695739376243
    structural_coef: float = 0.6010794863656556
    knn_coef: float = 0.20874201442160423
    transport_coef: float = 0.3670314792148166
    severity_rate: float = 0.75
    binary: bool = False
    dist_dist_topk: int = 4096
    knn_k: int = 31
    knn_residual: bool = False
    n_prototypes: int = 32
    temperature: float = 0.1
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 6
    transport_topk_factor: int = 8
    aggregator: str = "learned"
    aggregator_hidden: int = 24
    stop_grad: bool = True
    detach_structure: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise TypeError(f"GraphConfig.{f.name} must be a bool, got {value!r}")
            elif f.type in ("int", int):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"GraphConfig.{f.name} must be a positive int, got {value!r}")
            elif f.type in ("float", float) and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise ValueError(f"GraphConfig.{f.name} must be a finite number, got {value!r}")
        for b in BRANCHES:
            if getattr(self, f"{b}_coef") < 0:
                raise ValueError(f"GraphConfig.{b}_coef must be >= 0, got {getattr(self, f'{b}_coef')!r}")
        for name in ("severity_rate",):
            if getattr(self, name) < 0:
                raise ValueError(f"GraphConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("temperature", "sinkhorn_eps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GraphConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"unknown GraphConfig.aggregator {self.aggregator!r}; choose one of {AGGREGATORS}")
        if not self.active_branches():
            raise ValueError("GraphConfig enables no branch; enable at least one of " + ", ".join(BRANCHES))

    def active_branches(self) -> tuple[str, ...]:
        """Names of the enabled branches, in :data:`BRANCHES` order."""
        return tuple(b for b in BRANCHES if getattr(self, f"enable_{b}"))

    def coefficients(self) -> tuple[float, ...]:
        """The six branch coefficients in :data:`BRANCHES` order (disabled ones included)."""
        return tuple(float(getattr(self, f"{b}_coef")) for b in BRANCHES)

    @classmethod
    def ablation(cls, name: str, **overrides: object) -> GraphConfig:
        """The graph configuration of a named ablation.

        * ``full``: all six branches, learned aggregator (the reference a0 graph).
        * ``binary``: metadata weights all 1 (ref-dist and dist-dist lose the severity
          kernel; ref-ref and structural are 1 anyway); dist-dist still keeps its top-k.
        * ``fixed_weights``: uniform aggregator weights over the enabled branches.
        * ``no_<branch>``: that branch off, the others as in ``full``.
        * ``metadata_only``: ref-dist, dist-dist, ref-ref, structural.
        * ``structure_only``: kNN and transport (the feature-structure branches; the
          "structural" branch is metadata-derived and therefore off).
        * ``vicreg_binary``: plain VICReg with binary positives: only the structural branch
          (crops carrying the identical distortion, i.e. same item, composition and level,
          from different contents at the same scale, weight 1), fixed aggregator. Pair it
          with ``LossConfig.ablation("vicreg_binary")`` (no R_graph, no L_ot).
        * ``no_regulariser``, ``no_ot``: loss-side ablations; the graph is ``full``.

        Args:
            name: one of :data:`ABLATIONS`.
            **overrides: further fields to replace after the ablation is applied.

        Raises:
            ValueError: for an unknown name or an invalid override.
        """
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; choose one of {ABLATIONS}")
        base = cls()
        off = {f"enable_{b}": False for b in BRANCHES}
        if name == "binary":
            base = replace(base, binary=True)
        elif name == "fixed_weights":
            base = replace(base, aggregator="fixed")
        elif name.startswith("no_") and name[3:] in BRANCHES:
            base = replace(base, **{f"enable_{name[3:]}": False})
        elif name == "metadata_only":
            base = replace(base, **{f"enable_{b}": False for b in STRUCTURE_BRANCHES})
        elif name == "structure_only":
            base = replace(base, **{f"enable_{b}": False for b in METADATA_BRANCHES})
        elif name == "vicreg_binary":
            base = replace(base, **{**off, "enable_structural": True}, binary=True, aggregator="fixed")
        return replace(base, **overrides) if overrides else base
