"""Makes ``import pyiqa`` alone know shamisa-bench's metrics (``shamisa``, ``shamisa-<head>``).

The installed package puts ``_shamisa_bench_pyiqa.pth`` in site-packages, next to this
module (``setup.py`` says how, for ``pip install .`` and ``pip install -e .`` alike). At
start-up Python's :mod:`site` runs that file's one line, which imports this module and
calls :func:`install`. That puts a finder on ``sys.meta_path`` which answers the import
of ``pyiqa`` only: it lets the other finders locate pyiqa, wraps the loader they return,
and right after pyiqa's ``__init__`` has run calls
:func:`shamisa_bench.iqa.plugin.register`, then takes itself off ``sys.meta_path``. So
``pyiqa.create_metric('shamisa')``, ``pyiqa.list_models()`` and pyiqa's command line
(``pyiqa shamisa -t photo.jpg``) work with no ``import shamisa_bench``.

Cost for an interpreter that never imports pyiqa: importing this module (it needs only
:mod:`sys`, already loaded) and one string comparison per first import of a module.
Nothing else of shamisa-bench, torch or pyiqa is imported before ``import pyiqa``.

``import shamisa_bench`` installs the same hook (or registers at once when pyiqa is
already imported), for interpreters that skip ``.pth`` files (``python -S``, a
``pip install --target`` folder on ``PYTHONPATH``). At most one hook per module name is
installed. A registration that fails becomes a ``RuntimeWarning``, never a failed
``import pyiqa``.

This module is standard library only and imports nothing at start-up beyond :mod:`sys`:
keep it so.
"""

import sys

__all__ = ["PostImportHook", "install", "when_imported"]


class _CallbackLoader:
    """Wraps the real loader of one module; after it executes, restores it and calls back."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        # Hand the module its real loader back before anyone else can see the wrapper.
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._callback()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class PostImportHook:
    """A ``sys.meta_path`` finder that calls ``callback`` once, right after the top-level
    module ``name`` is imported, then removes itself."""

    def __init__(self, name, callback):
        self.name = name
        self.callback = callback
        self._searching = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self._searching:
            return None
        import importlib.util  # lazy: only when the hooked module is imported; start-up stays sys-only

        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)  # the real finders (this one answers None meanwhile)
        finally:
            self._searching = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _CallbackLoader(spec.loader, self._fire)
        return spec

    def _fire(self):
        self.remove()
        _call_safely(self.callback)

    def remove(self):
        """Take the hook off ``sys.meta_path`` (no-op if absent)."""
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


def _call_safely(callback):
    try:
        callback()
    except Exception as err:  # noqa: BLE001 - never break the user's import of the hooked module
        import warnings  # lazy: only on failure

        warnings.warn(
            f"shamisa-bench could not register its pyiqa metrics: {type(err).__name__}: {err} "
            "(`import shamisa_bench` after fixing it registers them)",
            RuntimeWarning,
            stacklevel=3,
        )


def when_imported(name, callback):
    """Call ``callback`` right after the top-level module ``name`` is first imported.

    Installs a :class:`PostImportHook` at the front of ``sys.meta_path`` unless one for
    ``name`` is there already (the first one wins). Does nothing when ``name`` is already
    imported: the caller checks that first.

    Args:
        name: A top-level module name, e.g. ``"pyiqa"``.
        callback: Called with no arguments; an exception it raises becomes a ``RuntimeWarning``.
    """
    if any(isinstance(f, PostImportHook) and f.name == name for f in sys.meta_path):
        return
    sys.meta_path.insert(0, PostImportHook(name, callback))


def _register():
    # lazy: the whole point is not to import shamisa_bench (nor torch) at start-up
    from shamisa_bench.iqa.plugin import register

    register()


def install():
    """Register shamisa-bench's metrics with pyiqa when pyiqa is imported (the ``.pth`` line)."""
    if "pyiqa" in sys.modules:  # a .pth file of another package imported it first: register now
        _call_safely(_register)
    else:
        when_imported("pyiqa", _register)
