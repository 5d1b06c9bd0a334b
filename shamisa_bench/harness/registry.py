"""Load and validate the registry: datasets, metrics, protocols and suites as YAML data.

The registry is data, not code. Each entry is one YAML file ``<kind>/<name>.yaml`` under a
registry root (``datasets/``, ``metrics/``, ``protocols/``, ``suites/``). Every entry carries
``name`` (equal to the file stem) and ``version``. A file may ``include:`` one base file from
the same folder (one level only: a base may not include another); the entry's own keys
override the base's. Base files whose stem starts with ``_`` are not entries themselves.
No YAML tags, no import paths: files are read with ``yaml.safe_load``.

The registry shipped with the package is the default root (see :func:`default_registry_root`).
``registry/README.md`` documents every field; :func:`validate_registry` checks the schema and the
cross-references (suites naming unknown datasets, metrics or protocols; pairs outside the suite).

Example:
    >>> reg = load_registry()
    >>> reg.dataset("live").lower_better
    True
    >>> reg.suite("cross").resolved_pairs()[:1]
    (('live', 'csiq'),)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shamisa_bench.model.features import FEATURE_MODES

__all__ = [
    "DATASET_KINDS",
    "DATASET_READERS",
    "LABEL_TYPES",
    "LAYOUT_TYPES",
    "METRIC_KINDS",
    "PROTOCOL_KINDS",
    "SCORE_KEYS",
    "SPLIT_METHODS",
    "AlphaGrid",
    "DatasetLayout",
    "DatasetSpec",
    "MetricSpec",
    "ProtocolSpec",
    "Registry",
    "RegistryError",
    "SuiteSpec",
    "default_registry_root",
    "load_registry",
    "validate_registry",
]

DATASET_KINDS = ("synthetic", "authentic")
LABEL_TYPES = ("mos", "dmos", "pseudo-mos")
SPLIT_METHODS = ("reference", "random", "official")
DATASET_READERS = ("live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "flive", "csv", "demo")
LAYOUT_TYPES = ("official", "pyiqa", "csv", "demo")
METRIC_KINDS = ("pyiqa-score", "feature-probe", "shamisa", "dummy")
PROBE_INITS = ("imagenet", "random", "export")
PROTOCOL_KINDS = ("intra", "cross", "robustness")
SCORE_KEYS = ("srcc", "plcc", "plcc_logistic", "krcc")
PAIR_RULES = ("all-ordered",)
_KINDS = ("datasets", "metrics", "protocols", "suites")


class RegistryError(ValueError):
    """The registry has problems; ``problems`` lists each one (file and field)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"registry has {len(self.problems)} problem(s):\n  {shown}{more}")


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetLayout:
    """One on-disk layout a dataset can be read from.

    All paths are relative: ``root`` to the data root the user passes (``--data-root``),
    ``meta_info`` and ``images`` to the chosen root.

    Attributes:
        type: ``official`` (the release as its authors ship it), ``pyiqa`` (what
            ``pyiqa``'s ``load_dataset`` writes: image folders plus
            ``meta_info/meta_info_<Name>Dataset.csv``), ``csv`` (generic image,MOS CSV) or
            ``demo`` (built into the cache).
        root: candidate folders, tried in order; the first that holds the layout wins.
        meta_info: the label file of a ``pyiqa`` layout.
        images: candidate image folders (``pyiqa`` layout: where pyiqa's config points).
    """

    type: str
    root: tuple[str, ...] = (".",)
    meta_info: str | None = None
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: registry key; pyiqa's dataset key where one exists (``live``, ``koniq10k``...).
        version: version of this registry entry.
        title: human-readable name.
        kind: ``synthetic`` (distorted copies of references) or ``authentic``.
        label_type: ``mos``, ``dmos`` or ``pseudo-mos`` (computed by a full-reference
            metric, never human opinion).
        n_images: images expected in a complete copy.
        n_references: reference images (synthetic datasets), else ``None``.
        mos_range: (lo, hi) of the labels as published.
        lower_better: True when a lower label means better quality (DMOS).
        reader: which reader in ``shamisa_bench.harness.data`` parses it.
        split: ``reference`` (reference-disjoint), ``random`` or ``official``.
        citation: BibTeX or a plain reference.
        homepage: where the release is documented.
        layouts: layouts it can be read from, tried in order.
        options: reader options (e.g. CSV path and column names).
        checksums: optional ``{relative label file: sha256}``, checked when given.
        notes: free text (subset caveats, pseudo-MOS recipe...).
        partition: ``None``, or a fixed part of the labelled images: ``{"of": parent
            dataset, "seed": int, "fraction": share of the first part, "part":
            "selection" or "evaluation"}``. The images, sorted by name, are permuted by
            ``numpy.random.default_rng(seed)``; the first ``round(fraction * n)`` are the
            selection part, the rest the evaluation part
            (:func:`shamisa_bench.harness.data.partition.partition_names`).
    """

    name: str
    version: int
    title: str
    kind: str
    label_type: str
    n_images: int
    mos_range: tuple[float, float]
    lower_better: bool
    reader: str
    split: str
    citation: str
    layouts: tuple[DatasetLayout, ...]
    n_references: int | None = None
    homepage: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    partition: dict[str, Any] | None = None

    @property
    def pseudo_mos(self) -> bool:
        """True when the labels come from a full-reference metric, not from people."""
        return self.label_type == "pseudo-mos"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for provenance records)."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes:
        name: registry key (pyiqa's metric name for ``pyiqa-score`` entries).
        version: version of this registry entry.
        kind: ``pyiqa-score`` (an NR metric used as it is), ``feature-probe`` (frozen encoder
            plus a ridge head fit by the protocol), ``shamisa`` (the registered pyiqa metric
            with a shipped head) or ``dummy`` (tests).
        description: one line.
        lower_better: True when a lower score means better quality (``pyiqa-score``; taken
            from pyiqa's ``DEFAULT_CONFIGS``).
        pyiqa_name: name passed to ``pyiqa.create_metric`` (``pyiqa-score``, ``shamisa``).
        kwargs: extra keyword arguments for ``pyiqa.create_metric``.
        backbone: encoder architecture (``feature-probe``): ``efficientnet_lite0``, ``resnet50``.
        init: ``imagenet``, ``random`` or ``export`` (``feature-probe``).
        export: path to an encoder export when ``init == "export"``; a relative path is
            resolved against the current directory by the caller.
        feature_mode: how a ``feature-probe`` extracts features: ``whole`` (one forward pass
            on the whole image per scale) or ``crops5``. Read from the file's
            ``feature_mode:`` or, in files written before it had this name, ``protocol:``.
        head: training set of the shipped head (``shamisa``), e.g. ``koniq10k``.
        params: further kind-specific fields declared under ``params:`` in the file.
    """

    name: str
    version: int
    kind: str
    description: str = ""
    lower_better: bool = False
    pyiqa_name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    init: str | None = None
    export: str | None = None
    feature_mode: str | None = None
    head: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for provenance records)."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class AlphaGrid:
    """A geometric grid of ridge penalties: ``n`` values from ``lo`` to ``hi`` inclusive."""

    lo: float
    hi: float
    n: int

    def values(self) -> tuple[float, ...]:
        """The grid, ascending. Shape: (n,)."""
        return tuple(float(v) for v in np.geomspace(self.lo, self.hi, self.n))


