"""Terminal progress: a live bar on a TTY (run i/n, epoch, samples/s, loss), quiet otherwise;
one summary line per run always goes to stderr."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Progress for the runs of one `sslspec run`."""

    def __init__(self, n_runs: int) -> None:
        self.n_runs = n_runs
        self.console = Console(file=sys.stderr)
        self.live = self.console.is_terminal
        self.bar: RichProgress | None = None
        self.task: Any = None
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

    def start_run(self, run: Any, epochs: int) -> None:
        self.run_no += 1
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            desc = f"run {self.run_no}/{self.n_runs} {run.id} epoch"
            self.task = self.bar.add_task(desc, total=epochs, rate="")

    def epoch(self, epoch: int, samples_per_s: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task, completed=epoch, rate=f"{samples_per_s:,.0f} samples/s  loss {loss:.4f}"
            )

    def end_run(self, line: str) -> None:
        self.console.print(line, highlight=False, soft_wrap=True)
