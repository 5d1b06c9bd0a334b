"""Rich progress bars that turn into no-ops when disabled.

* :class:`TaskProgress`: several named bars (e.g. units and images) in a ``with`` block, plus
  plain log lines printed above them (the benchmark harness and the robustness runner).
* :class:`StepProgress`: one bar of optimiser steps with the last loss and an ETA
  (pretraining).
"""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["StepProgress", "TaskProgress"]


class TaskProgress:
    """Rich progress bars for units and images, or nothing."""

    def __init__(self, enabled: bool, console: Any) -> None:
        self.enabled = enabled
        self._p: Any = None
        self.console = console

    def __enter__(self) -> TaskProgress:
        if self.enabled:
            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                               transient=False)
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def add(self, desc: str, total: int) -> Any:
        return self._p.add_task(desc, total=total) if self._p is not None else None

    def advance(self, task: Any, n: int = 1) -> None:
        if self._p is not None and task is not None:
            self._p.advance(task, n)

    def reset(self, task: Any, desc: str, total: int) -> None:
        if self._p is not None and task is not None:
            self._p.reset(task, total=total, description=desc)

    def log(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)


class StepProgress:
    """A rich progress bar with step, loss and ETA (a no-op when disabled)."""

    def __init__(self, total: int, start: int, *, enabled: bool) -> None:
        self._progress: Progress | None = None
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("steps", total=total, completed=start, loss="-")

    def update(self, completed: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, loss=f"{loss:.4f}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
