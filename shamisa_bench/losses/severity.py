"""A severity read-out of the encoder's features: how well they tell a composition group's levels apart.

Inside a composition group (one item, view and composition) the five distorted crops differ
only in the severity of the varying factor. :func:`severity_readout_loss` centres the
distorted crops' features and severities within their groups, fits a ridge read-out ``u``
from one to the other on the detached features (alpha = the mean eigenvalue of the centred
features' Gram matrix, so the fit is neither exact nor empty at any feature scale), and
returns ``0.5 mean (u . h_c - s_c)^2`` with ``u`` held fixed. By the envelope theorem its
gradient with respect to ``h`` is that of the refit read-out's optimal error: descending it
makes the features encode the severity more linearly. It is not part of the reference
objective: ``pretrain --c-severity`` adds it, and :mod:`shamisa_bench.train.diagnose`
reports it as a part of such a run's objective.
"""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.graphs.nodes import NodeMeta

__all__ = ["add_severity_term", "severity_readout_loss"]


def severity_readout_loss(h: Tensor, nodes: NodeMeta) -> Tensor:
    """The within-group severity read-out error of the distorted crops' features.

    Args:
        h: ``(N, D)`` features of every node of the step.
        nodes: the step's node metadata (``N`` nodes).

    Returns:
        A scalar (float32 at least), differentiable with respect to ``h``.

    Raises:
        ValueError: ``h`` and ``nodes`` disagree on ``N``, or no composition group of the
            step has two different severities (nothing to read out).
    """
    loss = _readout_error(h, nodes)
    if loss is None:
        raise ValueError("no composition group of the step has two different severities: nothing to read out")
    return loss


def _readout_error(h: Tensor, nodes: NodeMeta) -> Tensor | None:
    """:func:`severity_readout_loss`, or None when no composition group's severity varies.

    Raises:
        ValueError: ``h`` and ``nodes`` disagree on ``N``, or the step has no distorted crops.
    """
    if h.dim() != 2 or h.shape[0] != len(nodes):
        raise ValueError(f"h must have shape ({len(nodes)}, D) for the step's nodes, got {tuple(h.shape)}")
    dist = torch.nonzero(~nodes.is_ref).flatten()
    if dist.numel() == 0:
        raise ValueError("the step has no distorted crops: no composition group with two different severities")
    feats = h[dist].float()
    key = torch.stack([nodes.item[dist], nodes.view[dist], nodes.comp[dist]], dim=1)
    _, group = torch.unique(key, dim=0, return_inverse=True)
    n_groups = int(group.max()) + 1
    counts = torch.bincount(group, minlength=n_groups).to(feats.dtype)

    def centre(x: Tensor) -> Tensor:
        sums = torch.zeros((n_groups, *x.shape[1:]), dtype=x.dtype, device=x.device).index_add(0, group, x)
        return x - (sums / counts.view(-1, *[1] * (x.dim() - 1)))[group]

    sev = centre(nodes.var_severity[dist].to(feats.dtype))
    if float(sev.abs().max()) == 0.0:
        return None
    hc = centre(feats)
    with torch.no_grad():
        x = hc.double()
        gram = x @ x.T  # the dual form: a few hundred crops, a feature width of a thousand or more
        alpha = float(torch.diagonal(gram).sum()) / gram.shape[0]
        eye = torch.eye(gram.shape[0], dtype=x.dtype, device=x.device)
        u = x.T @ torch.linalg.solve(gram + alpha * eye, sev.double())
    residual = hc @ u.to(hc.dtype) - sev
    return 0.5 * (residual**2).mean()


def add_severity_term(total: Tensor, h: Tensor, nodes: NodeMeta, coefficient: float) -> tuple[Tensor, Tensor | None]:
    """``total + coefficient * severity_readout_loss(h, nodes)``, and the read-out error itself.

    The training objective's optional added term (``PretrainConfig.c_severity``). With a
    zero coefficient nothing is computed: ``(total, None)``. A step in which no composition
    group has two different severities has nothing to read out; its term is 0.
    """
    if coefficient == 0:
        return total, None
    severity = _readout_error(h, nodes)
    if severity is None:
        severity = h.sum() * 0.0  # every group's levels coincide: no direction, a zero term
    return total + coefficient * severity, severity
