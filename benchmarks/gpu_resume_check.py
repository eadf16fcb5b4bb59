"""GPU check: a run killed (SIGKILL) mid-training on CUDA and resumed is bit-identical to an
uninterrupted one (CUDA graphs, generator states and checkpoints together).

    python benchmarks/gpu_resume_check.py
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
SETS = ["train.samples=640000", "train.epochs=4", "measure.samples=8192", "device=cuda"]


def cmd(out: Path) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "sslspec.cli",
        "run",
        str(ROOT / "specs" / "quickstart.ssl"),
        "--out",
        str(out),
    ]
    return args + [x for s in SETS for x in ("--set", s)]


def store(out: Path) -> Path:
    return next(out.glob("*/*/v*.zarr"))


def main() -> None:
    a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    subprocess.run(cmd(a), check=True)
    p = subprocess.Popen(cmd(b))
    while True:
        time.sleep(0.2)
        zj = list(b.glob("*/*/v*.zarr/zarr.json"))
        if zj and json.loads(zj[0].read_text())["attributes"].get("epochs_done", 0) >= 1:
            break
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = json.loads(next(b.glob("*/*/v*.zarr/zarr.json")).read_text())["attributes"]
    print(f"killed at epochs_done={killed['epochs_done']} status={killed['status']}")
    subprocess.run(cmd(b), check=True)
    x, y = (xr.open_zarr(store(o), consolidated=False).load() for o in (a, b))
    bad = [n for n in x.variables if not np.array_equal(x[n].values, y[n].values, equal_nan=True)]
    print(
        f"resumed status={y.attrs['status']} epochs_done={y.attrs['epochs_done']} "
        f"resumed={y.attrs.get('resumed')}"
    )
    print(
        "BAD cuda resume: differs in " + ", ".join(bad)
        if bad
        else f"ok  cuda resume: {len(x.variables)} arrays bit-identical"
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
