"""Full-reference units: the reference of every image of a dataset, and the self-checks.

**References.** A dataset table names each image's reference group in its ``ref`` column
(the lower-case stem of the reference's file name for LIVE, CSIQ, TID2013 and KADID-10k;
the source name for ``demo``; whatever a CSV gives). :func:`find_references` turns it into a
file: a ``ref`` value that is itself a file path relative to the dataset root (a CSV with
``image,ref,mos``) is used as it is; otherwise the reference folders of the known layouts
(:data:`REFERENCE_FOLDERS`, under the dataset root and next to the image folders) are
searched for a file whose lower-case stem is the key. A dataset without references (an
authentic dataset, whose ``ref`` is each image's own name) or with images whose reference
is not found raises :class:`NoReferences`, whose message the harness records as the
unit's reason (the unit is unavailable; the suite goes on).

**Self-checks** (:func:`self_checks`), run before each FR unit is computed, on the
dataset's first few pairs (``n``, 8 by default):

1. *identical pair*: the metric's raw output for a reference paired with itself. For
   pair features (SHAMISA's ``u = |h_ref - h_dist|``) it must be exactly 0; for a score it
   must be at least as good as every one of the first pairs' scores (PSNR gives +inf,
   SSIM 1, GMSD and the feature distance 0).
2. *sign*: the SRCC, over the first pairs, between the metric's quality (its score
   oriented higher-is-better, or ``-mean(u)`` for pair features, before any head) and the
   labels oriented the same way; it should be positive.

The results go into the unit record (``fr.self_checks``), on the console, and into the
suite's ``tables/<suite>-fr-checks.md`` (:func:`write_checks_table`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shamisa_bench.common.scoring import orient, srcc
from shamisa_bench.harness.adapters.fr import PairInputs
from shamisa_bench.harness.adapters.runner import decode_image

__all__ = [
    "N_CHECK_PAIRS",
    "REFERENCE_FOLDERS",
    "NoReferences",
    "check_pair_sizes",
    "describe",
    "find_references",
    "fr_csv_references",
    "fr_dataset_references",
    "prepare_unit",
    "self_checks",
    "write_checks_table",
]

REFERENCE_FOLDERS = ("refimgs", "src_imgs", "reference_images", "images", "ref", "references", "reference")
"""Folders that hold the references in the layouts this project reads (LIVE ``refimgs``,
CSIQ ``src_imgs``, TID2013 ``reference_images``, KADID-10k ``images``, demo ``ref``)."""

N_CHECK_PAIRS = 8
"""Pairs the sign check uses: the dataset's first ones, in table order."""

_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


class NoReferences(ValueError):
    """The dataset has no reference images the harness can pair its images with."""


def _candidate_folders(table: Any) -> list[Path]:
    root = Path(table.root)
    near = {root}
    for image in table.frame["image"]:
        parent = Path(image).parent
        near.update((parent, parent.parent))
    folders = []
    for base in sorted(near):
        for name in REFERENCE_FOLDERS:
            for cand in (base / name, base / name.upper()):
                if cand.is_dir() and cand not in folders:
                    folders.append(cand)
    return folders


def find_references(table: Any) -> dict[str, str]:
    """Image name -> absolute reference file, for every image of ``table``.

    Raises:
        NoReferences: The dataset is authentic or has no reference column, or some
            images' references cannot be found (the first ones are named).
    """
    spec = table.spec
    frame = table.frame
    if getattr(spec, "kind", None) == "authentic" or all(r == n for r, n in zip(frame["ref"], frame["name"])):
        raise NoReferences(f"dataset {spec.name!r} has no reference column (each image is its own group): "
                           "full-reference metrics need a reference per image")
    root = Path(table.root)
    direct: dict[str, str] = {}
    for ref in sorted(set(frame["ref"])):
        path = root / str(ref)
        if path.suffix.lower() in _SUFFIXES and path.is_file():
            direct[str(ref)] = str(path.resolve())
    by_stem: dict[str, str] = {}
    if len(direct) < len(set(frame["ref"])):
        for folder in _candidate_folders(table):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in _SUFFIXES and path.is_file():
                    by_stem.setdefault(path.stem.lower(), str(path.resolve()))
    out: dict[str, str] = {}
    missing: list[str] = []
    for name, ref in zip(frame["name"], frame["ref"]):
        path = direct.get(str(ref)) or by_stem.get(str(ref).lower())
        if path is None:
            missing.append(f"{name} (reference {ref!r})")
        else:
            out[str(name)] = path
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise NoReferences(
            f"dataset {spec.name!r}: no reference image found for {len(missing)} of {len(frame)} images: {shown}. "
            f"Looked for a file named by the ref column under {root}, and for <ref>.* in the folders "
            f"{', '.join(REFERENCE_FOLDERS)} under the dataset root and next to the images"
        )
    return out


