"""The ``pretrain`` and ``pretrain-report`` commands (``perf pretrain`` is in :mod:`shamisa_bench.perf.pretrain`).

``pretrain`` parses the options into a :class:`~shamisa_bench.train.config.PretrainConfig`,
builds the validation probe when ``--val-dataset`` is given (rank 0 only) and calls
:func:`~shamisa_bench.train.loop.run_pretrain`; ``pretrain-report`` copies runs' configs and
logs and draws their curves (:mod:`~shamisa_bench.train.report`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from shamisa_bench.cli.args import add_device_argument
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.writable import check_writable
from shamisa_bench.distortions.catalog import parse_type_names
from shamisa_bench.losses.shamisa import LossConfig
from shamisa_bench.train.config import (
    CONFIG_FORMAT,
    GRAPH_FEATURES,
    PRESETS,
    PretrainConfig,
    PretrainError,
    PretrainStopped,
    preset_config,
)
from shamisa_bench.train.diagnose import alignment_run, diagnose_run
from shamisa_bench.train.loop import run_pretrain
from shamisa_bench.train.probe import open_probe
from shamisa_bench.train.report import (
    plot_compare,
    plot_curves,
    plot_line_search,
    read_line_search,
    read_run_log,
    write_index,
)

__all__ = ["add_config_args", "config_from_args", "register"]


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="lite", choices=sorted(PRESETS), help="starting configuration (default: lite)")
    p.add_argument("--backbone", default=None, help="override the preset's backbone")
    p.add_argument("--init", default=None, choices=("imagenet", "random"), help="encoder initialisation")
    p.add_argument("--graph", default=None, help="relation-graph ablation (default: full)")
    p.add_argument("--lr", type=float, default=None, help="SGD learning rate (a0: 0.0015)")
    p.add_argument("--backbone-lr-mult", type=float, default=None, help="encoder lr = lr x this (default 1)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the images (default 1)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps")
    p.add_argument("--lr-period-steps", type=int, default=None,
                   help="cosine warm-restart period T_0 in steps (default: the whole run, one decay)")
    p.add_argument("--seed", type=int, default=None, help="run seed (a0: 27)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--projector-init", default=None, choices=("torch", "unit_norm_input"),
                   help="projector initialisation (default torch, as the reference)")
    p.add_argument("--projector-gain", type=float, default=None, help="gain of the unit_norm_input init")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm (default: off)")
    p.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the encoder's BatchNorm statistics fixed (default: the preset's; lite and a0 "
                        "update them, as the reference)")
    p.add_argument("--freeze-stages", type=int, default=None,
                   help="keep the encoder's first N stages fixed (stem = 1; default 0, as the reference)")
    p.add_argument("--train-stages", type=int, default=None, metavar="N",
                   help="train the encoder's stages up to the Nth only (1 = the stem alone); the later stages and "
                        "the layers after them stay fixed (default: all train, as the reference)")
    p.add_argument("--c-var", type=float, default=None,
                   help=f"coefficient of L_var (default: the reference's {LossConfig.c_var})")
    p.add_argument("--c-inv", type=float, default=None,
                   help=f"coefficient of L_inv' (default: the reference's {LossConfig.c_inv})")
    p.add_argument("--c-cov", type=float, default=None,
                   help=f"coefficient of L_cov (default: the reference's {LossConfig.c_cov})")
    p.add_argument("--projector-dim", type=int, default=None,
                   help="width of z (default: 0.375 x the encoder width, as the reference); keep it below the "
                        "rows of a VICReg half (52 for the lite layout) so unit variance and zero covariance can meet")
    p.add_argument("--head-warmup-steps", type=int, default=None,
                   help="train only the projector and the relation graph for the first N steps (default 0)")
    p.add_argument("--detach-graph", action=argparse.BooleanOptionalAction, default=None,
                   help="build the kNN and transport branches on detached features, so the relation graph "
                        "reaches the encoder only through z (default: the preset's; a0 and lite keep them "
                        "differentiable, as the reference)")
    p.add_argument("--graph-features", choices=GRAPH_FEATURES, default=None,
                   help="what the kNN and transport branches are built on: the encoder being trained ('online', "
                        "the reference) or a frozen copy of its initialisation ('initial': fixed neighbours, no "
                        "gradient through those branches; one more forward pass per step)")
    p.add_argument("--encoder-anchor", type=float, default=None,
                   help="pull the encoder's weights back towards their initialisation with this strength "
                        "(L2-SP: X * (w - w_init) is added to each gradient; default 0, off)")
    p.add_argument("--c-severity", type=float, default=None, metavar="X",
                   help="add X times the within-group severity read-out error of the encoder's features to the "
                        "objective: the features are asked to order each composition group's crops by severity "
                        "(default 0, as the reference; not part of SHAMISA)")
    p.add_argument("--projector-steps", type=int, default=None, metavar="N",
                   help="train the projector and the relation graph for the first N steps only, then hold "
                        "them fixed so every later update is the encoder's; 0 holds them at their "
                        "initialisation (default: all steps, as the reference)")
    layout = p.add_argument_group("batch layout (default: the preset's; see LayoutSpec)")
    layout.add_argument("--items", type=int, default=None, help="items per step (lite: 2)")
    layout.add_argument("--contents", type=int, default=None,
                        help="pristine images per item, each cut at full and x0.5 scale (lite: 2)")
    layout.add_argument("--compositions", type=int, default=None, help="distortion compositions per item (lite: 3)")
    layout.add_argument("--levels", type=int, default=None, help="severities per composition (lite: 4)")
    layout.add_argument("--crop-size", type=int, default=None, help="side of the crops in pixels (lite: 192, lite-cpu: 160)")
    layout.add_argument("--distortion-types", default=None, metavar="NAMES",
                        help="draw compositions from these distortion types only: comma-separated type or group "
                             "names, a group standing for all its types (default: all 26, as the reference)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep the encoder in the default memory format (channels-last is 2-3x faster on CPU)")
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers building batches (default 1)")


_LAYOUT_ARGS = {"items": "n_items", "contents": "n_contents", "compositions": "n_compositions",
                "levels": "n_levels", "crop_size": "crop_size"}


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    layout_overrides = {field: getattr(args, arg) for arg, field in _LAYOUT_ARGS.items()
                        if getattr(args, arg, None) is not None}
    if getattr(args, "distortion_types", None) is not None:
        try:
            layout_overrides["distortion_types"] = parse_type_names(args.distortion_types)
        except ValueError as err:
            raise CLIError(f"--distortion-types: {err}") from err
    layout = dataclasses.replace(PRESETS[args.preset]["layout"], **layout_overrides) if layout_overrides else None
    return preset_config(
        args.preset,
        backbone=args.backbone,
        init=args.init,
        graph=args.graph,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr_period_steps=args.lr_period_steps,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        projector_init=args.projector_init,
        projector_gain=args.projector_gain,
        clip_grad_norm=args.clip_grad_norm,
        freeze_bn=args.freeze_bn,
        freeze_stages=args.freeze_stages,
        train_stages=args.train_stages,
        c_var=args.c_var,
        c_inv=args.c_inv,
        c_cov=args.c_cov,
        projector_dim=args.projector_dim,
        head_warmup_steps=args.head_warmup_steps,
        detach_graph=args.detach_graph,
        graph_features=args.graph_features,
        encoder_anchor=args.encoder_anchor,
        projector_steps=args.projector_steps,
        c_severity=args.c_severity,
        channels_last=False if args.no_channels_last else None,
        layout=layout,
    )


def _is_pretrain_run(out: Path) -> bool:
    """True when ``out/config.json`` is the configuration a pretrain run of this tool writes."""
    try:
        data = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("format") == CONFIG_FORMAT
            and isinstance(data.get("config"), dict) and "images" in data)


def check_out_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be written, or that holds files but is not a run of this tool.

    A new or empty folder, or a pretrain run's own folder (its ``config.json``), is accepted;
    ``--resume`` continues a run (checked by the run itself) and ``--overwrite`` accepts a
    folder of other files, whose ``config.json``, ``log.jsonl``, checkpoints and exports
    the run then replaces. Checked before any image is read.

    Raises:
        CLIError: naming the folder and what it holds.
    """
    try:
        check_writable(out, "--out")
    except OSError as err:
        raise CLIError(str(err)) from None
    if resume or overwrite or not out.is_dir():
        return
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as err:
        raise CLIError(f"--out {out}: cannot list the folder ({err.strerror or err})") from None
    if entries and not _is_pretrain_run(out):
        shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
        raise CLIError(
            f"--out {out} holds files that are not a shamisa-bench pretrain run ({shown}): a run would replace "
            "its config.json, log.jsonl, checkpoints and exports. Choose a new or empty folder, or pass "
            "--overwrite to write there anyway"
        )


