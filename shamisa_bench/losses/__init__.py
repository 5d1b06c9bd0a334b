"""SHAMISA loss VICReg terms, graph-weighted invariance, R_graph, L_ot; a severity read-out (diagnostics)."""

from __future__ import annotations

from shamisa_bench.losses.severity import severity_readout_loss
from shamisa_bench.losses.shamisa import TERMS, LossConfig, LossOutput, ShamisaLoss
from shamisa_bench.losses.terms import (
    covariance_loss,
    graph_invariance_loss,
    graph_regulariser,
    ot_loss,
    split_halves,
    variance_loss,
    vicreg_halves,
)

__all__ = [
    "TERMS",
    "LossConfig",
    "LossOutput",
    "ShamisaLoss",
    "covariance_loss",
    "graph_invariance_loss",
    "graph_regulariser",
    "ot_loss",
    "severity_readout_loss",
    "split_halves",
    "variance_loss",
    "vicreg_halves",
]
