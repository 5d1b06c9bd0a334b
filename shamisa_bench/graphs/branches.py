"""The six relation-graph branches of SHAMISA (spec section 4) as pure functions.

Every branch is a dense, symmetric ``(N, N)`` weight matrix with a zero diagonal over the
N nodes (crops) of a step, in the node order of :mod:`shamisa_bench.layout`. A pair
``(i, j)`` is an edge when its weight is non-zero. The combined graph and the losses use
only the ``i < j`` half; the matrices are kept symmetric so that they read the same from
either side. Top-k cuts therefore count unordered pairs (``i < j``), and ties are broken
by node order: among equal weights, the pair that comes first in row-major ``i < j``
order wins (a stable sort), so the result is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.layout import NodeMeta

__all__ = [
    "dist_dist_edges",
    "knn_edges",
    "pairwise_distance",
    "ref_dist_edges",
    "ref_ref_edges",
    "severity_kernel",
    "sinkhorn",
    "structural_edges",
    "structural_pairs",
    "topk_pairs",
    "transport_edges",
    "transport_scores",
    "upper_pairs",
]


def severity_kernel(d: Tensor, rate: float = 0.75) -> Tensor:
    """Severity kernel ``k(d) = exp(-rate * d)``; the spec uses ``rate = 3/4``.

    Args:
        d: any shape, severity-index differences (0..4 in the spec's range).
        rate: decay per severity step.

    Returns:
        Tensor of the same shape, in (0, 1] for ``d >= 0``.
    """
    return torch.exp(-rate * d)


def _symmetrise(w: Tensor) -> Tensor:
    upper = torch.triu(w, diagonal=1)
    return upper + upper.transpose(0, 1)


def upper_pairs(n: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Row and column indices of the ``i < j`` pairs of ``n`` nodes, in row-major order.

    Returns:
        Two ``(n * (n - 1) / 2,)`` long tensors.
    """
    idx = torch.triu_indices(n, n, offset=1, device=device)
    return idx[0], idx[1]


def topk_pairs(w: Tensor, k: int) -> Tensor:
    """Keep the ``k`` heaviest edges (``i < j`` pairs with non-zero weight) of ``w``.

    Ties are broken by row-major ``i < j`` order (stable sort); with fewer than ``k``
    edges all are kept.

    Args:
        w: ``(N, N)`` symmetric weights; only the strict upper triangle is read.
        k: number of pairs to keep, ``k >= 0``.

    Returns:
        ``(N, N)`` symmetric weights with zero diagonal; gradients flow to the kept entries.

    Raises:
        ValueError: if ``k`` is negative or ``w`` is not square.
    """
    if w.dim() != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"w must be a square (N, N) matrix, got shape {tuple(w.shape)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n = w.shape[0]
    rows, cols = upper_pairs(n, w.device)
    vals = w[rows, cols]
    edge = vals != 0
    if int(edge.sum()) <= k:
        return _symmetrise(w)
    # Non-edges sort last; among edges the heaviest first, ties by pair order.
    key = torch.where(edge, vals.detach(), torch.full_like(vals, float("-inf")))
    order = torch.sort(key, descending=True, stable=True).indices[:k]
    keep = torch.zeros_like(vals, dtype=torch.bool)
    keep[order] = True
    mask = torch.zeros((n, n), dtype=w.dtype, device=w.device)
    mask[rows[keep], cols[keep]] = 1.0
    return _symmetrise(w * mask)


def ref_dist_edges(nodes: NodeMeta, *, rate: float = 0.75, binary: bool = False) -> Tensor:
    """Ref-dist branch: each reference view to the distorted crops of the same view.

    Reference node r (item b, view v) is joined to every distorted node of item b and view
    v (all compositions and levels) with weight ``k(s)``, ``s`` the distorted node's
    severity index of its composition's varying factor.

    Args:
        nodes: metadata of the N nodes.
        rate: severity kernel rate.
        binary: weight 1 instead of ``k(s)``.

    Returns:
        ``(N, N)`` float32 symmetric weights, zero diagonal.
    """
    ref = nodes.is_ref
    same = (nodes.item[:, None] == nodes.item[None, :]) & (nodes.view[:, None] == nodes.view[None, :])
    mask = same & ref[:, None] & ~ref[None, :]
    if binary:
        w_dist = torch.ones_like(nodes.var_severity, dtype=torch.float32)
    else:
        w_dist = severity_kernel(torch.nan_to_num(nodes.var_severity.to(torch.float32), nan=0.0), rate)
    w = torch.where(mask, w_dist[None, :].expand_as(mask), torch.zeros((), dtype=torch.float32, device=ref.device))
    return w + w.transpose(0, 1)


def dist_dist_edges(nodes: NodeMeta, topk: int = 4096, *, rate: float = 0.75, binary: bool = False) -> Tensor:
    """Dist-dist branch: distorted pairs of the same item and composition.

    Any view and any level (different nodes); weight ``k(|s_i - s_j|)`` with ``s`` the
    varying factor's severity index. Only the ``topk`` heaviest ``i < j`` pairs are kept
    (ties by node order, see :func:`topk_pairs`).

    Args:
        nodes: metadata of the N nodes.
        topk: number of ``i < j`` pairs kept (4096 in the reference).
        rate: severity kernel rate.
        binary: weight 1 instead of the kernel (the top-k then keeps the first pairs).

    Returns:
        ``(N, N)`` float32 symmetric weights, zero diagonal.
    """
    dist = ~nodes.is_ref
    mask = (
        dist[:, None]
        & dist[None, :]
        & (nodes.item[:, None] == nodes.item[None, :])
        & (nodes.comp[:, None] == nodes.comp[None, :])
    )
    mask.fill_diagonal_(False)
    if binary:
        w = mask.to(torch.float32)
    else:
        s = torch.nan_to_num(nodes.var_severity.to(torch.float32), nan=0.0)
        w = severity_kernel((s[:, None] - s[None, :]).abs(), rate) * mask
    return topk_pairs(w, topk)


def ref_ref_edges(nodes: NodeMeta) -> Tensor:
    """Ref-ref branch: every pair of reference views of the step (any item), weight 1.

    Returns:
        ``(N, N)`` float32 symmetric weights, zero diagonal.
    """
    ref = nodes.is_ref
    w = (ref[:, None] & ref[None, :]).to(torch.float32)
    w.fill_diagonal_(0.0)
    return w


def _structural_mask(nodes: NodeMeta) -> Tensor:
    dist = ~nodes.is_ref
    mask = (
        dist[:, None]
        & dist[None, :]
        & (nodes.item[:, None] == nodes.item[None, :])
        & (nodes.comp[:, None] == nodes.comp[None, :])
        & (nodes.level[:, None] == nodes.level[None, :])
        & (nodes.view[:, None] != nodes.view[None, :])
        & ((nodes.view[:, None] % 2) == (nodes.view[None, :] % 2))
    )
    return mask


def structural_edges(nodes: NodeMeta) -> Tensor:
    """Structural branch: same item, composition and level, different views of one parity.

    Even views are full-scale crops, odd views x0.5 crops; both nodes are distorted and
    carry the identical distortion. Weight 1.

    Returns:
        ``(N, N)`` float32 symmetric weights, zero diagonal.
    """
    return _structural_mask(nodes).to(torch.float32)


def structural_pairs(nodes: NodeMeta) -> Tensor:
    """The structural pairs as an index.

    Returns:
        ``(2, M)`` long tensor of ``(i, j)`` with ``i < j``, row-major order; ``M`` may be 0
        (e.g. one content per item has no two views of the same parity).
    """
    return torch.nonzero(torch.triu(_structural_mask(nodes), diagonal=1)).transpose(0, 1).contiguous()


def pairwise_distance(x: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x``, safe to differentiate.

    Args:
        x: ``(N, D)``.

    Returns:
        ``(N, N)``; the squared distance is clamped at 1e-12 before the square root, so
        coincident rows get a finite (zero) gradient.
    """
    xc = x - x.mean(dim=0, keepdim=True)
    sq = (xc * xc).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.transpose(0, 1))
    return torch.sqrt(d2.clamp_min(1e-12))


def knn_edges(h: Tensor, k: int = 31) -> Tensor:
    """kNN branch on the current features (not detached).

    Affinity ``a_ij = 1 / (1 + ||h_i - h_j||)``. Each node selects its ``k`` nearest other
    nodes (self excluded; ``k`` is clipped to ``N - 1``; distance ties follow
    ``torch.topk``). Symmetrisation is the union: ``(i, j)`` is an edge when either node is
    among the other's neighbours, and it carries the pair's affinity ``a_ij`` (which is
    symmetric), i.e. ``W = a * (M | M^T)``. Gradients flow to ``h`` through ``a``; the
    neighbour selection itself is not differentiable.

    Args:
        h: ``(N, D)`` features.
        k: neighbours per node, ``k >= 1``.

    Returns:
        ``(N, N)`` symmetric weights in (0, 1], zero diagonal, same dtype as ``h``.

    Raises:
        ValueError: if ``h`` is not 2-D or ``k < 1``.
    """
    if h.dim() != 2:
        raise ValueError(f"h must be (N, D), got shape {tuple(h.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = h.shape[0]
    dist = pairwise_distance(h)
    affinity = 1.0 / (1.0 + dist)
    kk = min(k, n - 1)
    mask = torch.zeros((n, n), dtype=torch.bool, device=h.device)
    if kk > 0:
        sel = dist.detach().clone()
        sel.fill_diagonal_(float("inf"))
        nn_idx = torch.topk(sel, kk, dim=1, largest=False).indices
        mask.scatter_(1, nn_idx, True)
    mask = mask | mask.transpose(0, 1)
    mask.fill_diagonal_(False)
    return affinity * mask.to(affinity.dtype)


def sinkhorn(logits: Tensor, eps: float = 0.05, iters: int = 6) -> Tensor:
    """Sinkhorn-Knopp codes (SwAV-style), computed in the log domain.

    Starts from ``exp(logits / eps)`` and alternates the prototype marginal (each of the K
    prototypes gets total mass ``1/K``) and the sample marginal (each of the N samples
    gets ``1/N``), ``iters`` times; the result is scaled by N so that each row is a
    distribution over prototypes. After the last step rows sum to 1 exactly and column sums
    approach ``N / K``. The input is detached: codes are targets.

    Args:
        logits: ``(N, K)`` prototype scores.
        eps: entropic regularisation (> 0).
        iters: number of iterations (>= 1).

    Returns:
        ``(N, K)`` float32 codes Q, rows summing to 1, no gradient.

    Raises:
        ValueError: on a bad shape, ``eps <= 0`` or ``iters < 1``.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    n, k = logits.shape
    log_q = logits.detach().to(torch.float32) / eps
    log_n = torch.log(torch.tensor(float(n), device=logits.device))
    log_k = torch.log(torch.tensor(float(k), device=logits.device))
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_k
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_n
    return torch.exp(log_q + log_n)


def transport_scores(P: Tensor, log_p: Tensor | None = None) -> Tensor:
    """Dense transport scores ``S_ij = mean_k log P_ik * P_jk``, symmetrised.

    ``S_ij`` is minus the cross-entropy of ``P_i`` under ``P_j``, divided by K; it is not
    symmetric, and since the graph is undirected (only ``i < j`` is used) the pair score
    is ``(S_ij + S_ji) / 2``.

    Args:
        P: ``(N, K)`` prototype probabilities (rows sum to 1).
        log_p: optional ``(N, K)`` ``log P`` computed stably (e.g. by ``log_softmax``);
            defaults to ``log(P)`` clamped at 1e-30.

    Returns:
        ``(N, N)`` symmetric scores (<= 0); the diagonal is meaningless.
    """
    if log_p is None:
        log_p = torch.log(P.clamp_min(1e-30))
    s = (log_p @ P.transpose(0, 1)) / P.shape[1]
    return 0.5 * (s + s.transpose(0, 1))


def transport_edges(P: Tensor, topk: int, log_p: Tensor | None = None) -> Tensor:
    """Transport branch: min-max normalised transport scores, global top ``topk`` pairs.

    The scores of :func:`transport_scores` are min-max normalised to [0, 1] over the
    ``i < j`` pairs, then the ``topk`` highest pairs are kept (ties by node order). A kept
    pair whose normalised score is exactly 0 (the minimum, kept only when ``topk`` covers
    nearly all pairs) carries no weight and so is no edge. Gradients flow to ``P``
    (and ``log_p``) through the kept scores and the normalisation.

    Args:
        P: ``(N, K)`` prototype probabilities.
        topk: pairs kept (the spec keeps ``8 N``).
        log_p: optional stable ``log P``.

    Returns:
        ``(N, N)`` symmetric weights in [0, 1], zero diagonal.

    Raises:
        ValueError: if ``P`` is not 2-D or ``topk < 0``.
    """
    if P.dim() != 2:
        raise ValueError(f"P must be (N, K), got shape {tuple(P.shape)}")
    if topk < 0:
        raise ValueError(f"topk must be >= 0, got {topk}")
    n = P.shape[0]
    s = transport_scores(P, log_p)
    rows, cols = upper_pairs(n, P.device)
    if rows.numel() == 0:
        return torch.zeros((n, n), dtype=s.dtype, device=s.device)
    vals = s[rows, cols]
    lo, hi = vals.min(), vals.max()
    normed = (vals - lo) / (hi - lo).clamp_min(1e-12)
    w = torch.zeros((n, n), dtype=s.dtype, device=s.device)
    w = w.index_put((rows, cols), normed)
    # every i<j pair is a candidate here, including ones whose normalised score is 0
    key = normed.detach()
    order = torch.sort(key, descending=True, stable=True).indices[: min(topk, vals.numel())]
    mask = torch.zeros((n, n), dtype=s.dtype, device=s.device)
    mask[rows[order], cols[order]] = 1.0
    return _symmetrise(w * mask)
