"""benchmarks/paper_wall.py: the paper set's totals count each distinct run and replica group once."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_wall.py"


def _paper_wall() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_wall", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(run_id: str, wall: float, group: str | None = None, status: str = "complete") -> dict[str, Any]:
    attrs: dict[str, Any] = {"wall_time_s": wall, "started": f"2026-11-30T0{len(run_id)}:00:00+00:00"}
    attrs["finished"] = attrs["started"].replace(":00:00", ":30:00")
    if group is not None:
        attrs["replica_group"] = {"group": group}
    return {"run_id": run_id, "status": status, "attrs": attrs}


def test_a_run_shared_by_two_specs_and_a_replica_group_count_once() -> None:
    """A run in two specs' sweeps counts once in the set's totals, as does a batched group."""
    pw = _paper_wall()
    shared = [_run("ref1", 500.0, group="g"), _run("ref2", 500.0, group="g")]  # one group of 500 s
    first = SimpleNamespace(runs=[*shared, _run("a", 100.0)])
    second = SimpleNamespace(runs=[*shared, _run("bb", 40.0), _run("ccc", 7.0, status="failed")])
    per_spec = [
        pw.spec_summary(Path(f"{i}.ssl"), sw)["worker_seconds"] for i, sw in enumerate((first, second))
    ]
    assert per_spec == [600.0, 540.0]  # each spec alone counts the shared group
    total = pw.set_summary([first, second])
    assert total["runs_distinct"] == 5 and total["runs_complete"] == 4
    assert total["worker_seconds"] == 640.0  # 500 (the group, once) + 100 + 40
    assert total["first_started"] == "2026-11-30T01:00:00+00:00"
    assert total["last_finished"] == "2026-11-30T04:30:00+00:00"
