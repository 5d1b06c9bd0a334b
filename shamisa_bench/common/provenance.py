"""Provenance of a result or a run: versions, git state, device, seed, checkpoint, timing."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from shamisa_bench import __version__

__all__ = ["collect_provenance", "git_state", "package_versions", "utc_now"]


def utc_now() -> str:
    """Current UTC time in ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of shamisa-bench, pyiqa, torch, torchvision, numpy, scipy and Python.

    Read from the installed distributions' metadata, so nothing heavy is imported.
    """
    return {
        "package_version": __version__,
        "pyiqa_version": _dist_version("pyiqa"),
        "torch_version": _dist_version("torch"),
        "torchvision_version": _dist_version("torchvision"),
        "numpy_version": _dist_version("numpy"),
        "scipy_version": _dist_version("scipy"),
        "python_version": platform.python_version(),
    }


def git_state() -> tuple[str | None, bool | None]:
    """``(sha, dirty)`` of the git checkout holding this package's source, else (None, None).

    The package counts as inside a checkout only when its ``__init__.py`` is a tracked file
    there (so an installed copy inside some other repository does not count). ``dirty``
    reflects modified tracked files outside ``results/`` (:func:`checkout_dirty`).
    """
    pkg = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top:
        return None, None
    top_path = Path(top).resolve()
    if not pkg.is_relative_to(top_path):
        return None, None
    if git("ls-files", "--error-unmatch", str(pkg / "__init__.py")) is None:
        return None, None
    return git("rev-parse", "HEAD"), checkout_dirty(top_path)


def checkout_dirty(top: Path) -> bool | None:
    """True when a tracked file of the checkout at ``top`` differs from HEAD, outside
    ``results/``; None when git cannot tell.

    ``results/`` holds the tool's own committed outputs, which every run rewrites: a second
    run must not call the code it runs modified because the first one wrote its tables.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no", "--",
             ":(top)", ":(top,exclude)results"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def collect_provenance(
    *,
    device: str,
    seed: int,
    started_at: str,
    duration_s: float,
    checkpoint_sha256: str | None = None,
    registry_versions: Mapping[str, Any] | None = None,
    git: tuple[str | None, bool | None] | None = None,
) -> dict[str, Any]:
    """Assemble the ``provenance`` block of a unit record.

    Args:
        device: the device the metric ran on, e.g. ``cpu`` or ``cuda:0 (NVIDIA H100)``.
        seed: the base seed of the splits (and of random-init encoders).
        started_at: ISO time the unit started.
        duration_s: wall time of the unit, including any feature computation it triggered.
        checkpoint_sha256: sha256 of the metric's checkpoint/export, when it has one.
        registry_versions: versions of the suite, protocol, metric and dataset entries.
        git: precomputed :func:`git_state` (computed here when None).
    """
    sha, dirty = git if git is not None else git_state()
    return {
        **package_versions(),
        "git_sha": sha,
        "git_dirty": dirty,
        "device": device,
        "seed": int(seed),
        "checkpoint_sha256": checkpoint_sha256,
        "registry_versions": dict(registry_versions or {}),
        "started_at": started_at,
        "duration_s": float(duration_s),
    }
