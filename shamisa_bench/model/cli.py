"""CLI: ``shamisa-bench model ...`` and ``shamisa-bench perf encoder``.

* ``model fetch-weights --backbone resnet50``: download torchvision ImageNet weights into
  the torch hub cache (the only networked command here).
* ``model verify-export DIR``: validate an encoder export (config, sha256, strict load)
  and print its summary as JSON.
* ``model convert-export SRC --dtype float16 --out DST``: rewrite an export in another
  storage dtype (how the shipped fp16 encoder is made), keeping its provenance.
* ``model average-exports A B ... --out DST``: one export whose weights are the mean of
  several (stochastic weight averaging over a run's ``--export-every`` checkpoints).
* ``model probe EXPORT... --dataset clive-sel``: the pretraining validation SRCC of each
  export, one JSON line each (how ``pretrain --val-dataset`` chooses ``best``).
* ``perf encoder``: images/s of ``encode_two_scale`` for a backbone, as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from shamisa_bench.cli.args import (
    add_device_argument,
    add_feature_mode_argument,
    device_from_args,
)
from shamisa_bench.model.average import average_exports
from shamisa_bench.model.backbones import (
    BACKBONES,
    build_encoder,
    fetch_imagenet_weights,
)
from shamisa_bench.model.export import (
    load_encoder_export,
    read_encoder_export,
    save_encoder_export,
)
from shamisa_bench.model.features import encode_two_scale
from shamisa_bench.train.probe import open_probe

__all__ = ["register", "register_bench"]


def register(subparsers: Any) -> None:
    """Add the ``model`` command group to the top-level subparsers."""
    model = subparsers.add_parser("model", help="encoder weights and exports")
    sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    fetch = sub.add_parser("fetch-weights", help="download torchvision ImageNet weights (needs internet)")
    fetch.add_argument("--backbone", choices=("resnet50", "resnet18"), action="append", required=True)
    fetch.set_defaults(func=_fetch_weights)

    verify = sub.add_parser("verify-export", help="check an encoder export and print its summary")
    verify.add_argument("path", help="export folder or its config.json")
    verify.set_defaults(func=_verify_export)
    convert = sub.add_parser("convert-export", help="rewrite an export in another storage dtype (e.g. float16)")
    convert.add_argument("path", help="export folder or its config.json")
    convert.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), required=True)
    convert.add_argument("--out", required=True, help="destination export folder")
    convert.set_defaults(func=_convert_export)

    average = sub.add_parser("average-exports", help="one export whose weights are the mean of several exports")
    average.add_argument("paths", nargs="+", metavar="EXPORT", help="export folders (two or more, one backbone)")
    average.add_argument("--weights", type=float, nargs="+", default=None,
                         help="one non-negative weight per export (default: uniform)")
    average.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    average.add_argument("--out", required=True, help="destination export folder")
    average.set_defaults(func=_average_exports)

    probe = sub.add_parser("probe", help="validation SRCC of exports, as pretrain --val-dataset measures it")
    probe.add_argument("paths", nargs="+", metavar="EXPORT", help="export folders")
    probe.add_argument("--dataset", required=True, help="registered labelled dataset (e.g. clive-sel; an evaluation part is refused)")
    probe.add_argument("--data-root", default=None,
                       help="folder holding the dataset (default: $SHAMISA_BENCH_DATA or ./datasets)")
    probe.add_argument("--split-seed", type=int, default=0,
                       help="seed of the split whose train and val parts are measured (default 0)")
    probe.add_argument("--registry", default=None, help="registry folder (default: the shipped one)")
    add_feature_mode_argument(probe, help="how features are extracted (default whole)")
    add_device_argument(probe)
    probe.set_defaults(func=_probe_exports)


def register_bench(bench_subparsers: Any) -> None:
    """Add ``perf encoder`` to the ``perf`` subparsers."""
    bench = bench_subparsers.add_parser("encoder", help="two-scale feature extraction speed")
    bench.add_argument("--backbone", choices=BACKBONES, default="efficientnet_lite0")
    add_feature_mode_argument(bench, help="how features are extracted (default whole)")
    bench.add_argument("--size", type=int, default=256, help="square image side (default 256)")
    bench.add_argument("--batch", type=int, default=4)
    bench.add_argument("--iters", type=int, default=5, help="timed iterations after one warm-up")
    add_device_argument(bench)
    bench.set_defaults(func=_bench_encoder)


def _fetch_weights(args: argparse.Namespace) -> int:
    for backbone in args.backbone:
        print(f"{backbone}: {fetch_imagenet_weights(backbone)}")
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    info = read_encoder_export(args.path)
    load_encoder_export(args.path)  # strict load
    summary = {
        "config": str(info.config_path),
        "backbone": info.backbone,
        "feature_dim": info.feature_dim,
        "init": info.init,
        "dtype": info.dtype,
        "weights_sha256": info.weights_sha256,
        "ok": True,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _convert_export(args: argparse.Namespace) -> int:
    source = read_encoder_export(args.path)
    if Path(args.out).resolve() == source.config_path.parent.resolve():
        raise ValueError(f"--out {args.out} is the source export; write the conversion elsewhere")
    encoder = load_encoder_export(args.path)
    extra = dict(source.config.get("extra") or {})
    extra["converted_from"] = {"weights_sha256": source.weights_sha256, "dtype": source.dtype}
    out = save_encoder_export(encoder, args.out, dtype=getattr(torch, args.dtype), extra=extra)
    info = read_encoder_export(out)
    print(json.dumps({"export": str(out), "dtype": info.dtype, "weights_sha256": info.weights_sha256,
                      "bytes": info.weights_path.stat().st_size, "source_sha256": source.weights_sha256}, indent=2))
    return 0


def _average_exports(args: argparse.Namespace) -> int:
    sources = {read_encoder_export(p, verify=False).config_path.parent.resolve() for p in args.paths}
    if Path(args.out).resolve() in sources:
        raise ValueError(f"--out {args.out} is one of the exports being averaged; write the average elsewhere")
    if args.weights is not None and len(args.weights) != len(args.paths):
        raise ValueError(f"--weights gives {len(args.weights)} weights for {len(args.paths)} exports")
    encoder, provenance = average_exports(args.paths, args.weights)
    out = save_encoder_export(encoder, args.out, dtype=getattr(torch, args.dtype), extra={"average": provenance})
    info = read_encoder_export(out)
    print(json.dumps({"export": str(out), "dtype": info.dtype, "weights_sha256": info.weights_sha256,
                      "sources": len(args.paths)}, indent=2))
    return 0


def _probe_exports(args: argparse.Namespace) -> int:
    infos = [read_encoder_export(path) for path in args.paths]  # every export checked before the extraction
    probe = open_probe(args.dataset, args.data_root, option="--dataset", split_seed=args.split_seed,
                       feature_mode=args.feature_mode, device=device_from_args(args), registry=args.registry)
    for path, info in zip(args.paths, infos, strict=True):
        encoder = load_encoder_export(path)
        result = probe(encoder.to(probe.device))
        steps = ((info.config.get("extra") or {}).get("pretrain") or {}).get("steps")
        print(json.dumps({"export": str(path), "weights_sha256": encoder.weights_sha256, "step": steps,
                          "dataset": args.dataset, "split_hash": probe.split_hash, **result.to_dict()}), flush=True)
    return 0


def _bench_encoder(args: argparse.Namespace) -> int:
    if args.size < 64 or args.batch < 1 or args.iters < 1:
        raise ValueError("need --size >= 64, --batch >= 1, --iters >= 1")
    device = torch.device(device_from_args(args))
    encoder = build_encoder(args.backbone, "random", seed=0).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=generator).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        encode_two_scale(encoder, x, args.feature_mode)
        sync()
        start = time.perf_counter()
        for _ in range(args.iters):
            encode_two_scale(encoder, x, args.feature_mode)
        sync()
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "feature_mode": args.feature_mode,
                "size": args.size,
                "batch": args.batch,
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "images_per_s": round(args.batch * args.iters / seconds, 3),
                "seconds_per_batch": round(seconds / args.iters, 4),
            }
        )
    )
    return 0
