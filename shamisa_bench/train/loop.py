"""The pretraining loop (:func:`run_pretrain`): SHAMISA self-supervised pretraining, one CPU
to many GPUs.

The loop follows the reference a0 run: SGD with momentum, cosine annealing with warm
restarts stepped per iteration after the update (period in steps, by default the whole run),
fp16 autocast with gradient scaling on CUDA and fp32 on CPU. Under autocast the encoder and
projector run in fp16 as in the reference; the VICReg variance and covariance terms run in
fp32 as in the reference; the relation graph and its association penalty (graph pull,
R_graph, L_ot) run in fp32, where the reference leaves them to autocast (docs/gpu.md says
why). The same command runs under ``torchrun`` with
DistributedDataParallel (NCCL on GPU, gloo on CPU); each rank builds a disjoint shard of
every step's items and only rank 0 writes.

A run folder holds::

    config.json        the resolved configuration (checked on --resume)
    log.jsonl          first line: command + config; then one record per step
    checkpoint.pt      the latest full checkpoint (model, graph, optimiser, scaler, step)
    export/            the final encoder-only export (encoder.pt + config.json)

Every step's batch is a pure function of (seed, step, rank): the images it uses and every
random draw of the distortion engine come from generators seeded from those three numbers,
so a resumed run sees exactly the batches an uninterrupted run would, whatever the number
of DataLoader workers (:class:`~shamisa_bench.train.data.StepDataset`). The configuration
is in :mod:`~shamisa_bench.train.config`, the run folder's checkpoint and log helpers in
:mod:`~shamisa_bench.train.checkpoint`, the ``pretrain`` command in
:mod:`~shamisa_bench.train.cli`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from shamisa_bench.common.atomic import atomic_torch_save, atomic_write_text
from shamisa_bench.common.progress import StepProgress
from shamisa_bench.common.provenance import git_state, package_versions, utc_now
from shamisa_bench.distortions.allocator import tune_malloc
from shamisa_bench.losses import ShamisaLoss
from shamisa_bench.losses.severity import add_severity_term
from shamisa_bench.model import read_encoder_export, save_encoder_export
from shamisa_bench.model.network import PretrainNet
from shamisa_bench.train.checkpoint import (
    export_extra,
    load_resume,
    logged_validations,
    replace_export,
    truncate_log,
)
from shamisa_bench.train.config import (
    CONFIG_FORMAT,
    PretrainConfig,
    PretrainError,
    PretrainStopped,
)
from shamisa_bench.train.data import (
    StepDataset,
    image_set,
    scan_images,
    small_images,
    step_loader,
)

__all__ = ["run_pretrain", "validation_fell"]


class _StopRequests:
    """SIGINT and SIGTERM ask the loop to stop after the step under way.

    Installed only from the main thread (signal handlers cannot be set elsewhere), and
    the previous handlers are restored on exit. A second Ctrl-C aborts at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"pretrain: {signal.Signals(signum).name}: stopping after this step with a checkpoint "
              "(Ctrl-C again aborts at once, losing the steps since the last checkpoint)", file=sys.stderr)


