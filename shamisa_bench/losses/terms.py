"""The terms of the SHAMISA loss as pure functions.

``z`` is ``(N, E)`` projector output (E = 768 in the reference), ``w`` is a graph weight
matrix ``(N, N)`` of which only the strict upper triangle (``i < j``) is read, ``P`` and
``Q`` are ``(N, K)`` prototype probabilities and Sinkhorn codes. All functions compute in
the dtype they are given; :class:`shamisa_bench.losses.ShamisaLoss` feeds them float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "covariance_loss",
    "graph_invariance_loss",
    "graph_regulariser",
    "ot_loss",
    "split_halves",
    "variance_loss",
    "vicreg_halves",
]


def _check_z(z: Tensor, min_rows: int = 2) -> None:
    if not isinstance(z, Tensor):
        raise TypeError(f"z must be a Tensor, got {type(z).__name__}")
    if z.dim() != 2:
        raise ValueError(f"z must be (N, E), got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"z needs at least {min_rows} rows, got {z.shape[0]}")


def split_halves(z: Tensor) -> tuple[Tensor, Tensor]:
    """Cut the step's nodes into two halves in node order: ``z[:N/2]`` and ``z[N/2:]``.

    Node order is item-major (:mod:`shamisa_bench.train.steps`), so with the reference's 2 items
    per step each half is one item, in the role of VICReg's two branches.

    Args:
        z: ``(N, E)`` with N even and ``N >= 4``.

    Returns:
        Two ``(N/2, E)`` views.

    Raises:
        ValueError: if N is odd or below 4.
    """
    _check_z(z, 4)
    n = z.shape[0]
    if n % 2:
        raise ValueError(f"the step's nodes must split into two equal halves, got N={n}")
    return z[: n // 2], z[n // 2 :]


def vicreg_halves(z: Tensor, is_ref: Tensor) -> tuple[Tensor, Tensor]:
    """The two VICReg halves of a step, as the reference forms them.

    The first half is the first ``R // 2`` reference rows followed by the first ``D // 2``
    distorted rows (in node order); the second half is the rest. With the reference's two
    items per step and references ordered before distorted crops, each half is one item.

    Args:
        z: ``(N, E)``.
        is_ref: ``(N,)`` bool, the reference rows.

    Returns:
        Two ``(n, E)`` tensors (gathered rows).

    Raises:
        ValueError: if ``is_ref`` does not match ``z`` or a half would have fewer than 2 rows.
    """
    _check_z(z, 4)
    if is_ref.dim() != 1 or is_ref.shape[0] != z.shape[0] or is_ref.dtype != torch.bool:
        raise ValueError(f"is_ref must be a ({z.shape[0]},) bool tensor, got {tuple(is_ref.shape)} {is_ref.dtype}")
    refs = torch.nonzero(is_ref).flatten()
    dists = torch.nonzero(~is_ref).flatten()
    r, d = refs.numel() // 2, dists.numel() // 2
    first = torch.cat([refs[:r], dists[:d]])
    second = torch.cat([refs[r:], dists[d:]])
    if first.numel() < 2 or second.numel() < 2:
        raise ValueError(f"each VICReg half needs at least 2 rows, got {first.numel()} and {second.numel()}")
    return z[first], z[second]


def variance_loss(z: Tensor, eps: float = 1e-4) -> Tensor:
    """VICReg variance term of one half: ``mean_j relu(1 - sqrt(Var(z_j) + eps)) / 2``.

    Var is the unbiased variance over rows; a collapsed half (all rows equal) gives
    ``(1 - sqrt(eps)) / 2 = 0.495``, so two collapsed halves sum to ~1.

    Args:
        z: ``(n, E)``, ``n >= 2``.
        eps: added under the square root.

    Returns:
        Scalar in [0, 0.5].
    """
    _check_z(z)
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(1.0 - std).mean() / 2.0


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg covariance term of one half: ``sum_{i != j} Cov_ij^2 / E``.

    Cov is the unbiased ``(E, E)`` covariance over rows.

    Args:
        z: ``(n, E)``, ``n >= 2``.

    Returns:
        Scalar >= 0.
    """
    _check_z(z)
    n, e = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    cov = (zc.transpose(0, 1) @ zc) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return (off * off).sum() / e


