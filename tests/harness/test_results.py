"""Results records: cleaning, atomic storage, validation, and leaderboard derivation."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from shamisa_bench.harness.results import (
    build_leaderboard,
    clean_json,
    collect_provenance,
    load_unit,
    render_markdown,
    unit_path,
    validate_unit,
    write_tables,
    write_unit,
)
from shamisa_bench.harness.results.tables import render_csv
from tests import REPO


def _record(metric: str, dataset: str, srcc: float | None, status: str = "ok",
            spread: tuple[float, ...] = (-0.02, 0.0, 0.02)) -> dict:
    """A unit record whose summary is computed from its per-split values, as the harness does."""
    from shamisa_bench.common.scoring import aggregate_scores

    per_split = [] if srcc is None else [
        {"split": i, "srcc": srcc + d, "plcc": srcc / 2, "hash": f"h{i}"} for i, d in enumerate(spread)]
    agg = aggregate_scores(per_split, ("srcc", "plcc")) if per_split else {}
    return {
        "schema_version": 1,
        "status": status,
        "reason": None if status == "ok" else "no weights offline",
        "unit": {"suite": "s", "protocol": "intra", "metric": metric, "dataset": dataset,
                 "train": None, "test": None},
        "table": {"columns": ["srcc", "plcc"], "higher_is_better": {"srcc": True, "plcc": True},
                  "main_score": "srcc", "order": ["b", "a"]},
        "metric": {"name": metric},
        "scores": {"per_split": per_split, "aggregate": agg},
        "n_images": 10,
        "n_excluded": 0,
        "nonfinite": {"nan": 0, "inf": 0, "names": []},
        "provenance": collect_provenance(device="cpu", seed=0, started_at="t", duration_s=1.0,
                                         git=(None, None)),
    }


def test_clean_json_rounds_and_nulls_nonfinite():
    import numpy as np

    out = clean_json({"a": 0.1234567891, "b": float("nan"), "c": [np.float32(1.5), np.int64(3)],
                      "d": np.array([math.inf, -1e-9]), "e": (True, None)})
    assert out == {"a": 0.123457, "b": None, "c": [1.5, 3], "d": [None, 0.0], "e": [True, None]}
    json.dumps(out, allow_nan=False)


def test_write_is_atomic_and_validated(tmp_path):
    rec = _record("m1", "a", 0.8123456789)
    path = unit_path(tmp_path, rec["unit"])
    assert path == tmp_path / "runs" / "s" / "intra" / "m1" / "a.json"
    write_unit(path, rec)
    loaded = load_unit(path)
    assert loaded["scores"]["aggregate"]["srcc"]["median"] == 0.812346
    assert not list(path.parent.glob(".tmp-*"))
    bad = copy.deepcopy(rec)
    del bad["provenance"]
    with pytest.raises(ValueError, match="lacks provenance"):
        write_unit(path, bad)
    assert load_unit(path) == loaded  # the failed write left the old file intact
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_unit(path)


def test_validate_rejects_other_schema_versions_and_statuses():
    rec = _record("m1", "a", 0.5)
    validate_unit(rec)
    with pytest.raises(ValueError, match="schema_version"):
        validate_unit({**rec, "schema_version": 0})
    with pytest.raises(ValueError, match="status"):
        validate_unit({**rec, "status": "maybe"})
    with pytest.raises(ValueError, match="neither a dataset"):
        validate_unit({**rec, "unit": {**rec["unit"], "dataset": None}})


@pytest.mark.parametrize(
    "where, value, message",
    [
        (("scores", "aggregate", "srcc", "median"), "abc", r"scores.aggregate.srcc.median must be a finite number or null, not str"),
        (("scores", "per_split", 1, "srcc"), "0.8", r"scores.per_split\[1\].srcc must be a finite number or null, not str"),
        (("scores", "per_split", 0, "plcc"), True, r"scores.per_split\[0\].plcc must be a finite number or null, not bool"),
        (("scores", "aggregate", "srcc", "n"), 2.5, r"scores.aggregate.srcc.n must be a non-negative integer"),
        (("n_images", ), "10", r"n_images must be a non-negative integer, not str"),
        (("scores", "per_split"), {}, r"scores.per_split must be a list, not dict"),
        (("scores", "aggregate", "srcc", "median"), 0.95, r"scores.aggregate.srcc.median is 0.95 but the per-split values give 0.700000"),
        (("scores", "per_split", 2, "srcc"), 0.99, r"scores.aggregate.srcc.mean is .* but the per-split values give"),
        (("scores", "per_split", 2, "srcc"), None, r"scores.aggregate.srcc.n_nan is 0 but per_split has 1 null srcc"),
    ],
)
def test_load_validates_every_value_and_the_summary_naming_the_file(tmp_path, where, value, message):
    rec = _record("m1", "a", 0.7)
    path = unit_path(tmp_path, rec["unit"])
    write_unit(path, rec)
    raw = json.loads(path.read_text())
    target = raw
    for k in where[:-1]:
        target = target[k]
    target[where[-1]] = value
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as err:
        load_unit(path)
    assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(ValueError, match=message):  # the table is never built from it
        build_leaderboard(tmp_path, "s")


def test_ok_record_needs_every_column_in_every_split():
    rec = _record("m1", "a", 0.7)
    del rec["scores"]["per_split"][1]["plcc"]
    with pytest.raises(ValueError, match=r"scores.per_split\[1\] lacks plcc"):
        validate_unit(rec, "x.json")


def test_provenance_has_the_required_fields():
    prov = collect_provenance(device="cpu", seed=3, started_at="2026-01-01T00:00:00+00:00",
                              duration_s=2.5, checkpoint_sha256="ab" * 32,
                              registry_versions={"suites/s": 1})
    for key in ("package_version", "pyiqa_version", "torch_version", "git_sha", "git_dirty"):
        assert key in prov
    assert prov["seed"] == 3 and prov["checkpoint_sha256"] == "ab" * 32


def test_leaderboard_marks_best_handles_ties_unavailable_and_order(tmp_path):
    for rec in (_record("m1", "a", 0.7), _record("m2", "a", 0.9), _record("m3", "a", 0.9),
                _record("m1", "b", 0.6), _record("m2", "b", 0.4), _record("m3", "b", float("nan")),
                _record("off", "a", None, status="unavailable")):
        write_unit(unit_path(tmp_path, rec["unit"]), rec)
    lb = build_leaderboard(tmp_path, "s")
    assert [t for _, t in lb.tokens] == ["b", "a"]  # the suite's order, stored in the units
    assert lb.best("srcc", "intra", "a") == {"m2", "m3"}  # ties are all marked
    assert lb.best("srcc", "intra", "b") == {"m1"}  # NaN never wins
    assert lb.metrics[-1] == "off"  # rows ranked by mean main score; unavailable last
    md = render_markdown(lb)
    # medians with the bootstrap interval of the median over the three splits
    assert "| m2 | 0.400 [0.380, 0.420] | **0.900** [0.880, 0.920] |" in md
    assert "| m3 | nan | **0.900** [0.880, 0.920] |" in md
    assert "| off | – | unavailable |" in md
    diffs = md.split("## Paired difference to the best row (SRCC)")[1].split("## Images")[0]
    assert "| m1 | best | −0.200 [−0.200, −0.200] † |" in diffs  # below the best on every split
    assert "| m2 | −0.200 [−0.200, −0.200] † | 0.000 [0.000, 0.000] |" in diffs  # tie: no difference
    assert "| m3 | nan | best |" in diffs
    assert "no weights offline" in md
    csv_text = render_csv(lb)
    rows = [r.split(",") for r in csv_text.strip().splitlines()]
    header = rows[0]
    cell = {(r[header.index("metric")], r[header.index("dataset")], r[header.index("score")],
             r[header.index("statistic")]): r for r in rows[1:]}
    assert cell[("m2", "a", "srcc", "median")][header.index("best")] == "true"
    assert cell[("m1", "a", "srcc", "median")][header.index("best")] == "false"
    assert cell[("m1", "a", "srcc", "median")][header.index("value")] == "0.700000"
    m1a = cell[("m1", "a", "srcc", "median")]
    assert [m1a[header.index(k)] for k in ("ci95_low", "ci95_high", "ref_metric", "diff_to_ref",
                                           "diff_ci95_low", "diff_ci95_high", "diff_excludes_0")] == [
        "0.680000", "0.720000", "m3", "-0.200000", "-0.200000", "-0.200000", "true"]  # m3: first of the tie
    assert cell[("m1", "a", "srcc", "mean")][header.index("ci95_low")] == ""
    assert cell[("off", "a", "", "")][header.index("status")] == "unavailable"
    md_path, csv_path, png_path = write_tables(lb, tmp_path)
    assert csv_path.read_text() == csv_text
    assert md_path.read_text() == render_markdown(lb, "s.png") and "![per-split SRCC of every metric](s.png)" in md_path.read_text()
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = png_path.read_bytes()
    write_tables(lb, tmp_path)
    assert png_path.read_bytes() == first  # no timestamp or version stamp: same results, same bytes


def test_paired_difference_marks_only_intervals_that_exclude_zero(tmp_path):
    # near: same median as the best row, split-to-split differences of both signs;
    # far: below the best row on every split (the common split noise cancels in the pairing)
    noise = (0.05, -0.03, 0.01, -0.06, 0.02, 0.04, -0.01, 0.0)
    ref = _record("best", "a", 0.8, spread=noise)
    near = _record("near", "a", 0.79, spread=tuple(n + d for n, d in zip(noise, (0.01, -0.02, 0.015, -0.01, 0.0, 0.02, -0.015, 0.005), strict=True)))
    far = _record("far", "a", 0.78, spread=tuple(n + d for n, d in zip(noise, (-0.002, 0.003, -0.001, 0.002, -0.003, 0.0, 0.001, -0.001), strict=True)))
    for rec in (ref, near, far):
        write_unit(unit_path(tmp_path, rec["unit"]), rec)
    lb = build_leaderboard(tmp_path, "s")
    assert lb.reference("srcc", "intra", "a") == "best"
    d_near, d_far = lb.paired("srcc", "near", "intra", "a"), lb.paired("srcc", "far", "intra", "a")
    assert d_near.n == d_far.n == len(noise)
    assert d_near.interval[0] < 0 < d_near.interval[1] and not d_near.excludes_zero
    assert d_far.interval[1] < 0 and d_far.excludes_zero and d_far.median == pytest.approx(-0.0205, abs=1e-6)
    # the far row's own interval overlaps the best row's: only the pairing shows the gap
    assert lb.cell("far", "intra", "a").interval("srcc")[1] > lb.cell("best", "intra", "a").interval("srcc")[0]
    md = render_markdown(lb)
    diffs = md.split("## Paired difference")[1]
    assert "| far | −0.021" in diffs and diffs.split("| far |")[1].split("\n")[0].endswith("† |")
    assert "†" not in diffs.split("| near |")[1].split("\n")[0]
    # bootstrap intervals are seeded: the same files give the same tables
    assert render_markdown(build_leaderboard(tmp_path, "s")) == md
    # splits that are not the same are not paired
    other = _record("other", "a", 0.7, spread=noise)
    for entry in other["scores"]["per_split"]:
        entry["hash"] = "x" + entry["hash"]
    write_unit(unit_path(tmp_path, other["unit"]), other)
    lb = build_leaderboard(tmp_path, "s")
    assert lb.paired("srcc", "other", "intra", "a").note == "not on the same splits as best"


def test_baseline_row_gets_a_paired_gain_section(tmp_path):
    noise = (0.05, -0.03, 0.01, -0.06, 0.02, 0.04, -0.01, 0.0)
    base = _record("imagenet", "a", 0.76, spread=noise)
    better = _record("ssl", "a", 0.80, spread=noise)  # 0.04 above the baseline on every split
    for rec in (base, better):
        write_unit(unit_path(tmp_path, rec["unit"]), rec)
    assert build_leaderboard(tmp_path, "s").baseline is None
    assert build_leaderboard(tmp_path, "s", baseline="not-a-row").baseline is None
    lb = build_leaderboard(tmp_path, "s", baseline="imagenet")
    d = lb.paired("srcc", "ssl", "intra", "a", ref="imagenet")
    assert d.median == pytest.approx(0.04, abs=1e-9) and d.excludes_zero
    section = render_markdown(lb).split("## Paired gain over `imagenet` (SRCC)")[1].split("## Images")[0]
    assert "| ssl | +0.040 [+0.040, +0.040] † |" in section
    assert "| imagenet | baseline |" in section
    assert "## Paired gain" not in render_markdown(build_leaderboard(tmp_path, "s"))


def test_leaderboard_rejects_mixed_columns(tmp_path):
    a = _record("m1", "a", 0.7)
    b = _record("m2", "a", 0.7)
    b["table"]["columns"] = ["srcc"]
    write_unit(unit_path(tmp_path, a["unit"]), a)
    write_unit(unit_path(tmp_path, b["unit"]), b)
    with pytest.raises(ValueError, match="differ"):
        build_leaderboard(tmp_path, "s")


def test_git_state_of_this_checkout() -> None:
    """Inside a git checkout that tracks the package, provenance names the commit."""
    import subprocess

    from shamisa_bench.common.provenance import git_state

    pkg_init = REPO / "shamisa_bench" / "__init__.py"
    try:
        tracked = subprocess.run(["git", "-C", str(pkg_init.parent), "ls-files", "--error-unmatch", str(pkg_init)],
                                 capture_output=True, check=False).returncode == 0
        head = subprocess.run(["git", "-C", str(pkg_init.parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        tracked = False
    if not tracked:
        pytest.skip("not running from a git checkout of the project")
    sha, dirty = git_state()
    assert sha == head and len(sha) == 40
    assert isinstance(dirty, bool)


def test_checkout_dirty_ignores_the_tools_own_results(tmp_path: Path) -> None:
    """A run rewrites results/: that alone does not make the code it ran count as modified."""
    import subprocess

    from shamisa_bench.common.provenance import checkout_dirty

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    assert checkout_dirty(tmp_path) is False
    (tmp_path / "results" / "table.md").write_text("new\n")
    (tmp_path / "results" / "table.md").unlink()
    (tmp_path / "new-untracked.py").write_text("")
    assert checkout_dirty(tmp_path) is False  # results rewritten or removed, untracked files: clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert checkout_dirty(tmp_path) is True
    assert checkout_dirty(tmp_path / "missing") is None
