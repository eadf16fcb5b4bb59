"""`sslspec run -j N`: N worker processes on this machine sharing one queue of jobs.

The driver process hands out jobs one at a time to whichever worker asks; each worker claims its
run with the run's flock, exactly as the local executor does (runtime.executor), so the pool also
shares the runs with other `sslspec run` processes on the same root. A run another process holds
is put off until the rest is done, then waited for. Workers send their events and outcomes back
through a queue; the driver alone writes the index and the progress display.

Devices: jobs on `cuda` get one worker per GPU (worker k runs on `cuda:k`); CPU workers run with
one intra-op thread each (runtime.device.set_determinism). More workers than GPUs may share a
card (`-j`), but replica groups are then cut per GPU, not per worker (`spread`). Workers are
forked where no job uses CUDA (no second import of torch) and spawned otherwise (CUDA does not
survive a fork).

Ctrl-C reaches every worker (one process group): each stops where it is, its run stays `running`
with its last checkpoint, and the driver waits for them before re-raising, so the same command
resumes them next time. SIGTERM to the driver alone (`kill PID`, a scheduler's preemption) does
the same: the driver passes it to its workers, and each process takes it as a Ctrl-C. A worker
that dies on its own (killed, out of memory) fails its job with a message; its run stays
resumable and the other workers go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from runtime.device import set_determinism
from runtime.executor import OnEvent, lock_of
from runtime.group import plan_groups, run_group
from runtime.job import Event, Job, Outcome
from sslspec.errors import raise_terminated
from sslspec.store.layout import Status, run_dir

POLL_S = 0.5  # how often the driver looks for workers that died


def workers_for(jobs: Sequence[Job], n: int | None) -> int:
    """The number of workers for `jobs`: `n` (default: the cores, or the GPUs when the jobs run on
    CUDA), never more than the jobs."""
    cuda = any(job.device.startswith("cuda") for job in jobs)
    default = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    return max(1, min(n or default, len(jobs)))


def spread(workers: int, gpus: int) -> int:
    """Into how many groups at least a replica key's runs are cut: one per worker on the CPU, where
    workers are cores running in parallel; one per GPU on CUDA, where a batched step replayed as a
    CUDA graph costs about the same for 2 replicas as for 20 (its kernels are tiny and the card
    runs the workers' kernels one process at a time), so cutting a key into more groups than
    GPUs multiplies the card's time. Workers beyond that still take other groups and measure."""
    return max(1, min(workers, gpus)) if gpus else workers


class LocalPool:
    """`n` worker processes sharing the jobs (see the module docstring); with `replicas` > 1 a
    worker takes a replica-batched group of runs at a time (runtime.group)."""

    def __init__(self, n: int, replicas: int = 1) -> None:
        self.n, self.replicas = n, replicas

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        cuda = any(job.device.startswith("cuda") for job in jobs)
        ctx: Any = mp.get_context("spawn" if cuda else "fork")
        results: Any = ctx.Queue()
        inboxes: list[Any] = [ctx.Queue() for _ in range(self.n)]
        gpus = torch.cuda.device_count() if cuda else 0
        batched = self.replicas > 1
        procs = [
            ctx.Process(target=_work, args=(k, list(jobs), inboxes[k], results, gpus, batched), daemon=True)
            for k in range(self.n)
        ]
        for p in procs:
            p.start()
        units = plan_groups(jobs, self.replicas, spread(self.n, gpus))
        previous = _forward_sigterm(procs)
        try:
            yield from _dispatch(jobs, units, procs, inboxes, results, on_event)
        finally:
            _stop(procs, inboxes)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _forward_sigterm(procs: list[Any]) -> Any:
    """While the workers live, SIGTERM to the driver goes on to each of them, then is raised here
    as Terminated (a KeyboardInterrupt). Returns the handler to restore (None off the main thread,
    where signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        raise_terminated(signum, frame)

    return signal.signal(signal.SIGTERM, forward)


def _dispatch(
    jobs: Sequence[Job],
    units: list[list[int]],
    procs: list[Any],
    inboxes: list[Any],
    results: Any,
    on_event: OnEvent,
) -> Iterator[tuple[int, Outcome]]:
    """Hand units of jobs to workers as they ask, pass their events on, yield their outcomes. A
    worker says `ready` when it wants a unit; a run of its unit held elsewhere comes back `held`
    and is handed out again later, alone."""
    pending, later = deque(units), deque[list[int]]()
    busy: dict[int, list[int]] = {}  # worker -> the jobs of its unit not yet done
    done = 0
    while done < len(jobs):
        try:
            kind, k, i, payload = results.get(timeout=POLL_S)
        except queue.Empty:
            for k, left in list(_died(procs, busy)):
                del busy[k]
                for i in left:
                    done += 1
                    yield i, _lost(jobs[i], procs[k].exitcode)
            if not any(p.is_alive() for p in procs) and done < len(jobs):
                raise RuntimeError("every worker process died; the runs left stay resumable") from None
            continue
        if kind == "event":
            on_event(i, payload)
            continue
        if kind in ("held", "done"):
            if i in busy.get(k, []):
                busy[k].remove(i)
            if kind == "held":
                later.append([i])
            else:
                done += 1
                yield i, payload
            continue
        busy.pop(k, None)  # "ready": the worker asks for more
        if pending or later:
            wait = not pending
            unit = pending.popleft() if pending else later.popleft()
            busy[k] = list(unit)
            inboxes[k].put((unit, wait))


def _died(procs: list[Any], busy: dict[int, list[int]]) -> Iterator[tuple[int, list[int]]]:
    for k, left in busy.items():
        if not procs[k].is_alive():
            yield k, left


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


def _work(k: int, jobs: list[Job], inbox: Any, results: Any, gpus: int, batched: bool) -> None:
    """Worker `k`: ask for a unit, run the runs of it whose locks it gets (as one replica-batched
    group when `batched`), report; until told to stop. SIGTERM stops it as Ctrl-C does."""
    signal.signal(signal.SIGTERM, raise_terminated)  # not the driver's forwarding handler
    try:
        set_determinism()
        results.put(("ready", k, -1, None))
        while (task := inbox.get()) is not None:
            unit, wait = task
            mine, locks = [], []
            for i in unit:
                job = jobs[i]
                if job.device == "cuda" and gpus:
                    job = replace(job, device=f"cuda:{k % gpus}")
                lock = lock_of(job)
                if lock.acquire(wait=wait and len(unit) == 1):
                    mine.append((i, job))
                    locks.append(lock)
                else:
                    results.put(("held", k, i, None))

            def emit_for(i: int) -> Callable[[Event], None]:
                return lambda event: results.put(("event", k, i, event))

            try:
                group = run_group([job for _, job in mine], [emit_for(i) for i, _ in mine], batched)
                for pos, outcome in group:
                    results.put(("done", k, mine[pos][0], outcome))
            finally:
                for lock in locks:
                    lock.release()
            results.put(("ready", k, -1, None))
    except KeyboardInterrupt:  # Ctrl-C: the run in progress stays resumable; the driver says so
        pass
