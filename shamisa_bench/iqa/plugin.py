"""pyiqa integration: the only code that touches pyiqa's globals.

:func:`register` (idempotent) does two things:

* registers the arch ``SHAMISA`` (:class:`shamisa_bench.archs.shamisa_arch.SHAMISA`) with
  pyiqa's ``ARCH_REGISTRY``, lazily (an import path; the module loads on first use);
* adds ``DEFAULT_CONFIGS`` entries: ``shamisa`` (the default head) and
  ``shamisa-<dataset>`` for every head shipped in ``shamisa_bench/weights/heads/``, each
  ``metric_mode: NR``, ``score_range: '0, 1'``, ``lower_better: False`` (the
  ``arniqa``/``arniqa-live`` pattern). ``DEFAULT_CONFIGS`` has no plugin hook in pyiqa
  0.1.16, hence this function.

When it runs. Importing pyiqa costs seconds (it imports every arch, cv2, ...), so neither
interpreter start-up nor ``import shamisa_bench`` imports it (nor torch: this module
imports only :mod:`shamisa_bench.iqa.weights`). Registration happens right after pyiqa's
own ``__init__`` has run, through the one-shot post-import hook of the top-level module
:mod:`_shamisa_bench_pyiqa`, which is installed

* at interpreter start-up by the ``_shamisa_bench_pyiqa.pth`` file that the installed
  package puts in site-packages: ``import pyiqa`` alone (pyiqa's command line included)
  knows the metrics;
* by ``import shamisa_bench`` (:func:`register_when_pyiqa_loads`), for interpreters that
  skip ``.pth`` files; when pyiqa is already imported it registers at once.

Also, ``pyproject.toml`` declares :func:`register` as the ``pyiqa.archs`` entry point, so
pyiqa calls it the first time an arch lookup misses; that path registers the arch, but
``create_metric`` checks ``DEFAULT_CONFIGS`` before any arch lookup, so it is no way in.

Inputs. :func:`register` also wraps pyiqa's ``InferenceModel._prepare_inputs`` so that, for
a SHAMISA network only, images go through :meth:`SHAMISA.prepare_inputs
<shamisa_bench.archs.shamisa_arch.SHAMISA.prepare_inputs>`: files and PIL images are read
by the project's loader (:mod:`shamisa_bench.common.imageio`; pyiqa's loader clips 16-bit
images at 255 and names no file on a decoding error), and tensors are checked with real
``if`` tests (pyiqa's are ``assert``s, gone under ``python -O``). Every other metric goes
through pyiqa's own method, unchanged.

Registration failures inside the hook (e.g. an incompatible pyiqa) are turned into a
``RuntimeWarning`` rather than breaking the user's ``import pyiqa``.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import _shamisa_bench_pyiqa
from shamisa_bench.iqa.weights import DEFAULT_HEAD, shipped_head_datasets

__all__ = [
    "ARCH_IMPORT_PATH",
    "ARCH_NAME",
    "DEFAULT_METRIC",
    "FR_ARCH_NAME",
    "FR_METRIC",
    "metric_configs",
    "register",
    "register_when_pyiqa_loads",
]

ARCH_NAME = "SHAMISA"
ARCH_IMPORT_PATH = "shamisa_bench.archs.shamisa_arch:SHAMISA"
DEFAULT_METRIC = "shamisa"
FR_ARCH_NAME = "SHAMISAFR"
FR_ARCH_IMPORT_PATH = "shamisa_bench.archs.shamisa_fr_arch:SHAMISAFR"
FR_METRIC = "shamisa-fr"
"""The full-reference extension (:mod:`shamisa_bench.archs.shamisa_fr_arch`): ``m(dist, ref)``,
a feature distance in [0, 1] (or an FR head's predicted quality drop), lower is better."""

_LOCK = threading.RLock()


def metric_configs(head_datasets: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The ``DEFAULT_CONFIGS`` entries SHAMISA adds.

    Args:
        head_datasets: Training sets of the shipped heads; None = scan the package.

    Returns:
        ``{"shamisa": {...}, "shamisa-<dataset>": {...}, ...}``, fresh dicts.
    """
    if head_datasets is None:
        head_datasets = shipped_head_datasets()

    def entry(head: str) -> dict[str, Any]:
        return {
            "metric_opts": {"type": ARCH_NAME, "head_dataset": head},
            "metric_mode": "NR",
            "score_range": "0, 1",
            "lower_better": False,
        }

    configs = {DEFAULT_METRIC: entry(DEFAULT_HEAD)}
    for name in head_datasets:
        configs[f"{DEFAULT_METRIC}-{name}"] = entry(name)
    configs[FR_METRIC] = {
        "metric_opts": {"type": FR_ARCH_NAME},
        "metric_mode": "FR",
        "score_range": "0, 1",
        "lower_better": True,
    }
    return configs


def register() -> tuple[str, ...]:
    """Register the SHAMISA arch and metrics with pyiqa (imports pyiqa). Idempotent.

    An existing ``DEFAULT_CONFIGS`` entry of the same name that is not a SHAMISA entry is
    left alone (with a ``RuntimeWarning``).

    Returns:
        The metric names now available through ``pyiqa.create_metric``.
    """
    with _LOCK:
        # lazy: registering is the only thing that imports pyiqa (see the module docstring)
        from pyiqa.default_model_configs import DEFAULT_CONFIGS
        from pyiqa.utils.registry import ARCH_REGISTRY

        for arch_name, import_path in ((ARCH_NAME, ARCH_IMPORT_PATH), (FR_ARCH_NAME, FR_ARCH_IMPORT_PATH)):
            try:
                ARCH_REGISTRY.register_lazy(arch_name, import_path)
            except AssertionError:
                pass  # already registered: by an earlier call, or by the entry point re-entering us

        _route_inputs()
        names = []
        for name, config in metric_configs().items():
            existing = DEFAULT_CONFIGS.get(name)
            if existing is not None and existing.get("metric_opts", {}).get("type") not in (ARCH_NAME, FR_ARCH_NAME):
                warnings.warn(
                    f"pyiqa already has a metric {name!r} of type {existing['metric_opts'].get('type')!r}; "
                    "shamisa-bench leaves it alone",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if existing != config:
                DEFAULT_CONFIGS[name] = config
            names.append(name)
        return tuple(names)


_ARCH_MODULE = ARCH_IMPORT_PATH.split(":")[0]
_FR_ARCH_MODULE = FR_ARCH_IMPORT_PATH.split(":")[0]


def _route_inputs() -> None:
    """Wrap ``InferenceModel._prepare_inputs`` once: SHAMISA networks read their own inputs."""
    # lazy: called by register() only
    from pyiqa.models.inference_model import InferenceModel

    original = InferenceModel._prepare_inputs
    if getattr(original, "_shamisa_wrapped", False):
        return

    def _prepare_inputs(self: Any, target: Any, ref: Any = None) -> Any:
        arch = sys.modules.get(_ARCH_MODULE)  # not imported yet: the network cannot be a SHAMISA
        fr_arch = sys.modules.get(_FR_ARCH_MODULE)
        net = getattr(self, "net", None)
        is_nr = arch is not None and isinstance(net, arch.SHAMISA)
        is_fr = fr_arch is not None and isinstance(net, fr_arch.SHAMISAFR)
        if not (is_nr or is_fr):
            return original(self, target, ref)
        net.check_input_range = bool(self.check_input_range)
        check = bool(self.check_input_range)
        if is_fr and ref is not None:  # the reference goes through the same loader
            ref = net.prepare_inputs(ref, check_range=check)
        return net.prepare_inputs(target, check_range=check), ref

    _prepare_inputs._shamisa_wrapped = True  # type: ignore[attr-defined]
    _prepare_inputs.__wrapped__ = original  # type: ignore[attr-defined]
    _prepare_inputs.__doc__ = original.__doc__
    InferenceModel._prepare_inputs = _prepare_inputs  # type: ignore[method-assign]


def register_when_pyiqa_loads() -> None:
    """Register now if pyiqa is imported, else once pyiqa is imported (never imports it).

    Called by ``import shamisa_bench``; idempotent (at most one hook is installed, shared
    with the one the installed ``.pth`` file puts there at start-up).
    """
    with _LOCK:
        if "pyiqa" in sys.modules:
            try:
                register()
            except Exception as err:  # noqa: BLE001 - never break the user's import of shamisa_bench
                warnings.warn(
                    f"shamisa-bench could not register its pyiqa metrics: {type(err).__name__}: {err}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        _shamisa_bench_pyiqa.when_imported("pyiqa", register)
