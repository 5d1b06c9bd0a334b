"""Atomic file writers: the one place files are written through a temporary file and a rename.

Every writer puts the content in a hidden temporary file next to the target
(``.tmp-<name>-<random hex>``), flushes and ``fsync``s it, then ``os.replace``s it onto the
target, so a reader (or a run killed at any point) sees either the old file or the whole new
one, never a partial file. The temporary file is removed when anything fails, Ctrl-C
included; only a hard kill (SIGKILL, power loss) can leave one behind, and its name never
matches what readers look for. The target's folder is created when missing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary binary file that then replaces it.

    Returns:
        The path written.

    Raises:
        OSError: (of the same type) naming ``path`` and the reason, when it cannot be written;
            the old file, if any, is left as it was.
    """
    path = Path(path)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a read-only folder, a file size limit: name the file
        raise type(err)(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **dumps_kwargs: Any) -> Path:
    """Write ``json.dumps(obj, **dumps_kwargs)`` plus a final newline to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` into ``path`` atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))
