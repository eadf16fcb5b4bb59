"""The Ray executor on a local Ray instance (2 CPUs, 2 logical GPUs) started once for this module:
a sweep completes with one version per run, bit-identical to the local executor; tasks that
declare GPUs see the ids Ray assigned; a killed worker's task is retried and resumes; a
`memory://` root shared through a Ray actor (shared_memory_fs) works end to end; a second
driver on the same root is refused."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import xarray as xr
from inprocess import torch_state_kept
from test_executor import short_spec
from test_resume import identical
from test_run import stores

from runtime.executor import OnEvent
from runtime.job import EpochDone, Event, Job, Outcome
from runtime.run import execute_all, make_jobs
from sslspec.errors import SpecError
from sslspec.spec.lower import lower
from sslspec.store.layout import Status, status_of, version_attrs
from sslspec.store.lease import driver_lease

ray = pytest.importorskip("ray")
from runtime.ray_executor import RayExecutor  # noqa: E402

SWEEP = "sweep hltm_simclr { seed = 1..4 }\n"
LONGER = ["train.epochs=6", "train.samples=512"]


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray instance for the module, with its temp dir under the test's tmp path."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tmp_path_factory.mktemp("ray")
    here = str(Path(__file__).parent)  # workers import shared_memory_fs from here
    env = {"env_vars": {"PYTHONPATH": here}, "worker_process_setup_hook": "shared_memory_fs.register"}
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        _temp_dir=str(temp),
        log_to_driver=False,
        runtime_env=env,
        namespace="sslspec-tests",
    )
    try:
        yield
    finally:
        ray.shutdown()


def test_a_sweep_on_ray_equals_the_local_executor_and_records_its_gpus(tmp_path: Path) -> None:
    """Four GPU-declared tasks (computing on the CPU) complete a sweep: one complete version per
    run, arrays bit-identical to the local executor's, each store naming the Ray job, its node
    and the logical GPU id Ray assigned."""
    spec = short_spec(tmp_path, SWEEP)
    plan = lower(spec)
    with torch_state_kept():
        assert execute_all([(plan, str(tmp_path / "ray"))], "cpu", executor=RayExecutor(gpus=1)) == 0
        assert execute_all([(plan, str(tmp_path / "local"))], "cpu") == 0
    found = stores(tmp_path / "ray")
    assert sorted(p.parent.name for p in found) == sorted(r.id for r in plan.runs)
    job_id = ray.get_runtime_context().get_job_id()
    for store, local in zip(found, stores(tmp_path / "local"), strict=True):
        at = version_attrs(store)
        assert at["status"] == "complete" and at["executor"] == "ray"
        assert at["ray_job_id"] == job_id and at["ray_node_id"]
        assert at["ray_gpu_ids"] in (["0"], ["1"]), at["ray_gpu_ids"]
        identical(store, local)


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL of the worker running a job after its first epoch: Ray retries the task, which
    resumes the same version from the checkpoint and ends bit-identical to an uninterrupted run."""
    plan = lower(short_spec(tmp_path), LONGER)
    executor = RayExecutor(gpus=0)
    killed: list[int] = []

    def on_event(i: int, event: Event) -> None:
        if isinstance(event, EpochDone) and event.epoch == 1 and not killed:
            killed.append(executor.pids[i])
            os.kill(executor.pids[i], signal.SIGKILL)

    jobs = make_jobs([(plan, str(tmp_path / "ray"))], "cpu", False)
    with torch_state_kept():
        outcomes = [o for _, o in executor.run(jobs, on_event)]
        assert execute_all([(plan, str(tmp_path / "local"))], "cpu") == 0
    assert killed and [o.status for o in outcomes] == ["complete"]
    (store,) = stores(tmp_path / "ray")
    resumed = version_attrs(store).get("resumed")
    assert resumed and resumed[0]["epoch"] >= 1, "the retry did not resume from a checkpoint"
    identical(store, *stores(tmp_path / "local"))