# --------------------------------------------------------------------------- run


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(name: str, dist_info: _Dist | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PretrainError("--device cuda was asked for, but torch sees no CUDA device")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", device.index if device.index is not None else local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise PretrainError(f"unsupported device {name!r}; use cpu, cuda or auto")
    return device


PARAM_GROUPS: tuple[str, ...] = ("encoder", "projector_graph")
"""Names of the optimiser's parameter groups, in order: the encoder, then the projector and
the relation graph (prototypes, aggregator). Checkpoints written before the second group had
this name call it ``heads``; resuming one renames it."""


def _param_groups(net: PretrainNet, config: PretrainConfig) -> list[dict[str, Any]]:
    encoder = [p for p in net.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in encoder}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
    return [
        {"params": encoder, "lr": config.lr * config.backbone_lr_mult, "name": PARAM_GROUPS[0]},
        {"params": rest, "lr": config.lr, "name": PARAM_GROUPS[1]},
    ]


def _l2(tensors: list[Tensor]) -> float:
    """L2 norm of several tensors taken as one vector (one device sync; 0 for none)."""
    if not tensors:
        return 0.0
    with torch.no_grad():
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def _check_finite(step: int, total: Tensor, terms: dict[str, Tensor]) -> None:
    bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
    if bad or not torch.isfinite(total):
        names = ", ".join(bad) if bad else "total"
        raise PretrainError(
            f"non-finite loss at step {step} (term: {names}; values "
            + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            + "); the last good checkpoint is kept"
        )


def validation_fell(history: Sequence[float], drop: float, patience: int) -> bool:
    """Whether the last ``patience`` validations all lie more than ``drop`` below the best one.

    ``history`` is every validation SRCC of the run in step order, the step-0 baseline (the
    initial encoder) first, so a run that only ever falls from its start is caught too.

    Raises:
        ValueError: ``drop`` not positive or ``patience`` below 1.
    """
    if not drop > 0 or patience < 1:
        raise ValueError(f"early stop needs drop > 0 and patience >= 1, got {drop} and {patience}")
    if len(history) <= patience:
        return False
    best = max(history)
    return all(v < best - drop for v in history[-patience:])


def run_pretrain(
    config: PretrainConfig,
    images: Path | Sequence[Path],
    out: Path,
    *,
    device: str = "auto",
    resume: bool = False,
    num_workers: int = 1,
    progress: bool = True,
    command: Sequence[str] | None = None,
    export_every: int | None = None,
    validation: Any = None,
    val_every: int | None = None,
    tune_allocator: bool = False,
    early_stop: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) one pretraining run.

    Args:
        config: the resolved configuration.
        images: folder(s) of pristine images, searched recursively.
        out: the run folder.
        device: ``cpu``, ``cuda`` or ``auto``.
        resume: continue from ``out/checkpoint.pt`` (the config must match).
        num_workers: DataLoader worker processes building batches (0 = in the main process).
        progress: show a rich progress bar (rank 0 only).
        command: the command line, recorded as the log's first line.
        export_every: also write an encoder export every this many steps to
            ``out/exports/stepNNNNNN`` (for choosing a checkpoint by validation SRCC).
        validation: a :class:`~shamisa_bench.train.probe.ValidationProbe` (rank 0 runs it):
            measured before the first step (the baseline), every ``val_every`` steps and
            after the last; each value is logged and the trained export with the best one
            is kept in ``out/best``.
        val_every: steps between validations (required with ``validation``).
        tune_allocator: serve every allocation from glibc's heap (no mmap), process-wide:
            about 2x faster steps on CPU (activations are no longer page-faulted afresh each
            step), at the price of a larger resident set (about twice the memory). Off by
            default, since it changes the allocator of the whole calling process; the
            ``pretrain`` command turns it on unless ``--no-malloc-tuning``. See
            ``shamisa_bench.distortions.allocator.tune_malloc``.
        early_stop: ``(drop, patience)``: end the run after ``patience`` validations in a
            row more than ``drop`` below the best one so far (the step-0 baseline counts),
            as a finished run (checkpoint, ``export``, summary) at the step it reached.
            ``--resume`` continues it (where the next validation, still below, ends it
            again unless the resumed run leaves ``early_stop`` off). Needs ``validation``.

    Returns:
        A summary dict: steps done, final loss, export path, best validation, seconds.

    Raises:
        PretrainError: bad folders, bad resume state, unreadable data, non-finite loss.
    """
    t_start = time.perf_counter()
    if tune_allocator:
        tune_malloc(trim_threshold=1 << 31, use_mmap=False)  # workers fork with it
    dev = _resolve_device(device)
    dist_info = _init_distributed(dev)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PretrainError(f"--out {out} is a file; give a folder for the run")
    state = load_resume(out, config) if resume else None
    if not resume and (out / "checkpoint.pt").exists():
        raise PretrainError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")

    if export_every is not None and export_every < 1:
        raise PretrainError(f"export_every must be >= 1, got {export_every}")
    if (validation is not None and val_every is None) or (val_every is not None and val_every < 1):
        raise PretrainError(f"val_every must be >= 1 (and is required with validation), got {val_every}")
    if early_stop is not None:
        if not val_every:
            raise PretrainError("early_stop needs a validation (--val-dataset) to watch")
        try:
            validation_fell([], *early_stop)
        except ValueError as err:
            raise PretrainError(str(err)) from err
    paths, unreadable = scan_images(images)
    n_files = len(paths) + len(unreadable)
    if len(unreadable) > config.max_unreadable_fraction * n_files:
        raise PretrainError(
            f"{len(unreadable)} of {n_files} image files are unreadable "
            f"(more than {config.max_unreadable_fraction:.0%}), e.g. {unreadable[0][0]}: {unreadable[0][1]}"
        )
    images_id = image_set(images, paths)
    if resume:
        stored_images = json.loads((out / "config.json").read_text()).get("images")
        if stored_images is not None and stored_images != images_id:
            raise PretrainError(
                f"cannot resume: the run in {out} was made on another image set ({stored_images['count']} images, "
                f"sha256 {stored_images['sha256'][:12]}), these --images give {images_id['count']} images "
                f"(sha256 {images_id['sha256'][:12]}); pass the same folders, or start a new --out folder"
            )
    if dist_info.is_main:
        if unreadable:
            print(f"pretrain: skipping {len(unreadable)} unreadable image file(s), e.g. {unreadable[0][0]}: "
                  f"{unreadable[0][1]}", file=sys.stderr)
        crop = config.layout.crop_size
        small, half, fit = small_images(paths, crop)
        if small:
            w, h = small[0][1]
            print(f"pretrain: {len(small)} image(s) have a side below the {crop} px crop and are "
                  f"zero-padded to it, e.g. {small[0][0]} ({w}x{h})", file=sys.stderr)
        if half:
            print(f"pretrain: {half} more image(s) have a side below {2 * crop} px: their x0.5 views are "
                  f"zero-padded to the {crop} px crop (--crop-size {fit} fills them all)", file=sys.stderr)
    total_steps = config.total_steps(len(paths), dist_info.world_size)

    torch.manual_seed(config.seed)  # the one place model init draws from
    net = PretrainNet(config).to(dev)
    # The encoder's initial weights, taken before a resumed state is loaded: the same
    # tensors for a fresh and a resumed run, since the init is seeded. They anchor
    # --encoder-anchor and measure the logged drift.
    anchor = [(p, p.detach().clone()) for p in net.encoder.parameters() if p.requires_grad]
    anchor_norm = _l2([w0 for _, w0 in anchor]) or 1.0
    loss_fn = ShamisaLoss(config.loss_config())
    optimizer = torch.optim.SGD(
        _param_groups(net, config), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    # The schedule's period is fixed when a run starts: a run resumed with another
    # --max-steps keeps the period it started with (the checkpoint records it).
    lr_period = config.lr_period(total_steps)
    if state is not None and "lr_period" in state:
        if int(state["lr_period"]) != lr_period and dist_info.is_main:
            print(
                f"note: the learning-rate period stays at the {int(state['lr_period'])} steps this run started "
                f"with (not {lr_period}); pass --lr-period-steps to a new run to choose it",
                file=sys.stderr,
            )
        lr_period = int(state["lr_period"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=lr_period, T_mult=config.t_mult, eta_min=config.eta_min
    )
    # lr_step "after" (the reference): the schedule is read after each update at the index of the
    # step just taken (the reference's epoch + i / len, in steps), so step i runs at its value at
    # i - 1 and steps 0 and 1 both at lr. "before": step i runs at its value at i.
    schedule_after = config.lr_step == "after"
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_step = 0
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])  # takes the saved groups' settings, names included
        for group, name in zip(optimizer.param_groups, PARAM_GROUPS, strict=True):
            group["name"] = name  # an old checkpoint's "heads" is today's "projector_graph"
        scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
    if start_step >= total_steps and dist_info.is_main:
        print(f"run in {out} already finished {start_step} of {total_steps} steps", file=sys.stderr)

    train_net: nn.Module = net
    if dist_info.enabled:
        # Ablations that switch off transport/L_ot leave the prototypes without gradient.
        train_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=config.graph != "full" or config.head_warmup_steps > 0,
        )

    log_path = out / "log.jsonl"
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        header = {
            "command": list(command) if command is not None else sys.argv,
            "config": config.to_dict(),
            "images": [str(p) for p in ([images] if isinstance(images, (str, Path)) else images)],
            "n_images": len(paths),
            "unreadable": len(unreadable),
            "unreadable_files": unreadable[:50],
            "world_size": dist_info.world_size,
            "device": str(dev),
            "total_steps": total_steps,
            "image_set": images_id,
            "resumed_from": start_step if resume else None,
            "provenance": _provenance(),
        }
        if not resume:
            atomic_write_text(out / "config.json", json.dumps(
                {"format": CONFIG_FORMAT, "config": config.to_dict(), "images": images_id}, indent=2))
            log_path.write_text("")
        else:
            header["dropped_records"] = truncate_log(log_path, start_step)
        with log_path.open("a") as fh:
            fh.write(json.dumps(header) + "\n")

    dataset = StepDataset(
        paths, config.layout, seed=config.seed, start=start_step, stop=total_steps,
        rank=dist_info.rank, world_size=dist_info.world_size,
    )
    loader = step_loader(dataset, num_workers, pin_memory=dev.type == "cuda")

    def save_checkpoint(step: int) -> None:
        if dist_info.is_main:
            atomic_torch_save(
                {
                    "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "lr_period": lr_period,
                    "config": config.to_dict(),
                },
                out / "checkpoint.pt",
            )

    best = {"val_srcc": float("-inf"), "step": None}
    history: list[float] = []  # every validation so far, step 0 first (rank 0)
    if resume and dist_info.is_main:
        logged = logged_validations(log_path, start_step)
        history.extend(srcc for _, srcc in logged)
        trained = [(done, srcc) for done, srcc in logged if done > 0]  # step 0 is never "best"
        if trained:
            best_step, best_srcc = max(trained, key=lambda record: record[1])  # the first of equal bests
            best.update(val_srcc=best_srcc, step=best_step)

    def validate(done: int) -> bool:
        """Rank 0 measures (it holds ``validation``); the other ranks wait for its verdict.

        Returns whether ``early_stop`` ends the run here (the same answer on every rank).
        """
        if not val_every:
            return False
        fell = torch.zeros(1, device=dev)
        if dist_info.is_main and validation is not None:
            result = validation(net.encoder)
            # Step 0 is the initialisation: logged as the baseline to beat, never kept as "best".
            improved = done > 0 and result.srcc > best["val_srcc"]
            if improved:
                best.update(val_srcc=result.srcc, step=done)
                extra = export_extra(config, done, images_id)
                replace_export(net.encoder, out / "best", extra={**extra, "validation": {
                    "dataset": validation.dataset, "split_hash": validation.split_hash, **result.to_dict()}})
            net.train()  # whatever a probe did to the modes: re-apply freeze_bn and the frozen stages
            with log_path.open("a") as fh:
                fh.write(json.dumps({"step": done, **result.to_dict(), "val_best": improved}) + "\n")
            history.append(result.srcc)
            if early_stop is not None and done > 0 and validation_fell(history, *early_stop):
                fell.fill_(1.0)
        if dist_info.enabled:
            dist.broadcast(fell, src=0)
        return bool(fell)

    def _stop(done: int, total: int, signum: int) -> None:
        """Checkpoint the steps done, log why the run ended there, and leave the loop."""
        if done % config.checkpoint_every != 0:
            save_checkpoint(done)
        if dist_info.is_main:
            with log_path.open("a") as fh:
                fh.write(json.dumps({"stopped": {
                    "after_step": done, "total_steps": total, "signal": signal.Signals(signum).name,
                    "seconds": round(time.perf_counter() - t_start, 3), "at": utc_now()}}) + "\n")
        raise PretrainStopped(str(out), done, total, signum)

    if start_step == 0 and total_steps > 0:
        validate(0)
    end_step = total_steps  # the step the run finishes at: total_steps, or where early_stop ends it
    last = {"loss": float("nan")}
    bar = StepProgress(total_steps, start_step, enabled=progress and dist_info.is_main)
    net.train()
    step = start_step
    wait_start = time.perf_counter()
    stop = _StopRequests()
    stop.install()
    try:
        for step, batch, build_s in loader:
            data_s = time.perf_counter() - wait_start
            t0 = time.perf_counter()
            if not schedule_after:
                scheduler.step(step)
            elif step == start_step and step > 0:
                scheduler.step(step - 1)  # a resumed run: the rate the step before it left
            lrs = [group["lr"] for group in optimizer.param_groups]
            net.encoder_fixed = step < config.head_warmup_steps
            x = batch.crops.to(dev, non_blocking=True)
            nodes = batch.nodes.to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                z, graph_out, h = train_net(x, nodes, with_features=True)
            out_loss = loss_fn(z, graph_out)
            total, severity = add_severity_term(out_loss.total, h, nodes, config.c_severity)
            finite = torch.isfinite(total.detach()).to(torch.float32)
            if dist_info.enabled:  # every rank stops together if any rank's loss is bad
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if not bool(finite):
                _check_finite(step, total, out_loss.terms)
                raise PretrainError(f"non-finite loss on another rank at step {step}; the last good checkpoint is kept")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if config.projector_steps is not None and step >= config.projector_steps:
                for p in optimizer.param_groups[1]["params"]:
                    p.grad = None  # SGD skips a parameter without gradient: no momentum, no decay
            if config.clip_grad_norm is not None or config.encoder_anchor > 0:
                scaler.unscale_(optimizer)
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
            if config.encoder_anchor > 0 and not net.encoder_fixed:
                with torch.no_grad():
                    for p, w0 in anchor:
                        if p.grad is not None:
                            p.grad.add_(p - w0, alpha=config.encoder_anchor)
            scaler.step(optimizer)
            scaler.update()
            if schedule_after:
                scheduler.step(step)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            compute_s = time.perf_counter() - t0
            loss_value = float(total.detach())
            if dist_info.enabled:
                t = torch.tensor([loss_value], device=dev)
                dist.all_reduce(t)
                loss_value = float(t) / dist_info.world_size
            last["loss"] = loss_value
            if dist_info.is_main:
                record = {
                    "step": step,
                    "loss": round(loss_value, 6),
                    **{k: round(float(v.detach()), 6) for k, v in out_loss.terms.items()},
                    **({"severity": round(float(severity.detach()), 6)} if severity is not None else {}),
                    "lr": lrs[1],
                    "lr_encoder": lrs[0],
                    "encoder_drift": round(_l2([p.detach() - w0 for p, w0 in anchor]) / anchor_norm, 6),
                    "branch_weights": [round(w, 4) for w in graph_out.branch_weights.tolist()],
                    "branch_sums": [round(s, 4) for s in graph_out.weight_sums.tolist()],
                    "data_s": round(data_s, 4),
                    "build_s": round(build_s, 4),
                    "compute_s": round(compute_s, 4),
                }
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            bar.update(step + 1, loss_value)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps:
                save_checkpoint(step + 1)
            if export_every and (step + 1) % export_every == 0 and dist_info.is_main:
                save_encoder_export(net.encoder, out / "exports" / f"step{step + 1:06d}",
                                    extra=export_extra(config, step + 1, images_id))
            if val_every and ((step + 1) % val_every == 0 or step + 1 == total_steps):
                if validate(step + 1) and step + 1 < total_steps:
                    end_step = step + 1
                    if dist_info.is_main:
                        drop, patience = early_stop or (0.0, 0)
                        with log_path.open("a") as fh:
                            fh.write(json.dumps({"stopped": {
                                "after_step": end_step, "total_steps": total_steps, "reason": "early_stop",
                                "detail": f"the last {patience} validation(s) are more than {drop} below the "
                                          f"best ({max(history):.6f})",
                                "seconds": round(time.perf_counter() - t_start, 3), "at": utc_now()}}) + "\n")
                    break
            if step + 1 < total_steps and _stop_requested(stop, dist_info.enabled, dev):
                _stop(step + 1, total_steps, stop.signum or signal.SIGTERM)
            wait_start = time.perf_counter()
    finally:
        stop.restore()
        bar.close()
    if dist_info.enabled:
        # DDP keeps parameters in sync; BatchNorm running statistics are broadcast from rank 0
        # at each forward, so after the last step every rank takes rank 0's.
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)
    export_dir = out / "export"
    if dist_info.is_main and start_step < end_step:
        save_checkpoint(end_step)
        save_encoder_export(net.encoder, export_dir, extra=export_extra(config, end_step, images_id))
    checksums = [_param_checksum(net)]
    if dist_info.enabled:
        gathered: list[Any] = [None] * dist_info.world_size
        dist.all_gather_object(gathered, checksums[0])
        checksums = gathered
        dist.barrier()
        if len(set(checksums)) != 1:
            raise PretrainError(f"ranks ended with different weights (checksums {checksums})")
    summary = {
        "steps": end_step,
        "planned_steps": total_steps,
        "early_stopped": end_step < total_steps,
        "start_step": start_step,
        "final_loss": last["loss"] if math.isfinite(last["loss"]) else None,
        "export": str(export_dir) if export_dir.is_dir() else None,
        "best_val_srcc": best["val_srcc"] if best["step"] is not None else None,
        "best_step": best["step"],
        "seconds": round(time.perf_counter() - t_start, 3),
        "rank": dist_info.rank,
        "world_size": dist_info.world_size,
        "rank_checksums": checksums,
    }
    if dist_info.is_main and start_step < end_step:
        end = {"summary": {k: v for k, v in summary.items() if k not in ("rank", "export")},
               "export_sha256": read_encoder_export(export_dir, verify=False).weights_sha256}
        if (out / "best").exists():
            end["best_sha256"] = read_encoder_export(out / "best", verify=False).weights_sha256
        with log_path.open("a") as fh:
            fh.write(json.dumps(end) + "\n")
    return summary


def _stop_requested(stop: _StopRequests, distributed: bool, dev: torch.device) -> bool:
    """Whether to stop now; under DDP every rank stops at the same step if any rank was asked."""
    if not distributed:
        return stop.signum is not None
    flag = torch.tensor([0.0 if stop.signum is None else float(stop.signum)], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    signum = int(flag.item())  # one device sync
    if signum and stop.signum is None:
        stop.signum = signum
    return bool(signum)


def _param_checksum(net: nn.Module) -> str:
    """A sha256 over every parameter and buffer (to prove DDP ranks agree exactly)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _provenance() -> dict[str, Any]:
    """Package versions, git sha and start time, for the log's first record."""
    sha, dirty = git_state()
    return {**package_versions(), "git_sha": sha, "git_dirty": dirty, "started_at": utc_now()}


