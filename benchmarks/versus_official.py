"""Whole-process time of the reference workload: sslspec against the official code, side by side.

    LUCKMATTERS_MIRROR=<git dir of facebookresearch/luckmatters> \\
    python benchmarks/versus_official.py [--samples 128000] [--official-python PY] [--out FILE]

The workload of issue 13: the reference config (specs/hltm_simclr.ssl: depth 5, branching 2,
width 10, InfoNCE at temperature 0.1, batch 128, SGD lr 0.1) trained on `--samples` fresh samples
and measured before and after (latent correlations; sslspec also the operator's top-8 spectrum and
the weights). Each side runs as its own process, start-up included, one after the other in one
call (the official code first, then sslspec twice, before and after nothing else runs):
- sslspec: `sslspec run` with train.samples = measure.samples = `--samples`, one epoch, device cpu;
- the official code, unmodified, through /work/shared/tools/official_hltm.py (`--tool`), with
  N = `--samples` and one epoch: it measures at the start of each epoch only, so its second
  measurement pass (after training) is added from its own timing of the first (`eval_s`).
`--official-python` needs torch, numpy and tqdm (the official module imports tqdm). The report
names the machine and its load average before and after; compare only numbers from one call.
Not a test: the target (>= 200x) is checked here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def sslspec_wall(samples: int, out: Path) -> float:
    """Wall seconds of one `sslspec run` process of the workload (start-up included)."""
    sets = [f"train.samples={samples}", "train.epochs=1", f"measure.samples={samples}", "measure.every=1"]
    cmd = [sys.executable, "-c", "from sslspec.cli import main; main()", "run", str(SPEC), "--device", "cpu"]
    cmd += [a for s in sets for a in ("-s", s)] + ["--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t0


def official(samples: int, python: str, tool: Path, work: Path) -> dict[str, Any]:
    """Wall seconds of the official code's process on the workload, and its own pass timings."""
    prefix = work / "official"
    cmd = [python, str(tool), *OFFICIAL, f"N={samples}", "num_epoch=1", "seed=1", "--out", str(prefix)]
    cmd += ["--src", str(work / "luckmatters")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=work)
    wall = time.perf_counter() - t0
    summary = json.loads(prefix.with_suffix(".json").read_text())
    (epoch,) = summary["epochs"]  # one epoch: its timing of each pass
    return {
        "process_wall_s": wall,
        "eval_s": epoch["eval_s"],
        "train_s": epoch["train_s"],
        "workload_wall_s": wall + epoch["eval_s"],  # + the measurement after training
        "commit": summary.get("official_commit"),
        "num_workers": summary.get("num_workers"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=128000)
    ap.add_argument("--official-python", default=sys.executable)
    ap.add_argument("--tool", default=str(TOOL))
    ap.add_argument("--machine", default="2-core VM, shared with other sessions (timings are noisy)")
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    args = ap.parse_args()
    if not os.environ.get("LUCKMATTERS_MIRROR"):
        sys.exit("set LUCKMATTERS_MIRROR to a git directory of facebookresearch/luckmatters")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        off = official(args.samples, args.official_python, Path(args.tool), work)
        ours = [sslspec_wall(args.samples, work / f"sslspec{i}") for i in range(2)]
    wall = statistics.median(ours)
    report = {
        "machine": f"{args.machine}: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "workload": f"reference config, {args.samples} training samples, measured before and after",
        "official": off,
        "sslspec_wall_s": ours,
        "ratio_official_over_sslspec": off["workload_wall_s"] / wall,
        "target_ratio": 200.0,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
