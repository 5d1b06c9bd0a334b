"""The ``--device`` option of every command: its one default policy (``auto``) and its check."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_HELP", "check_device", "default_device", "resolve_device_name"]

DEVICE_HELP = "cpu, cuda, cuda:N or auto (default: auto, cuda when torch sees a GPU, else cpu)"
"""Help text of ``--device``, the same for every command."""


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device_name(name: str) -> str:
    """``name`` with ``auto`` replaced by :func:`default_device`.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The device name, never ``auto``.
    """
    return default_device() if name == "auto" else name


def check_device(device: str) -> str:
    """``device`` itself when it is ``cpu`` or an available ``cuda[:N]``.

    Raises:
        ValueError: CUDA asked for but not available, or another device name.
    """
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    elif device != "cpu":
        raise ValueError(f"--device must be cpu or cuda[:N], got {device!r}")
    return device