def _quality(value: np.ndarray, adapter: Any) -> float:
    if adapter.output == "features":
        return -float(np.mean(value))
    return float(orient(np.asarray([float(value)]), adapter.lower_better)[0])


def self_checks(adapter: Any, table: Any, references: Mapping[str, str], device: str,
                n: int = N_CHECK_PAIRS) -> dict[str, Any]:
    """Run the two FR self-checks (module docstring) on ``table``'s first ``n`` pairs.

    Opens the adapter when needed. Errors of single images are reported, not raised.

    Returns:
        ``{"identical": {"passed", "value", ...}, "sign": {"passed", "srcc", "n_pairs"}, "passed"}``.
    """
    if not isinstance(adapter, PairInputs):
        raise TypeError(f"metric {adapter.name} is not a full-reference metric")
    if not adapter.is_open:
        adapter.open(device)
    adapter.bind_references(references)
    frame = table.frame.iloc[: max(int(n), 2)]
    names = [str(v) for v in frame["name"]]
    qualities, labels, errors = [], [], []
    for name, image, mos in zip(names, frame["image"], frame["mos"]):
        try:
            qualities.append(_quality(adapter.compute(decode_image(image), name), adapter))
            labels.append(float(mos))
        except Exception as err:  # noqa: BLE001 - reported in the check
            errors.append(f"{name}: {type(err).__name__}: {err}")
    labels_q = orient(np.asarray(labels), bool(table.spec.lower_better)) if labels else np.zeros(0)
    r = srcc(np.asarray(qualities), labels_q) if len(qualities) >= 3 else math.nan
    sign = {"passed": bool(np.isfinite(r) and r > 0), "srcc": r, "n_pairs": len(qualities), "errors": errors[:5]}

    first = names[0]
    identical: dict[str, Any] = {"image": f"the reference of {first} against itself"}
    try:
        ref_path = references[first]
        adapter.bind_references({**references, "__reference__": ref_path})
        raw = np.asarray(adapter.compute(decode_image(ref_path), "__reference__"), dtype=np.float64)
        if adapter.output == "features":
            identical.update(value=float(np.abs(raw).max()), passed=bool(np.abs(raw).max() == 0.0),
                             rule="u = |f_ref - f_ref| is exactly 0")
        else:
            q = _quality(raw, adapter)
            identical.update(value=float(raw), passed=bool(qualities) and all(q >= v for v in qualities),
                             rule="scores at least as well as every checked pair")
    except Exception as err:  # noqa: BLE001 - reported in the check
        identical.update(value=None, passed=False, error=f"{type(err).__name__}: {err}")
    finally:
        adapter.bind_references(references)
    return {"identical": identical, "sign": sign, "passed": bool(identical["passed"] and sign["passed"])}


def describe(checks: Mapping[str, Any]) -> str:
    """One line for the console."""
    ident, sign = checks["identical"], checks["sign"]
    value = ident.get("value")
    v = "error" if value is None else (f"{value:.4g}" if math.isfinite(value) else str(value))
    r = sign.get("srcc")
    rtxt = f"{r:+.3f}" if r is not None and math.isfinite(r) else "n/a"
    return (f"self-checks {'passed' if checks['passed'] else 'NOT passed'}: identical pair {v} "
            f"({'ok' if ident['passed'] else 'failed'}), SRCC on the first {sign['n_pairs']} pairs {rtxt} "
            f"({'ok' if sign['passed'] else 'wrong sign'})")


