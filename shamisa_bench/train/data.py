"""The pristine images of a run and the dataset that turns them into step batches.

Every step's batch is a pure function of (seed, step, rank): the images it uses and every
random draw of the distortion engine come from generators seeded from those three numbers
(:class:`StepDataset`), so a resumed run sees exactly the batches an uninterrupted run
would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shamisa_bench.common.imageio import list_images, load_image
from shamisa_bench.train.config import PretrainError
from shamisa_bench.train.steps import LayoutSpec, StepBatch, build_item, collate_items

__all__ = ["StepDataset", "image_set", "scan_images", "small_images", "step_loader"]


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (independent streams per step and rank)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def scan_images(folders: Path | Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """All readable pristine images under ``folders`` and the unreadable ones with reasons.

    Every file is decoded once, so a corrupt file is found here and not in a worker.

    Raises:
        PretrainError: if a folder does not exist or they hold no image file.
    """
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    paths: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise PretrainError(f"image folder {folder} does not exist or is not a folder")
        paths.extend(list_images(folder))
    if not paths:
        where = ", ".join(str(f) for f in folders)
        raise PretrainError(f"no JPEG, PNG, BMP or TIFF images found under {where}")
    good: list[Path] = []
    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            load_image(path)
        except (ValueError, OSError) as err:
            bad.append((str(path), str(err)))
        else:
            good.append(Path(path))
    if not good:
        raise PretrainError(f"none of the {len(paths)} image files under {', '.join(map(str, folders))} could be read")
    return good, bad


def image_set(folders: Path | Sequence[Path], paths: Sequence[Path]) -> dict[str, Any]:
    """What identifies a run's pristine set: its size and a digest of its files.

    The digest covers, for each given folder in order, the sorted paths of its readable
    images relative to that folder and their sizes in bytes, so the same folders named from
    another working directory give the same digest, and an added, removed, renamed or
    rewritten file changes it.

    Returns:
        ``{"count": int, "sha256": str}``.
    """
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    digest = hashlib.sha256()
    remaining = {Path(p) for p in paths}
    for index, folder in enumerate(folders):
        inside = sorted((p for p in remaining if p.is_relative_to(folder)), key=lambda p: p.relative_to(folder).as_posix())
        for path in inside:
            digest.update(f"{index}\t{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\n".encode())
        remaining.difference_update(inside)
    return {"count": len(paths), "sha256": digest.hexdigest()}


def small_images(paths: Sequence[Path], crop_size: int) -> tuple[list[tuple[str, tuple[int, int]]], int, int]:
    """Images with a side below ``crop_size`` (their crops are zero-padded), with their sizes;
    how many others have a side below ``2 * crop_size`` (their x0.5 views are padded); and
    the largest crop that fills the x0.5 views of all of those (``crop_size`` if none).

    Padded views may not be harmless: their black band is a feature that the kNN and
    transport branches could group crops by (results/pretrain compares a 192 px crop, whose
    x0.5 views of 481 x 321 images are 160 px high, with a 160 px one; it does not separate
    the padding from the change of crop).

    Only the image headers are read."""
    small, half, fit = [], 0, crop_size
    for path in paths:
        with Image.open(path) as im:
            side = min(im.size)
            if side < crop_size:
                small.append((str(path), im.size))
            elif side < 2 * crop_size:
                half += 1
                fit = min(fit, side // 2)
    return small, half, fit


class StepDataset(torch.utils.data.Dataset):
    """Builds the structured batches of steps ``start..stop-1`` for one rank.

    The items of global step ``s`` are the images at positions ``(s * world + rank) * B``
    onwards of an epoch-wise permutation (B = items per rank), so ranks get disjoint shards.
    Each item's extra contents and every distortion draw come from a generator seeded from
    (seed, step, rank, item).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        layout: LayoutSpec,
        *,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if stop < start:
            raise ValueError(f"stop ({stop}) must be >= start ({start})")
        self.paths = [str(p) for p in paths]
        self.layout = layout
        self.seed = seed
        self.start = start
        self.stop = stop
        self.rank = rank
        self.world_size = world_size
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.stop - self.start

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            rng = np.random.default_rng(_mix_seed(self.seed, epoch, 0xE90C))
            self._perms[epoch] = rng.permutation(len(self.paths))
        return self._perms[epoch]

    def item_indices(self, step: int) -> list[int]:
        """Indices (into ``paths``) of the indexed image of each of this rank's items."""
        n = len(self.paths)
        per_step = self.layout.n_items * self.world_size
        steps_per_epoch = max(1, n // per_step)
        epoch, within = divmod(step, steps_per_epoch)
        perm = self._permutation(epoch)
        first = within * per_step + self.rank * self.layout.n_items
        return [int(perm[(first + i) % n]) for i in range(self.layout.n_items)]

    def build(self, step: int) -> StepBatch:
        items = []
        for slot, index in enumerate(self.item_indices(step)):
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, step, self.rank, slot))
            extra = torch.randint(0, len(self.paths), (self.layout.n_contents - 1,), generator=gen)
            contents = [load_image(self.paths[index])] + [load_image(self.paths[int(j)]) for j in extra]
            items.append(build_item(contents, self.layout, generator=gen))
        return collate_items(items, self.layout)

    def __getitem__(self, i: int) -> tuple[int, StepBatch, float]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        t0 = time.perf_counter()
        step = self.start + i
        batch = self.build(step)
        return step, batch, time.perf_counter() - t0


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # Ctrl-C (and a scheduler's SIGTERM) reach the whole process group: the main process
    # stops the run cleanly and shuts the workers down; a worker killed by the signal
    # mid-batch would turn that into a DataLoader error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _identity(x: Any) -> Any:
    return x


def step_loader(dataset: StepDataset, num_workers: int, *, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The DataLoader a run reads its steps from: ``num_workers`` processes (0: built in the
    main process), one torch thread each, two steps prefetched per worker, in step order."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=2 if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