def _cmd_pretrain(args: argparse.Namespace) -> int:
    check_out_folder(Path(args.out), resume=args.resume, overwrite=args.overwrite)
    config = config_from_args(args)
    validation = None
    if args.val_dataset:
        if int(os.environ.get("RANK", "0")) == 0:
            try:
                validation = open_probe(args.val_dataset, args.data_root, option="--val-dataset",
                                        split_seed=args.val_split_seed, registry=args.registry)
            except ValueError as err:
                raise CLIError(str(err)) from err
    val_every = args.val_every if args.val_dataset else None  # every rank waits while rank 0 measures
    early_stop = None
    if args.early_stop is not None:
        if not args.val_dataset:
            raise CLIError("--early-stop watches the validation SRCC: give --val-dataset too")
        early_stop = (args.early_stop, args.early_stop_patience)
    try:
        summary = run_pretrain(
            config, [Path(p) for p in args.images], Path(args.out), device=args.device, resume=args.resume,
            num_workers=args.workers, progress=not args.no_progress, command=["shamisa-bench", *sys.argv[1:]],
            export_every=args.export_every, validation=validation, val_every=val_every,
            tune_allocator=not args.no_malloc_tuning, early_stop=early_stop,
        )
    except PretrainStopped as err:
        print(f"pretrain: {err}", file=sys.stderr)
        return 128 + err.signum  # the shell's code for a process ended by that signal
    except PretrainError as err:
        raise CLIError(str(err)) from err
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if summary["rank"] == 0:
        print(json.dumps(summary))
    return 0