def prepare_unit(adapter: Any, datasets: Iterable[str], tables: Mapping[str, Any], device: str,
                 record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Before a full-reference unit: find each dataset's references and run the self-checks.

    Fills ``record["fr"]`` (reference count, self-checks of the unit's last dataset, the
    test set of a cross unit) and sets ``record["metric"]["lower_better"]`` to the adapter's
    direction (a feature distance is lower-is-better).

    Returns:
        Dataset name -> (image name -> reference file).

    Raises:
        NoReferences: A dataset of the unit has no references (the unit's reason).
        MetricUnavailable: The metric cannot be opened.
    """
    names = list(datasets)
    refs = {d: find_references(tables[d]) for d in names}
    checks = self_checks(adapter, tables[names[-1]], refs[names[-1]], device)
    record["metric"]["lower_better"] = bool(adapter.lower_better)
    record["fr"] = {
        "pairs": "each image against its reference (full-reference)",
        "n_references": {d: len(set(r.values())) for d, r in refs.items()},
        "self_checks": checks,
        "self_checks_dataset": names[-1],
    }
    return refs


def write_checks_table(results_dir: Path, suite: str) -> Path | None:
    """``<results>/tables/<suite>-fr-checks.md`` from the suite's unit files (None when no FR unit)."""
    rows = []
    for file in sorted((Path(results_dir) / "runs" / suite).rglob("*.json")):
        try:
            rec = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the leaderboard reports unreadable unit files
        fr = rec.get("fr") or {}
        checks = fr.get("self_checks")
        if not checks:
            continue
        unit = rec["unit"]
        ident, sign = checks["identical"], checks["sign"]
        value = ident.get("value")
        r = sign.get("srcc")
        rows.append((unit["metric"], unit.get("dataset") or "", "error" if value is None else f"{value:.6g}",
                     "yes" if ident["passed"] else "no",
                     "n/a" if r is None or not math.isfinite(r) else f"{r:+.3f}", str(sign["n_pairs"]),
                     "yes" if sign["passed"] else "no"))
    if not rows:
        return None
    lines = [f"# `{suite}`: full-reference self-checks", "",
             "Run before each full-reference unit on the dataset's first pairs: the raw output for a reference "
             "paired with itself (pair features must be exactly 0; a score must be at least as good as every "
             "checked pair), and the SRCC between the metric's quality (the score oriented higher-is-better, or "
             "-mean(u) for pair features, before any head) and the labels on the first pairs (should be "
             "positive).", "",
             "| metric | dataset | identical-pair output | identical ok | SRCC, first pairs | pairs | sign ok |",
             "|---|---|---:|---|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in sorted(rows)]
    path = Path(results_dir) / "tables" / f"{suite}-fr-checks.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fr_dataset_references(table: Any) -> list[Path]:
    """The reference file of every row of ``table``, in row order (for ``fit-head --fr``).

    Raises:
        NoReferences: As :func:`find_references`.
    """
    refs = find_references(table)
    return [Path(refs[str(name)]) for name in table.frame["name"]]


def fr_csv_references(csv: Path, rows: Sequence[Any]) -> list[Path]:
    """The reference files of a label CSV's rows (``ref`` column: a file, relative to the CSV's folder).

    Raises:
        NoReferences: The CSV has no ``ref`` column, or some references are not files (all named).
    """
    refs, bad = [], []
    for row in rows:
        path = Path(row.ref) if Path(row.ref).is_absolute() else Path(csv).parent / row.ref
        if not path.is_file() or path.resolve() == Path(row.image).resolve():  # no ref column: ref = the image
            bad.append(f"row {row.line}: {row.ref!r}")
        refs.append(path)
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise NoReferences(f"{csv}: a full-reference head needs a 'ref' column naming each image's reference file "
                           f"(relative to the CSV's folder); not a file: {shown}")
    return refs


def check_pair_sizes(images: Sequence[Path], references: Sequence[Path]) -> None:
    """Refuse pairs whose image and reference differ in size (all listed; headers only).

    Raises:
        ValueError: Naming each mismatched pair and both sizes.
    """
    size_of: dict[Path, tuple[int, int]] = {}
    bad = []
    for image, ref in zip(images, references):
        for path in (image, ref):
            if path not in size_of:
                with Image.open(path) as im:
                    size_of[path] = im.size
        if size_of[image] != size_of[ref]:
            (w, h), (rw, rh) = size_of[image], size_of[ref]
            bad.append(f"{image} is {h}x{w} but its reference {ref} is {rh}x{rw}")
    if bad:
        shown = "\n  ".join(bad[:10]) + (f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(f"{len(bad)} pair(s) of different sizes (a full-reference pair must be pixel-aligned):\n  {shown}")
