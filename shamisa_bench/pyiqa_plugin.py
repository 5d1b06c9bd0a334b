"""Old name of :mod:`shamisa_bench.iqa.plugin`, kept for installed entry points.

Environments installed before the plugin moved record the ``pyiqa.archs`` entry point
``shamisa = "shamisa_bench.pyiqa_plugin:register"`` in their package metadata, and an
editable install keeps it until it is reinstalled (``pip install -e .``). pyiqa loads that
string the first time an arch lookup misses; this module keeps it working.
"""

from __future__ import annotations

from shamisa_bench.iqa.plugin import register

__all__ = ["register"]
