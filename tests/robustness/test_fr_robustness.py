"""Full-reference metrics in a robustness run: each image against its source; invariance images
are recorded as not applicable (counted), never scored or dropped."""

from __future__ import annotations

import json

import pytest

from shamisa_bench.cli import main
from shamisa_bench.robustness.pairs import NOT_APPLICABLE
from tests.helpers import write_text
from tests.robustness.test_robustness import _args, env  # noqa: F401 - the fixture

pytest.importorskip("pyiqa")


def test_psnr_scores_every_image_against_its_source(env):  # noqa: F811 - the imported fixture
    write_text(env["registry"] / "metrics/psnr.yaml",
               "name: psnr\nversion: 1\nkind: pyiqa-score\npyiqa_name: psnr\nparams:\n  reference: true\n")
    suite = (env["registry"] / "suites/tinyrob.yaml").read_text()
    write_text(env["registry"] / "suites/tinyrob.yaml", suite.replace("metrics: [dummy-sharp", "metrics: [psnr, dummy-sharp"))
    assert main(["robustness", *_args(env), "--images", str(env["images"]), "--metrics", "psnr"]) == 0
    rec = json.loads((env["results"] / "robustness" / "tinyrob" / "psnr.json").read_text())
    assert rec["status"] == "ok"
    assert rec["raw"]["pristine"] == [80.0, 80.0]  # the source against itself: pyiqa's PSNR ceiling
    for dtype in ("gaussian_blur", "white_noise"):
        assert rec["measurements"]["types"][dtype]["srcc"] == -1.0, dtype  # PSNR falls with every severity
    assert rec["measurements"]["types"]["jpeg"]["srcc"] < 0
    skipped = [f for f in rec["failures"] if f["reason"] == NOT_APPLICABLE]
    assert rec["n_failures"] == len(skipped) == 6  # 3 invariance transforms x 2 sources
    assert all("/inv:" in f["name"] for f in skipped)
