"""``report --format latex``: a booktabs table per suite, best bold, second underlined."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.harness.results import build_leaderboard, unit_path, write_unit
from shamisa_bench.harness.results.latex import latex_escape, render_latex
from tests.harness.test_results import _record


def _suite(tmp_path: Path) -> Path:
    for rec in (_record("m_1", "a", 0.7), _record("m2", "a", 0.9), _record("m3", "a", 0.9),
                _record("m_1", "b", 0.6), _record("m2", "b", 0.4), _record("m3", "b", 0.5),
                _record("off", "a", None, status="unavailable")):
        write_unit(unit_path(tmp_path, rec["unit"]), rec)
    return tmp_path


def _rows(tex: str) -> dict[str, list[str]]:
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return {cells[0]: cells[1:] for cells in (line.removesuffix(r" \\").split(" & ")
                                              for line in body.strip().splitlines())}


def test_latex_structure_marks_and_caption(tmp_path):
    tex = render_latex(build_leaderboard(_suite(tmp_path), "s"))
    # environments open and close in order; booktabs rules in order
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", tex)
    assert envs == [("begin", "table"), ("begin", "tabular"), ("end", "tabular"), ("end", "table")]
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert tex.count("{") == tex.count("}")
    ncols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    rows = _rows(tex)
    assert all(len(cells) == ncols - 1 for cells in rows.values())
    # columns: dataset b then a (the suite's order), each SRCC then PLCC
    assert r"\multicolumn{2}{c}{b} & \multicolumn{2}{c}{a}" in tex and "Metric & SRCC & PLCC & SRCC & PLCC" in tex
    # b: m_1 0.6 best, m3 0.5 second; a: m2 = m3 = 0.9 tie for best, m_1 second
    assert rows[r"m\_1"][0] == r"\textbf{0.600}" and rows["m3"][0] == r"\underline{0.500}"
    assert rows["m2"][2] == rows["m3"][2] == r"\textbf{0.900}" and rows[r"m\_1"][2] == r"\underline{0.700}"
    assert rows["off"][2] == r"\textit{unavailable}" and rows["off"][0] == "--"
    cap = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    assert "intra protocol" in cap and "over 3 random train/validation/test splits" in cap and "SRCC and PLCC" in cap
    # intervals, on request, under each median
    with_ci = render_latex(build_leaderboard(tmp_path, "s"), intervals=True)
    assert r"{\scriptsize[0.580, 0.620]}" in with_ci and "95\\% bootstrap interval" in with_ci


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 {x} $") == r"a\_b \& 50\% \#1 \{x\} \$"


def test_report_format_latex_writes_the_tex_beside_the_tables(tmp_path, capsys):
    _suite(tmp_path)
    assert main(["report", "--suite", "s", "--results", str(tmp_path)]) == 0
    assert not (tmp_path / "tables" / "s.tex").exists()  # only on request
    assert main(["report", "--suite", "s", "--results", str(tmp_path), "--format", "latex"]) == 0
    assert (tmp_path / "tables" / "s.tex").read_text() == render_latex(build_leaderboard(tmp_path, "s"))
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles_with_pdflatex(tmp_path):
    tex = render_latex(build_leaderboard(_suite(tmp_path), "s"), intervals=True)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   + tex + "\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