@dataclass(frozen=True)
class ProtocolSpec:
    """Evaluation protocol parameters.

    Attributes:
        name: registry key.
        version: version of this registry entry.
        kind: ``intra``, ``cross`` or ``robustness``.
        ratios: (train, val, test) fractions; they sum to 1.
        n_splits: number of seeded splits.
        base_seed: split ``i`` uses seed ``base_seed + i``.
        alpha_grid: ridge penalties searched on the validation split.
        alpha_selection: statistic over splits used to pick alpha (``median`` val SRCC).
        scores: score keys computed per split.
        aggregate: how per-split scores are summarised for tables (``median``).
        params: further protocol-specific parameters (e.g. robustness distortions).
    """

    name: str
    version: int
    kind: str
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    n_splits: int = 10
    base_seed: int = 0
    alpha_grid: AlphaGrid = AlphaGrid(1e-3, 1e3, 25)
    alpha_selection: str = "median"
    scores: tuple[str, ...] = SCORE_KEYS
    aggregate: str = "median"
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for provenance records)."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SuiteSpec:
    """A named benchmark: datasets x metrics under one protocol, plus its table columns.

    Attributes:
        name: registry key.
        version: version of this registry entry.
        description: one line.
        datasets: dataset names.
        metrics: metric names.
        protocol: protocol name (a key of ``Registry.protocols``).
        pairs: (train, test) pairs for a cross suite; empty when ``pair_rule`` is used.
        pair_rule: ``all-ordered`` = every ordered pair of distinct suite datasets.
        n_splits: splits per dataset (defaults to the protocol's).
        seed: base seed of the splits (defaults to the protocol's ``base_seed``).
        columns: score keys shown in the tables, in order.
        higher_is_better: per column, whether a larger value is better.
        main_score: the column used to rank.
        baseline: a metric of the suite that every row is also compared with, split by
            split (e.g. the ImageNet encoder in an ablation), or None.
    """

    name: str
    version: int
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    protocol: str
    n_splits: int
    seed: int
    columns: tuple[str, ...]
    higher_is_better: dict[str, bool]
    main_score: str
    description: str = ""
    pairs: tuple[tuple[str, str], ...] = ()
    pair_rule: str | None = None
    baseline: str | None = None

    def resolved_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (train, test) pairs: explicit ``pairs`` or those given by ``pair_rule``."""
        if self.pairs:
            return self.pairs
        if self.pair_rule == "all-ordered":
            return tuple((a, b) for a, b in itertools.permutations(self.datasets, 2))
        return ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for provenance records)."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Registry:
    """All registry entries, by name. Built by :func:`load_registry`.

    Attributes:
        root: the folder it was read from (the first one when overlays were used).
        datasets, metrics, protocols, suites: name -> spec.
        warnings: notes such as an overlay entry replacing a base entry.
        experiments: ``"<kind>/<name>"`` of the entries read from the root's
            ``experiments/`` folder (:data:`EXPERIMENTS_DIR`): research metrics and the suites
            that use them (ablation, candidate selection). They load and run like any entry,
            but listings and "valid names" messages show only the product entries, and a
            product suite may not use an experiment metric.
    """

    root: Path
    datasets: dict[str, DatasetSpec]
    metrics: dict[str, MetricSpec]
    protocols: dict[str, ProtocolSpec]
    suites: dict[str, SuiteSpec]
    warnings: tuple[str, ...] = ()
    experiments: frozenset[str] = frozenset()

    def is_experiment(self, kind: str, name: str) -> bool:
        """True for an entry of the ``experiments/`` folder (``kind``: datasets, metrics, ...)."""
        return f"{kind}/{name}" in self.experiments

    def product(self, kind: str) -> list[str]:
        """Sorted names of the ``kind`` entries that are not experiments (what users run)."""
        return sorted(n for n in getattr(self, kind) if not self.is_experiment(kind, n))

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset ``name``. Raises ValueError listing valid names when unknown."""
        return _lookup(self.datasets, name, "dataset", self.product("datasets"))

    def metric(self, name: str) -> MetricSpec:
        """The metric ``name``. Raises ValueError listing valid names when unknown."""
        return _lookup(self.metrics, name, "metric", self.product("metrics"))

    def image_family(self, name: str) -> frozenset[str]:
        """The registered datasets that share images with the dataset ``name``: itself, the
        dataset it is a part of, and every part of either (``partition.of``). A head fit on
        one of them has seen labels of the others' images."""
        root = name
        spec = self.datasets.get(name)
        if spec is not None and spec.partition is not None:
            root = str(spec.partition["of"])
        family = {name, root}
        family.update(n for n, d in self.datasets.items() if d.partition is not None and d.partition["of"] == root)
        return frozenset(family)

    def protocol(self, name: str) -> ProtocolSpec:
        """The protocol ``name``. Raises ValueError listing valid names when unknown."""
        return _lookup(self.protocols, name, "protocol", self.product("protocols"))

    def suite(self, name: str) -> SuiteSpec:
        """The suite ``name``. Raises ValueError listing valid names when unknown."""
        return _lookup(self.suites, name, "suite", self.product("suites"))

    def versions(self) -> dict[str, int]:
        """``{"<kind>/<name>": version}`` for every entry (for results provenance)."""
        out: dict[str, int] = {}
        for kind in _KINDS:
            for name, spec in sorted(getattr(self, kind).items()):
                out[f"{kind}/{name}"] = spec.version
        return out

    def suite_versions(self, suite: str) -> dict[str, int]:
        """Versions of the suite and of every entry it uses."""
        s = self.suite(suite)
        out = {f"suites/{s.name}": s.version, f"protocols/{s.protocol}": self.protocol(s.protocol).version}
        for d in s.datasets:
            out[f"datasets/{d}"] = self.dataset(d).version
        for m in s.metrics:
            out[f"metrics/{m}"] = self.metric(m).version
        return out


