"""Whole-process time of the reference workload: sslspec against the official code, side by side.

    LUCKMATTERS_MIRROR=<git dir of facebookresearch/luckmatters> \\
    python benchmarks/versus_official.py once [--samples 128000] [--official-python PY] [--out FILE]

The workload of issue 13: the reference config (specs/hltm_simclr.ssl: depth 5, branching 2,
width 10, InfoNCE at temperature 0.1, batch 128, SGD lr 0.1) trained on `--samples` fresh samples
and measured before and after (latent correlations; sslspec also the operator's top-8 spectrum and
the weights). Each side runs as its own process, start-up included:
- sslspec: `sslspec run` with train.samples = measure.samples = `--samples`, one epoch, device cpu;
- the official code, unmodified, through /work/shared/tools/official_hltm.py (`--tool`), with
  N = `--samples` and one epoch: it measures at the start of each epoch only, so its second
  measurement pass (after training) is added from its own timing of the first (`eval_s`).

Two ways to run it:
- `once`: the official code, then sslspec twice, one after the other in one call (short workloads);
- the full workload, whose official side takes hours on a 2-core machine, interleaved:
  `official --out OFF.json` runs the official process alone (start it in the background) and
  records its wall and CPU time (its DataLoader workers included); meanwhile `sslspec --log
  RUNS.jsonl` appends whole sslspec runs (wall, CPU, load, time, commit) as often as wanted, so
  both sides see the same machine load; `combine OFF.json RUNS.jsonl` pairs the official run with
  the sslspec runs made while it ran (and, separately, any made outside that window).
`--official-python` needs torch, numpy and tqdm (the official module imports tqdm). Every report
names the machine and its load averages; compare only numbers measured side by side.
Not a test: the target (>= 200x) is checked here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "hltm_simclr.ssl"
TOOL = Path("/work/shared/tools/official_hltm.py")
OFFICIAL = ["depth=5", "num_children=2", "hid=10", "delta_lower=0.8", "temp=0.1", "lr=0.1", "batchsize=128"]
MACHINE = "2-core VM, shared with other sessions (timings are noisy)"
TARGET = 200.0


def machine(label: str) -> str:
    """The machine in words: the caller's label, host name, processor and core count."""
    return f"{label}: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def timed_process(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run one process to completion; its wall seconds and CPU seconds (waited-for children too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    start = time.time()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "started_unix": start,
        "ended_unix": time.time(),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }


def sslspec_cmd(samples: int, out: Path) -> list[str]:
    """The `sslspec run` command line of the workload, writing its store under `out`."""
    sets = [f"train.samples={samples}", "train.epochs=1", f"measure.samples={samples}", "measure.every=1"]
    cmd = [sys.executable, "-c", "from sslspec.cli import main; main()", "run", str(SPEC), "--device", "cpu"]
    return cmd + [a for s in sets for a in ("-s", s)] + ["--out", str(out)]


def sslspec_wall(samples: int, out: Path) -> float:
    """Wall seconds of one `sslspec run` process of the workload (start-up included)."""
    return float(timed_process(sslspec_cmd(samples, out), ROOT)["wall_s"])


def official(samples: int, python: str, tool: Path, work: Path) -> dict[str, Any]:
    """The official code's process on the workload: wall and CPU time, and its own pass timings."""
    prefix = work / "official"
    cmd = [python, str(tool), *OFFICIAL, f"N={samples}", "num_epoch=1", "seed=1", "--out", str(prefix)]
    cmd += ["--src", str(work / "luckmatters")]
    proc = timed_process(cmd, work)
    summary = json.loads(prefix.with_suffix(".json").read_text())
    (epoch,) = summary["epochs"]  # one epoch: its timing of each pass
    share = epoch["eval_s"] / proc["wall_s"]  # the second measurement's CPU, pro rata of its wall
    return {
        "process_wall_s": proc["wall_s"],
        "process_cpu_s": proc["cpu_s"],
        "eval_s": epoch["eval_s"],
        "train_s": epoch["train_s"],
        "workload_wall_s": proc["wall_s"] + epoch["eval_s"],  # + the measurement after training
        "workload_cpu_s": proc["cpu_s"] * (1 + share),
        "process": proc,
        "commit": summary.get("official_commit"),
        "num_workers": summary.get("num_workers"),
        "mean_best_corr_per_layer": epoch.get("mean_best_corr_per_layer"),
    }


