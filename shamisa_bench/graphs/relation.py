"""The combined SHAMISA relation graph: prototype layer, six branches and the aggregator.

:class:`RelationGraph` computes, for the N crops of a step, the six branch matrices of
:mod:`shamisa_bench.graphs.branches`, scales each by its coefficient, and mixes them with
branch weights from a small MLP (or uniform weights). The whole forward pass runs in
float32 with autocast disabled, whatever the caller's autocast state.

Combination rule, with ``A_b`` the raw (directed) branch matrix, ``c_b`` its coefficient
and ``w_b`` the aggregator weight (``sum_b w_b = 1`` over the enabled branches)::

    G = sum_b w_b * c_b * A_b

kNN takes part in the weighted mix once, like every branch, as in the reference (whose
``include_knn_residual`` switch means exactly this). ``GraphConfig.knn_residual`` adds
``c_knn * A_knn`` a second time; it is not the reference and is off by default.

The aggregator reads, per branch, the number of stored (non-zero) directed entries and
their coefficient-scaled sum, over the whole ``N x N`` matrix; the loss reads the
``i < j`` entries of G.

Disabled branches are neither computed nor fed: their ``[edge count, weight sum]`` inputs
are 0, their logits are set to -inf before the softmax (so their weight is exactly 0 and
the enabled branches share the whole mass), and they add nothing to G.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from shamisa_bench.graphs.branches import (
    dist_dist_edges,
    knn_edges,
    ref_dist_edges,
    ref_ref_edges,
    sinkhorn,
    structural_edges,
    structural_pairs,
    transport_edges,
)
from shamisa_bench.graphs.config import BRANCHES, GraphConfig
from shamisa_bench.graphs.nodes import NodeMeta

__all__ = ["BranchAggregator", "GraphOutput", "RelationGraph", "check_nodes", "edge_stats"]


@dataclass(frozen=True)
class GraphOutput:
    """What the relation graph gives the loss (all float32 unless stated).

    Attributes:
        G: ``(N, N)`` combined directed graph; the loss reads its ``i < j`` entries.
        branch_weights: ``(6,)`` aggregator weights in :data:`BRANCHES` order (0 for
            disabled branches; sums to 1); detached when ``stop_grad``.
        edge_counts: ``(6,)`` stored (non-zero) directed entries per branch, over the
            whole matrix (0 when disabled): the aggregator's count inputs.
        weight_sums: ``(6,)`` sum of each coefficient-scaled branch over the whole matrix:
            the aggregator's sum inputs.
        branches: raw (unscaled) ``(N, N)`` matrix of each enabled branch, by name.
        logits: ``(N, K)`` prototype scores (gradients flow to h and the prototypes).
        P: ``(N, K)`` ``softmax(logits / temperature)``.
        log_p: ``(N, K)`` ``log_softmax(logits / temperature)`` (stable ``log P``).
        Q: ``(N, K)`` Sinkhorn codes on the detached logits (no gradient).
        structural_pairs: ``(2, M)`` long ``(i, j)``, ``i < j``, the structural pairs from
            the metadata (present even when the structural branch is disabled).
        is_ref: ``(N,)`` bool, the reference nodes (the loss splits the step into its
            two VICReg halves with it).
    """

    G: Tensor
    branch_weights: Tensor
    edge_counts: Tensor
    weight_sums: Tensor
    branches: dict[str, Tensor]
    logits: Tensor
    P: Tensor
    log_p: Tensor
    Q: Tensor
    structural_pairs: Tensor
    is_ref: Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.G.shape[0])


def check_nodes(nodes: NodeMeta, n: int) -> None:
    """Check that ``nodes`` describes ``n`` nodes with usable severities.

    Raises:
        ValueError: on a node-count mismatch or a distorted node whose ``var_severity`` is
            not finite or outside [0, 4].
    """
    if len(nodes) != n:
        raise ValueError(f"nodes describe {len(nodes)} nodes but the features have {n} rows")
    for name in ("view", "is_ref", "comp", "level", "var_severity"):
        if getattr(nodes, name).shape != nodes.item.shape:
            raise ValueError(f"NodeMeta.{name} has shape {tuple(getattr(nodes, name).shape)}, expected ({n},)")
    s = nodes.var_severity[~nodes.is_ref]
    bad = ~torch.isfinite(s) | (s < 0) | (s > 4)
    if bool(bad.any()):
        raise ValueError(
            f"{int(bad.sum())} distorted node(s) have a var_severity outside [0, 4] or not finite, "
            f"e.g. {float(s[bad][0])!r}"
        )


def edge_stats(w: Tensor) -> tuple[Tensor, Tensor]:
    """Stored-entry count and weight sum of a branch, over the whole matrix.

    Args:
        w: ``(N, N)`` directed weights.

    Returns:
        Two scalars: the number of non-zero entries (float, no gradient) and their sum.
    """
    return (w != 0).sum().to(w.dtype), w.sum()


class BranchAggregator(nn.Module):
    """Branch-weight MLP: LayerNorm(12) -> Linear(12, h) -> LayerNorm(h) -> PReLU -> Linear(h, 6) -> softmax.

    The hidden LayerNorm is the reference's (its two-layer MLP normalises the hidden layer
    before the activation); without it the branch weights differ by up to 8%.

    Reads ``[count_b, sum_b]`` of each branch, interleaved in :data:`BRANCHES` order
    (``[count_ref_dist, sum_ref_dist, count_dist_dist, ...]``). Disabled branches are
    masked out of the softmax.
    """

    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        nb = len(BRANCHES)
        self.mlp = nn.Sequential(
            nn.LayerNorm(2 * nb), nn.Linear(2 * nb, hidden), nn.LayerNorm(hidden), nn.PReLU(), nn.Linear(hidden, nb)
        )

    def forward(self, counts: Tensor, sums: Tensor, active: Tensor) -> Tensor:
        """Branch weights.

        Args:
            counts: ``(6,)`` edge counts.
            sums: ``(6,)`` weight sums.
            active: ``(6,)`` bool, enabled branches (at least one).

        Returns:
            ``(6,)`` softmax weights, 0 where not ``active``, summing to 1.
        """
        x = torch.stack([counts, sums], dim=1).reshape(-1)
        logits = self.mlp(x)
        logits = logits.masked_fill(~active, float("-inf"))
        return torch.softmax(logits, dim=0)


class RelationGraph(nn.Module):
    """Prototype layer, branches and aggregator of SHAMISA.

    Args:
        config: the graph configuration (defaults to the reference a0 graph).
        feature_dim: width D of h (2048 for ResNet-50), keyword only.

    Attributes:
        prototypes: weight-normalised ``Linear(D, n_prototypes, bias=False)`` on h.
        aggregator: the :class:`BranchAggregator`. Its output is detached when
            ``stop_grad`` and unused when ``aggregator == "fixed"``; in both cases it can
            never receive a gradient, so its parameters are frozen (``requires_grad``
            False) to keep DistributedDataParallel from waiting for their gradients.
    """

    def __init__(self, config: GraphConfig | None = None, *, feature_dim: int) -> None:
        super().__init__()
        if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive int, got {feature_dim!r}")
        self.config = config if config is not None else GraphConfig()
        if not isinstance(self.config, GraphConfig):
            raise TypeError(f"config must be a GraphConfig, got {type(self.config).__name__}")
        self.feature_dim = feature_dim
        self.prototypes = weight_norm(nn.Linear(feature_dim, self.config.n_prototypes, bias=False))
        self.aggregator = BranchAggregator(self.config.aggregator_hidden)
        if self.config.stop_grad or self.config.aggregator == "fixed":
            self.aggregator.requires_grad_(False)
        active = torch.tensor([b in self.config.active_branches() for b in BRANCHES])
        self.register_buffer("active", active, persistent=False)
        self.register_buffer("coefs", torch.tensor(self.config.coefficients(), dtype=torch.float32), persistent=False)

    def forward(self, h: Tensor, nodes: NodeMeta, *, edge_features: Tensor | None = None) -> GraphOutput:
        """Build the step's relation graph.

        Args:
            h: ``(N, D)`` L2-normalised encoder features (gradients flow).
            nodes: per-node metadata of the N nodes.
            edge_features: ``(N, D)`` other features of the same crops to build the kNN
                and transport branches on, without gradient (their transport codes come
                from the prototypes applied to them). None (the reference) builds them on
                ``h``. The prototype logits, P and Q the loss reads always come from ``h``.

        Returns:
            GraphOutput.

        Raises:
            ValueError: if ``h`` or ``edge_features`` is not ``(N, D)`` with
                ``D = feature_dim``, or ``nodes`` does not match.
        """
        if h.dim() != 2 or h.shape[1] != self.feature_dim:
            raise ValueError(f"h must be (N, {self.feature_dim}), got shape {tuple(h.shape)}")
        if edge_features is not None and edge_features.shape != h.shape:
            raise ValueError(f"edge_features must have h's shape {tuple(h.shape)}, got {tuple(edge_features.shape)}")
        n = h.shape[0]
        if n < 2:
            raise ValueError(f"the relation graph needs at least 2 nodes, got {n}")
        check_nodes(nodes, n)
        cfg = self.config
        device = h.device
        if nodes.item.device != device:
            nodes = nodes.to(device)
        with torch.autocast(device_type=device.type, enabled=False):
            h = h.float()
            logits = self.prototypes(h).float()
            P = torch.softmax(logits / cfg.temperature, dim=1)
            log_p = torch.log_softmax(logits / cfg.temperature, dim=1)
            Q = sinkhorn(logits, cfg.sinkhorn_eps, cfg.sinkhorn_iters)

            branches: dict[str, Tensor] = {}
            if cfg.enable_ref_dist:
                branches["ref_dist"] = ref_dist_edges(nodes, rate=cfg.severity_rate, binary=cfg.binary)
            if cfg.enable_dist_dist:
                branches["dist_dist"] = dist_dist_edges(
                    nodes, cfg.dist_dist_topk, rate=cfg.severity_rate, binary=cfg.binary
                )
            if cfg.enable_ref_ref:
                branches["ref_ref"] = ref_ref_edges(nodes)
            if cfg.enable_structural:
                branches["structural"] = structural_edges(nodes)
            if edge_features is not None:
                with torch.no_grad():
                    h_edges = edge_features.detach().float()
                    edge_logits = self.prototypes(h_edges).float()
                    p_edges = torch.softmax(edge_logits / cfg.temperature, dim=1)
                    log_p_edges = torch.log_softmax(edge_logits / cfg.temperature, dim=1)
            elif cfg.detach_structure:
                h_edges, p_edges, log_p_edges = h.detach(), P.detach(), log_p.detach()
            else:
                h_edges, p_edges, log_p_edges = h, P, log_p
            if cfg.enable_knn:
                branches["knn"] = knn_edges(h_edges, cfg.knn_k)
            if cfg.enable_transport:
                branches["transport"] = transport_edges(p_edges, cfg.transport_topk_factor * n, log_p=log_p_edges)

            zero = torch.zeros((), dtype=torch.float32, device=device)
            counts, sums = [], []
            for b, c in zip(BRANCHES, cfg.coefficients()):
                if b in branches:
                    cnt, s = edge_stats(branches[b])
                    counts.append(cnt)
                    sums.append(c * s)
                else:
                    counts.append(zero)
                    sums.append(zero)
            edge_counts = torch.stack(counts)
            weight_sums = torch.stack(sums)
            active = self.active.to(device)
            if cfg.aggregator == "learned":
                weights = self.aggregator(edge_counts, weight_sums, active)
            else:
                weights = active.to(torch.float32) / active.sum()
            if cfg.stop_grad:
                weights = weights.detach()

            G = torch.zeros((n, n), dtype=torch.float32, device=device)
            for i, (b, c) in enumerate(zip(BRANCHES, cfg.coefficients())):
                if b in branches:
                    G = G + weights[i] * c * branches[b]
            if cfg.enable_knn and cfg.knn_residual:
                G = G + cfg.knn_coef * branches["knn"]

        return GraphOutput(
            G=G,
            branch_weights=weights,
            edge_counts=edge_counts,
            weight_sums=weight_sums,
            branches=branches,
            logits=logits,
            P=P,
            log_p=log_p,
            Q=Q,
            structural_pairs=structural_pairs(nodes),
            is_ref=nodes.is_ref,
        )
