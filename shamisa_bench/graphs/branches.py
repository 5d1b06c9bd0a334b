"""The six relation-graph branches of SHAMISA as pure functions.

Every branch is a dense *directed* ``(N, N)`` weight matrix over the N nodes (crops) of a
step, in the node order of :mod:`shamisa_bench.train.steps`: entry ``(i, j)`` is a stored link
when it is non-zero, exactly as the reference stores its sparse link maps.

* ref-dist links run one way, reference view -> distorted crop (references come first in
  the node order, so every such link is an ``i < j`` entry);
* ref-ref, dist-dist and structural links are stored in both directions;
* kNN stores each node's neighbours and their reverse, summed, so mutual neighbours carry
  twice the affinity;
* transport stores the directed scores it keeps (the diagonal may be among them).

The aggregator reads the count and sum of *all* stored entries of each branch; the
combined graph and the loss read only the ``i < j`` entries. Top-k cuts count directed
entries, and ties are broken by node order: among equal weights the entry that comes
first in row-major order wins (a stable sort), so the result is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.graphs.nodes import NodeMeta

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
    "topk_entries",
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


def upper_pairs(n: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Row and column indices of the ``i < j`` pairs of ``n`` nodes, in row-major order.

    Returns:
        Two ``(n * (n - 1) / 2,)`` long tensors.
    """
    idx = torch.triu_indices(n, n, offset=1, device=device)
    return idx[0], idx[1]


def topk_entries(w: Tensor, k: int) -> Tensor:
    """Keep the ``k`` heaviest stored entries (non-zero, any position) of ``w``.

    Ties are broken by row-major order (stable sort); with ``k`` or fewer stored entries
    all are kept.

    Args:
        w: ``(N, N)`` directed weights.
        k: number of entries to keep, ``k >= 0``.

    Returns:
        ``(N, N)`` weights, zero outside the kept entries; gradients flow to the kept ones.

    Raises:
        ValueError: if ``k`` is negative or ``w`` is not square.
    """
    if w.dim() != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"w must be a square (N, N) matrix, got shape {tuple(w.shape)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flat = w.reshape(-1)
    stored = flat != 0
    if int(stored.sum()) <= k:
        return w
    # Entries that are not stored sort last; among stored ones the heaviest first.
    key = torch.where(stored, flat.detach(), torch.full_like(flat, float("-inf")))
    order = torch.sort(key, descending=True, stable=True).indices[:k]
    mask = torch.zeros_like(flat)
    mask[order] = 1.0
    return w * mask.reshape(w.shape)


def ref_dist_edges(nodes: NodeMeta, *, rate: float = 0.75, binary: bool = False) -> Tensor:
    """Ref-dist branch: each reference view to the distorted crops of the same view.

    Reference node r (item b, view v) links to every distorted node of item b and view v
    (all compositions and levels) with weight ``k(s)``, ``s`` the distorted node's
    severity index of its composition's varying factor. Links are stored one way, row =
    reference, column = distorted crop.

    Args:
        nodes: metadata of the N nodes.
        rate: severity kernel rate.
        binary: weight 1 instead of ``k(s)``.

    Returns:
        ``(N, N)`` float32 directed weights (non-zero only at ``[reference, distorted]``).
    """
    ref = nodes.is_ref
    same = (nodes.item[:, None] == nodes.item[None, :]) & (nodes.view[:, None] == nodes.view[None, :])
    mask = same & ref[:, None] & ~ref[None, :]
    if binary:
        w_dist = torch.ones_like(nodes.var_severity, dtype=torch.float32)
    else:
        w_dist = severity_kernel(torch.nan_to_num(nodes.var_severity.to(torch.float32), nan=0.0), rate)
    w = torch.where(mask, w_dist[None, :].expand_as(mask), torch.zeros((), dtype=torch.float32, device=ref.device))
    return w


