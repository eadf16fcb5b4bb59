"""Executors: where and in what order the jobs of one `sslspec run` execute.

An executor takes the driver's jobs and a callback for their events, runs each job with
`runtime.job.run_job` (or something that gives the same outcome), and yields `(index, outcome)`
as jobs end, in any order. It claims runs so that two executors on one results root never run
the same one at once; it never writes the index or the display, which are the driver's.

- `LocalExecutor` (today's): this process, one job at a time, a run claimed by its flock
  (sslspec.store.write.RunLock) so that processes started on the same specs share the work; a run
  another process holds is put off until the others are done. With `replicas` > 1 the runs that
  share every shape go in replica-batched groups (runtime.group), a group's runs claimed together.
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
from runtime.group import plan_groups, run_group
from runtime.job import Event, Job, Outcome
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
    """One unit at a time in this process (a job, or with `replicas` > 1 a replica-batched group
    of jobs), each run under its run's lock (see the module docstring). The locks are held until
    the driver has handled the unit's outcomes."""

    def __init__(self, replicas: int = 1) -> None:
        self.replicas = replicas

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        set_determinism()
        for unit, locks in _claimed(jobs, plan_groups(jobs, self.replicas)):
            try:
                emits = [_emitter(on_event, i) for i in unit]
                for k, outcome in run_group([jobs[i] for i in unit], emits, self.replicas > 1):
                    yield unit[k], outcome
            finally:
                for lock in locks:
                    lock.release()


def _claimed(jobs: Sequence[Job], units: list[list[int]]) -> Iterator[tuple[list[int], list[RunLock]]]:
    """Each unit's runs that this process could claim, with their locks held. A run another
    process holds is put off (as a unit of its own) and tried again after the others; when every
    run left is held elsewhere, wait for the first of them."""
    pending = units
    while pending:
        later: list[list[int]] = []
        for unit in pending:
            got, locks = [], []
            for i in unit:
                held = lock_of(jobs[i])
                if held.acquire(wait=False):
                    got.append(i)
                    locks.append(held)
                else:
                    later.append([i])
            if got:
                yield got, locks
        if later and len(later) == sum(len(u) for u in pending):
            held = lock_of(jobs[later[0][0]])
            held.acquire(wait=True)
            yield later.pop(0), [held]
        pending = later


def held_elsewhere(job: Job) -> bool:
    """Whether another process holds the job's run now (for --dry-run)."""
    return lock_of(job).held_elsewhere()