def _lookup(table: Mapping[str, Any], name: str, what: str, shown: Sequence[str]) -> Any:
    if name not in table:
        valid = ", ".join(shown) or "(none)"
        hidden = len(table) - len(shown)
        more = f" (and {hidden} research entries under {EXPERIMENTS_DIR}/)" if hidden else ""
        raise ValueError(f"unknown {what} {name!r}; valid {what}s: {valid}{more}")
    return table[name]


EXPERIMENTS_DIR = "experiments"
"""Sub-folder of a registry root whose entries are research, not product (see
:attr:`Registry.experiments`). It is laid out like the root (``metrics/``, ``suites/``, ...)."""


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def default_registry_root() -> Path:
    """The registry shipped with the package.

    An installed package carries it as ``shamisa_bench/harness/data/registry`` (a link to
    the top-level ``registry/`` folder in the source tree, copied into wheels); a source
    checkout whose link did not survive falls back to the top-level folder.
    """
    here = Path(__file__).resolve().parent  # shamisa_bench/harness
    packaged = here / "data" / "registry"
    if (packaged / "datasets").is_dir():
        return packaged
    return here.parents[1] / "registry"


def load_registry(root: Path | str | None = None, *, overlays: Sequence[Path | str] = ()) -> Registry:
    """Read and check a registry.

    Args:
        root: registry folder; ``None`` means the shipped one.
        overlays: further registry folders whose entries add to, or replace (with a warning
            recorded in ``Registry.warnings``), those of ``root``. This lets a user register a
            dataset with one YAML file and no code.

    Returns:
        The frozen :class:`Registry`.

    Raises:
        RegistryError: listing every problem found (schema, cross-references).
        FileNotFoundError: ``root`` does not exist.
    """
    registry, problems = _load(root, overlays)
    if problems:
        raise RegistryError(problems)
    return registry


