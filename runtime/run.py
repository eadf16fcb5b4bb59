"""The interpreter: execute every run of a Plan and write one store per run."""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import torch

from runtime import checkpoint
from runtime.checkpoint import Action, decide
from runtime.device import device_name, resolve_device, set_determinism
from runtime.layout import Layout
from runtime.losses import check_supported
from runtime.network import build_network
from runtime.optim import build_optimizer
from runtime.progress import Progress
from runtime.record import Recorder, measure_epochs
from runtime.sampler import Edges, draw_edges
from runtime.train import Trainer
from sslspec import faults
from sslspec.spec.plan import Plan, Run
from sslspec.store import location
from sslspec.store.files import Files
from sslspec.store.layout import INDEX, Status, run_dir
from sslspec.store.location import Location, Place
from sslspec.store.write import RunLock, claim_version, host

DTYPE = torch.float32


def execute(
    plan: Plan,
    out: str | Place,
    device: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    files: Files | None = None,
) -> int:
    """Run every run of `plan` that has no complete version under `out` (all of them with `force`),
    resuming killed ones from their checkpoints; return 0 when all completed, 1 when any failed.
    With `dry_run`, print what each run would do and write nothing. `out` may be an fsspec URL
    (see sslspec.store.write: no run lock there, and no index). Every write goes through `files`
    (sslspec.store.files; tests pass one that injects faults)."""
    return execute_all([(plan, out)], device, force, dry_run, files)


# One run to do: its plan (for provenance), the run, and the results root it goes to.
Job = tuple[Plan, Run, Place]


def execute_all(
    plans: Sequence[tuple[Plan, str | Place]],
    device: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    files: Files | None = None,
) -> int:
    """`execute` over the runs of several plans, each with its results root, in one queue: a run
    another process holds is put off until the rest of all the plans is done, so processes started
    on the same specs share the work between them. A run two plans share (same id and root) is done
    once; the second finds it up to date."""
    jobs = [(plan, run, location.of(out)) for plan, out in plans for run in plan.runs]
    for _, run, _ in jobs:  # reject what this runtime cannot run before starting anything
        check_supported(run.config)
    devices = [resolve_device(device or run.config.device) for _, run, _ in jobs]
    if dry_run:
        for _, run, out in jobs:
            lock = RunLock(run_dir(out, run.experiment, run.id))
            busy = lock.held_elsewhere()
            print(f"running elsewhere: {run.id}" if busy else decide(out, run, force).describe(run))
        return 0
    set_determinism()
    failed = 0
    done: set[tuple[str, str, str]] = set()  # with --force a shared run gets one new version
    with Progress(len(jobs)) as progress:
        for i, lock in _claimed(jobs):
            plan, run, out = jobs[i]
            key = (str(out), run.experiment, run.id)
            try:
                action = decide(out, run, force and key not in done)
                if action.kind == "up to date":
                    progress.end_run(f"up to date: {run.id} ({action.path})")
                    continue
                if action.note:
                    progress.end_run(f"{run.id}: {action.note}; starting a clean version")
                ok = execute_run(plan, run, out, devices[i], progress, action, files)
                failed += not ok
                done.add(key)
            finally:
                lock.release()
    return 1 if failed else 0


def _claimed(jobs: Sequence[Job]) -> Iterator[tuple[int, RunLock]]:
    """Each job's index with its run's lock held. A run another process holds is put off and tried
    again after the others; when every run left is held elsewhere, wait for the first of them."""

    def lock(i: int) -> RunLock:
        _, run, out = jobs[i]
        return RunLock(run_dir(out, run.experiment, run.id))

    pending = list(range(len(jobs)))
    while pending:
        later = []
        for i in pending:
            held = lock(i)
            if held.acquire(wait=False):
                yield i, held
            else:
                later.append(i)
        if later and len(later) == len(pending):
            held = lock(later[0])
            held.acquire(wait=True)
            yield later.pop(0), held
        pending = later


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def build_run(run: Run, device: torch.device) -> tuple[Layout, Edges, Trainer, torch.Generator]:
    """The run's tree, edges, freshly initialized Trainer and measurement generator, from its seeds."""
    cfg, seeds = run.config, run.seeds
    layout = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, layout, _generator(seeds.tree, torch.device("cpu")))
    net = build_network(cfg, layout, _generator(seeds.init, torch.device("cpu")), DTYPE, torch.device("cpu"))
    net = net.to(device)
    trainer = Trainer(
        cfg,
        layout.to(device),
        edges.to(device),
        net,
        build_optimizer(cfg.optimizer, net.parameters()),
        _generator(seeds.data, device),
        device,
        DTYPE,
    )
    return layout, edges, trainer, _generator(seeds.measure, device)


