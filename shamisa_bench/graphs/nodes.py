"""Per-node metadata of a pretraining step: what the relation graphs read about each crop.

Node order is the step layout's (:mod:`shamisa_bench.train.steps`): every reference crop of
the step first, then every distorted crop by (item, view, composition, level).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NodeMeta"]


@dataclass(frozen=True)
class NodeMeta:
    """Per-node metadata of a step; every field has shape ``(N,)``.

    Attributes:
        item: item index of the node.
        view: view index (even = full scale, odd = x0.5 scale).
        is_ref: True for the reference (undistorted) crops.
        comp: composition index, -1 for references.
        level: level index inside the composition group, -1 for references.
        var_severity: severity index in [0, 4] of the composition's varying factor at this
            node (after integer rounding), NaN for references.
    """

    item: Tensor
    view: Tensor
    is_ref: Tensor
    comp: Tensor
    level: Tensor
    var_severity: Tensor

    def __len__(self) -> int:
        return int(self.item.numel())

    def to(self, device: torch.device | str) -> NodeMeta:
        return NodeMeta(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})