def dist_dist_edges(nodes: NodeMeta, topk: int = 4096, *, rate: float = 0.75, binary: bool = False) -> Tensor:
    """Dist-dist branch: distorted pairs of the same item and composition.

    Any view and any level (different nodes), stored in both directions; weight
    ``k(|s_i - s_j|)`` with ``s`` the varying factor's severity index. Only the ``topk``
    heaviest directed entries are kept (ties by node order, see :func:`topk_entries`), so a
    pair may keep one direction only.

    Args:
        nodes: metadata of the N nodes.
        topk: number of directed entries kept (4096 in the reference).
        rate: severity kernel rate.
        binary: weight 1 instead of the kernel (the top-k then keeps the first entries).

    Returns:
        ``(N, N)`` float32 weights, zero diagonal.
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
    return topk_entries(w, topk)


def ref_ref_edges(nodes: NodeMeta) -> Tensor:
    """Ref-ref branch: every pair of reference views of the step (any item), weight 1.

    Returns:
        ``(N, N)`` float32 symmetric weights (both directions stored), zero diagonal.
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
    carry the identical distortion. Weight 1, both directions stored.

    The reference orders an item's views as all full-scale crops, then all x0.5 crops, and
    pairs views by index parity, which for three contents pairs some full-scale crops with
    x0.5 crops. We interleave the scales (even = full, odd = x0.5), so the same parity rule
    pairs crops of one scale only, which is what the pairing is meant to express.

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
    ``torch.topk``). The selection is stored with its reverse and the two are summed,
    ``W = a * M + (a * M)^T``: a pair where each node is among the other's neighbours
    carries ``2 a_ij``, a one-sided pair ``a_ij``. Gradients flow to ``h`` through ``a``;
    the neighbour selection itself is not differentiable.

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
    one_way = affinity * mask.to(affinity.dtype)
    return one_way + one_way.transpose(0, 1)


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
    """Dense directed transport scores ``S_ij = mean_k log P_ik * P_jk``.

    ``S_ij`` is minus the cross-entropy of ``P_j`` under ``P_i``, divided by K. It is not
    symmetric, and it is kept directed.

    Args:
        P: ``(N, K)`` prototype probabilities (rows sum to 1).
        log_p: optional ``(N, K)`` ``log P`` computed stably (e.g. by ``log_softmax``);
            defaults to ``log(P)`` clamped at 1e-30.

    Returns:
        ``(N, N)`` scores (<= 0), diagonal included.
    """
    if log_p is None:
        log_p = torch.log(P.clamp_min(1e-30))
    return (log_p @ P.transpose(0, 1)) / P.shape[1]


def transport_edges(P: Tensor, topk: int, log_p: Tensor | None = None) -> Tensor:
    """Transport branch: min-max normalised directed scores, global top ``topk`` entries.

    The scores of :func:`transport_scores` are min-max normalised to [0, 1] over the whole
    ``N x N`` matrix (diagonal included), then the ``topk`` highest of the ``N^2`` directed
    entries are kept (ties by row-major order). Diagonal entries may be kept: they count in
    the aggregator's statistics but never reach the loss, which reads ``i < j`` only. A
    kept entry whose normalised score is exactly 0 (the minimum, kept only when ``topk``
    covers nearly every entry) carries no weight and so is not stored. Gradients flow to
    ``P`` (and ``log_p``) through the kept scores and the normalisation.

    Args:
        P: ``(N, K)`` prototype probabilities.
        topk: entries kept (the spec keeps ``8 N``).
        log_p: optional stable ``log P``.

    Returns:
        ``(N, N)`` directed weights in [0, 1].

    Raises:
        ValueError: if ``P`` is not 2-D or ``topk < 0``.
    """
    if P.dim() != 2:
        raise ValueError(f"P must be (N, K), got shape {tuple(P.shape)}")
    if topk < 0:
        raise ValueError(f"topk must be >= 0, got {topk}")
    s = transport_scores(P, log_p)
    shifted = s - s.min()
    scale = shifted.max()
    normed = shifted / torch.where(scale != 0, scale, torch.ones_like(scale))
    flat = normed.reshape(-1)
    order = torch.sort(flat.detach(), descending=True, stable=True).indices[: min(topk, flat.numel())]
    mask = torch.zeros_like(flat)
    mask[order] = 1.0
    return normed * mask.reshape(normed.shape)
