"""``run`` over several processes and machines: each takes a disjoint share of the units.

Two ways to split one suite, on one code path:

* ``torchrun --nproc-per-node N [--nnodes M ...] -m shamisa_bench run ...``: each of the
  ``WORLD_SIZE`` ranks takes its share, they wait for each other (a gloo barrier, which
  works with or without GPUs), and rank 0 builds the tables.
* ``run --shard i/n`` (a SLURM job array and the like, ``i`` from 0): each job takes share
  ``i`` of ``n`` and writes no tables; once every job has finished, ``shamisa-bench report
  --suite NAME`` (or a plain ``run``, which skips the finished units) builds them.

Both together (``--shard i/n`` under ``torchrun``) split share ``i`` again over the ranks.

A share is a contiguous block of the suite's units in their fixed order (metric-major, so a
process loads few metrics), taken from *all* units rather than from the ones still to do:
every process computes the same partition whatever the others have already written. Each
unit writes the file a single process would write, with the same content: the result files
and the tables are byte-identical to a single-process run's apart from the timing fields of
each unit's provenance (``started_at``, ``duration_s``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

__all__ = ["Shard", "add_shard_argument", "parse_shard", "rank_device", "resolve_shard", "shard_from_args",
           "take_share", "writes_tables"]

T = TypeVar("T")

#: How long rank 0 waits at the end for the slowest rank (units can take hours).
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (from 0).

    Attributes:
        index, count: the share.
        distributed: the ranks of a ``torchrun`` group share a barrier at the end, and the
            one with index 0 of the group writes the tables; False for a ``--shard`` job.
        group_leader: this process writes the tables once the group is done.
    """

    index: int
    count: int
    distributed: bool = False
    group_leader: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise ValueError(f"a shard is i/n with 0 <= i < n, got {self.index}/{self.count}")

    def take(self, items: Sequence[T]) -> list[T]:
        """This share of ``items``: a contiguous block; the blocks of all shares partition them."""
        n = len(items)
        return list(items[self.index * n // self.count:(self.index + 1) * n // self.count])

    def describe(self) -> str:
        return f"shard {self.index}/{self.count}" + (" (torchrun rank)" if self.distributed else "")


def parse_shard(text: str) -> Shard:
    """``"i/n"`` -> ``Shard(i, n)``.

    Raises:
        ValueError: for anything but two integers ``0 <= i < n``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard takes i/n (share i of n, from 0), e.g. 0/4; got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: i must be in 0..n-1 (shares are counted from 0)")
    return Shard(index, count)


def resolve_shard(shard: Shard | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The share of this process: ``--shard`` and/or the ``torchrun`` rank.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in ``env``) a gloo process group is started (it
    is what :func:`writes_tables` waits on), and share ``i`` of ``n`` becomes share
    ``i * W + rank`` of ``n * W``. Returns None for a plain single-process run.

    Raises:
        ValueError: for a malformed ``RANK``/``WORLD_SIZE``.
    """
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError as err:
        raise ValueError(f"RANK and WORLD_SIZE must be integers (as torchrun sets them): {err}") from None
    if world <= 1:
        return shard
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is outside 0..WORLD_SIZE-1 ({world})")
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    base = shard or Shard(0, 1)
    # with --shard as well, other jobs may still be running: none of these ranks writes tables
    return Shard(base.index * world + rank, base.count * world, distributed=True,
                 group_leader=rank == 0 and base.count == 1)


def take_share(plan: Any, shard: Shard | None) -> Any:
    """The plan restricted to this share of its units (the same plan when ``shard`` is None).

    The share is taken from all units in plan order; ``todo``, ``skipped`` and ``invalid``
    keep the ones inside it.
    """
    if shard is None or shard.count == 1:
        return plan
    mine = set(shard.take(plan.units))
    return dataclasses.replace(
        plan,
        units=tuple(u for u in plan.units if u in mine),
        todo=tuple(u for u in plan.todo if u in mine),
        skipped=tuple(u for u in plan.skipped if u in mine),
        invalid=tuple((u, why) for u, why in plan.invalid if u in mine),
    )


def writes_tables(shard: Shard | None) -> bool:
    """Whether this process builds the suite's tables now.

    A single process: yes. A ``torchrun`` rank: waits until every rank has written its
    units, then rank 0 does. A ``--shard`` job alone: no (the other jobs may still run).
    """
    if shard is None or shard.count == 1:
        return True
    if shard.distributed:
        dist.barrier()
        return shard.group_leader
    return False


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    """``--shard i/n`` of ``run``."""
    parser.add_argument(
        "--shard", metavar="I/N",
        help="compute share I of N of the suite's units (I from 0; e.g. a job array's task id) and write "
        "no tables: `report --suite NAME` builds them once every share is done. Under torchrun each rank "
        "takes its own share without this flag, and rank 0 builds the tables")


def shard_from_args(args: argparse.Namespace) -> Shard | None:
    """This process's share from ``--shard`` and the ``torchrun`` environment (None: all units).

    Raises:
        ValueError: for a malformed ``--shard``.
    """
    return resolve_shard(parse_shard(args.shard) if getattr(args, "shard", None) else None)


def rank_device(device: str, shard: Shard | None, env: Mapping[str, str] | None = None) -> str:
    """The device of this process: plain ``cuda`` under ``torchrun`` means the rank's own GPU
    (``cuda:LOCAL_RANK``), so the ranks of a node spread over its GPUs; anything else as given."""
    env = os.environ if env is None else env
    if device == "cuda" and shard is not None and shard.distributed and "LOCAL_RANK" in env:
        return f"cuda:{int(env['LOCAL_RANK'])}"
    return device
