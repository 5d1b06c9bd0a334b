"""Where the SHAMISA metric's weights are found: an encoder export and a head file.

Each is resolved on its own, first match wins (:func:`resolve_weights`):

1. the explicit keyword: ``pretrained_model_path=`` (export folder or its config.json),
   ``head_path=`` (head file);
2. the environment variables :data:`ENCODER_ENV` (``SHAMISA_ENCODER``) and
   :data:`HEAD_ENV` (``SHAMISA_HEAD``; consulted for the default head only: a
   ``shamisa-<dataset>`` metric names its training set and never takes a head from it);
3. the cache ``$TORCH_HOME/shamisa/`` (``~/.cache/torch/shamisa/`` by default):
   ``encoder/`` (an export folder) and ``heads/<head_dataset>.pt``;
4. the same layout shipped inside the package, ``shamisa_bench/weights/``.

Nothing here imports torch or pyiqa: ``import shamisa_bench`` registers the pyiqa metrics
(:mod:`shamisa_bench.iqa.plugin`), which lists the shipped heads from here.
:mod:`shamisa_bench.archs.shamisa_arch` re-exports these names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_HEAD",
    "ENCODER_ENV",
    "ENCODER_SUBDIR",
    "HEADS_SUBDIR",
    "HEAD_ENV",
    "ResolvedWeights",
    "WeightsNotFoundError",
    "cache_dir",
    "resolve_weights",
    "shipped_dir",
    "shipped_head_datasets",
    "torch_home",
]

ENCODER_ENV = "SHAMISA_ENCODER"
"""Environment variable naming an encoder export folder (or its config.json)."""

HEAD_ENV = "SHAMISA_HEAD"
"""Environment variable naming the default head file."""

DEFAULT_HEAD = "default"
"""``head_dataset`` of the ``shamisa`` metric: the head file ``heads/default.pt``."""

ENCODER_SUBDIR = "encoder"
HEADS_SUBDIR = "heads"
_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WeightsNotFoundError(FileNotFoundError):
    """No encoder export or head was found; the message says where we looked and what to do."""


def torch_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (torch's rule)."""
    env = os.environ if environ is None else environ
    if env.get("TORCH_HOME"):
        return Path(env["TORCH_HOME"]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "torch"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user weights folder, ``<torch_home>/shamisa``."""
    return torch_home(environ) / "shamisa"


def shipped_dir() -> Path:
    """The weights folder inside the package, ``shamisa_bench/weights``."""
    return Path(__file__).resolve().parent.parent / "weights"


def shipped_head_datasets() -> tuple[str, ...]:
    """Training sets of the heads shipped in the package (``weights/heads/<name>.pt``), sorted.

    The default head (``default.pt``) is not listed: it backs the plain ``shamisa`` metric.
    """
    folder = shipped_dir() / HEADS_SUBDIR
    if not folder.is_dir():
        return ()
    names = (p.stem for p in folder.glob("*.pt") if p.is_file())
    return tuple(sorted(n for n in names if n != DEFAULT_HEAD and _HEAD_NAME.match(n)))


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the metric's weights come from.

    Attributes:
        encoder: Export folder or config.json.
        head: Head file.
        encoder_source: ``keyword``, ``env``, ``cache`` or ``shipped``.
        head_source: Same, for the head.
    """

    encoder: Path
    head: Path
    encoder_source: str
    head_source: str


def _how_to_get(head_dataset: str, cache: Path) -> str:
    head_file = f"{HEADS_SUBDIR}/{head_dataset}.pt"
    return (
        "To get weights (nothing is downloaded automatically):\n"
        "  1. pretrain an encoder:   shamisa-bench pretrain --images PRISTINE_DIR --out RUN  (export in RUN/export)\n"
        "  2. fit a quality head:    shamisa-bench fit-head --encoder RUN/export --dataset NAME [--data-root DIR] "
        "--out HEAD.pt\n"
        "                            (or --csv LABELS.csv with columns image,mos)\n"
        "  3. point the metric at them, any one of:\n"
        "       pyiqa.create_metric('shamisa', pretrained_model_path='RUN/export', head_path='HEAD.pt')\n"
        f"       export {ENCODER_ENV}=RUN/export {HEAD_ENV}=HEAD.pt\n"
        f"       copy the export folder to {cache / ENCODER_SUBDIR} and the head to {cache / head_file}"
    )


def resolve_weights(
    pretrained_model_path: str | os.PathLike[str] | None = None,
    head_path: str | os.PathLike[str] | None = None,
    head_dataset: str = DEFAULT_HEAD,
    *,
    environ: Mapping[str, str] | None = None,
) -> ResolvedWeights:
    """Find the encoder export and the head (see the module docstring for the order).

    Args:
        pretrained_model_path: Explicit export folder or config.json.
        head_path: Explicit head file.
        head_dataset: Head to look up by name (``heads/<head_dataset>.pt``).
        environ: Environment to read (default ``os.environ``).

    Returns:
        The resolved paths and where each came from.

    Raises:
        ValueError: ``head_dataset`` is not a plain name.
        WeightsNotFoundError: A named path does not exist, or nothing was found.
    """
    if not isinstance(head_dataset, str) or not _HEAD_NAME.match(head_dataset):
        raise ValueError(f"head_dataset must be a plain name such as 'koniq10k', got {head_dataset!r}")
    env = os.environ if environ is None else environ
    cache = cache_dir(env)
    shipped = shipped_dir()
    hint = _how_to_get(head_dataset, cache)

    def pick(
        what: str,
        explicit: str | os.PathLike[str] | None,
        keyword: str,
        env_name: str | None,
        relative: str,
    ) -> tuple[Path, str]:
        looked: list[str] = []
        if explicit is not None:
            path = Path(explicit).expanduser()
            if path.exists():
                return path, "keyword"
            raise WeightsNotFoundError(f"SHAMISA {what}: {keyword}={str(explicit)!r} does not exist.\n{hint}")
        looked.append(f"{keyword}= (not given)")
        if env_name is not None:
            value = env.get(env_name)
            if value:
                path = Path(value).expanduser()
                if path.exists():
                    return path, "env"
                raise WeightsNotFoundError(f"SHAMISA {what}: ${env_name}={value!r} does not exist.\n{hint}")
            looked.append(f"${env_name} (not set)")
        for source, root in (("cache", cache), ("shipped", shipped)):
            path = root / relative
            if path.exists():
                return path, source
            note = "no weights ship with this installation" if source == "shipped" else "missing"
            looked.append(f"{path} ({note})")
        places = "\n  - ".join(looked)
        raise WeightsNotFoundError(f"no SHAMISA {what} found. Looked at:\n  - {places}\n{hint}")

    encoder, encoder_source = pick(
        "encoder export", pretrained_model_path, "pretrained_model_path", ENCODER_ENV, ENCODER_SUBDIR
    )
    head, head_source = pick(
        f"head {head_dataset!r}",
        head_path,
        "head_path",
        HEAD_ENV if head_dataset == DEFAULT_HEAD else None,
        f"{HEADS_SUBDIR}/{head_dataset}.pt",
    )
    return ResolvedWeights(encoder=encoder, head=head, encoder_source=encoder_source, head_source=head_source)
