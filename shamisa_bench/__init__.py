"""shamisa-bench: SHAMISA self-supervised NR-IQA and its benchmark harness.

The installed package makes ``import pyiqa`` alone know the SHAMISA metrics (a ``.pth``
start-up hook, :mod:`_shamisa_bench_pyiqa`). Importing the package does the same where
``.pth`` files are skipped, in either import order and without importing pyiqa itself
(which costs seconds): see :func:`shamisa_bench.iqa.plugin.register_when_pyiqa_loads`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shamisa-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

from shamisa_bench.iqa.plugin import register_when_pyiqa_loads as _register_when_pyiqa_loads

_register_when_pyiqa_loads()