def validate_registry(root: Path | str | None = None, *, overlays: Sequence[Path | str] = ()) -> list[str]:
    """All problems of a registry, as ``"<file>: <problem>"`` lines (empty when valid)."""
    try:
        _, problems = _load(root, overlays)
    except FileNotFoundError as err:
        return [str(err)]
    return problems


def _load(root: Path | str | None, overlays: Sequence[Path | str]) -> tuple[Registry, list[str]]:
    base = Path(root) if root is not None else default_registry_root()
    if not base.is_dir():
        raise FileNotFoundError(f"registry folder not found: {base}")
    problems: list[str] = []
    warnings: list[str] = []
    raw: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = {k: {} for k in _KINDS}
    experiments: set[str] = set()
    research = base / EXPERIMENTS_DIR
    folders = [base, *([research] if research.is_dir() else []), *[Path(o) for o in overlays]]
    for folder in folders:
        if not folder.is_dir():
            problems.append(f"{folder}: registry overlay folder not found")
            continue
        for kind in _KINDS:
            for path, data in _read_kind(folder / kind, problems):
                name = data.get("name")
                if not isinstance(name, str):
                    continue  # reported by _read_kind
                if name in raw[kind]:
                    if folder in (base, research):
                        problems.append(f"{path}: duplicate {kind[:-1]} name {name!r} (also {raw[kind][name][0]})")
                        continue
                    warnings.append(f"{path} replaces {raw[kind][name][0]}")
                    experiments.discard(f"{kind}/{name}")
                raw[kind][name] = (path, data)
                if folder == research:
                    experiments.add(f"{kind}/{name}")

    datasets: dict[str, DatasetSpec] = {}
    metrics: dict[str, MetricSpec] = {}
    protocols: dict[str, ProtocolSpec] = {}
    suites: dict[str, SuiteSpec] = {}
    builders = {
        "datasets": (_build_dataset, datasets),
        "metrics": (_build_metric, metrics),
        "protocols": (_build_protocol, protocols),
        "suites": (_build_suite, suites),
    }
    for kind, (build, out) in builders.items():
        for name, (path, data) in sorted(raw[kind].items()):
            checker = _Checker(path, data)
            spec = build(checker)
            problems.extend(checker.problems)
            if spec is not None and not checker.problems:
                out[name] = spec

    # cross-references
    for name, (path, _data) in sorted(raw["suites"].items()):
        suite = suites.get(name)
        if suite is None:
            continue
        for d in suite.datasets:
            if d not in raw["datasets"]:
                problems.append(f"{path}: suite dataset {d!r} is not a registered dataset")
        for m in suite.metrics:
            if m not in raw["metrics"]:
                problems.append(f"{path}: suite metric {m!r} is not a registered metric")
            elif f"metrics/{m}" in experiments and f"suites/{name}" not in experiments:
                problems.append(f"{path}: suite metric {m!r} is a research entry ({EXPERIMENTS_DIR}/metrics); "
                                f"only suites under {EXPERIMENTS_DIR}/suites may use it")
        proto = protocols.get(suite.protocol)
        if suite.protocol not in raw["protocols"]:
            problems.append(f"{path}: suite protocol {suite.protocol!r} is not a registered protocol")
        elif proto is not None:
            suite = replace(
                suite,
                n_splits=proto.n_splits if suite.n_splits is None else suite.n_splits,
                seed=proto.base_seed if suite.seed is None else suite.seed,
            )
            suites[name] = suite
            if proto.kind == "cross" and not suite.resolved_pairs():
                problems.append(f"{path}: a cross suite needs 'pairs' or 'pair_rule'")
            if proto.kind != "cross" and (suite.pairs or suite.pair_rule):
                problems.append(f"{path}: 'pairs'/'pair_rule' only apply to a cross protocol")
        for a, b in suite.pairs:
            for d in (a, b):
                if d not in suite.datasets:
                    problems.append(f"{path}: pair ({a}, {b}) names {d!r}, which is not in the suite's datasets")
    registry = Registry(
        root=base,
        datasets=datasets,
        metrics=metrics,
        protocols=protocols,
        suites=suites,
        warnings=tuple(warnings),
        experiments=frozenset(experiments),
    )
    return registry, problems


