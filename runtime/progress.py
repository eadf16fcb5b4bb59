"""Progress: a live bar on a terminal per run in progress (run i/n, epoch, samples/s, loss), one
line rewritten in place in Jupyter, nothing live otherwise (piped or redirected output gets no
control codes); one summary line per run always goes to stderr (in Jupyter, to the cell).
Several runs may be in progress at once (the workers of `-j N`, Ray tasks): each has its own bar,
keyed by the driver's job index, and the Jupyter line shows the one that reported last.
sslspec.terminal decides colour (NO_COLOR)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from sslspec.terminal import console


class Progress:
    """Progress for the runs of one `sslspec run`."""

    def __init__(self, n_runs: int) -> None:
        self.n_runs = n_runs
        self.console = console(file=sys.stderr)
        self.live = self.console.is_terminal
        self.line = NotebookLine() if self.console.is_jupyter else None
        self.bar: RichProgress | None = None
        self.tasks: dict[int, Any] = {}  # job index -> its bar
        self.runs: dict[int, tuple[int, str, int]] = {}  # job index -> (run number, run id, epochs)
        self.run_no = 0

    def __enter__(self) -> Progress:
        if self.live:
            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(et, ev, tb)
        if self.line is not None:
            ran = f"ran {self.run_no} of {self.n_runs} run{'s' if self.n_runs != 1 else ''}"
            end = (
                f"finished: {ran} ({self.n_runs - self.run_no} up to date)"
                if et is None
                else f"stopped: {ran}"
            )
            self.line.show(end, now=True)

    def start_run(self, run: Any, epochs: int, key: int = 0) -> None:
        """Job `key` started (or resumed) `run`, of `epochs` epochs."""
        self.run_no += 1
        self.runs[key] = (self.run_no, run.id, epochs)
        desc = f"run {self.run_no}/{self.n_runs} {run.id} epoch"
        if self.line is not None:
            self.line.show(f"{desc} 0/{epochs}", now=True)
        if self.bar is not None:
            self._drop(key)
            self.tasks[key] = self.bar.add_task(desc, total=epochs, rate="")

    def epoch(self, epoch: int, samples_per_s: float, loss: float, key: int = 0) -> None:
        """Job `key` finished `epoch`."""
        no, run_id, epochs = self.runs.get(key, (0, "?", 0))
        rate = f"{samples_per_s:,.0f} samples/s  loss {loss:.4f}"
        if self.line is not None:
            self.line.show(f"run {no}/{self.n_runs} {run_id} epoch {epoch}/{epochs}  {rate}")
        if self.bar is not None and key in self.tasks:
            self.bar.update(self.tasks[key], completed=epoch, rate=rate)

    def end_run(self, line: str, key: int | None = None) -> None:
        """Print a run's summary line; with `key`, job `key` has ended (its bar goes)."""
        if key is not None:
            self._drop(key)
            self.runs.pop(key, None)
        self.console.print(line, highlight=False, soft_wrap=True)

    def _drop(self, key: int) -> None:
        task = self.tasks.pop(key, None)
        if self.bar is not None and task is not None:
            self.bar.remove_task(task)


class NotebookLine:
    """One text output of a Jupyter cell, rewritten in place through an IPython display handle
    (rich's live display would need ipywidgets); at most 4 updates a second."""

    def __init__(self) -> None:
        from IPython.display import display

        self.handle: Any = display({"text/plain": ""}, raw=True, display_id=True)
        self.shown = 0.0

    def show(self, text: str, now: bool = False) -> None:
        if now or time.monotonic() - self.shown >= 0.25:
            self.handle.update({"text/plain": text}, raw=True)
            self.shown = time.monotonic()
