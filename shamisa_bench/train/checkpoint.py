"""A run folder's checkpoint, log and exports: checks before resuming, and safe rewrites.

* :func:`load_resume`: read and check ``config.json`` and ``checkpoint.pt`` for ``--resume``;
* :func:`truncate_log`: drop the log records of the steps a resumed run does again;
* :func:`logged_validations`: every validation logged so far (its best trained step is what
  ``best/`` holds; ``--early-stop`` reads them all);
* :func:`replace_export` / :func:`export_extra`: write an encoder export (``best/``) and the
  provenance it records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shamisa_bench.common.atomic import atomic_write_text
from shamisa_bench.model import save_encoder_export
from shamisa_bench.train.config import PretrainConfig, PretrainError

__all__ = ["export_extra", "load_resume", "logged_validations", "replace_export", "truncate_log"]


def load_resume(run_dir: Path, config: PretrainConfig) -> dict[str, Any]:
    """Reads and checks a run folder for --resume without writing anything."""
    cfg_path = run_dir / "config.json"
    ckpt_path = run_dir / "checkpoint.pt"
    if not cfg_path.is_file():
        raise PretrainError(f"cannot resume: {cfg_path} is missing (is {run_dir} a pretraining run folder?)")
    try:
        stored = json.loads(cfg_path.read_text())
        stored_cfg = PretrainConfig.from_dict(stored["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainError(f"cannot resume: {cfg_path} is not a valid run config ({err})") from err
    ours, theirs = config.to_dict(), stored_cfg.to_dict()
    ours.pop("max_steps"), theirs.pop("max_steps")
    if ours != theirs:
        diff = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise PretrainError(
            f"cannot resume: the run in {run_dir} was made with another config (differs in {diff}); "
            "pass the same options, or start a new --out folder"
        )
    if not ckpt_path.is_file():
        raise PretrainError(f"cannot resume: {ckpt_path} is missing")
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise PretrainError(f"cannot resume: checkpoint {ckpt_path} is corrupt or unreadable ({err})") from err
    for key in ("net", "optimizer", "step", "scaler"):
        if key not in state:
            raise PretrainError(f"cannot resume: checkpoint {ckpt_path} lacks '{key}'")
    step = state["step"]
    step = int(step.item()) if isinstance(step, torch.Tensor) and step.numel() == 1 else step
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise PretrainError(f"cannot resume: checkpoint {ckpt_path} records step {step!r}; "
                            "a step is a non-negative integer (the file is damaged or not a checkpoint of this tool)")
    return state


def logged_validations(log_path: Path, upto: int) -> list[tuple[int, float]]:
    """The ``(step, val_srcc)`` of each validation logged at or before step ``upto``, in step
    order, step 0 (the initialisation) included: what ``--early-stop`` watches, and whose
    best trained step is what ``best/`` holds."""
    found: dict[int, float] = {}
    if not log_path.exists():
        return []
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "val_srcc" in record and 0 <= record["step"] <= upto:
            found[int(record["step"])] = float(record["val_srcc"])
    return sorted(found.items())


def replace_export(encoder: nn.Module, target: Path, *, extra: dict[str, Any]) -> None:
    """Writes an export beside ``target`` and swaps it in, so ``target`` is never half written."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    save_encoder_export(encoder, staging, extra=extra)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def export_extra(config: PretrainConfig, steps: int, images: dict[str, Any]) -> dict[str, Any]:
    return {"pretrain": {"preset": config.preset, "steps": steps, "seed": config.seed, "graph": config.graph,
                         "config": config.to_dict(), "images": images}}


def truncate_log(log_path: Path, start_step: int) -> int:
    """Drop the records of steps a resumed run does again; returns how many were dropped.

    A run killed after its last checkpoint has logged steps it will redo: step records
    with ``step >= start_step`` and validations after ``start_step`` go, so each step is
    logged once. Header lines (those with a command) are kept.
    """
    if not log_path.is_file():
        return 0
    kept, dropped = [], 0
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            dropped += 1
            continue
        step = record.get("step") if isinstance(record, dict) else None
        is_val = isinstance(record, dict) and "val_srcc" in record
        if isinstance(step, int) and ((is_val and step > start_step) or (not is_val and step >= start_step)):
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_text(log_path, "".join(line + "\n" for line in kept))
    return dropped