def test_a_memory_root_shared_through_an_actor_works_end_to_end(tmp_path: Path) -> None:
    """A `memory://` results root whose bytes live in one Ray actor (every worker and the driver
    see it; see shared_memory_fs): a 2-run sweep completes through Ray, each run has exactly one
    complete version there, readable by the driver and bit-identical to a local run."""
    import shared_memory_fs

    from sslspec.store.layout import run_dir, versions
    from sslspec.store.location import of

    plan = lower(short_spec(tmp_path, "sweep hltm_simclr { seed = 1..2 }\n"))
    url = f"memory://ray-test/{tmp_path.name}"
    shared_memory_fs.register()
    try:
        with torch_state_kept():
            assert execute_all([(plan, url)], "cpu", executor=RayExecutor(gpus=0)) == 0
            assert execute_all([(plan, str(tmp_path / "local"))], "cpu") == 0
        root = of(url)
        for run in plan.runs:
            ((_, store),) = versions(run_dir(root, run.experiment, run.id))
            assert version_attrs(store)["status"] == "complete"
            local = run_dir(tmp_path / "local", run.experiment, run.id) / "v0001.zarr"
            identical(str(store), local)  # type: ignore[arg-type]
    finally:
        shared_memory_fs.unregister()


def test_a_second_driver_on_the_same_root_is_refused(tmp_path: Path) -> None:
    """While one driver holds a root's lease, a Ray driver on it is refused before running
    anything; after the first ends, it runs."""
    spec, out = short_spec(tmp_path), tmp_path / "out"
    plan = lower(spec)
    with torch_state_kept():
        with driver_lease([out]), pytest.raises(SpecError, match="in use by another sslspec driver"):
            execute_all([(plan, str(out))], "cpu", executor=RayExecutor())
        assert stores(out) == []
        assert execute_all([(plan, str(out))], "cpu", executor=RayExecutor()) == 0
    assert not (out / ".driver").exists()
    assert xr.open_zarr(*stores(out), consolidated=False).attrs["status"] == "complete"


class _CtrlC(RayExecutor):
    """A Ray executor whose driver gets Ctrl-C (KeyboardInterrupt in its event loop) once a run
    has finished its first epoch, i.e. once a checkpoint exists."""

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        def interrupt_after_epoch_1(i: int, event: Event) -> None:
            on_event(i, event)
            if isinstance(event, EpochDone) and event.epoch >= 1:
                raise KeyboardInterrupt

        yield from super().run(jobs, interrupt_after_epoch_1)


def test_ctrl_c_on_the_driver_cancels_the_tasks_and_leaves_every_run_resumable(tmp_path: Path) -> None:
    """Ctrl-C in the driver: every task still out is cancelled (its worker process is gone), the
    root's lease is released and no interrupted version is complete; the same command then ends
    every run with exactly one complete version, each version interrupted after its checkpoint
    resumed in place (one interrupted before it stays visibly `running` beside a clean one)."""
    spec, out = short_spec(tmp_path, SWEEP), tmp_path / "out"
    plan = lower(spec, LONGER)
    executor = _CtrlC(gpus=0)
    with torch_state_kept():
        with pytest.raises(KeyboardInterrupt):
            execute_all([(plan, str(out))], "cpu", executor=executor)
        assert not (out / ".driver").exists()
        interrupted = stores(out)
        # A version whose worker was cancelled before its first write has no attributes yet: it
        # reads as running, like every other interrupted one.
        assert interrupted and {status_of(version_attrs(p), p) for p in interrupted} == {Status.RUNNING}
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in executor.pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in executor.pids.values()), executor.pids
        checkpointed = [p for p in interrupted if p.with_suffix(".ckpt.pt").exists()]
        assert checkpointed, "no run was interrupted after a checkpoint"
        assert execute_all([(plan, str(out))], "cpu", executor=RayExecutor(gpus=0)) == 0
    complete = [p for p in stores(out) if status_of(version_attrs(p), p) == Status.COMPLETE]
    assert sorted(p.parent.name for p in complete) == sorted(r.id for r in plan.runs)
    for p in checkpointed:
        assert p in complete and "resumed" in version_attrs(p), p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
