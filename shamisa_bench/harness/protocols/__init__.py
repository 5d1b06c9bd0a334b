"""Evaluation protocols: ``intra`` (splits of one dataset) and ``cross`` (A -> B).

Each returns a :class:`ProtocolResult` with per-split predictions and scores.
"""

from shamisa_bench.harness.protocols.common import (
    ProtocolResult,
    SplitScores,
    Usable,
    usable_images,
)
from shamisa_bench.harness.protocols.cross import run_cross
from shamisa_bench.harness.protocols.intra import run_intra

__all__ = ["ProtocolResult", "SplitScores", "Usable", "run_cross", "run_intra", "usable_images"]