def _cmd_pretrain_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not args.runs and not args.line_search and not args.index:
        raise CLIError("give run folders, --line-search files or --index")
    if args.line_search:
        try:
            searches = [read_line_search(Path(f)) for f in args.line_search]
        except ValueError as err:
            raise CLIError(str(err)) from err
        name = args.line_search_name
        plot_line_search(searches, out / f"{name}.png", args.title or "validation along the objective's mean gradient")
        print(json.dumps({"line_search": str(out / f"{name}.png"), "from": list(args.line_search)}))
    logs = []
    for run in args.runs:
        run = Path(run)
        try:
            log = read_run_log(run)
        except ValueError as err:
            raise CLIError(str(err)) from err
        target = out / log.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "log.jsonl"):
            if (run / name).is_file():
                shutil.copyfile(run / name, target / name)
        plot_curves(log, target / "curves.png")
        logs.append(log)
        best = max((v for v in log.validations if v["step"] > 0), key=lambda v: v["val_srcc"], default=None)
        line = {"run": log.name, "steps": len(log.steps), "state": log.state, "curves": str(target / "curves.png")}
        if best is not None:
            line.update(best_step=best["step"], best_val_srcc=best["val_srcc"],
                        val_srcc_step0=next((v["val_srcc"] for v in log.validations if v["step"] == 0), None),
                        val_srcc_last=log.validations[-1]["val_srcc"])
        print(json.dumps(line))
    if args.compare:
        plot_compare(logs, out / f"{args.compare}.png", args.title or args.compare)
        print(json.dumps({"compare": str(out / f"{args.compare}.png")}))
    if args.index:
        try:
            md, png, count = write_index(out)
        except ValueError as err:
            raise CLIError(str(err)) from err
        print(json.dumps({"index": str(md), "plot": str(png), "runs": count}))
    return 0


def _cmd_pretrain_diagnose(args: argparse.Namespace) -> int:
    images = [Path(p) for p in args.images] if args.images else None
    try:
        if not args.alignment:
            for given, option in ((args.parts, "--parts"), (args.noise_directions is not None, "--noise-directions"),
                                  (args.seed is not None, "--seed"), (args.val_dataset is not None, "--val-dataset")):
                if given:
                    raise ValueError(f"{option} goes with --alignment")
            result = diagnose_run(Path(args.run), images, batches=args.batches)
        else:
            if args.val_dataset is None:
                raise ValueError("--alignment needs --val-dataset (the labelled images it measures with)")
            probe = open_probe(args.val_dataset, args.data_root, option="--val-dataset",
                               split_seed=args.val_split_seed, registry=args.registry)
            result = alignment_run(
                Path(args.run), probe, images, batches=args.batches, parts=args.parts, seed=args.seed or 0,
                noise_directions=20 if args.noise_directions is None else args.noise_directions,
                report=lambda line: print(f"alignment: {line}", file=sys.stderr, flush=True))
            result["validation"] = {"dataset": args.val_dataset, "split_seed": args.val_split_seed,
                                    "split_hash": probe.split_hash, "skipped": len(probe.skipped)}
    except (ValueError, PretrainError) as err:
        raise CLIError(str(err)) from err
    print(json.dumps(result, indent=2))
    return 0


