"""Executors: where and in what order the jobs of one `sslspec run` execute.

An executor takes the driver's jobs and a callback for their events, runs each job with
`runtime.job.run_job` (or something that gives the same outcome), and yields `(index, outcome)`
as jobs end, in any order. It claims runs so that two executors on one results root never run
the same one at once; it never writes the index or the display, which are the driver's.

- `LocalExecutor` (today's): this process, one job at a time, a run claimed by its flock
  (sslspec.store.write.RunLock) so that processes started on the same specs share the work; a run
  another process holds is put off until the others are done.
- `LocalPool` (`sslspec run -j N`): N worker processes on this machine sharing the same queue
  and the same locks (runtime.pool).
- `RayExecutor` (`--executor ray`): Ray tasks on a cluster or a local Ray instance
  (runtime.ray_executor).
An executor may set `exclusive = True` (the driver then holds the results roots' driver lease,
sslspec.store.lease, because it claims runs without locks) and `resolves_devices = False` (device
names are resolved where the job runs, not on the driver).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from runtime.device import set_determinism
from runtime.job import Event, Job, Outcome, run_job
from sslspec.store.layout import run_dir
from sslspec.store.write import RunLock

OnEvent = Callable[[int, Event], None]  # (job index, event)


class Executor(Protocol):
    """Runs jobs; yields (job index, outcome) as each ends."""

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]: ...


def _emitter(on_event: OnEvent, i: int) -> Callable[[Event], None]:
    return lambda event: on_event(i, event)


def lock_of(job: Job) -> RunLock:
    return RunLock(run_dir(job.out, job.run.experiment, job.run.id))


class LocalExecutor:
    """One job at a time in this process, each under its run's lock (see the module docstring).
    The lock is held until the driver has handled the job's outcome."""

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        set_determinism()
        for i, lock in _claimed(jobs):
            try:
                yield i, run_job(jobs[i], _emitter(on_event, i))
            finally:
                lock.release()


def _claimed(jobs: Sequence[Job]) -> Iterator[tuple[int, RunLock]]:
    """Each job's index with its run's lock held. A run another process holds is put off and tried
    again after the others; when every run left is held elsewhere, wait for the first of them."""
    pending = list(range(len(jobs)))
    while pending:
        later = []
        for i in pending:
            held = lock_of(jobs[i])
            if held.acquire(wait=False):
                yield i, held
            else:
                later.append(i)
        if later and len(later) == len(pending):
            held = lock_of(jobs[later[0]])
            held.acquire(wait=True)
            yield later.pop(0), held
        pending = later


def held_elsewhere(job: Job) -> bool:
    """Whether another process holds the job's run now (for --dry-run)."""
    return lock_of(job).held_elsewhere()
