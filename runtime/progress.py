"""Progress: a live bar on a terminal per run in progress (run i/n, epoch, samples/s, loss), one
line rewritten in place in Jupyter, nothing live otherwise (piped or redirected output gets no
control codes); one summary line per run always goes to stderr (in Jupyter, to the cell).
Several runs may be in progress at once (the workers of `-j N`, Ray tasks): each has its own bar,
keyed by the driver's job index, and the Jupyter line shows the one that reported last. The runs
of a replica-batched group (runtime.group) share one bar, "group ID of R runs", since they
advance in lockstep.
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
        self.tasks: dict[int | str, Any] = {}  # job index (or a group's id) -> its bar
        self.runs: dict[int, tuple[int, str, int]] = {}  # job index -> (run number, run id, epochs)
        self.groups: dict[int, str] = {}  # job index -> its group's id (a batched replica)
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

    def start_run(self, run: Any, epochs: int, key: int = 0, group: dict[str, Any] | None = None) -> None:
        """Job `key` started (or resumed) `run`, of `epochs` epochs; `group`: the replica-batched
        group it trains in ({"group": id, "size": R}), whose runs share one bar."""
        self.run_no += 1
        self.runs[key] = (self.run_no, run.id, epochs)
        desc = f"run {self.run_no}/{self.n_runs} {run.id} epoch"
        if group is not None:
            gid = str(group["group"])
            self.groups[key] = gid
            desc = f"group {gid} of {group['size']} runs (run {self.run_no}/{self.n_runs} {run.id}..) epoch"
            if gid in self.tasks:
                return
        if self.line is not None:
            self.line.show(f"{desc} 0/{epochs}", now=True)
        if self.bar is not None:
            self._drop(key)
            self.tasks[self._bar_key(key)] = self.bar.add_task(desc, total=epochs, rate="")

    def _bar_key(self, key: int) -> int | str:
        return self.groups.get(key, key)

    def epoch(self, epoch: int, samples_per_s: float, loss: float, key: int = 0) -> None:
        """Job `key` finished `epoch` (for a group's run: the group's bar shows its rate, and the
        loss of the run that reported last)."""
        no, run_id, epochs = self.runs.get(key, (0, "?", 0))
        rate = f"{samples_per_s:,.0f} samples/s  loss {loss:.4f}"
        if self.line is not None:
            where = f"group {self.groups[key]}" if key in self.groups else f"run {no}/{self.n_runs} {run_id}"
            self.line.show(f"{where} epoch {epoch}/{epochs}  {rate}")
        task = self.tasks.get(self._bar_key(key))
        if self.bar is not None and task is not None:
            self.bar.update(task, completed=epoch, rate=rate)

    def end_run(self, line: str, key: int | None = None) -> None:
        """Print a run's summary line; with `key`, job `key` has ended (its bar goes, a group's
        with its last run)."""
        if key is not None:
            gid = self.groups.pop(key, None)
            if gid is None or gid not in self.groups.values():
                self._drop(key if gid is None else gid)
            self.runs.pop(key, None)
        self.console.print(line, highlight=False, soft_wrap=True)

    def _drop(self, key: int | str) -> None:
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
