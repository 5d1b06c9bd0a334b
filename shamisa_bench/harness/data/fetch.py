"""``shamisa-bench data fetch``: download a dataset with pyiqa's downloader, atomically.

pyiqa's ``load_dataset(name, data_root)`` fetches the meta-info files and the dataset archive
from its Hugging Face mirror and unpacks them in pyiqa's layout. We run it in a temporary
folder next to the target and move the result into place only when it finished and reads
back, so an interrupted or failed download never leaves a half-written dataset folder.
Offline, it fails within seconds (a connectivity check with a short timeout runs first).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from shamisa_bench.harness.data.table import FETCHABLE, locate
from shamisa_bench.harness.registry import DatasetSpec

__all__ = ["FETCHABLE", "FetchError", "check_connectivity", "fetch_dataset"]

Downloader = Callable[[str, Path], None]


class FetchError(RuntimeError):
    """A fetch failed; nothing was left in the data root."""


def _hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def check_connectivity(timeout: float = 5.0) -> str | None:
    """``None`` when the dataset mirror answers within ``timeout`` s, else the reason it does not."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    host, port = _hub_host()
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as err:
            result.append(f"cannot reach {host}:{port} ({err})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)  # name resolution has no timeout of its own
    if not result:
        return f"cannot reach {host}:{port} (no answer within {timeout:g} s)"
    return result[0]


def _pyiqa_download(name: str, root: Path) -> None:
    # lazy: pyiqa takes seconds to import; only a download needs it
    from pyiqa.data.dataset_api import load_dataset as pyiqa_load_dataset

    pyiqa_load_dataset(name, data_root=root)


def fetch_dataset(
    spec: DatasetSpec,
    data_root: Path | str,
    *,
    timeout: float = 5.0,
    downloader: Downloader | None = None,
) -> list[Path]:
    """Download ``spec`` into ``data_root`` in pyiqa's layout.

    Args:
        spec: a dataset pyiqa can download (see :data:`FETCHABLE`).
        data_root: the folder to hold it (created if needed).
        timeout: seconds for the connectivity check.
        downloader: ``downloader(name, folder)`` that downloads into ``folder``; default
            pyiqa's ``load_dataset``. (Tests pass a fake.)

    Returns:
        The paths moved into ``data_root``.

    Raises:
        FetchError: not fetchable, offline, the download failed or did not read back;
            the temporary folder is removed in every case.
    """
    if spec.name not in FETCHABLE:
        raise FetchError(
            f"dataset {spec.name!r} cannot be fetched automatically (pyiqa's downloader has: {', '.join(FETCHABLE)}); "
            f"get it from {spec.homepage or 'its authors'} and place it under the data root"
        )
    data_root = Path(data_root)
    if downloader is None:
        reason = check_connectivity(timeout)
        if reason is not None:
            raise FetchError(f"cannot fetch {spec.name!r}: offline ({reason}). Nothing was written to {data_root}.")
        downloader = _pyiqa_download
    data_root.mkdir(parents=True, exist_ok=True)
    tmp = data_root / f".fetch-{spec.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    moved: list[Path] = []
    try:
        try:
            downloader(spec.name, tmp)
        except Exception as err:  # pyiqa raises many kinds (HTTP, hub, assertion)
            raise FetchError(
                f"downloading {spec.name!r} failed: {type(err).__name__}: {err}. Nothing was written to {data_root}."
            ) from err
        for archive in list(tmp.iterdir()):
            if archive.is_file() and archive.name.endswith((".tgz", ".tar", ".tar.gz", ".zip")):
                archive.unlink()
        if locate(spec, tmp) is None:
            raise FetchError(
                f"downloaded {spec.name!r} but it does not read back as any registered layout. "
                f"Nothing was written to {data_root}."
            )
        clashes = [p.name for p in tmp.iterdir() if p.name != "meta_info" and (data_root / p.name).exists()]
        if clashes:
            raise FetchError(
                f"{data_root} already has {clashes}; remove them or choose another --data-root. Nothing was written."
            )
        for entry in sorted(tmp.iterdir()):
            if entry.name == "meta_info" and entry.is_dir():
                target_dir = data_root / "meta_info"
                target_dir.mkdir(exist_ok=True)
                for f in sorted(entry.iterdir()):
                    if not (target_dir / f.name).exists():
                        os.replace(f, target_dir / f.name)
                        moved.append(target_dir / f.name)
            else:
                os.replace(entry, data_root / entry.name)
                moved.append(data_root / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return moved
