"""One job: run one run of a Plan to its end and return what happened.

`run_job(job, emit)` decides (skip an up-to-date run, resume a killed one from its checkpoint,
or start a new version), builds the run's context, trains and measures epoch by epoch, writes
the run's own store and checkpoint, and returns an `Outcome`. It reports progress through
`emit` as events and writes nothing shared: the driver (runtime.run) owns the index and the
progress display and acts on the events and outcomes, wherever the job ran. A run that fails
(a NaN loss, a failed eigendecomposition) is recorded as failed in its store and comes back as a
failed Outcome, with the traceback as text when the failure was not numerical.

Everything a job needs travels in it: the run, its results root, the device name, and the
provenance the driver took from the Plan (the spec's and its includes' texts, the git state of
the spec's folder, the command), so a worker on another machine never rereads the spec files.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import numpy
import torch
import zarr

import sslspec
from runtime import checkpoint, measurements
from runtime.checkpoint import decide
from runtime.context import RunContext
from runtime.device import device_name
from runtime.record import Recorder, measure_epochs
from runtime.replicas import unbatchable
from runtime.train import Trainer
from sslspec import faults
from sslspec.spec.plan import Run
from sslspec.store.files import Files
from sslspec.store.layout import Status, run_dir
from sslspec.store.location import Place
from sslspec.store.write import claim_version, host

LinAlgError: type[Exception] = torch.linalg.LinAlgError  # type: ignore[attr-defined]  # not re-exported


@dataclass(frozen=True)
class Job:
    """One run to execute: `origin` is the provenance its plan gives every run (see the module
    docstring); `force` runs a new version even when a complete one exists; every write goes
    through `files` (sslspec.store.files; tests pass one that injects faults)."""

    run: Run
    out: Place
    device: str  # a resolved device name: cpu, cuda:0, ...
    spec: str  # the plan's spec path
    origin: dict[str, Any] = field(repr=False)
    force: bool = False
    files: Files = field(default_factory=Files, repr=False)


@dataclass(frozen=True)
class Started:
    """The run starts (or resumes after `first` epochs) writing the version at `path`; `note`
    says why a checkpoint found was refused (the run then started a clean version); `group`, for
    a replica of a batched group (runtime.group), its `group` id and `size`."""

    run: Run
    path: Place
    epochs: int
    first: int
    note: str = ""
    group: dict[str, Any] | None = None


@dataclass(frozen=True)
class EpochDone:
    """An epoch finished: its number (1-based), the training rate and the mean loss."""

    epoch: int
    samples_per_s: float
    loss: float


@dataclass(frozen=True)
class Outcome:
    """How a job ended: `status` is complete, failed or up to date; `line` is the one-line report;
    `trace` the traceback of a failure that is a bug (not numerical, not an OSError)."""

    status: str
    path: Place | None
    line: str
    error: str | None = None
    trace: str | None = None


Event = Started | EpochDone
Emit = Callable[[Event], None]


def run_job(job: Job, emit: Emit) -> Outcome:
    """Run `job` (see the module docstring); the caller holds whatever claim its executor uses."""
    run, out, files = job.run, job.out, job.files
    action = decide(out, run, job.force)
    if action.kind == "up to date":
        return Outcome("up to date", action.path, f"up to date: {run.id} ({action.path})")
    started = time.perf_counter()
    ctx = RunContext.build(run, torch.device(job.device))
    path: Place | None = None
    rec: Recorder | None = None
    try:  # a failure anywhere, a write error included, fails this run only; the sweep goes on
        if action.kind == "resume" and action.path is not None and action.state:
            path, first = action.path, action.epoch
            ctx.restore(action.state)
            started -= float(action.state["wall"])  # wall time counts every process's share
            rec = Recorder.reopen(path, ctx, files)
            _note_resume(rec, first, job.origin.get("command", ""))
        else:
            path, first = claim_version(out, run.experiment, run.id, files), 0
            rec = Recorder(path, job.spec, ctx, provenance(job, ctx.device), files)
        emit(Started(run, path, run.config.train.epochs, first, action.note))
        _train(ctx, rec, path, first, started, emit, files)
        wall = time.perf_counter() - started
        rec.finish(Status.COMPLETE, wall)
    except Exception as exc:
        return _failed(job, path, rec, exc, time.perf_counter() - started)
    _quietly(lambda: checkpoint.remove(path, files))  # a leftover one is never resumed
    return Outcome(Status.COMPLETE, path, rec.summary(wall))


def _failed(job: Job, path: Place | None, rec: Recorder | None, exc: Exception, wall: float) -> Outcome:
    """Record a run's failure in its store (status `failed`, the error named). When even that
    cannot be written (the disk is still full), the version stays `running` with its last
    checkpoint, so that a later run resumes it (or, without one, starts a clean version)."""
    run, error = job.run, f"{type(exc).__name__}: {exc}"
    unmarked = ""
    if rec is not None and path is not None:
        unmarked = _quietly(lambda: rec.finish(Status.FAILED, wall, error=error))
        if not unmarked:
            _quietly(lambda: checkpoint.remove(path, job.files))
    where = path if path is not None else run_dir(job.out, run.experiment, run.id)
    tail = f"; could not mark it failed ({unmarked}), it stays running" if unmarked else ""
    line = f"run {run.index + 1} {run.id} FAILED: {exc} ({where}){tail}"
    bug = not isinstance(exc, FloatingPointError | OSError)  # a bug: its traceback helps
    trace = "".join(traceback.format_exception(exc)) if bug else None
    stored = path if rec is not None else None  # a store with attrs to index
    return Outcome(Status.FAILED, stored, line, error=error, trace=trace)


def _quietly(step: Callable[[], None]) -> str:
    """Run a clean-up step of a run; '' when it worked, else its error (never raised)."""
    try:
        step()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def _train(
    ctx: RunContext, rec: Recorder, path: Place, first: int, started: float, emit: Emit, files: Files
) -> None:
    """Epochs `first`.. of training, measuring at the measured epochs and checkpointing after each."""
    cfg, run = ctx.cfg, ctx.run
    trainer = Trainer(ctx)
    epochs = measure_epochs(cfg)
    for epoch in range(first, cfg.train.epochs + 1):
        if epoch in epochs:
            _measure(ctx, rec, epochs.index(epoch), epoch)
        if epoch == cfg.train.epochs:
            break
        t0 = time.perf_counter()
        losses = trainer.epoch()
        mean_loss = float(losses.mean())  # one device sync per epoch
        rec.losses(epoch, losses)
        if epoch == first:  # the steps' mode is known after the first epoch of this process
            rec.store.update_attrs(training=trainer.mode())
        faults.moment("mid-epoch")
        if not torch.isfinite(losses).all():
            bad = int((~torch.isfinite(losses)).nonzero()[0])
            raise FloatingPointError(
                f"training loss became {float(losses[bad])} at epoch {epoch + 1}, step {bad + 1}"
            )
        rec.epoch_done(epoch + 1)
        wall = time.perf_counter() - started
        checkpoint.save(path, run.hash, epoch + 1, ctx.state(), wall, files)
        emit(EpochDone(epoch + 1, cfg.train.samples / (time.perf_counter() - t0), mean_loss))


def _measure(ctx: RunContext, rec: Recorder, row: int, epoch: int) -> None:
    """Measure and write row `row`; numerical breakdowns (overflow, a failed eigendecomposition)
    become FloatingPointError naming the epoch, so the run is marked failed with a readable reason."""
    try:
        rec.write_epoch(row, measurements.measure(ctx, rec.nodes, epoch), ctx.net)
    except (FloatingPointError, LinAlgError) as exc:
        raise FloatingPointError(f"measurement after {epoch} epoch(s): {exc}") from None


def _note_resume(rec: Recorder, epoch: int, command: str) -> None:
    """Record in the store's attrs that this process continued it after `epoch` epochs."""
    at = rec.store.group.attrs
    now = datetime.now(UTC).isoformat(timespec="seconds")
    before = at.get("resumed")
    entry = {"time": now, "epoch": epoch, "host": host()}
    rec.store.update_attrs(
        resumed=[*(before if isinstance(before, list) else []), entry],
        history=f"{at.get('history', '')}\n{now} {command} (resumed after epoch {epoch})",
    )


def provenance(job: Job, device: torch.device) -> dict[str, Any]:
    """The store's provenance attrs: the plan's (job.origin) and this machine's."""
    origin = dict(job.origin)
    command = origin.pop("command", "")
    why = unbatchable(job.run.config)  # a run that can batch says so by its replica_group, or not
    return {
        "title": f"sslspec run {job.run.experiment}/{job.run.id}",
        "source": f"sslspec {sslspec.__version__}",
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} {command}",
        "references": "Tian, Yu, Chen, Ganguli, Understanding Self-supervised Learning with Dual Deep "
        "Networks, arXiv:2010.00578",
        "spec_path": origin.pop("spec_path"),
        "spec_text": origin.pop("spec_text"),
        "spec_includes": origin.pop("spec_includes"),
        "versions": {
            "sslspec": sslspec.__version__,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": numpy.__version__,
            "xarray": version("xarray"),  # what xarray.__version__ reads, without importing it (~0.3 s)
            "zarr": zarr.__version__,
        },
        "device": device_name(device),
        "host": host(),
        **({"replica_batching": f"unbatched: {why}"} if why else {}),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        **origin,  # git_commit, git_dirty when the spec lives in a git work tree
    }
