"""Wall time of `sslspec check` on every spec under specs/ (the target: well under 0.5 s).

    python benchmarks/check_latency.py [--repeats 10]

Runs the installed command in fresh processes, as a user would, and reports the median and the
spread. torch is never imported by it (tests/test_architecture.py checks that).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    exe = shutil.which("sslspec") or str(Path(sys.executable).with_name("sslspec"))
    specs = sorted(str(p) for p in (ROOT / "specs").rglob("*.ssl"))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([exe, "check", *specs], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(
        f"sslspec check on {len(specs)} specs: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s over {args.repeats} runs"
    )


if __name__ == "__main__":
    main()
