"""Checking, before any work, that an output folder can be written.

A command that writes its results at the end checks its output folders first, so that a
read-only folder, a folder that is a file, or an unwritable ``~/.cache`` is reported before
minutes of computing rather than as a traceback afterwards. The check creates and removes one
hidden probe file in the folder, or in its nearest existing parent when the folder is still
to be created (where the command would create it), so it sees what the operating system
would refuse: permissions, a read-only file system, a full disk's missing inode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_writable"]


def check_writable(folder: str | os.PathLike[str], what: str) -> Path:
    """Make sure files can be created in ``folder`` (or where it would be created).

    Args:
        folder: the output folder (it need not exist yet).
        what: how the user named it, e.g. ``--results``; starts the message.

    Returns:
        the existing folder that was probed.

    Raises:
        NotADirectoryError: ``folder`` or one of its parents is a file.
        PermissionError, OSError: a file cannot be created there; the message names the
            option, the folder and the operating system's reason.
    """
    path = Path(folder)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=existing)
    except OSError as err:
        raise type(err)(f"{what} {path}: cannot write in {existing} ({err.strerror or err})") from err
    os.close(fd)
    os.unlink(probe)
    return existing
