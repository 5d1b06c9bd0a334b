"""shamisa-bench: SHAMISA self-supervised NR-IQA and its benchmark harness."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shamisa-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