def _read_kind(folder: Path, problems: list[str]) -> Iterable[tuple[Path, dict[str, Any]]]:
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        if path.stem.startswith("_"):
            continue  # a base for include:, not an entry
        data = _read_yaml(path, problems)
        if data is None:
            continue
        if "include" in data:
            inc = data.pop("include")
            if not isinstance(inc, str):
                problems.append(f"{path}: 'include' must be a file name, got {inc!r}")
                continue
            base_path = (path.parent / inc).resolve()
            if base_path.parent != path.parent.resolve():
                problems.append(f"{path}: 'include' must name a file in the same folder, got {inc!r}")
                continue
            base = _read_yaml(base_path, problems)
            if base is None:
                continue
            if "include" in base:
                problems.append(f"{path}: included file {inc} includes another file; only one level is allowed")
                continue
            data = {**base, **data}
        name = data.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{path}: missing 'name'")
            continue
        if name != path.stem:
            problems.append(f"{path}: name {name!r} must equal the file stem {path.stem!r}")
            continue
        if not _SAFE_NAME.fullmatch(name):  # names become folders under results/runs/
            problems.append(f"{path}: name {name!r} must start with a letter or digit and hold only letters, "
                            "digits, '.', '_', '+' and '-' (it names folders under results/)")
            continue
        out.append((path, data))
    return out


#: A registry name: also a folder name under results/runs/, so no '/', and not '.' or '..'.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _read_yaml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        problems.append(f"{path}: not valid YAML (tags and code are not allowed): {err}".replace("\n", " "))
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: top level must be a mapping, got {type(data).__name__}")
        return None
    return data


