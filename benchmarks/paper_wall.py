"""The paper set's wall clock, read back from the stores of a results root (torch-free).

    python benchmarks/paper_wall.py specs/paper/[1-6]_*.ssl --root RESULTS [--machine TEXT] [--out FILE]

Per spec: the runs planned and complete, each run's recorded wall time (`wall_time_s`, resumed
segments summed), their sum and median, the first start and last finish, the replica-batched
runs and their groups; then the set's totals over its distinct runs (a run two specs share, like
the paper's reference setting in specs 2 to 5, counts once, as in `sslspec report`). Every
replica of a batched group records the group's wall time, so `worker_seconds` counts a group once
(its longest replica) and each unbatched run once: the cost of the set on one worker. The span
from first start to last finish is what a reader waited, which depends on the workers, the
machine's load and any pause between sessions, so both are reported and neither is a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sslspec.report.sweep import load_source
from sslspec.report.tables import total_wall
from sslspec.store.layout import Status


def _complete(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The root attributes of the complete runs among `runs` (`SweepResults.runs` rows)."""
    return [r["attrs"] for r in runs if r["status"] == Status.COMPLETE and r["attrs"]]


def _span(attrs: list[dict[str, Any]]) -> dict[str, str | None]:
    return {
        "first_started": min((str(a["started"]) for a in attrs if a.get("started")), default=None),
        "last_finished": max((str(a["finished"]) for a in attrs if a.get("finished")), default=None),
    }


def set_summary(sweeps: Sequence[Any]) -> dict[str, Any]:
    """The set's totals over its distinct runs (by run id: a run shared by specs counts once)."""
    runs = {r["run_id"]: r for sw in sweeps for r in sw.runs}
    attrs = _complete(runs.values())
    return {
        "runs_distinct": len(runs),
        "runs_complete": len(attrs),
        "worker_seconds": total_wall(attrs),
        **_span(attrs),
    }


def spec_summary(spec: Path, sw: Any) -> dict[str, Any]:
    """The wall-clock figures of one spec's runs (`sw`, its `SweepResults`)."""
    attrs = _complete(sw.runs)
    walls = [float(a["wall_time_s"]) for a in attrs if isinstance(a.get("wall_time_s"), int | float)]
    batched = [a for a in attrs if a.get("replica_group")]
    groups = {str(a["replica_group"].get("group")) for a in batched}
    return {
        "spec": str(spec),
        "runs_planned": len(sw.runs),
        "runs_complete": len(attrs),
        "run_seconds_summed": sum(walls),
        "run_seconds_median": statistics.median(walls) if walls else None,
        "worker_seconds": total_wall(attrs),  # a group's replicas each record the group's wall time
        "replica_groups": len(groups),
        **_span(attrs),
        "runs_replica_batched": len(batched),
        "devices": sorted({str(a.get("device")) for a in attrs}),
        "git_commits": sorted({str(a.get("git_commit")) for a in attrs}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", type=Path)
    ap.add_argument("--root", type=Path, required=True, help="the results root the specs ran into")
    ap.add_argument("--machine", default="2-core VM, shared with other sessions")
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    args = ap.parse_args()
    sweeps = [load_source(s, args.root) for s in args.specs]
    report = {
        "machine": f"{args.machine}: {platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "root": str(args.root),
        "specs": [spec_summary(s, sw) for s, sw in zip(args.specs, sweeps, strict=True)],
        **set_summary(sweeps),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
