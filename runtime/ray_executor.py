"""`sslspec run --executor ray`: every job a Ray task, on a local Ray instance or a cluster.

The driver (runtime.run) decides nothing differently: it makes the jobs, holds the results
roots' driver lease (sslspec.store.lease; `exclusive`), and alone writes the index, the progress
display and the summary. This executor submits each job once as a task that declares its
resources (`num_gpus` for a GPU run, a fraction when several small runs should share a card;
one CPU otherwise) and lets Ray place it; sslspec never sets CUDA_VISIBLE_DEVICES, Ray does.

A task runs `runtime.job.run_job` on its worker: it decides (resume the run's newest `running`
version from its checkpoint, or claim a new version: an atomic mkdir on a file system, zarr's
create-if-absent group on a URL root), writes the store and checkpoints straight to the results
root (a path every node sees, or an fsspec URL), and sends its events to the driver through a
Ray queue. Its provenance adds the Ray job id, node id, worker pid and the GPU ids Ray assigned.

Failures: a task whose worker process dies (killed, node lost) is retried by Ray (`retries`
times) and resumes from the run's last checkpoint; a run that fails (NaN, a bad data root)
returns a failed outcome, which is recorded in its store and never retried. Ctrl-C on the
driver cancels every task (their workers are killed) and leaves each run `running` with its
checkpoint, so the same command resumes them.

`ray` is an optional dependency: `pip install -e '.[ray]'`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from runtime.device import resolve_device, set_determinism
from runtime.executor import OnEvent
from runtime.job import Job, Outcome, run_job
from sslspec.errors import Diagnostic, SpecError
from sslspec.store.layout import Status, run_dir

RETRIES = 3  # times a task whose worker died is started again (each resumes from its checkpoint)
POLL_S = 0.2


def import_ray() -> Any:
    """The ray module; a SpecError naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise SpecError(
            [
                Diagnostic(
                    "--executor ray needs Ray: pip install 'sslspec[ray]' (or -e '.[ray]' in a checkout)"
                )
            ]
        ) from None
    return ray


class RayExecutor:
    """Runs each job as a Ray task (see the module docstring).

    `address`: None starts a local Ray instance (or uses the one this process already started),
    "auto" or "ray://host:port" joins a cluster. `gpus`: the GPUs each task asks for; None gives
    1 to CUDA runs (and to `auto` runs when the cluster has GPUs) and 0 to CPU runs."""

    exclusive = True  # runs are claimed without locks: one driver per results root
    resolves_devices = False  # `auto` and `cuda` mean the worker's devices, not the driver's

    def __init__(self, address: str | None = None, gpus: float | None = None, retries: int = RETRIES) -> None:
        self.address, self.gpus, self.retries = address, gpus, retries
        self.pids: dict[int, int] = {}  # job index -> the pid of the worker running it now

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
        from ray.util.queue import Queue

        events = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(_execute)
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        refs = {
            task.options(**self._resources(job, has_gpus), max_retries=self.retries).remote(job, i, events): i
            for i, job in enumerate(jobs)
        }
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
                self._drain(events, on_event)
                for ref in ready:
                    i = refs.pop(ref)
                    yield i, _result(ray, ref, jobs[i])
        finally:
            for ref in refs:  # Ctrl-C (or a failure of the driver): stop every task still out
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _resources(self, job: Job, has_gpus: bool) -> dict[str, float]:
        gpus = self.gpus
        if gpus is None:
            gpu_run = job.device.startswith("cuda") or (job.device == "auto" and has_gpus)
            gpus = 1.0 if gpu_run else 0.0
        return {"num_gpus": gpus, "num_cpus": 0 if gpus else 1}

    def _drain(self, events: Any, on_event: OnEvent) -> None:
        for i, pid, event in events.get_nowait_batch(events.qsize()):
            self.pids[i] = pid
            if event is not None:
                on_event(i, event)


def _result(ray: Any, ref: Any, job: Job) -> Outcome:
    """A finished task's outcome; a task that could not finish (its worker died more often than
    it is retried) comes back failed, its run resumable."""
    try:
        outcome: Outcome = ray.get(ref)
        return outcome
    except Exception as exc:
        where = run_dir(job.out, job.run.experiment, job.run.id)
        line = (
            f"run {job.run.index + 1} {job.run.id} FAILED: its Ray task did not finish "
            f"({type(exc).__name__}); it stays resumable from its last checkpoint ({where})"
        )
        return Outcome(Status.FAILED, None, line, error=f"{type(exc).__name__}: {exc}")


def _execute(job: Job, i: int, events: Any) -> Outcome:
    """The Ray task: run job `i` on this worker, its events sent to the driver's queue."""
    import ray

    set_determinism()
    pid, context = os.getpid(), ray.get_runtime_context()
    events.put((i, pid, None))  # the driver learns which process runs the job
    dev = resolve_device(job.device)
    ray_origin = {
        "executor": "ray",
        "ray_job_id": context.get_job_id(),
        "ray_node_id": context.get_node_id(),
        "ray_worker_pid": pid,
        "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }
    name = dev.type if dev.index is None else f"{dev.type}:{dev.index}"
    job = replace(job, device=name, origin={**job.origin, **ray_origin})
    return run_job(job, lambda event: events.put((i, pid, event)))
