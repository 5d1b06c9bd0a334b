"""A pretraining run's log, read back, and its curves (the work of ``pretrain-report``).

For each run folder, ``shamisa-bench pretrain-report`` (:mod:`shamisa_bench.train.cli`)
copies ``config.json`` and ``log.jsonl`` to ``OUT/<name>/`` and draws
``OUT/<name>/curves.png`` (:func:`plot_curves`): the validation SRCC (when the run measured
it) and the loss terms against the step. ``--compare NAME`` also draws ``OUT/NAME.png``, the
validation curves of all the given runs on one plot. Nothing is recomputed: every figure
comes from the run's own log. ``--index`` writes ``OUT/index.md`` and ``OUT/index.png``
(:func:`write_index`): every run folder under OUT, with the options it was started with and
its validation curve, one table row and one small panel each.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shamisa_bench.common.atomic import atomic_write_bytes

__all__ = [
    "RunLog",
    "plot_compare",
    "plot_curves",
    "plot_index",
    "plot_line_search",
    "read_line_search",
    "read_run_log",
    "recipe_options",
    "write_index",
]

#: Loss terms drawn, with their coefficient in the total (``ShamisaLoss``'s defaults).
#: Options of the ``pretrain`` command that say where data and outputs live, or how it reports,
#: not what it trains; :func:`recipe_options` leaves them out (with their values).
_IO_OPTIONS = {"--images": None, "--out": 1, "--data-root": 1, "--registry": 1, "--export-every": 1,
               "--checkpoint-every": 1, "--val-every": 1, "--workers": 1, "--device": 1, "--no-progress": 0,
               "--no-malloc-tuning": 0, "--resume": 0}

_TERMS = (("var", "L_var"), ("cov", "L_cov"), ("graph_pull", "graph pull"), ("r_graph", "R_graph"), ("ot", "L_ot"))


@dataclass
class RunLog:
    """What a run's ``log.jsonl`` holds.

    Attributes:
        name: the run folder's name.
        headers: the header line of each start or resume (command, config, provenance).
        steps: one record per optimiser step (loss terms, lr, timings).
        validations: one record per validation (``step``, ``val_srcc`` ...).
        end: the closing record (summary, export sha256s), if the run finished (and was
            not resumed afterwards to run longer).
        stops: the ``stopped`` records of each clean stop (SIGINT or SIGTERM): step,
            signal, seconds.
    """

    name: str
    headers: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    stops: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        """How the log ends: finished, stopped after a step (and not resumed), or cut short."""
        if self.end is not None:
            summary = self.end.get("summary") or {}
            if summary.get("early_stopped"):
                return f"ended by --early-stop after step {summary.get('steps')} of {summary.get('planned_steps')}"
            return "finished"
        last = self.steps[-1]["step"] + 1 if self.steps else 0
        if self.stops and self.stops[-1].get("after_step") == last:
            stop = self.stops[-1]
            return f"stopped by {stop.get('signal')} after step {last} of {stop.get('total_steps')}"
        return f"no closing record after step {last} (killed, or still running)"


def read_run_log(run: Path) -> RunLog:
    """Parse ``run/log.jsonl``.

    Raises:
        ValueError: when the log is missing, or a line is not a JSON object (naming the
            file and the line).
    """
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: is {run} a pretraining run folder?")
    log = RunLog(name=Path(run).resolve().name)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        if "command" in record:
            log.headers.append(record)
            log.end = None  # a resume reopens the run, even one that had finished a shorter plan
        elif "summary" in record:
            log.end = record
        elif isinstance(record.get("stopped"), dict):
            log.stops.append(record["stopped"])
        elif "val_srcc" in record:
            log.validations.append(record)
        elif "loss" in record:
            log.steps.append(record)
    return log


def _pyplot() -> Any:
    # lazy: matplotlib takes seconds to import and only the report draws
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    return plt


def _figure(rows: int) -> tuple[Any, Any]:
    fig, axes = _pyplot().subplots(rows, 1, figsize=(8, 2.3 * rows + 0.6), sharex=True, squeeze=False)
    return fig, axes[:, 0]


def _save(fig: Any, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt  # lazy: see _pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(log: RunLog, path: Path) -> None:
    """Validation SRCC and loss terms against the step, one panel each, as a PNG."""
    terms = _TERMS
    if any("encoder_drift" in r for r in log.steps):  # logged since the drift was measured
        terms = (*_TERMS, ("encoder_drift", "encoder drift"))
    panels = (1 if log.validations else 0) + 1 + len(terms)
    fig, axes = _figure(panels)
    i = 0
    if log.validations:
        ax = axes[0]
        xs = [v["step"] for v in log.validations]
        ys = [v["val_srcc"] for v in log.validations]
        ax.plot(xs, ys, marker="o", color="tab:orange")
        ax.axhline(ys[0] if xs[0] == 0 else float("nan"), color="grey", lw=0.8, ls="--", label="step 0 (initialisation)")
        best = max(range(len(ys)), key=lambda k: ys[k] if xs[k] > 0 else float("-inf"))
        ax.annotate(f"best {ys[best]:.3f} @ {xs[best]}", (xs[best], ys[best]), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
        ax.set_ylabel("val SRCC")
        ax.margins(y=0.2)  # room above the best point for its label
        ax.legend(fontsize=8, loc="lower left")
        i = 1
    steps = [r["step"] for r in log.steps]
    axes[i].plot(steps, [r["loss"] for r in log.steps], lw=0.7, color="black")
    axes[i].set_ylabel("total loss")
    for ax, (key, label) in zip(axes[i + 1 :], terms, strict=True):
        ax.plot(steps, [r.get(key, float("nan")) for r in log.steps], lw=0.7)
        ax.set_ylabel(label)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.suptitle(f"pretraining run {log.name} ({log.state})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # keep the title clear of the top panel
    _save(fig, path)


def plot_compare(logs: list[RunLog], path: Path, title: str) -> None:
    """The validation curves of several runs on one plot, as a PNG."""
    fig, axes = _figure(1)
    ax = axes[0]
    for i, log in enumerate(logs):
        if log.validations:
            # the colour cycle has 10 colours: the next 10 runs reuse them, dashed
            ax.plot([v["step"] for v in log.validations], [v["val_srcc"] for v in log.validations], marker="o",
                    ms=3, ls="-" if i % 20 < 10 else "--", label=log.name)
    _finish_single(fig, ax, path, title, xlabel="step", ylabel="val SRCC", legend_size=8)


def _finish_single(fig: Any, ax: Any, path: Path, title: str, *, xlabel: str, ylabel: str, legend_size: int) -> None:
    """Labels, grid, legend and title of a one-panel plot, then the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def read_line_search(path: Path) -> dict[str, Any]:
    """A ``pretrain-diagnose --line-search`` result read back.

    Raises:
        ValueError: not readable JSON, or not a line-search result; the message names the file.
    """
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(result, dict) or not all(k in result for k in ("run", "step", "base", "steps")):
        raise ValueError(f"{path}: not a pretrain-diagnose --line-search result (no run, step, base and steps)")
    return result


