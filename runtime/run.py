"""The driver: execute every run of some Plans through an executor, and own what they share.

`execute_all` turns the runs of the plans into jobs (runtime.job), checks every device before
anything runs, hands the jobs to an executor (runtime.executor; the LocalExecutor by default),
and acts on what comes back: it alone writes the results root's index and the progress display,
prints the one-line report of each run (and the traceback of a failure that was not numerical),
and sets the exit status.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from runtime.checkpoint import decide
from runtime.context import RunContext
from runtime.device import resolve_device
from runtime.executor import Executor, LocalExecutor, OnEvent, held_elsewhere
from runtime.images.source import check_data
from runtime.job import EpochDone, Event, Job, Outcome, Started
from runtime.progress import Progress
from runtime.train import Trainer
from sslspec.spec.plan import Plan, Run
from sslspec.store import index, location
from sslspec.store.files import Files
from sslspec.store.layout import INDEX, Status
from sslspec.store.lease import check_free, driver_lease
from sslspec.store.location import Location, Place


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


def execute_all(
    plans: Sequence[tuple[Plan, str | Place]],
    device: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    files: Files | None = None,
    executor: Executor | None = None,
) -> int:
    """`execute` over the runs of several plans, each with its results root, in one queue: with
    the local executor a run another process holds is put off until the rest of all the plans is
    done, so processes started on the same specs share the work between them. A run two plans
    share (same id and root) is done once; the second finds it up to date."""
    files = files or Files()
    check_data([plan for plan, _ in plans])  # a missing or broken data set: exit 2, before any run
    jobs = make_jobs(plans, device, force, files, resolve=getattr(executor, "resolves_devices", True))
    if dry_run:
        for job in jobs:
            busy = held_elsewhere(job)
            print(
                f"running elsewhere: {job.run.id}"
                if busy
                else decide(job.out, job.run, job.force).describe(job.run)
            )
        return 0
    failed = 0
    with Progress(len(jobs)) as progress:

        def on_event(i: int, event: Event) -> None:
            if isinstance(event, Started):
                if event.note:
                    progress.end_run(f"{event.run.id}: {event.note}; starting a clean version")
                _index(jobs[i].out, event.path, files)
                progress.start_run(event.run, event.epochs, i, event.group)
            elif isinstance(event, EpochDone):
                progress.epoch(event.epoch, event.samples_per_s, event.loss, i)

        executor = executor or LocalExecutor()
        roots = list(dict.fromkeys(job.out for job in jobs))
        exclusive = getattr(executor, "exclusive", False)
        if not exclusive:
            check_free(roots)  # a cluster driver's workers take no run locks
        with driver_lease(roots) if exclusive else nullcontext():
            for i, outcome in executor.run(jobs, on_event):
                failed += _report(i, jobs[i], outcome, progress, files)
    return 1 if failed else 0


def executor_for(
    kind: str, jobs: int | None, address: str | None, gpus: float | None, replicas: int | None = 1
) -> Executor:
    """The executor `sslspec run` names: `local` with `jobs` workers (None: one per core, or per
    GPU; a pool only when more than one run is to go) and replica-batched groups of at most
    `replicas` runs (None: runtime.group.auto_replicas; 1: off), or `ray` (runs one per task,
    never batched)."""
    if kind == "ray":
        from runtime.ray_executor import RayExecutor

        return RayExecutor(address, gpus)
    return Workers(jobs, replicas)


class Workers:
    """The local executor with `n` workers: this process for one, runtime.pool's LocalPool else;
    groups of at most `replicas` runs (None: chosen from the device and its memory)."""

    def __init__(self, n: int | None, replicas: int | None = 1) -> None:
        self.n, self.replicas = n, replicas

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        from runtime.group import auto_replicas
        from runtime.pool import LocalPool, workers_for

        n = workers_for(jobs, self.n)
        r = self.replicas if self.replicas is not None else auto_replicas(jobs)
        return (LocalPool(n, r) if n > 1 else LocalExecutor(r)).run(jobs, on_event)


def make_jobs(
    plans: Sequence[tuple[Plan, str | Place]],
    device: str | None,
    force: bool,
    files: Files | None = None,
    resolve: bool = True,
) -> list[Job]:
    """One job per run of the plans, each device resolved (an unusable one is a CheckError before
    anything runs; without `resolve` the name is kept as written, for workers on other machines
    to resolve). With `force` only the first job of a run shared by two plans is forced."""
    jobs, forced, files = [], set(), files or Files()
    for plan, out in plans:
        root, origin = location.of(out), plan_origin(plan)
        for run in plan.runs:
            key = (str(root), run.experiment, run.id)
            name = device or run.config.device
            if resolve:
                dev = resolve_device(name)
                name = dev.type if dev.index is None else f"{dev.type}:{dev.index}"
            jobs.append(Job(run, root, name, plan.spec, origin, force and key not in forced, files))
            forced.add(key)
    return jobs


def _report(i: int, job: Job, outcome: Outcome, progress: Progress, files: Files) -> bool:
    """Index and report the end of job `i`; True when it failed."""
    if outcome.status != "up to date" and outcome.path is not None:
        _index(job.out, outcome.path, files)
    progress.end_run(outcome.line, i)
    if outcome.trace:
        print(outcome.trace, end="", file=sys.stderr)
    return outcome.status == Status.FAILED


def build_run(run: Run, device: torch.device) -> Trainer:
    """A freshly initialized run's Trainer (its context in `.ctx`), from its seeds."""
    return Trainer(RunContext.build(run, device))


def _index(out: Place, path: Place, files: Files) -> None:
    """Record the version's state in OUT/index.jsonl (what `sslspec ls` reads); never fails a run,
    since the index can always be rebuilt from the stores (`sslspec ls --rebuild`). A URL root
    has no index (`sslspec ls` scans its stores)."""
    if isinstance(out, Location):
        return
    try:
        index.record(out, index.entry(out, path), files)
    except Exception as exc:  # the store is the truth; the index is a cache
        print(
            f"sslspec: could not update {out / INDEX} ({exc}); `sslspec ls --rebuild` fixes it",
            file=sys.stderr,
        )


def plan_origin(plan: Plan) -> dict[str, Any]:
    """The provenance every run of `plan` shares, taken from the plan (the spec's and its
    includes' texts) and, once, from this machine (the git state of the spec's folder, the
    command line)."""
    spec_path = Path(plan.spec)
    text, includes = plan.source_texts()
    return {
        "command": " ".join(_argv()),
        "spec_path": str(spec_path),
        "spec_text": text,
        "spec_includes": includes,
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
