"""`sslspec run -j N`: local worker processes share one queue; every run exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_executor import short_spec
from test_run import SSLSPEC, cli, stores

from sslspec.spec.lower import lower
from sslspec.store.layout import version_attrs

SWEEP = "sweep hltm_simclr { seed = 1..4 }\n"


def test_two_workers_complete_a_sweep_with_every_run_exactly_once(tmp_path: Path) -> None:
    """`-j 2` runs a 4-run sweep in two worker processes: each run ends with exactly one complete
    version and one summary line, the driver's index has one running and one complete line per
    run, and a second `-j 2` finds every run up to date."""
    spec, out = short_spec(tmp_path, SWEEP), tmp_path / "out"
    done = cli("run", spec, "--out", out, "--device", "cpu", "-j", "2")
    assert done.returncode == 0, done.stderr
    plan = lower(spec)
    found = stores(out)
    assert sorted(p.parent.name for p in found) == sorted(r.id for r in plan.runs)
    assert {version_attrs(p)["status"] for p in found} == {"complete"}
    lines = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted((e["run_id"], e["status"]) for e in lines) == sorted(
        (r.id, s) for r in plan.runs for s in ("complete", "running")
    )
    assert sorted(line.split()[2] for line in done.stderr.splitlines() if line.startswith("run ")) == sorted(
        r.id for r in plan.runs
    ), done.stderr
    again = cli("run", spec, "--out", out, "--device", "cpu", "-j", "2")
    assert again.returncode == 0 and again.stderr.count("up to date") == 4, again.stderr
    assert len(stores(out)) == 4


def test_workers_give_the_arrays_of_one_process(tmp_path: Path) -> None:
    """A run computed by a worker of `-j 2` is bit-identical to the same run in one process."""
    from test_resume import identical

    spec = short_spec(tmp_path, "sweep hltm_simclr { seed = 1..2 }\n")
    assert cli("run", spec, "--out", tmp_path / "a", "--device", "cpu", "-j", "2").returncode == 0
    assert cli("run", spec, "--out", tmp_path / "b", "--device", "cpu", "-j", "1").returncode == 0
    for a, b in zip(stores(tmp_path / "a"), stores(tmp_path / "b"), strict=True):
        identical(a, b)


def test_without_ray_the_ray_executor_is_an_error_naming_the_extra(
    tmp_path: Path, monkeypatch, sslspec_cli
) -> None:
    """`--executor ray` where Ray cannot be imported exits 2 with a message naming the `ray`
    extra, before anything is written."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = sslspec_cli("run", short_spec(tmp_path), "--out", tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 2 and "pip install 'sslspec[ray]'" in result.stderr, result.stderr
    assert stores(tmp_path / "out") == []


def test_ctrl_c_stops_every_worker_and_their_runs_resume(tmp_path: Path) -> None:
    """SIGINT to the process group of `sslspec run -j 2` (what Ctrl-C sends) while both workers
    have a run past its first checkpoint: exit 130, no process left, both runs `running` and
    resumable; the same command then completes every run with exactly one version each."""
    sets = ["--set", "train.samples=2000", "--set", "train.epochs=20"]
    sets += ["--replicas", "1"]  # one run per worker (batched groups: tests/runtime/test_replicas.py)
    spec, out = short_spec(tmp_path, SWEEP), tmp_path / "out"
    command = [str(SSLSPEC), "run", str(spec), "--out", str(out), "-j", "2", "--device", "cpu", *sets]
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not inherited as ignored
    )
    deadline = time.monotonic() + 120
    while len(list(out.rglob("v*.ckpt.pt"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert {version_attrs(p)["status"] for p in stores(out)} == {"running"} and len(stores(out)) == 2
    _the_same_command_resumes_both(spec, out, sets)


def _children(pid: int) -> set[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while listed
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_sigterm_to_the_driver_alone_stops_every_worker_and_their_runs_resume(tmp_path: Path) -> None:
    """SIGTERM to the driver's pid only (`kill PID`, a batch scheduler's preemption), while both
    workers have a run past its first checkpoint: exit 143 with a message, no worker left behind
    (they used to run on, orphaned), both runs `running` and resumed by the same command."""
    sets = ["--set", "train.samples=2000", "--set", "train.epochs=20", "--replicas", "1"]
    spec, out = short_spec(tmp_path, SWEEP), tmp_path / "out"
    command = [str(SSLSPEC), "run", str(spec), "--out", str(out), "-j", "2", "--device", "cpu", *sets]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("v*.ckpt.pt"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert workers, "the driver has no worker processes"
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
        time.sleep(0.5)
        left = [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:  # a failing run of this test must not leave orphans behind
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
    assert proc.returncode == 143 and "terminated" in err, err
    assert not left, "a worker outlived its driver"
    assert {version_attrs(p)["status"] for p in stores(out)} == {"running"} and len(stores(out)) == 2
    _the_same_command_resumes_both(spec, out, sets)


def _the_same_command_resumes_both(spec: Path, out: Path, sets: list[str]) -> None:
    """The same `-j 2` command completes the 4-run sweep, resuming the 2 interrupted runs."""
    again = cli("run", spec, "--out", out, "-j", "2", "--device", "cpu", *sets)
    assert again.returncode == 0, again.stderr
    found = stores(out)
    assert len(found) == 4 and {version_attrs(p)["status"] for p in found} == {"complete"}
    assert sum("resumed" in version_attrs(p) for p in found) == 2