def plot_line_search(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation SRCC against the step length: the descent, each noise control and the base, per result."""
    fig, axes = _figure(1)
    fig.set_size_inches(8, 5)  # the controls spread widely
    ax = axes[0]
    for i, result in enumerate(results):
        colour = f"C{i % 10}"
        label = f"{result['run']} @ step {result['step']}"
        rels = [s["rel"] for s in result["steps"]]
        ax.plot(rels, [s["descent"] for s in result["steps"]], marker="o", color=colour,
                label=f"{label}: descent")
        for j, s in enumerate(result["steps"]):
            ax.scatter([s["rel"]] * len(s["noise"]), s["noise"], marker="x", color=colour, s=22,
                       label=f"{label}: noise controls" if j == 0 else None)
        ax.axhline(result["base"]["srcc"], color=colour, lw=0.8, ls="--")
    ax.set_xscale("log")
    _finish_single(fig, ax, path, title, xlabel="step length |dw| / |w|", ylabel="val SRCC (dashed: no step)",
                   legend_size=7)


def recipe_options(command: list[str]) -> str | None:
    """The recipe part of a logged ``pretrain`` command line: its options minus where the data
    and outputs live and how it reports (``--images``, ``--out``, ``--val-every`` ...).

    ``--images`` takes every value up to the next option; the others in ``_IO_OPTIONS`` take
    the number of values given there. None when the logged command is not a ``pretrain``
    command line (a run started from Python logs its interpreter's ``sys.argv``).
    """
    args = list(command)
    if "pretrain" not in args:
        return None
    args = args[args.index("pretrain") + 1 :]
    kept: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in _IO_OPTIONS:
            i += 1
            if "=" in arg:
                continue
            count = _IO_OPTIONS[name]
            if count is None:
                while i < len(args) and not args[i].startswith("--"):
                    i += 1
            else:
                i += count
            continue
        kept.append(arg)
        i += 1
    return " ".join(kept)


def _index_row(log: RunLog) -> dict[str, Any]:
    """One run's line of the index: its recipe and the shape of its validation curve."""
    row: dict[str, Any] = {"run": log.name, "steps": len(log.steps), "starts": len(log.headers), "state": log.state}
    options = recipe_options(log.headers[0].get("command", [])) if log.headers else None
    if options is None:
        row["options"] = "(not started by a `pretrain` command line)"
    else:
        row["options"] = f"`{options or '(preset only)'}`"
    vals = [(v["step"], v["val_srcc"]) for v in log.validations]
    if vals:
        start = next((y for x, y in vals if x == 0), None)
        later = [(x, y) for x, y in vals if x > 0]
        row.update(start=start, last=vals[-1])
        if later:
            row.update(best=max(later, key=lambda v: v[1]), lowest=min(later, key=lambda v: v[1]))
    return row


def write_index(out: Path) -> tuple[Path, Path, int]:
    """Write ``out/index.md`` and ``out/index.png`` for every run folder directly under ``out``.

    A run folder is one with a ``log.jsonl``; other folders (alignment and line-search
    results) are not runs and are passed over. Returns the two paths and the number of runs.

    Raises:
        ValueError: when ``out`` holds no run folder, or a run's log is unreadable (named).
    """
    out = Path(out)
    runs = sorted(d for d in out.iterdir() if (d / "log.jsonl").is_file()) if out.is_dir() else []
    if not runs:
        raise ValueError(f"{out} holds no pretraining run folder (a folder with a log.jsonl)")
    logs = [read_run_log(d) for d in runs]
    rows = [_index_row(log) for log in logs]

    def at(value: Any) -> str:
        return f"{value[1]:.3f} ({value[0]})" if value else "—"

    lines = [
        "# Pretraining runs",
        "",
        (
            "Generated by `shamisa-bench pretrain-report --index` from the `log.jsonl` of every run "
            "folder here; do not edit by hand. Validation SRCC is each run's own probe (the "
            "`--val-dataset` of its options: the median SRCC of ridge heads over 10 divisions of split 0's "
            "train and val parts, never its test part), "
            "as logged; `(N)` is the step. *options* is the command line the run was first started "
            "with, less where its data and outputs live and how it reports. A run resumed later has "
            "more than one start."
        ),
        "",
        "![validation SRCC of every run](index.png)",
        "",
        "| run | options | steps | starts | validation at step 0 | best after 0 | lowest after 0 | last | how the log ends |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        start = f"{row['start']:.3f}" if row.get("start") is not None else "—"
        lines.append(
            f"| [`{row['run']}`]({row['run']}/curves.png) | {row['options']} | {row['steps']} "
            f"| {row['starts']} | {start} | {at(row.get('best'))} | {at(row.get('lowest'))} | {at(row.get('last'))} "
            f"| {row['state']} |"
        )
    md = out / "index.md"
    atomic_write_bytes(md, ("\n".join(lines) + "\n").encode())
    png = out / "index.png"
    plot_index(logs, png)
    return md, png, len(logs)


#: The validation range every panel of the index shares, so that panels compare at a glance;
#: a point below it is drawn on its floor as a down-pointing triangle.
_INDEX_YLIM = (0.68, 0.77)


def plot_index(logs: list[RunLog], path: Path) -> None:
    """Every run's validation curve in its own small panel, on one shared SRCC range
    (runs without validation: an empty panel)."""
    cols = min(6, len(logs))
    rows = -(-len(logs) // cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows + 0.5), squeeze=False)
    for ax, log in zip(axes.flat, logs, strict=False):
        ax.set_title(log.name, fontsize=6.5)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
        if not log.validations:
            ax.text(0.5, 0.5, "no validation", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        low, high = _INDEX_YLIM
        xs = [v["step"] for v in log.validations]
        ys = [v["val_srcc"] for v in log.validations]
        ax.plot(xs, [max(y, low) for y in ys], marker="o", ms=2, lw=0.9, color="tab:orange")
        below = [x for x, y in zip(xs, ys, strict=True) if y < low]
        if below:
            ax.plot(below, [low] * len(below), ls="none", marker="v", ms=4, color="tab:red", clip_on=False)
        if xs[0] == 0:
            ax.axhline(ys[0], color="grey", lw=0.7, ls="--")
        ax.set_ylim(low, high)
    for ax in list(axes.flat)[len(logs) :]:
        ax.axis("off")
    fig.suptitle(f"validation SRCC against the step, every run (dashed: step 0; red triangle: below {_INDEX_YLIM[0]})",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    _save(fig, path, dpi=80)