class _Checker:
    """Pulls typed fields out of one file's mapping, collecting problems instead of raising."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.data = dict(data)
        self.prefix = prefix
        self.used: set[str] = set()
        self.problems: list[str] = []

    def bad(self, msg: str) -> None:
        self.problems.append(f"{self.path}: {self.prefix}{msg}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = ..., *, allow_none: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self.bad(f"missing required field '{key}'")
                return None
            return default
        value = self.data[key]
        if value is None and allow_none:
            return None
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.bad(f"field '{key}' must be {_tname(types)}, got {value!r}")
            return None if default is ... else default
        if not isinstance(value, types):
            self.bad(f"field '{key}' must be {_tname(types)}, got {value!r}")
            return None if default is ... else default
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = ...) -> Any:
        value = self.get(key, str, default, allow_none=default is None)
        if value is not None and value not in choices:
            self.bad(f"field '{key}' must be one of {', '.join(choices)}; got {value!r}")
            return None
        return value

    def str_list(self, key: str, default: Any = ...) -> tuple[str, ...] | None:
        value = self.get(key, (list, str), default)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) and v for v in value):
            self.bad(f"field '{key}' must be a list of non-empty strings, got {value!r}")
            return None
        return tuple(value)

    def finish(self, extra_allowed: Sequence[str] = ()) -> None:
        unknown = sorted(set(self.data) - self.used - set(extra_allowed))
        if unknown:
            self.bad(f"unknown field(s): {', '.join(unknown)} (declare kind-specific extras under 'params:')")


def _tname(types: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
        list: "a list",
        dict: "a mapping",
    }
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _common(c: _Checker) -> tuple[str, int]:
    name = c.get("name", str)
    version = c.get("version", int)
    if isinstance(version, int) and version < 1:
        c.bad(f"field 'version' must be >= 1, got {version}")
    return name, version


def _build_dataset(c: _Checker) -> DatasetSpec | None:
    name, version = _common(c)
    title = c.get("title", str, "")
    kind = c.choice("kind", DATASET_KINDS)
    label_type = c.choice("label_type", LABEL_TYPES)
    n_images = c.get("n_images", int)
    if isinstance(n_images, int) and n_images < 1:
        c.bad(f"field 'n_images' must be >= 1, got {n_images}")
    n_refs = c.get("n_references", int, None, allow_none=True)
    mos_range = _range(c, "mos_range")
    lower_better = c.get("lower_better", bool)
    reader = c.choice("reader", DATASET_READERS)
    split = c.choice("split", SPLIT_METHODS)
    citation = c.get("citation", str)
    homepage = c.get("homepage", str, None, allow_none=True)
    options = c.get("options", dict, {})
    checksums = c.get("checksums", dict, {}, allow_none=True) or {}
    notes = c.get("notes", str, "")
    partition = _partition(c)
    raw_layouts = c.get("layouts", list)
    layouts: list[DatasetLayout] = []
    for i, item in enumerate(raw_layouts or []):
        if not isinstance(item, dict):
            c.bad(f"layouts[{i}] must be a mapping")
            continue
        lc = _Checker(c.path, item, prefix=f"layouts[{i}]: ")
        ltype = lc.choice("type", LAYOUT_TYPES)
        root = lc.str_list("root", ["."])
        meta = lc.get("meta_info", str, None, allow_none=True)
        images = lc.str_list("images", ())
        lc.finish()
        if ltype == "pyiqa" and not meta:
            lc.bad("a pyiqa layout needs 'meta_info'")
        c.problems.extend(lc.problems)
        if not lc.problems and ltype is not None:
            layouts.append(DatasetLayout(type=ltype, root=root or (".",), meta_info=meta, images=images or ()))
    if raw_layouts is not None and not raw_layouts:
        c.bad("field 'layouts' must list at least one layout")
    if kind == "synthetic" and split == "random":
        c.bad("a synthetic dataset must split by 'reference' (or 'official'), not 'random'")
    if label_type == "dmos" and lower_better is False:
        c.bad("label_type 'dmos' implies lower_better: true")
    if label_type == "pseudo-mos" and "pseudo" not in (notes + title).lower():
        c.bad("a pseudo-mos dataset must say 'pseudo' in its title or notes")
    for key, value in (checksums or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or len(value) != 64:
            c.bad(f"checksums[{key!r}] must be a 64-hex sha256 string")
    if reader == "csv":
        for key in ("csv", "image_column", "mos_column"):
            if not isinstance((options or {}).get(key), str):
                c.bad(f"a csv dataset needs options.{key} (a string)")
    c.finish()
    if c.problems:
        return None
    return DatasetSpec(
        name=name,
        version=version,
        title=title,
        kind=kind,
        label_type=label_type,
        n_images=n_images,
        n_references=n_refs,
        mos_range=mos_range,
        lower_better=lower_better,
        reader=reader,
        split=split,
        citation=citation.strip(),
        homepage=homepage,
        layouts=tuple(layouts),
        options=dict(options or {}),
        checksums=dict(checksums),
        notes=notes.strip(),
        partition=partition,
    )


PARTITION_PARTS = ("selection", "evaluation")


def _partition(c: _Checker) -> dict[str, Any] | None:
    """A dataset's ``partition:`` (see :attr:`DatasetSpec.partition`), checked."""
    value = c.get("partition", dict, None, allow_none=True)
    if value is None:
        return None
    problems = []
    if set(value) != {"of", "seed", "fraction", "part"}:
        problems.append(f"needs exactly the keys of, seed, fraction, part (got {', '.join(sorted(map(str, value)))})")
    if not isinstance(value.get("of"), str) or not value.get("of"):
        problems.append("'of' must name the parent dataset")
    seed = value.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(f"'seed' must be a non-negative int, got {seed!r}")
    fraction = value.get("fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        problems.append(f"'fraction' must be a number in (0, 1), got {fraction!r}")
    if value.get("part") not in PARTITION_PARTS:
        problems.append(f"'part' must be one of {', '.join(PARTITION_PARTS)}, got {value.get('part')!r}")
    for problem in problems:
        c.bad(f"partition: {problem}")
    return None if problems else dict(value)


def _range(c: _Checker, key: str) -> tuple[float, float] | None:
    value = c.get(key, list)
    if value is None:
        return None
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        c.bad(f"field '{key}' must be [lo, hi] numbers, got {value!r}")
        return None
    lo, hi = float(value[0]), float(value[1])
    if not lo < hi:
        c.bad(f"field '{key}' must have lo < hi, got {value!r}")
        return None
    return (lo, hi)


def _build_metric(c: _Checker) -> MetricSpec | None:
    name, version = _common(c)
    kind = c.choice("kind", METRIC_KINDS)
    description = c.get("description", str, "")
    lower_better = c.get("lower_better", bool, False)
    params = c.get("params", dict, {}, allow_none=True) or {}
    kwargs = c.get("kwargs", dict, {}, allow_none=True) or {}
    pyiqa_name = backbone = init = export = feature_mode = head = None
    if kind == "pyiqa-score":
        pyiqa_name = c.get("pyiqa_name", str)
    elif kind == "shamisa":
        pyiqa_name = c.get("pyiqa_name", str, "shamisa")
        head = c.get("head", str, None, allow_none=True)
    elif kind == "feature-probe":
        backbone = c.get("backbone", str)
        init = c.choice("init", PROBE_INITS)
        export = c.get("export", str, None, allow_none=True)
        feature_mode = _feature_mode(c)
        if init == "export" and not export:
            c.bad("init 'export' needs 'export' (path to an encoder export)")
        if init != "export" and export:
            c.bad("'export' is only used with init: export")
        if lower_better:
            c.bad("a feature-probe predicts MOS-oriented scores; lower_better must be false")
    c.finish()
    if c.problems:
        return None
    return MetricSpec(
        name=name,
        version=version,
        kind=kind,
        description=description,
        lower_better=lower_better,
        pyiqa_name=pyiqa_name,
        kwargs=dict(kwargs),
        backbone=backbone,
        init=init,
        export=export,
        feature_mode=feature_mode,
        head=head,
        params=dict(params),
    )


def _feature_mode(c: _Checker) -> str | None:
    """A feature-probe's ``feature_mode:``, or its former name ``protocol:`` (both: they must agree)."""
    new = c.choice("feature_mode", FEATURE_MODES, None)
    old = c.choice("protocol", FEATURE_MODES, None)
    if new is not None and old is not None and new != old:
        c.bad(f"fields 'feature_mode' ({new!r}) and 'protocol' ({old!r}) disagree; keep 'feature_mode' only "
              "('protocol' is its former name)")
        return None
    return new or old or "whole"


def _build_protocol(c: _Checker) -> ProtocolSpec | None:
    name, version = _common(c)
    kind = c.choice("kind", PROTOCOL_KINDS)
    description = c.get("description", str, "")
    ratios = c.get("ratios", list, [0.7, 0.1, 0.2])
    if ratios is not None:
        if len(ratios) != 3 or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in ratios
        ):
            c.bad(f"field 'ratios' must be three non-negative numbers, got {ratios!r}")
        elif abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0 or ratios[2] <= 0:
            c.bad(f"field 'ratios' must sum to 1 with train > 0 and test > 0, got {ratios!r}")
    n_splits = c.get("n_splits", int, 10)
    if isinstance(n_splits, int) and n_splits < 1:
        c.bad(f"field 'n_splits' must be >= 1, got {n_splits}")
    base_seed = c.get("base_seed", int, 0)
    grid_raw = c.get("alpha_grid", dict, {"lo": 1e-3, "hi": 1e3, "n": 25})
    grid = None
    if grid_raw is not None:
        gc = _Checker(c.path, grid_raw, prefix="alpha_grid: ")
        lo = gc.get("lo", (int, float))
        hi = gc.get("hi", (int, float))
        n = gc.get("n", int)
        gc.finish()
        if not gc.problems and not (0 < lo < hi and n >= 2):
            gc.bad(f"alpha_grid needs 0 < lo < hi and n >= 2, got {grid_raw!r}")
        c.problems.extend(gc.problems)
        if not gc.problems:
            grid = AlphaGrid(float(lo), float(hi), int(n))
    selection = c.choice("alpha_selection", ("median", "mean"), "median")
    scores = c.str_list("scores", list(SCORE_KEYS))
    for s in scores or ():
        if s not in SCORE_KEYS:
            c.bad(f"unknown score key {s!r}; valid: {', '.join(SCORE_KEYS)}")
    aggregate = c.choice("aggregate", ("median", "mean"), "median")
    params = c.get("params", dict, {}, allow_none=True) or {}
    c.finish()
    if c.problems:
        return None
    return ProtocolSpec(
        name=name,
        version=version,
        kind=kind,
        ratios=tuple(float(r) for r in ratios),  # type: ignore[arg-type]
        n_splits=n_splits,
        base_seed=base_seed,
        alpha_grid=grid,  # type: ignore[arg-type]
        alpha_selection=selection,
        scores=scores,  # type: ignore[arg-type]
        aggregate=aggregate,
        description=description,
        params=dict(params),
    )


