"""Where pyiqa finds the parameter files of its metrics (``--pyiqa-home`` / ``$SHAMISA_PYIQA_HOME``).

pyiqa (0.1.16) keeps downloaded parameters in ``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``,
which it computes once, when it is imported, as ``torch.hub.get_dir()/pyiqa`` (that is
``$TORCH_HOME/hub/pyiqa``). Setting ``TORCH_HOME`` therefore works only before pyiqa is
imported, and it also moves torch's own hub cache (ImageNet weights, the SHAMISA weight
cache). :func:`use_pyiqa_home` instead sets pyiqa's cache folder directly, in the imported
module and in every pyiqa module that copied the constant, so it works whether pyiqa was
imported before or not, and leaves ``TORCH_HOME`` alone. ``load_file_from_url`` reads the
constant at call time, so metrics created afterwards find their files there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["PYIQA_HOME_ENV", "current_pyiqa_cache_dir", "pyiqa_home_from_env", "resolve_pyiqa_home",
           "use_pyiqa_home"]

#: Environment variable naming the folder, used when ``--pyiqa-home`` is not given.
PYIQA_HOME_ENV = "SHAMISA_PYIQA_HOME"

_applied: Path | None = None


def resolve_pyiqa_home(path: str | os.PathLike[str]) -> Path:
    """The folder pyiqa should read its parameter files from.

    Args:
        path: a ``TORCH_HOME``-style folder (its ``hub/pyiqa`` subfolder is used when it
            exists, as in a copy of pyiqa's cache) or the pyiqa cache folder itself.

    Raises:
        FileNotFoundError: naming the path, when it is not an existing folder.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"pyiqa home {p}: no such folder (give a folder holding hub/pyiqa/ "
                                "or pyiqa's parameter files themselves)")
    sub = p / "hub" / "pyiqa"
    return (sub if sub.is_dir() else p).resolve()


def pyiqa_home_from_env() -> Path | None:
    """``$SHAMISA_PYIQA_HOME`` as a path, or None when unset or empty."""
    value = os.environ.get(PYIQA_HOME_ENV, "").strip()
    return Path(value) if value else None


def current_pyiqa_cache_dir() -> Path:
    """The folder pyiqa reads parameter files from now (imports pyiqa)."""
    import pyiqa.utils.download_util as du  # lazy: pyiqa takes seconds to import

    return Path(du.DEFAULT_CACHE_DIR)


def use_pyiqa_home(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Make pyiqa read (and write) its parameter files in ``path``.

    Args:
        path: see :func:`resolve_pyiqa_home`; None uses ``$SHAMISA_PYIQA_HOME`` and, when
            that is unset too, changes nothing.

    Returns:
        the cache folder now in use, or None when nothing was changed.

    Raises:
        FileNotFoundError: the folder does not exist.
        ImportError: pyiqa is not installed.
    """
    global _applied
    chosen = path if path is not None else pyiqa_home_from_env()
    if chosen is None:
        return None
    folder = resolve_pyiqa_home(chosen)
    import pyiqa.utils.download_util as du  # lazy: only when a folder is chosen (pyiqa takes seconds)

    old = du.DEFAULT_CACHE_DIR
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "pyiqa" or name.startswith("pyiqa.")):
            continue
        if getattr(module, "DEFAULT_CACHE_DIR", None) == old:  # modules that copied the constant
            module.DEFAULT_CACHE_DIR = str(folder)
    du.DEFAULT_CACHE_DIR = str(folder)
    _applied = folder
    return folder


def apply_env_once() -> Path | None:
    """Apply ``$SHAMISA_PYIQA_HOME`` unless a folder was already chosen in this process."""
    if _applied is not None:
        return _applied
    return use_pyiqa_home(None)
