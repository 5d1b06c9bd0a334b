"""``import pyiqa`` alone knows the SHAMISA metrics, as installed (the ``.pth`` hook).

Each check runs in a fresh interpreter started outside the repository, so that what it
finds comes from the installed package and its ``_shamisa_bench_pyiqa.pth`` file, as for a
user: ``pyiqa.create_metric``, ``pyiqa.list_models()``, pyiqa's command line, and pyiqa's
own forward (``m(x, y)`` on ``torch.rand``) and gradient (``as_loss=True`` on
``torch.randn``) checks for every metric name :func:`shamisa_bench.iqa.plugin.register`
registers. The shipped weights are used (offline).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import _shamisa_bench_pyiqa
from tests import REPO

pyiqa = pytest.importorskip("pyiqa")
from shamisa_bench.iqa import plugin

PTH = "_shamisa_bench_pyiqa.pth"

_SCRIPTS = {
    # start-up alone: the hook module is loaded, nothing else of ours, no torch, no pyiqa
    "startup": """
        import sys
        ours = ('shamisa_bench', '_shamisa_bench_pyiqa', 'torch', 'pyiqa')
        print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ours)))
        """,
    # `import pyiqa` and nothing else, then pyiqa's own forward and gradient checks
    "pyiqa_only": """
        import sys
        import pyiqa
        names = sorted(m for m in pyiqa.list_models() if m.startswith('shamisa'))
        out = {'names': names, 'nr': sorted(pyiqa.list_models(metric_mode='NR')), 'checks': {}}
        import torch
        g = torch.Generator().manual_seed(0)
        for name in names:
            m = pyiqa.create_metric(name, device='cpu')
            score = m(torch.rand(2, 3, 96, 96, generator=g), torch.rand(2, 3, 96, 96, generator=g))
            loss = pyiqa.create_metric(name, as_loss=True, device='cpu')
            loss.train()
            x = torch.randn(2, 3, 96, 96, generator=g).requires_grad_()
            value = loss(x, torch.randn(2, 3, 96, 96, generator=g))
            value = value[0] if isinstance(value, tuple) else value
            value.sum().backward()
            out['checks'][name] = {'shape': list(score.shape), 'finite': bool(torch.isfinite(score).all()),
                                   'mode': m.metric_mode, 'grad_finite': bool(torch.isfinite(x.grad).all()),
                                   'grad_nonzero': bool(x.grad.abs().sum() > 0)}
        print(json.dumps(out))
        """,
    # no .pth processed (python -S; site-packages appended by hand): pyiqa alone does not know
    # the metrics; `import shamisa_bench` registers them (run from the checkout)
    "no_pth": """
        import sys
        sys.path.append(sys.argv[1])  # site-packages, without its .pth files
        import pyiqa
        try:
            pyiqa.create_metric('shamisa', device='cpu')
        except AssertionError as err:
            print('before:', err)
        import shamisa_bench
        print('after:', pyiqa.create_metric('shamisa', device='cpu').metric_mode)
        """,
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAMISA_")}
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONPATH", None)  # what is installed, not the checkout
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each script of ``_SCRIPTS`` and ``pyiqa shamisa -t <image>``, concurrently, outside the repo."""
    cwd = tmp_path_factory.mktemp("pyiqa-alone")
    image = cwd / "photo.png"
    Image.new("RGB", (112, 96), (90, 140, 60)).save(image)
    pyiqa_cli = Path(sys.executable).with_name("pyiqa")
    commands = {
        name: [sys.executable, *(["-S"] if name == "no_pth" else []), "-c", "import json\n" + textwrap.dedent(code)]
        for name, code in _SCRIPTS.items()
    }
    commands["no_pth"].append(sysconfig.get_paths()["purelib"])
    commands["pyiqa_cli"] = [str(pyiqa_cli), "shamisa", "-t", str(image), "--device", "cpu"]
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                               cwd=REPO if name == "no_pth" else cwd)
        for name, cmd in commands.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)  # a hang guard: a busy machine is slow
        out[name] = subprocess.CompletedProcess(commands[name], proc.returncode, stdout, stderr)
    return out


def test_the_installed_package_ships_the_pth_hook() -> None:
    installed = [f for f in importlib.metadata.files("shamisa-bench") or () if str(f) == PTH]
    assert installed, f"{PTH} is not installed: reinstall the project (pip install -e .)"
    assert installed[0].read_text() == (REPO / PTH).read_text()
    assert (REPO / PTH).read_text() == "import _shamisa_bench_pyiqa; _shamisa_bench_pyiqa.install()\n"


@pytest.mark.slow
def test_startup_loads_only_the_hook(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run = runs["startup"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == ["_shamisa_bench_pyiqa"]


@pytest.mark.slow
def test_import_pyiqa_alone_knows_every_metric_and_passes_pyiqa_checks(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = runs["pyiqa_only"]
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    registered = sorted(plugin.register())
    assert out["names"] == registered and "shamisa" in registered
    for name, check in out["checks"].items():
        assert check["shape"] in ([2], [2, 1]) and check["finite"], name
        assert check["grad_finite"] and check["grad_nonzero"], name
        assert (name in out["nr"]) == (check["mode"] == "NR"), name


@pytest.mark.slow
def test_pyiqa_command_line_scores_a_file(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run = runs["pyiqa_cli"]
    assert run.returncode == 0, run.stderr[-3000:]
    found = re.search(r"\{'shamisa': \{'mean': (?:np\.float64\()?([-+0-9.eE]+)", run.stdout)
    assert found, run.stdout[-2000:]
    assert 0.0 <= float(found.group(1)) <= 1.0


@pytest.mark.slow
def test_without_the_pth_file_import_shamisa_bench_registers(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run = runs["no_pth"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ["before: Metric shamisa not implemented yet.", "after: NR"]


def test_hook_fires_once_after_the_module_body_and_restores_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hooked_pkg_for_test").mkdir()
    (tmp_path / "hooked_pkg_for_test" / "__init__.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    calls: list[int] = []
    _shamisa_bench_pyiqa.when_imported("hooked_pkg_for_test", lambda: calls.append(sys.modules["hooked_pkg_for_test"].VALUE))
    _shamisa_bench_pyiqa.when_imported("hooked_pkg_for_test", lambda: calls.append(-1))  # one hook per name
    try:
        import hooked_pkg_for_test  # type: ignore[import-not-found]

        assert calls == [41]  # ran after the module body, exactly once
        assert not any(isinstance(f, _shamisa_bench_pyiqa.PostImportHook) and f.name == "hooked_pkg_for_test"
                       for f in sys.meta_path)
        assert type(hooked_pkg_for_test.__loader__).__name__ == "SourceFileLoader"
        assert hooked_pkg_for_test.__spec__.loader is hooked_pkg_for_test.__loader__
    finally:
        sys.modules.pop("hooked_pkg_for_test", None)

    def failing() -> None:
        raise RuntimeError("boom")

    (tmp_path / "hooked_pkg_for_test2.py").write_text("X = 1\n")
    _shamisa_bench_pyiqa.when_imported("hooked_pkg_for_test2", failing)
    try:
        with pytest.warns(RuntimeWarning, match="could not register its pyiqa metrics: RuntimeError: boom.*import shamisa_bench"):
            import hooked_pkg_for_test2  # type: ignore[import-not-found]  # noqa: F401
    finally:
        sys.modules.pop("hooked_pkg_for_test2", None)