def execute_run(
    plan: Plan,
    run: Run,
    out: Place,
    device: torch.device,
    progress: Progress,
    action: Action | None = None,
    files: Files | None = None,
) -> bool:
    """Train and measure one run, writing its store as it goes (a new version, or the version
    `action` resumes); False if it failed."""
    files = files or Files()
    cfg = run.config
    started = time.perf_counter()
    layout, edges, trainer, measure_gen = build_run(run, device)
    net, dev_layout, dev_edges = trainer.net, trainer.layout, trainer.edges
    gens = {"data": trainer.gen, "measure": measure_gen}
    path: Place | None = None
    rec: Recorder | None = None
    try:  # a failure anywhere, a write error included, fails this run only; the sweep goes on
        if action is not None and action.kind == "resume" and action.path is not None and action.state:
            path, first = action.path, action.epoch
            checkpoint.restore(action.state, net, trainer.opt, gens)
            started -= float(action.state["wall"])  # wall time counts every process's share
            rec = Recorder.reopen(path, run, layout, files)
            _note_resume(rec, first)
        else:
            path, first = claim_version(out, run.experiment, run.id, files), 0
            rec = Recorder(path, plan, run, layout, edges, _provenance(plan, run, device), files)
        _index(out, path, files)
        epochs = measure_epochs(cfg)
        progress.start_run(run, cfg.train.epochs)
        for epoch in range(first, cfg.train.epochs + 1):
            if epoch in epochs:
                _measure(rec, epochs.index(epoch), epoch, net, dev_layout, dev_edges, measure_gen, device)
            if epoch == cfg.train.epochs:
                break
            t0 = time.perf_counter()
            losses = trainer.epoch()
            mean_loss = float(losses.mean())  # one device sync per epoch
            rec.losses(epoch, losses)
            faults.moment("mid-epoch")
            if not torch.isfinite(losses).all():
                bad = int((~torch.isfinite(losses)).nonzero()[0])
                raise FloatingPointError(
                    f"training loss became {float(losses[bad])} at epoch {epoch + 1}, step {bad + 1}"
                )
            rec.epoch_done(epoch + 1)
            wall = time.perf_counter() - started
            checkpoint.save(path, run.hash, epoch + 1, net, trainer.opt, gens, wall, files)
            progress.epoch(epoch + 1, cfg.train.samples / (time.perf_counter() - t0), mean_loss)
        wall = time.perf_counter() - started
        rec.finish(Status.COMPLETE, wall)
    except Exception as exc:
        _failed(run, out, path, rec, exc, time.perf_counter() - started, progress, files)
        return False
    _finish_quietly(lambda: checkpoint.remove(path, files))  # a leftover one is never resumed
    _index(out, path, files)
    progress.end_run(rec.summary(wall))
    return True


def _failed(
    run: Run,
    out: Place,
    path: Place | None,
    rec: Recorder | None,
    exc: Exception,
    wall: float,
    progress: Progress,
    files: Files,
) -> None:
    """Record a run's failure in its store (status `failed`, the error named) and say so. When even
    that cannot be written (the disk is still full), the version stays `running` with its last
    checkpoint, so that a later run resumes it (or, without one, starts a clean version)."""
    error = f"{type(exc).__name__}: {exc}"
    unmarked = ""
    if rec is not None and path is not None:
        unmarked = _finish_quietly(lambda: rec.finish(Status.FAILED, wall, error=error))
        if not unmarked:
            _finish_quietly(lambda: checkpoint.remove(path, files))
        _index(out, path, files)
    where = path if path is not None else run_dir(out, run.experiment, run.id)
    tail = f"; could not mark it failed ({unmarked}), it stays running" if unmarked else ""
    progress.end_run(f"run {run.index + 1} {run.id} FAILED: {exc} ({where}){tail}")
    if not isinstance(exc, FloatingPointError | OSError):  # a bug: its traceback helps
        traceback.print_exception(exc, file=sys.stderr)


