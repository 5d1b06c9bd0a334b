"""``pyiqa-score`` and ``shamisa`` metrics: a pyiqa NR metric used as it is.

The score is correlated directly; its direction comes from the registry's ``lower_better``
(taken from pyiqa's ``DEFAULT_CONFIGS``). Creating the metric may need weights that pyiqa
downloads; offline, that fails and the metric is reported unavailable with the error, unless
the files are in the folder given by ``--pyiqa-home`` / ``$SHAMISA_PYIQA_HOME``
(:mod:`shamisa_bench.harness.adapters.pyiqa_home`). A metric that could not be created is
not tried again in the same process with the same parameter folder (one failed download, not
one per unit or per timed run), and what pyiqa prints while creating a metric ("Downloading:
...", "Loading pretrained model ...") goes to stderr, so a command's stdout holds only its own
output (JSON for ``perf``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from shamisa_bench.harness.adapters.base import (
    MetricAdapter,
    MetricUnavailable,
    spec_field,
)
from shamisa_bench.harness.adapters.pyiqa_home import (
    PYIQA_HOME_ENV,
    apply_env_once,
    current_pyiqa_cache_dir,
)
from shamisa_bench.iqa import plugin
from shamisa_bench.iqa.head import load_head
from shamisa_bench.iqa.weights import DEFAULT_HEAD, resolve_weights
from shamisa_bench.model import read_encoder_export, sha256_file

__all__ = ["PyiqaScore"]

#: ``(pyiqa name, kwargs, pyiqa's parameter folder) -> why creating the metric failed``, for
#: this process: such a metric is reported unavailable at once instead of trying again.
_FAILED: dict[tuple[str, str, str], str] = {}


def _pyiqa_version() -> str | None:
    try:
        return version("pyiqa")
    except PackageNotFoundError:
        return None


class PyiqaScore(MetricAdapter):
    """A pyiqa no-reference metric, scored one image at a time.

    Attributes:
        pyiqa_name: the name given to ``pyiqa.create_metric``.
        kwargs: further keyword arguments for ``pyiqa.create_metric``.
    """

    output = "score"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.pyiqa_name: str = spec_field(spec, "pyiqa_name", spec.name)
        self.kwargs: dict[str, Any] = dict(getattr(spec, "kwargs", None) or {})
        self._metric: Any = None
        self._device = "cpu"
        self._weights: tuple[str, str] | None = None
        self._head_dataset: str | None = None

    def _shamisa_weights(self) -> tuple[str, str]:
        """(encoder weights sha256, head file sha256) of the ``shamisa`` kind's weights."""
        if self._weights is None:
            try:
                head = self.kwargs.get("head_dataset") or getattr(self.spec, "head", None)
                if not head:
                    prefix = "shamisa-"
                    head = self.pyiqa_name[len(prefix):] if self.pyiqa_name.startswith(prefix) else DEFAULT_HEAD
                w = resolve_weights(self.kwargs.get("pretrained_model_path"),
                                    self.kwargs.get("head_path"), head)
                enc = read_encoder_export(w.encoder, verify=False).weights_sha256
                self._weights = (enc, sha256_file(w.head))
                self._head_dataset = load_head(w.head).dataset
            except Exception as err:  # no weights = unavailable, with the reason
                msg = " ".join(str(err).split())[:400]
                raise MetricUnavailable(f"SHAMISA weights: {type(err).__name__}: {msg}") from err
        return self._weights

    def checkpoint_sha256(self) -> str | None:
        """The encoder export's weights sha256 for the ``shamisa`` kind, else None."""
        if getattr(self.spec, "kind", "") != "shamisa":
            return None
        return self._shamisa_weights()[0]

    def trained_on(self) -> frozenset[str]:
        """The dataset the ``shamisa`` kind's head was fit on."""
        if getattr(self.spec, "kind", "") != "shamisa":
            return frozenset()
        self._shamisa_weights()
        return frozenset({self._head_dataset}) if self._head_dataset else frozenset()

    def identity_fields(self) -> Mapping[str, Any]:
        head_sha = None
        if getattr(self.spec, "kind", "") == "shamisa":
            head_sha = self._shamisa_weights()[1]
        return {
            "pyiqa_name": self.pyiqa_name,
            "kwargs": self.kwargs,
            "head": getattr(self.spec, "head", None),
            "head_sha256": head_sha,
            "pyiqa_version": _pyiqa_version(),
        }

    def _open(self, device: str) -> None:
        try:
            import pyiqa  # lazy: seconds to import; only metrics of this kind need it
        except ImportError as err:
            raise MetricUnavailable(f"pyiqa is not installed ({err})") from err
        try:  # $SHAMISA_PYIQA_HOME, unless the run already chose pyiqa's parameter folder
            apply_env_once()
        except FileNotFoundError as err:
            raise MetricUnavailable(f"${PYIQA_HOME_ENV}: {err}") from err
        if getattr(self.spec, "kind", "") == "shamisa":
            try:  # registers the `shamisa` entries in pyiqa
                plugin.register()
            except ImportError as err:
                raise MetricUnavailable(f"shamisa pyiqa plugin not available ({err})") from err
        kwargs = dict(self.kwargs)
        head = getattr(self.spec, "head", None)
        if getattr(self.spec, "kind", "") == "shamisa" and head and "head_dataset" not in kwargs:
            kwargs["head_dataset"] = head  # the head named by the registry, not the default one
        key = (self.pyiqa_name, json.dumps(kwargs, sort_keys=True, default=str), str(current_pyiqa_cache_dir()))
        if key in _FAILED:
            raise MetricUnavailable(_FAILED[key])
        try:
            with contextlib.redirect_stdout(sys.stderr):  # pyiqa's prints are not our output
                metric = pyiqa.create_metric(self.pyiqa_name, device=device, **kwargs)
        except Exception as err:  # any failure to build = unavailable
            msg = " ".join(str(err).split())[:300]
            _FAILED[key] = f"pyiqa.create_metric({self.pyiqa_name!r}) failed: {type(err).__name__}: {msg}"
            raise MetricUnavailable(_FAILED[key]) from err
        theirs = getattr(metric, "lower_better", None)
        if theirs is not None and bool(theirs) != self.lower_better:
            warnings.warn(
                f"metric {self.name}: registry lower_better={self.lower_better} but pyiqa "
                f"says {bool(theirs)}; the registry value is used",
                stacklevel=2,
            )
        self._metric = metric
        self._device = device

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        with torch.inference_mode():
            out = self._metric(x.to(self._device))
        val = np.asarray(out.detach().float().cpu().numpy() if hasattr(out, "detach") else out,
                         dtype=np.float64).reshape(-1)
        if val.size != 1:
            raise ValueError(f"{name}: pyiqa {self.pyiqa_name} returned {val.size} values")
        return val.reshape(())

    def close(self) -> None:
        self._metric = None
        super().close()
