"""Checkpoints and the choice, per run, of running, resuming or skipping.

After each finished epoch a run writes `vNNNN.ckpt.pt` next to its store: its context's state
(runtime.context: the network's and the optimizer's state, every generator that is still drawn
from, data and measure, since the tree and init streams are used only at the start and are
re-derived from their seeds, and the objective's and the data source's own state when they have
any), the epochs done, the wall time so far and the run hash. A later `sslspec run` that finds
the newest version of a run still `running` (its process was killed: it holds no run lock) with a
readable checkpoint continues that version from the next epoch, which gives the same arrays bit
for bit as an uninterrupted run.
A checkpoint that cannot be read (truncated), belongs to another run hash or claims more epochs
than its store has done is refused, with a message, and the run starts a clean version instead;
so is a store that lacks variables this version of sslspec writes (an older sslspec wrote it),
which is left as it is.
Checkpoints are written through the store's `Files` seam (a temp name, then a rename).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch

from sslspec.spec.plan import Run
from sslspec.store.files import Files
from sslspec.store.layout import Status, checkpoint_path, run_dir, status_of, version_attrs, versions
from sslspec.store.location import Place
from sslspec.store.write import lacking


def save(
    version: Place,
    run_hash: str,
    epoch: int,
    run_state: dict[str, Any],
    wall: float,
    files: Files | None = None,
) -> None:
    """Write a run's state (RunContext.state()) after `epoch` finished epochs (a temp file, then
    an atomic rename)."""
    state = {"run_hash": run_hash, "epoch": epoch, "wall": wall, **run_state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (files or Files()).write_atomic(checkpoint_path(version), buffer.getvalue())


def load(version: Place, run_hash: str, epochs_done: int) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint of a version and '', or None and why it is refused ('' when there is none).

    Refused: a file torch cannot read (truncated, or not a checkpoint), one of another run hash,
    one that claims more epochs than the store's `epochs_done`."""
    path = checkpoint_path(version)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: never trust any of it
        return None, f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc)[:120]})"
    if not isinstance(state, dict) or not {"run_hash", "epoch", "net", "opt", "generators"} <= set(state):
        return None, f"{path}: not an sslspec checkpoint"
    if state["run_hash"] != run_hash:
        return None, f"{path}: checkpoint of another run (hash {state['run_hash']}, this run's is {run_hash})"
    if not isinstance(state["epoch"], int) or not 0 < state["epoch"] <= epochs_done:
        return None, f"{path}: checkpoint after epoch {state['epoch']}, but its store has {epochs_done} done"
    return state, ""


def remove(version: Place, files: Files | None = None) -> None:
    (files or Files()).remove(checkpoint_path(version))


@dataclass(frozen=True)
class Action:
    """What `sslspec run` does with one run: `run` a new version, `resume` `path` from `epoch`,
    or nothing because `path` is an `up to date` complete version. `note`: why a checkpoint found
    was refused (the run then starts a clean version)."""

    kind: str
    path: Place | None = None
    epoch: int = 0
    state: dict[str, Any] | None = None
    note: str = ""

    def describe(self, run: Run) -> str:
        """One line for --dry-run."""
        if self.kind == "up to date":
            return f"up to date: {run.id} ({self.path})"
        if self.kind == "resume":
            of = run.config.train.epochs
            return f"would resume: {run.id} ({self.path}, after epoch {self.epoch} of {of})"
        return f"would run: {run.id}" + (f" ({self.note}; starting a clean version)" if self.note else "")


def decide(out: Place, run: Run, force: bool) -> Action:
    """Skip a run with a complete version (unless `force`); resume its newest version when that is
    `running` with a checkpoint; otherwise run a new version. Call it holding the run's lock (or
    for a dry run), so that a `running` version is a killed one."""
    if force:
        return Action("run")
    found = [(v, version_attrs(v)) for _, v in versions(run_dir(out, run.experiment, run.id))]
    for v, at in reversed(found):
        if status_of(at, v) == Status.COMPLETE and at.get("run_hash") == run.hash:
            return Action("up to date", v)
    if found:
        v, at = found[-1]
        if status_of(at, v) == Status.RUNNING:
            state, note = load(v, run.hash, int(at.get("epochs_done", 0)))
            note = lacking(v, run.config.measure) if state is not None else note
            if state is not None and not note:
                return Action("resume", v, int(state["epoch"]), state)
            return Action("run", note=note)
    return Action("run")
