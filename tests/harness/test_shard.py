"""``run`` split over processes: disjoint shares, the same files as one process, tables once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.harness.run import RunConfig, plan_suite
from shamisa_bench.harness.shard import (
    Shard,
    parse_shard,
    rank_device,
    resolve_shard,
    take_share,
    writes_tables,
)
from tests import REPO
from tests.harness.test_run import N_IMAGES, PROTOCOL_YAML, _make_dataset
from tests.helpers import csv_dataset_yaml, write_text

# the timing fields of a unit's provenance: the only ones a split run may change
TIMING = ("started_at", "duration_s")


def test_parse_shard() -> None:
    assert parse_shard("1/4") == Shard(1, 4) and parse_shard(" 0 / 1 ") == Shard(0, 1)
    for bad in ("4/4", "1", "-1/3", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_shares_partition_the_items_in_contiguous_blocks() -> None:
    items = list(range(10))
    for n in (1, 2, 3, 4, 10, 12):
        shares = [Shard(i, n).take(items) for i in range(n)]
        assert [x for share in shares for x in share] == items  # disjoint, complete, in order
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_resolve_shard_without_torchrun() -> None:
    assert resolve_shard(None, {}) is None
    assert resolve_shard(Shard(2, 3), {"WORLD_SIZE": "1"}) == Shard(2, 3)
    with pytest.raises(ValueError, match="integers"):
        resolve_shard(None, {"WORLD_SIZE": "two"})
    assert writes_tables(None) and writes_tables(Shard(0, 1)) and not writes_tables(Shard(0, 2))


def test_rank_device_spreads_plain_cuda_over_a_nodes_gpus() -> None:
    rank3 = Shard(3, 8, distributed=True)
    assert rank_device("cuda", rank3, {"LOCAL_RANK": "3"}) == "cuda:3"
    assert rank_device("cuda:1", rank3, {"LOCAL_RANK": "3"}) == "cuda:1"  # an explicit choice is kept
    assert rank_device("cpu", rank3, {"LOCAL_RANK": "3"}) == "cpu"
    assert rank_device("cuda", Shard(3, 8), {"LOCAL_RANK": "3"}) == "cuda"  # a --shard job: its own GPUs


def _env(root: Path) -> dict[str, Path]:
    reg, data = root / "registry", root / "data"
    for name, dmos in (("tiny", False), ("tinyd", True)):
        _make_dataset(data, name, dmos=dmos)
        write_text(reg / f"datasets/{name}.yaml",
                   csv_dataset_yaml(name, N_IMAGES, label_type="dmos" if dmos else "mos", lower_better=dmos))
    metrics = {"dummy-score": "params:\n  statistic: mean\n", "dummy-lower": "lower_better: true\nparams:\n  negate: true\n",
               "dummy-feat": "params:\n  output: features\n"}
    for name, body in metrics.items():
        write_text(reg / f"metrics/{name}.yaml", f"name: {name}\nversion: 1\nkind: dummy\n{body}")
    write_text(reg / "protocols/intra.yaml", PROTOCOL_YAML.format(name="intra"))
    write_text(reg / "suites/split.yaml", "name: split\nversion: 1\ndatasets: [tiny, tinyd]\n"
               f"metrics: [{', '.join(metrics)}]\nprotocol: intra\ncolumns: [srcc, plcc]\nhigher_is_better: true\n")
    return {"registry": reg, "data": data}


def _args(env: dict[str, Path], results: Path) -> list[str]:
    return ["run", "--suite", "split", "--registry", str(env["registry"]), "--data-root", str(env["data"]),
            "--results", str(results), "--no-cache", "--device", "cpu", "--no-progress"]


def _files(results: Path) -> dict[str, bytes | dict]:
    """Every file under results: unit JSON without its timing fields, anything else as bytes."""
    out: dict[str, bytes | dict] = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        key = str(path.relative_to(results))
        if path.suffix == ".json" and "runs" in path.parts:
            record = json.loads(path.read_text())
            for k in TIMING:
                record["provenance"].pop(k)
            out[key] = record
        else:
            out[key] = path.read_bytes()
    return out


def test_take_share_keeps_the_plans_order_and_splits_all_units(tmp_path: Path) -> None:
    env = _env(tmp_path)
    plan = plan_suite(load_registry(env["registry"]), RunConfig(suite="split", results_dir=tmp_path / "r",
                                                                data_root=env["data"]))
    shares = [take_share(plan, Shard(i, 4)) for i in range(4)]
    assert [u for s in shares for u in s.units] == list(plan.units) and len(plan.units) == 6
    assert all(s.todo == s.units and not s.skipped for s in shares)
    assert take_share(plan, None) is plan


@pytest.mark.slow
def test_two_gloo_ranks_and_two_shards_write_what_one_process_writes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    single, ranks, shards = tmp_path / "single", tmp_path / "ranks", tmp_path / "shards"
    assert main(_args(env, single)) == 0
    # two shares as a job array would run them: units only, then `report` builds the tables
    assert main([*_args(env, shards), "--shard", "0/2"]) == 0
    assert not (shards / "tables").exists()
    assert main([*_args(env, shards), "--shard", "1/2"]) == 0
    assert main(["report", "--suite", "split", "--registry", str(env["registry"]), "--results", str(shards)]) == 0
    # two torchrun ranks on gloo: disjoint shares, rank 0 builds the tables after both are done
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "shamisa_bench", *_args(env, ranks)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("units written: 3 ok") == 2, proc.stdout[-3000:]  # each rank did half
    expected = _files(single)
    assert any(k.startswith("tables") for k in expected) and sum(k.startswith("runs") for k in expected) == 6
    assert _files(ranks) == expected
    assert _files(shards) == expected
