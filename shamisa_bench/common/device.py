"""The ``--device`` option of the commands that evaluate: its default and its check."""

from __future__ import annotations

import torch

__all__ = ["check_device", "default_device"]


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
