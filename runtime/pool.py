"""`sslspec run -j N`: N worker processes on this machine sharing one queue of jobs.

The driver process hands out jobs one at a time to whichever worker asks; each worker claims its
run with the run's flock, exactly as the local executor does (runtime.executor), so the pool also
shares the runs with other `sslspec run` processes on the same root. A run another process holds
is put off until the rest is done, then waited for. Workers send their events and outcomes back
through a queue; the driver alone writes the index and the progress display.

Devices: jobs on `cuda` get one worker per GPU (worker k runs on `cuda:k`); CPU workers run with
one intra-op thread each (runtime.device.set_determinism). Workers are forked where no job uses
CUDA (no second import of torch) and spawned otherwise (CUDA does not survive a fork).

Ctrl-C reaches every worker (one process group): each stops where it is, its run stays `running`
with its last checkpoint, and the driver waits for them before re-raising, so the same command
resumes them next time. A worker that dies on its own (killed, out of memory) fails its job with
a message; its run stays resumable and the other workers go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from runtime.device import set_determinism
from runtime.executor import OnEvent, lock_of
from runtime.job import Event, Job, Outcome, run_job
from sslspec.store.layout import Status, run_dir

POLL_S = 0.5  # how often the driver looks for workers that died


def workers_for(jobs: Sequence[Job], n: int | None) -> int:
    """The number of workers for `jobs`: `n` (default: the cores, or the GPUs when the jobs run on
    CUDA), never more than the jobs."""
    cuda = any(job.device.startswith("cuda") for job in jobs)
    default = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    return max(1, min(n or default, len(jobs)))


class LocalPool:
    """`n` worker processes sharing the jobs (see the module docstring)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        cuda = any(job.device.startswith("cuda") for job in jobs)
        ctx: Any = mp.get_context("spawn" if cuda else "fork")
        results: Any = ctx.Queue()
        inboxes: list[Any] = [ctx.Queue() for _ in range(self.n)]
        gpus = torch.cuda.device_count() if cuda else 0
        procs = [
            ctx.Process(target=_work, args=(k, list(jobs), inboxes[k], results, gpus), daemon=True)
            for k in range(self.n)
        ]
        for p in procs:
            p.start()
        try:
            yield from _dispatch(jobs, procs, inboxes, results, on_event)
        finally:
            _stop(procs, inboxes)


def _dispatch(
    jobs: Sequence[Job], procs: list[Any], inboxes: list[Any], results: Any, on_event: OnEvent
) -> Iterator[tuple[int, Outcome]]:
    """Hand jobs to workers as they ask, pass their events on, yield their outcomes."""
    pending, later = deque(range(len(jobs))), deque[int]()
    busy: dict[int, int] = {}  # worker -> job index
    done = 0
    while done < len(jobs):
        try:
            kind, k, i, payload = results.get(timeout=POLL_S)
        except queue.Empty:
            for k, i in list(_died(procs, busy)):
                del busy[k]
                done += 1
                yield i, _lost(jobs[i], procs[k].exitcode)
            if not any(p.is_alive() for p in procs) and done < len(jobs):
                raise RuntimeError("every worker process died; the runs left stay resumable") from None
            continue
        if kind == "event":
            on_event(i, payload)
            continue
        if kind == "held":
            later.append(i)
        elif kind == "done":
            done += 1
            yield i, payload
        busy.pop(k, None)
        if pending or later:  # kind is "ready", "held" or "done": the worker asks for more
            wait = not pending
            i = pending.popleft() if pending else later.popleft()
            busy[k] = i
            inboxes[k].put((i, wait))


def _died(procs: list[Any], busy: dict[int, int]) -> Iterator[tuple[int, int]]:
    for k, i in busy.items():
        if not procs[k].is_alive():
            yield k, i


def _lost(job: Job, code: int | None) -> Outcome:
    where = run_dir(job.out, job.run.experiment, job.run.id)
    line = (
        f"run {job.run.index + 1} {job.run.id} FAILED: its worker process died (exit code {code}); "
        f"it stays resumable from its last checkpoint ({where})"
    )
    return Outcome(Status.FAILED, None, line, error=f"worker died (exit code {code})")


def _stop(procs: list[Any], inboxes: list[Any]) -> None:
    """Tell every worker to finish and wait for it (after Ctrl-C each is already stopping)."""
    for box in inboxes:
        box.put(None)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
            p.join()


def _work(k: int, jobs: list[Job], inbox: Any, results: Any, gpus: int) -> None:
    """Worker `k`: ask for a job, run it under its run's lock, report; until told to stop."""
    try:
        set_determinism()
        results.put(("ready", k, -1, None))
        while (task := inbox.get()) is not None:
            i, wait = task
            job = jobs[i]
            if job.device == "cuda" and gpus:
                job = replace(job, device=f"cuda:{k % gpus}")
            lock = lock_of(job)
            if not lock.acquire(wait=wait):
                results.put(("held", k, i, None))
                continue

            def emit(event: Event, i: int = i) -> None:
                results.put(("event", k, i, event))

            try:
                outcome = run_job(job, emit)
            finally:
                lock.release()
            results.put(("done", k, i, outcome))
    except KeyboardInterrupt:  # Ctrl-C: the run in progress stays resumable; the driver says so
        pass
