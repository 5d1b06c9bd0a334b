"""The command line answers at once: ``--version`` and ``--help`` import no command module,
hence neither torch nor pyiqa; a command imports only the modules that declare it.

Each case runs the command line in a fresh interpreter, which then writes the names in
``sys.modules`` to a file. (``python -X importtime`` would not do: it does not report
modules imported with ``importlib.import_module``, as the command modules are.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from shamisa_bench.cli import COMMANDS
from tests import REPO

HEAVY = ("torch", "pyiqa", "pandas", "scipy")
COMMAND_MODULES = {m for _, modules in COMMANDS.values() for m in modules}

CASES = {
    "version": ["--version"],
    "help": ["--help"],
    "no command": [],
    "unknown command": ["--debug", "no-such-command"],
    "a command": ["distortions", "ls", "--json"],
}


SCRIPT = """
import sys
from shamisa_bench.cli import main
out = sys.argv.pop(1)
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
with open(out, "w") as f:
    f.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, set[str]]]:
    folder = tmp_path_factory.mktemp("startup")
    procs = {
        name: subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder / f"{i}.txt"), *argv], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i, (name, argv) in enumerate(CASES.items())
    }
    out = {}
    for i, (name, proc) in enumerate(procs.items()):
        _, stderr = proc.communicate(timeout=300)
        assert (folder / f"{i}.txt").is_file(), stderr[-3000:]
        out[name] = (proc.returncode, set((folder / f"{i}.txt").read_text().split()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["version", "help", "no command", "unknown command"])
def test_version_and_help_import_no_command_module(runs: dict[str, tuple[int, set[str]]], case: str) -> None:
    code, imported = runs[case]
    assert code == (0 if case in ("version", "help") else 2)
    assert "shamisa_bench.cli" in imported  # the report is read right
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    assert not imported & COMMAND_MODULES


@pytest.mark.slow
def test_a_command_imports_only_its_own_modules(runs: dict[str, tuple[int, set[str]]]) -> None:
    code, imported = runs["a command"]
    assert code == 0
    assert imported & COMMAND_MODULES == set(COMMANDS["distortions"][1])