def _check_w(w: Tensor, n: int) -> None:
    if not isinstance(w, Tensor):
        raise TypeError(f"w must be a Tensor, got {type(w).__name__}")
    if w.dim() != 2 or w.shape[0] != w.shape[1] or (n >= 0 and w.shape[0] != n):
        raise ValueError(f"w must be ({n}, {n}), got shape {tuple(w.shape)}")


def graph_invariance_loss(z: Tensor, w: Tensor) -> Tensor:
    """Graph-weighted pull: ``sum_{i<j} w_ij ||z_i - z_j||^2 / (N * E)``.

    Args:
        z: ``(N, E)``.
        w: ``(N, N)``; only the strict upper triangle is read.

    Returns:
        Scalar.
    """
    _check_z(z, 1)
    _check_w(w, z.shape[0])
    n, e = z.shape
    zc = z - z.mean(dim=0, keepdim=True)  # distances are translation invariant; less cancellation
    sq = (zc * zc).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (zc @ zc.transpose(0, 1))
    return (torch.triu(w, diagonal=1) * d2).sum() / (n * e)


def graph_regulariser(w: Tensor, coef: float = -0.03419084992354765) -> Tensor:
    """R_graph = ``coef * sum_{i<j} w_ij^2`` (negative coefficient: keeps learned edges up).

    Args:
        w: ``(N, N)``; only the strict upper triangle is read.
        coef: the regulariser's coefficient (the reference's -0.034191...; 0 disables it).

    Returns:
        Scalar.
    """
    _check_w(w, -1)
    upper = torch.triu(w, diagonal=1)
    return coef * (upper * upper).sum()


def ot_loss(
    P: Tensor, Q: Tensor, structural_pairs: Tensor, *, weight: float = 0.49057801093072007, log_p: Tensor | None = None
) -> Tensor:
    """Prototype / swapped-prediction loss L_ot.

    ``L_ot = -0.5 * weight * [mean(Q * log P) + mean_{(i,j)} (Q_i * log P_j)]``

    * ``mean(Q * log P)`` is the element-wise mean over all ``N * K`` entries.
    * The second mean runs over the structural pairs taken in both directions (``Q_i``
      predicts ``P_j`` and ``Q_j`` predicts ``P_i``: swapped prediction) and over the K
      prototypes, i.e. over ``2 * M * K`` entries. With no structural pair it is 0.

    ``Q`` is a target: it is detached here.

    Args:
        P: ``(N, K)`` prototype probabilities.
        Q: ``(N, K)`` Sinkhorn codes.
        structural_pairs: ``(2, M)`` long indices ``(i, j)``.
        weight: the L_ot weight (the reference's 0.490578...).
        log_p: optional ``(N, K)`` stable ``log P``; defaults to ``log(P)`` clamped at 1e-30.

    Returns:
        Scalar (>= 0 for probabilities).

    Raises:
        ValueError: on mismatched shapes or out-of-range pair indices.
    """
    if P.dim() != 2 or Q.shape != P.shape:
        raise ValueError(f"P and Q must both be (N, K), got {tuple(P.shape)} and {tuple(Q.shape)}")
    if structural_pairs.dim() != 2 or structural_pairs.shape[0] != 2:
        raise ValueError(f"structural_pairs must be (2, M), got shape {tuple(structural_pairs.shape)}")
    n = P.shape[0]
    if structural_pairs.numel() and (int(structural_pairs.min()) < 0 or int(structural_pairs.max()) >= n):
        raise ValueError(f"structural_pairs index outside 0..{n - 1}")
    if log_p is None:
        log_p = torch.log(P.clamp_min(1e-30))
    elif log_p.shape != P.shape:
        raise ValueError(f"log_p must be {tuple(P.shape)}, got {tuple(log_p.shape)}")
    q = Q.detach()
    self_term = (q * log_p).mean()
    if structural_pairs.shape[1] == 0:
        swap_term = torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    else:
        i, j = structural_pairs[0], structural_pairs[1]
        swap_term = 0.5 * ((q[i] * log_p[j]).mean() + (q[j] * log_p[i]).mean())
    return -0.5 * weight * (self_term + swap_term)
