"""Start-up of `sslspec run`: seconds from the process's launch to its first training step.

    python benchmarks/startup.py [--repeats 7] [--out FILE]

Each repeat launches a fresh process running `sslspec run specs/hltm_simclr.ssl` (device cpu,
one epoch of 128 samples, measured on 128 samples before training), as the command line would;
the child records the wall time from just before its launch (the parent's clock) to the first
call of a training step (Trainer or ReplicaTrainer) and exits there. So the figure holds Python's
start, every import (torch most of it), parsing, checking and lowering the spec, creating the
store and the epoch-0 measurement. A fresh `python -c "import torch"` is timed alongside, the
floor no change in sslspec can go below. Both alternate, repeat by repeat, so they see the same
load. Bytecode caches (__pycache__) are written on a first, untimed run and used after, as for an
installed package; the report says whether they were. Not a test: the target is checked here.
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

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "hltm_simclr.ssl"
SETS = ["train.samples=128", "train.epochs=1", "measure.samples=128"]
TARGET_S = 1.5

# The child: stop at the first training step and write the seconds since the parent's launch.
CHILD = """
import os, sys, time
launched, stamp = float(sys.argv[1]), sys.argv[2]
def first_step(*args, **kwargs):
    with open(stamp, "w") as f:
        f.write(repr(time.time() - launched))
    os._exit(0)
import runtime.replicas, runtime.train
runtime.train.Trainer.step = runtime.train.Trainer.run_steps = first_step
runtime.replicas.ReplicaTrainer.step = runtime.replicas.ReplicaTrainer.epoch = first_step
from sslspec.cli import main
sys.argv = ["sslspec", *sys.argv[3:]]
main()
"""


def to_first_step(out: Path, env: dict[str, str]) -> float:
    """Seconds from launch to the first training step of one `sslspec run` process."""
    stamp = out.with_suffix(".s")
    argv = ["run", str(SPEC), "--device", "cpu", "--out", str(out), *[a for s in SETS for a in ("-s", s)]]
    launched = time.time()
    subprocess.run(
        [sys.executable, "-c", CHILD, repr(launched), str(stamp), *argv], check=True, env=env, cwd=ROOT
    )
    return float(stamp.read_text())


def import_torch(env: dict[str, str]) -> float:
    """Wall seconds of a fresh process that imports torch and exits."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--machine", default="2-core VM, shared with other sessions")
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        to_first_step(Path(tmp) / "warm", env)  # writes the bytecode caches; not timed
        runs, torch_only = [], []
        for i in range(args.repeats):
            runs.append(to_first_step(Path(tmp) / f"run{i}", env))
            torch_only.append(import_torch(env))
            load.append(os.getloadavg())
    report = {
        "machine": f"{args.machine}: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "python": platform.python_version(),
        "bytecode_caches": "written on a first run, used after (PYTHONDONTWRITEBYTECODE unset)",
        "workload": f"sslspec run {SPEC.relative_to(ROOT)} --device cpu -s " + " -s ".join(SETS),
        "seconds_to_first_step": {"median": statistics.median(runs), "all": runs},
        "seconds_import_torch_alone": {"median": statistics.median(torch_only), "all": torch_only},
        "load_average_before_and_after_each": load,
        "target_s": TARGET_S,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
