"""Analyses for any registered metric: gMAD competitions and embedding maps.

- :func:`synthetic_pool`, :func:`folder_pool`: the pool (by default the robustness grid of the
  held-out BSDS500 test images, sharing its cache keys).
- :func:`select_pairs`, :func:`run_gmad`: gMAD pair selection and the competition's outputs.
- :func:`ms_ssim`, :func:`judge_pair`: the full-reference judge of a synthetic pool's pairs.
- :func:`run_embed`: 2-D maps of a metric's features with their kNN and severity numbers.
"""

from shamisa_bench.analysis.embed import (
    feature_adapter,
    group_knn_accuracy,
    project,
    run_embed,
    severity_srcc,
)
from shamisa_bench.analysis.gmad import GmadConfig, GmadLevel, run_gmad, select_pairs
from shamisa_bench.analysis.judge import judge_pair, ms_ssim
from shamisa_bench.analysis.pool import Pool, PoolBatch, folder_pool, synthetic_pool
from shamisa_bench.analysis.scoring import PoolScores, metric_quality, score_pool

__all__ = [
    "GmadConfig",
    "GmadLevel",
    "Pool",
    "PoolBatch",
    "PoolScores",
    "feature_adapter",
    "folder_pool",
    "group_knn_accuracy",
    "judge_pair",
    "metric_quality",
    "ms_ssim",
    "project",
    "run_embed",
    "run_gmad",
    "score_pool",
    "select_pairs",
    "severity_srcc",
    "synthetic_pool",
]
