"""Executing is an interface: one job runs to an Outcome and reports events to a callback, any
executor can be handed to the driver, and a run's provenance comes from its Plan."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import xarray as xr
from inprocess import sslspec_in_process

from runtime.executor import OnEvent
from runtime.job import EpochDone, Event, Job, Outcome, Started, run_job
from runtime.run import execute_all, make_jobs
from sslspec.spec.lower import lower

REFERENCE = Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"
SHORT = """\
include "{base}" {{
  data.depth         = 2
  network.width      = 3
  train.batch        = 16
  train.samples      = 64
  train.epochs       = 2
  measure.samples    = 256
}}
"""


def short_spec(tmp_path: Path, extra: str = "") -> Path:
    spec = tmp_path / "short.ssl"
    spec.write_text(SHORT.format(base=REFERENCE) + extra)
    return spec


def test_a_diverging_run_comes_back_as_a_failed_outcome(tmp_path: Path, capsys) -> None:
    """run_job turns a loss that becomes infinite into a failed Outcome (reason, no traceback),
    marks the store failed, and prints nothing itself; events come through the callback."""
    spec = short_spec(tmp_path)
    sets = ["loss.kind=simple", "loss.beta=-1", "network.normalize=none", "optimizer.lr=1000"]
    (job,) = make_jobs([(lower(spec, sets), str(tmp_path / "out"))], "cpu", False)
    events: list[Event] = []
    with sslspec_in_process():
        outcome = run_job(job, events.append)
    assert outcome.status == "failed" and outcome.trace is None
    assert outcome.error is not None and outcome.error.startswith("FloatingPointError: training loss became")
    assert capsys.readouterr() == ("", "")
    assert isinstance(events[0], Started) and events[0].path == outcome.path
    assert xr.open_zarr(outcome.path, consolidated=False).attrs["status"] == "failed"


class Reversed:
    """A test executor: the jobs in reverse order, in this process, without locks."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    def run(self, jobs: Sequence[Job], on_event: OnEvent) -> Iterator[tuple[int, Outcome]]:
        for i in reversed(range(len(jobs))):

            def emit(event: Event, i: int = i) -> None:
                self.seen.append((i, type(event).__name__))
                on_event(i, event)

            yield i, run_job(jobs[i], emit)


def test_the_driver_takes_any_executor_and_alone_writes_the_index(tmp_path: Path) -> None:
    """execute_all with another executor completes every run; the driver indexes each run from
    its events and outcomes (one running and one complete line per run)."""
    spec = short_spec(tmp_path, "sweep hltm_simclr { seed = 1..3 }\n")
    plan, out, executor = lower(spec), tmp_path / "out", Reversed()
    with sslspec_in_process():
        assert execute_all([(plan, str(out))], device="cpu", executor=executor) == 0
    assert [i for i, kind in executor.seen if kind == Started.__name__] == [2, 1, 0]
    assert sum(kind == EpochDone.__name__ for _, kind in executor.seen) == 3 * 2
    lines = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [(e["run_id"], e["status"]) for e in lines] == [
        (run.id, status) for run in reversed(plan.runs) for status in ("running", "complete")
    ]


def test_provenance_comes_from_the_plan_not_the_files(tmp_path: Path) -> None:
    """A run records the spec and include texts its Plan was made from, even when the files have
    changed since; the texts are not part of the plan's JSON or hash."""
    spec = short_spec(tmp_path)
    text = spec.read_text()
    plan = lower(spec)
    assert dict(plan.sources)[str(spec)] == text and "sources" not in plan.to_json()
    spec.write_text("# changed after planning\n")
    with sslspec_in_process():
        assert execute_all([(plan, str(tmp_path / "out"))], device="cpu") == 0
    (path,) = sorted((tmp_path / "out").rglob("v*.zarr"))
    at = xr.open_zarr(path, consolidated=False).attrs
    assert at["spec_text"] == text
    assert at["spec_includes"] == {str(REFERENCE): REFERENCE.read_text()}


@pytest.mark.parametrize("force", [False, True])
def test_a_run_shared_by_two_plans_runs_once(tmp_path: Path, force: bool) -> None:
    """Two plans with the same run on one root: one job per run is forced at most, so the
    second finds it up to date (with and without --force)."""
    spec = short_spec(tmp_path)
    jobs = make_jobs([(lower(spec), str(tmp_path)), (lower(spec), str(tmp_path))], "cpu", force)
    assert [j.force for j in jobs] == [force, False]
