"""``perf run`` prints only JSON on stdout, tries an unavailable pyiqa metric once, and takes --pyiqa-home."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from tests.harness.test_run import make_env


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    """test_run's registry with two tiny csv datasets (tiny, tinyd), dummy metrics and suites."""
    return make_env(tmp_path)


@pytest.mark.slow  # three timed runs of a suite
def test_perf_run_stdout_is_json_and_a_failed_download_is_tried_once(env, capsys, monkeypatch, tmp_path):
    pyiqa = pytest.importorskip("pyiqa")
    calls = []

    def offline(name, *args, **kwargs):  # what pyiqa does offline: print, then fail
        calls.append(name)
        print(f'Downloading: "https://example.invalid/{name}.mat" to /nowhere/{name}.mat\n')
        raise ConnectionError("no network")

    monkeypatch.setattr(pyiqa, "create_metric", offline)
    import pyiqa.utils.download_util  # its cache folder is restored after the test

    from shamisa_bench.harness.adapters import pyiqa_home

    monkeypatch.setattr(pyiqa_home, "_applied", pyiqa_home._applied)
    for name, module in list(sys.modules.items()):  # --pyiqa-home sets them for the process
        if (name == "pyiqa" or name.startswith("pyiqa.")) and hasattr(module, "DEFAULT_CACHE_DIR"):
            monkeypatch.setattr(module, "DEFAULT_CACHE_DIR", module.DEFAULT_CACHE_DIR)
    (env["registry"] / "metrics" / "offline-niqe.yaml").write_text(
        "name: offline-niqe\nversion: 1\nkind: pyiqa-score\npyiqa_name: offline_niqe_test\nlower_better: true\n")
    (env["registry"] / "suites" / "tinyp.yaml").write_text(
        "name: tinyp\nversion: 1\ndatasets: [tiny]\nmetrics: [dummy-score, offline-niqe]\nprotocol: intra\n"
        "columns: [srcc]\nhigher_is_better: true\n")
    home = tmp_path / "pyiqa-home"
    home.mkdir()
    assert main(["perf", "run", "--suite", "tinyp", "--registry", str(env["registry"]), "--data-root",
                 str(env["data"]), "--cache-dir", str(env["cache"]), "--device", "cpu",
                 "--pyiqa-home", str(home)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON document
    assert result["statuses"] == {"ok": 1, "unavailable": 1}
    assert "Downloading:" in captured.err and "Downloading:" not in captured.out
    assert calls == ["offline_niqe_test"]  # cold, warm and resume runs: one attempt in the process