def git_commit() -> str:
    """The commit of this checkout (with '+dirty' when the tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cmd_once(args: argparse.Namespace) -> dict[str, Any]:
    """Both sides in one call, one after the other: the official code, then sslspec twice."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        off = official(args.samples, args.official_python, Path(args.tool), work)
        ours = [sslspec_wall(args.samples, work / f"sslspec{i}") for i in range(2)]
    return {
        "machine": machine(args.machine),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "workload": f"reference config, {args.samples} training samples, measured before and after",
        "official": off,
        "sslspec_wall_s": ours,
        "ratio_official_over_sslspec": off["workload_wall_s"] / statistics.median(ours),
        "target_ratio": TARGET,
    }


def cmd_official(args: argparse.Namespace) -> dict[str, Any]:
    """The official side alone (the long pole of the full workload), with its machine and load."""
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="official_"))
    work.mkdir(parents=True, exist_ok=True)
    return {
        "machine": machine(args.machine),
        "samples": args.samples,
        "official": official(args.samples, args.official_python, Path(args.tool), work),
    }


def cmd_sslspec(args: argparse.Namespace) -> dict[str, Any]:
    """Whole sslspec runs of the workload, each appended to `--log` as one JSON line."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            rec = timed_process(sslspec_cmd(args.samples, Path(tmp) / f"run{i}"), ROOT)
            rec |= {"samples": args.samples, "commit": git_commit(), "machine": machine(args.machine)}
            runs.append(rec)
            with open(args.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return {"runs": runs}


def ratio_block(off_wall: float, off_cpu: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios of the official workload over the median of sslspec's runs, in wall and CPU time."""
    if not runs:
        return {"runs": 0}
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "runs": len(runs),
        "sslspec_wall_s_median": wall,
        "sslspec_cpu_s_median": cpu,
        "ratio_wall": off_wall / wall,
        "ratio_cpu": off_cpu / cpu,
    }


def cmd_combine(args: argparse.Namespace) -> dict[str, Any]:
    """The official run paired with the sslspec runs made during it (and, apart, those outside)."""
    off = json.loads(Path(args.official_json).read_text())
    runs = [json.loads(line) for line in Path(args.runs_jsonl).read_text().splitlines() if line.strip()]
    proc = off["official"]["process"]
    inside = [r for r in runs if proc["started_unix"] <= r["started_unix"] <= proc["ended_unix"]]
    outside = [r for r in runs if r not in inside]
    wall, cpu = off["official"]["workload_wall_s"], off["official"]["workload_cpu_s"]
    return {
        "machine": off["machine"],
        "workload": f"reference config, {off['samples']} training samples, measured before and after",
        "method": args.method,
        "official": off["official"],
        "sslspec_runs": runs,
        "during_official_run": ratio_block(wall, cpu, inside),
        "during_official_run_by_commit": {
            c: ratio_block(wall, cpu, [r for r in inside if r["commit"] == c])
            for c in dict.fromkeys(r["commit"] for r in inside)
        },
        "outside_official_run": ratio_block(wall, cpu, outside),
        "target_ratio": TARGET,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=128000)
    ap.add_argument("--official-python", default=sys.executable)
    ap.add_argument("--tool", default=str(TOOL))
    ap.add_argument("--machine", default=MACHINE)
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("once", help=cmd_once.__doc__)
    sub.add_parser("official", help=cmd_official.__doc__).add_argument("--workdir", default=None)
    p = sub.add_parser("sslspec", help=cmd_sslspec.__doc__)
    p.add_argument("--log", required=True)
    p.add_argument("--repeat", type=int, default=1)
    p = sub.add_parser("combine", help=cmd_combine.__doc__)
    p.add_argument("official_json")
    p.add_argument("runs_jsonl")
    p.add_argument("--method", default="")
    args = ap.parse_args()
    if args.mode in ("once", "official") and not os.environ.get("LUCKMATTERS_MIRROR"):
        sys.exit("set LUCKMATTERS_MIRROR to a git directory of facebookresearch/luckmatters")
    modes = {"once": cmd_once, "official": cmd_official, "sslspec": cmd_sslspec, "combine": cmd_combine}
    text = json.dumps(modes[args.mode](args), indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
