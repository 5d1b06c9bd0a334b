"""SHAMISA pretraining: configuration, step layout and batches, the loop, checkpoints.

- :mod:`~shamisa_bench.train.config`: :class:`PretrainConfig`, the presets.
- :mod:`~shamisa_bench.train.steps`: the step layout and the crops that fill it.
- :mod:`~shamisa_bench.train.data`: the pristine images and :class:`StepDataset`.
- :mod:`~shamisa_bench.train.loop`: :func:`run_pretrain`.
- :mod:`~shamisa_bench.train.checkpoint`: the run folder's checkpoint, log and exports.
- :mod:`~shamisa_bench.train.probe`: validation SRCC, to choose a checkpoint.
- :mod:`~shamisa_bench.train.report`: a run's log read back and its curves.
- :mod:`~shamisa_bench.train.cli`: the ``pretrain`` and ``pretrain-report`` commands.
"""

from __future__ import annotations

from shamisa_bench.train.config import (
    PRESETS,
    PretrainConfig,
    PretrainError,
    PretrainStopped,
    preset_config,
)
from shamisa_bench.train.data import StepDataset
from shamisa_bench.train.loop import run_pretrain

__all__ = ["PRESETS", "PretrainConfig", "PretrainError", "PretrainStopped", "StepDataset", "preset_config", "run_pretrain"]
