"""``--pyiqa-home`` / ``$SHAMISA_PYIQA_HOME``: niqe and brisque offline from a parameter folder.

The scoring tests (a 160 px scikit-image photo, clean and noisy) need ``../shared/pyiqa-cache`` (pyiqa's NIQE and BRISQUE parameter files,
which pyiqa otherwise downloads) and skip without it. Each runs in a fresh interpreter so
that "pyiqa imported before" and "not imported before" are both real; ``TORCH_HOME`` points
to an empty folder, so pyiqa's default cache cannot supply the files.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.harness.adapters.pyiqa_home import resolve_pyiqa_home
from tests import REPO

PYIQA_CACHE = REPO / ".." / "shared" / "pyiqa-cache"
HAVE_CACHE = (PYIQA_CACHE / "hub" / "pyiqa" / "niqe_modelparameters.mat").is_file() and (
    PYIQA_CACHE / "hub" / "pyiqa" / "brisque_svm_weights.pth").is_file()
needs_cache = pytest.mark.skipif(
    not HAVE_CACHE, reason="../shared/pyiqa-cache (niqe/brisque parameter files) is not present")

SCRIPT = r"""
import json, sys
import numpy as np
import torch
from PIL import Image

if sys.argv[1] == "pyiqa-first":
    import pyiqa  # pyiqa computes its cache folder now, from the empty TORCH_HOME
from shamisa_bench.harness.adapters.pyiqa_home import current_pyiqa_cache_dir, use_pyiqa_home

use_pyiqa_home(sys.argv[2] if sys.argv[2] != "env" else None)
import pyiqa

from skimage import data

rng = np.random.default_rng(0)
photo = np.asarray(Image.fromarray(data.astronaut()).resize((160, 160), Image.BICUBIC)) / 255.0
clean = torch.from_numpy(photo).permute(2, 0, 1).float()[None]
noisy = (clean + torch.from_numpy(rng.normal(0, 0.2, clean.shape)).float()).clamp(0, 1)
out = {"cache": str(current_pyiqa_cache_dir())}
for name in ("niqe", "brisque"):
    metric = pyiqa.create_metric(name, device="cpu")
    out[name] = [float(v) for v in metric(torch.cat([clean, noisy])).reshape(-1)]
print(json.dumps(out))
"""


def _score(tmp_path: Path, order: str, home: str, env_home: str | None = None) -> dict:
    empty = tmp_path / "empty-torch-home"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SHAMISA_PYIQA_HOME"}
    env.update(TORCH_HOME=str(empty), OMP_NUM_THREADS="1")
    if env_home is not None:
        env["SHAMISA_PYIQA_HOME"] = env_home
    proc = subprocess.run([sys.executable, "-c", SCRIPT, order, home], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_cache
@pytest.mark.parametrize("order", ["pyiqa-first", "pyiqa-later"])
def test_niqe_and_brisque_score_two_images_offline(tmp_path: Path, order: str) -> None:
    out = _score(tmp_path, order, str(PYIQA_CACHE))
    assert Path(out["cache"]) == (PYIQA_CACHE / "hub" / "pyiqa").resolve()
    for name in ("niqe", "brisque"):
        clean, noisy = out[name]
        assert all(math.isfinite(v) and abs(v) < 1e3 for v in (clean, noisy)), (name, out[name])
        assert noisy > clean, (name, out[name])  # both are lower-is-better: noise scores worse


@pytest.mark.slow
@needs_cache
def test_environment_variable_is_used_when_no_folder_is_given(tmp_path: Path) -> None:
    out = _score(tmp_path, "pyiqa-first", "env", env_home=str(PYIQA_CACHE))
    assert Path(out["cache"]) == (PYIQA_CACHE / "hub" / "pyiqa").resolve()
    assert out["niqe"][1] > out["niqe"][0]


def test_folder_layouts_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "home" / "hub" / "pyiqa").mkdir(parents=True)
    assert resolve_pyiqa_home(tmp_path / "home") == (tmp_path / "home" / "hub" / "pyiqa").resolve()
    (tmp_path / "flat").mkdir()
    assert resolve_pyiqa_home(tmp_path / "flat") == (tmp_path / "flat").resolve()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_pyiqa_home(tmp_path / "nope")


def test_run_refuses_a_missing_pyiqa_home_before_any_work(tmp_path: Path, capsys) -> None:
    code = main(["run", "--pyiqa-home", str(tmp_path / "nope"), "--results", str(tmp_path / "r"),
                 "--no-progress", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--pyiqa-home" in err and "nope" in err
    assert not (tmp_path / "r").exists()