def register(sub: Any) -> None:
    """Add ``pretrain``, ``pretrain-report`` and ``pretrain-diagnose``."""
    p = sub.add_parser(
        "pretrain",
        help="self-supervised SHAMISA pretraining on a folder of pristine images",
        description="Pretrains the SHAMISA encoder. Works under torchrun for DDP (NCCL on GPU, gloo on CPU).",
    )
    p.add_argument("--images", required=True, nargs="+", help="folder(s) of pristine images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder (log, checkpoints, export)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out folder that holds other files (not a run of this tool); its "
                   "config.json, log.jsonl, checkpoints and exports are replaced. Without it such a folder is refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--export-every", type=int, default=None,
                   help="also write an encoder export every N steps under OUT/exports/ (checkpoint selection)")
    p.add_argument("--val-dataset", default=None,
                   help="registered labelled dataset (e.g. clive-sel; an evaluation part such as clive-eval is refused) whose split-0 train/val parts give a "
                        "validation SRCC; the best export is kept in OUT/best (never the test part)")
    p.add_argument("--data-root", default=None, help="folder holding --val-dataset (default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--val-every", type=int, default=50, help="steps between validations (default 50)")
    p.add_argument("--val-split-seed", type=int, default=0, help="seed of the validation split (default 0)")
    p.add_argument("--early-stop", type=float, default=None, metavar="DROP",
                   help="end the run when validation SRCC stays more than DROP below its best so far (the step-0 "
                        "baseline included) for --early-stop-patience validations in a row: the collapse of a "
                        "run gone wrong (on lite-cpu collapses fell 0.06-0.17 below the best; no 1,000-step run "
                        "dipped more than 0.043)")
    p.add_argument("--early-stop-patience", type=int, default=2, metavar="N",
                   help="validations in a row below the best - DROP that end the run (default 2)")
    p.add_argument("--registry", default=None, help="registry folder (default: the shipped one)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="leave glibc's allocator as it is: slower steps, about half the resident memory")
    add_config_args(p)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser(
        "pretrain-report",
        help="copy pretraining runs' config and log and draw their curves (PNG), for results/pretrain/",
    )
    p.add_argument("runs", nargs="*", help="pretraining run folders")
    p.add_argument("--out", default="results/pretrain", help="where each run's folder goes (default results/pretrain)")
    p.add_argument("--compare", default=None, metavar="NAME", help="also draw OUT/NAME.png: all validation curves")
    p.add_argument("--title", default=None, help="title of the comparison plot")
    p.add_argument("--line-search", nargs="+", default=None, metavar="JSON",
                   help="line-search results to draw on one plot, OUT/--line-search-name.png (the files under "
                        "results/pretrain/line-search/, made by pretrain-diagnose --line-search up to 3060998)")
    p.add_argument("--line-search-name", default="line-search", help="file name of that plot (default line-search)")
    p.add_argument("--index", action="store_true",
                   help="then write OUT/index.md and OUT/index.png: every run folder under OUT, its options and "
                        "its validation curve")
    p.set_defaults(func=_cmd_pretrain_report)

    p = sub.add_parser(
        "pretrain-diagnose",
        help="per-term encoder gradients at a run's checkpoint on its own next batches: do the loss terms cancel, is "
             "what is left consistent from batch to batch, and (--alignment) does it point where the labels ask? (JSON)",
    )
    p.add_argument("run", help="pretraining run folder (its checkpoint.pt is measured, nothing is written)")
    p.add_argument("--images", nargs="+", default=None,
                   help="the run's pristine image folders (default: those recorded in its log)")
    p.add_argument("--batches", type=int, default=6,
                   help="consecutive step batches to measure (default 6, >= 2; >= 4 with --alignment)")
    p.add_argument("--alignment", action="store_true",
                   help="instead: the cosine of each batch's and of the mean's encoder gradient with the gradient "
                        "of --val-dataset's labelled error (ridge head held fixed), against noise controls, in "
                        "total and by stage")
    p.add_argument("--parts", action="store_true",
                   help="--alignment also for each weighted loss part (var, cov, pull, ot, r_graph; severity when "
                        "the run trains it)")
    p.add_argument("--noise-directions", type=int, default=None,
                   help="noise controls of --alignment: half differences of random halves of the batches (default 20)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of --alignment's random halves of the batches and of the labelled images (default 0)")
    p.add_argument("--val-dataset", default=None,
                   help="registered labelled dataset whose split-0 train/val parts --alignment compares with "
                        "(a selection set, never one you report on)")
    p.add_argument("--data-root", default=None, help="folder holding --val-dataset")
    p.add_argument("--val-split-seed", type=int, default=0, help="seed of the validation split (default 0)")
    p.add_argument("--registry", default=None, help="registry folder (default: the shipped one)")
    p.set_defaults(func=_cmd_pretrain_diagnose)
