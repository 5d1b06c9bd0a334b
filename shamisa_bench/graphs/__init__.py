"""SHAMISA relation graphs branches, aggregator and the combined graph."""

from __future__ import annotations

from shamisa_bench.graphs.branches import (
    dist_dist_edges,
    knn_edges,
    pairwise_distance,
    ref_dist_edges,
    ref_ref_edges,
    severity_kernel,
    sinkhorn,
    structural_edges,
    structural_pairs,
    topk_entries,
    transport_edges,
    transport_scores,
    upper_pairs,
)
from shamisa_bench.graphs.config import ABLATIONS, AGGREGATORS, BRANCHES, GraphConfig
from shamisa_bench.graphs.nodes import NodeMeta
from shamisa_bench.graphs.relation import (
    BranchAggregator,
    GraphOutput,
    RelationGraph,
    check_nodes,
    edge_stats,
)

__all__ = [
    "ABLATIONS",
    "AGGREGATORS",
    "BRANCHES",
    "BranchAggregator",
    "GraphConfig",
    "GraphOutput",
    "NodeMeta",
    "RelationGraph",
    "check_nodes",
    "dist_dist_edges",
    "edge_stats",
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
