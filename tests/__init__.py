"""The test suite; its folders mirror the subpackages of ``shamisa_bench``."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding ``shamisa_bench/`` and ``tests/``)."""