def _build_suite(c: _Checker) -> SuiteSpec | None:
    name, version = _common(c)
    description = c.get("description", str, "")
    datasets = c.str_list("datasets")
    metrics = c.str_list("metrics")
    protocol = c.get("protocol", str)
    n_splits = c.get("n_splits", int, None, allow_none=True)
    seed = c.get("seed", int, None, allow_none=True)
    columns = c.str_list("columns", list(SCORE_KEYS))
    for col in columns or ():
        if col not in SCORE_KEYS:
            c.bad(f"unknown column {col!r}; valid score keys: {', '.join(SCORE_KEYS)}")
    hib_raw = c.get("higher_is_better", (bool, dict), True)
    hib: dict[str, bool] = {}
    if isinstance(hib_raw, bool):
        hib = {col: hib_raw for col in columns or ()}
    elif isinstance(hib_raw, dict):
        for col in columns or ():
            v = hib_raw.get(col, True)
            if not isinstance(v, bool):
                c.bad(f"higher_is_better[{col!r}] must be true/false")
            hib[col] = bool(v)
        for col in hib_raw:
            if col not in (columns or ()):
                c.bad(f"higher_is_better names {col!r}, which is not a column")
    main_score = c.get("main_score", str, (columns or ("srcc",))[0])
    if columns and main_score not in columns:
        c.bad(f"main_score {main_score!r} must be one of the columns {list(columns)}")
    pairs_raw = c.get("pairs", list, [])
    pairs: list[tuple[str, str]] = []
    for p in pairs_raw or []:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)) or p[0] == p[1]:
            c.bad(f"each pair must be [train, test] with two different dataset names, got {p!r}")
            continue
        pairs.append((p[0], p[1]))
    pair_rule = c.choice("pair_rule", PAIR_RULES, None)
    baseline = c.get("baseline", str, None, allow_none=True)
    if baseline is not None and metrics is not None and baseline not in metrics:
        c.bad(f"baseline {baseline!r} must be one of the suite's metrics")
    if pairs and pair_rule:
        c.bad("give either 'pairs' or 'pair_rule', not both")
    if datasets is not None and len(set(datasets)) != len(datasets):
        c.bad("field 'datasets' lists a name twice")
    if metrics is not None and len(set(metrics)) != len(metrics):
        c.bad("field 'metrics' lists a name twice")
    if n_splits is not None and n_splits < 1:
        c.bad(f"field 'n_splits' must be >= 1, got {n_splits}")
    for field_name, names in (("datasets", datasets), ("metrics", metrics)):
        if names is not None and not names:
            c.bad(f"field {field_name!r} is empty: a suite needs at least one")
    c.finish()
    if c.problems:
        return None
    return SuiteSpec(
        name=name,
        version=version,
        description=description,
        datasets=datasets,  # type: ignore[arg-type]
        metrics=metrics,  # type: ignore[arg-type]
        protocol=protocol,
        n_splits=n_splits,  # type: ignore[arg-type]  # None: filled from the protocol
        seed=seed,  # type: ignore[arg-type]
        columns=columns,  # type: ignore[arg-type]
        higher_is_better=hib,
        main_score=main_score,
        pairs=tuple(pairs),
        pair_rule=pair_rule,
        baseline=baseline,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