def _finish_quietly(step: Callable[[], None]) -> str:
    """Run a clean-up step of a run; '' when it worked, else its error (never raised)."""
    try:
        step()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def _index(out: Place, path: Place, files: Files) -> None:
    """Record the version's state in OUT/index.jsonl (what `sslspec ls` reads); never fails a run,
    since the index can always be rebuilt from the stores (`sslspec ls --rebuild`). A URL root
    has no index (`sslspec ls` scans its stores)."""
    from sslspec.store import index

    if isinstance(out, Location):
        return
    try:
        index.record(out, index.entry(out, path), files)
    except Exception as exc:  # the store is the truth; the index is a cache
        print(
            f"sslspec: could not update {out / INDEX} ({exc}); `sslspec ls --rebuild` fixes it",
            file=sys.stderr,
        )


def _note_resume(rec: Recorder, epoch: int) -> None:
    """Record in the store's attrs that this process continued it after `epoch` epochs."""
    at = rec.store.group.attrs
    now = datetime.now(UTC).isoformat(timespec="seconds")
    before = at.get("resumed")
    entry = {"time": now, "epoch": epoch, "host": host()}
    rec.store.update_attrs(
        resumed=[*(before if isinstance(before, list) else []), entry],
        history=f"{at.get('history', '')}\n{now} {' '.join(_argv())} (resumed after epoch {epoch})",
    )


def _measure(
    rec: Recorder,
    row: int,
    epoch: int,
    net: Any,
    layout: Layout,
    edges: Any,
    gen: torch.Generator,
    device: torch.device,
) -> None:
    """A measurement pass; numerical breakdowns (overflow, a failed eigendecomposition) become
    FloatingPointError naming the epoch, so the run is marked failed with a readable reason."""
    try:
        rec.measure(row, epoch, net, layout, edges, gen, device, DTYPE)
    except FloatingPointError as exc:
        raise FloatingPointError(f"measurement after {epoch} epoch(s): {exc}") from None
    except torch.linalg.LinAlgError as exc:
        raise FloatingPointError(f"measurement after {epoch} epoch(s): {exc}") from None


def _provenance(plan: Plan, run: Run, device: torch.device) -> dict[str, Any]:
    import numpy
    import xarray
    import zarr

    import sslspec

    spec_path = Path(plan.spec)
    return {
        "title": f"sslspec run {run.experiment}/{run.id}",
        "source": f"sslspec {sslspec.__version__}",
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} {' '.join(_argv())}",
        "references": "Tian, Yu, Chen, Ganguli, Understanding Self-supervised Learning with Dual Deep "
        "Networks, arXiv:2010.00578",
        "spec_path": str(spec_path),
        "spec_text": _sources(plan)[0],
        "spec_includes": _sources(plan)[1],
        "versions": {
            "sslspec": sslspec.__version__,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": numpy.__version__,
            "xarray": xarray.__version__,
            "zarr": zarr.__version__,
        },
        "device": device_name(device),
        "host": host(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        **_git(spec_path.resolve().parent),
    }


def _git(directory: Path) -> dict[str, Any]:
    """`git_commit` and `git_dirty` of the work tree holding `directory`; {} outside one (or
    without git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def _argv() -> list[str]:
    """The command line as run (the CLI's; a library call records its own entry)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return [name if name else "sslspec", *sys.argv[1:]]


def _sources(plan: Plan) -> tuple[str, dict[str, str]]:
    """The spec's text and its includes' texts (path -> text): those the plan was lowered from,
    else (a plan built without them) read again from the files."""
    if not plan.sources:
        return _spec_texts(plan.spec)
    texts = dict(plan.sources)
    return texts.get(plan.spec, ""), {path: text for path, text in texts.items() if path != plan.spec}


@cache
def _spec_texts(spec: str) -> tuple[str, dict[str, str]]:
    """The spec's text and the text of every file it includes (path -> text), for provenance;
    read once per process, not once per run of a sweep."""
    from sslspec.lang.resolve import read_program

    try:
        texts = read_program(spec).texts
    except Exception:  # the plan was made from it a moment ago; provenance must not fail a run
        return (Path(spec).read_text() if Path(spec).exists() else ""), {}
    return texts.get(spec, ""), {path: text for path, text in texts.items() if path != spec}
