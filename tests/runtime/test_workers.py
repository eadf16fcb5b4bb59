"""`sslspec run -j N`: local worker processes share one queue; every run exactly once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from test_executor import short_spec
from test_run import cli, stores

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
