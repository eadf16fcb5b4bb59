"""Time listing 1,000 runs from the index: `index.read`, `index.refresh` and `sslspec ls` (median of repeats).

Usage: python benchmarks/index_speed.py [--runs 1000] [--stores] [--repeats 7]
`--stores` also writes that many tiny zarr stores, so refresh/ls pay for the directory scan.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from sslspec.store import index


def tiny_store(root: Path, run_id: str, swept: dict[str, int]) -> str:
    path = root / "e" / run_id / "v0001.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs.update({"schema_version": 1, "status": "complete", "experiment": "e", "run_id": run_id})
    g.attrs.update({"swept": swept, "epochs_done": 1})
    arr = g.create_array("best_corr", shape=(2, 3), dtype="float32", dimension_names=["epoch", "node"])
    arr[...] = np.full((2, 3), 0.5, dtype=np.float32)
    return str(path.relative_to(root))


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--stores", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        for i in range(args.runs):
            swept = {"network.width": i % 7, "seed": i}
            rid = f"r{i:05d}"
            path = tiny_store(root, rid, swept) if args.stores else f"e/{rid}/v0001.zarr"
            index.record(
                root,
                {
                    "experiment": "e",
                    "run_id": rid,
                    "version": 1,
                    "status": "complete",
                    "swept": swept,
                    "epochs_done": 1,
                    "metrics": {"root_corr": 0.5},
                    "path": path,
                },
            )
        what = "entries and stores" if args.stores else "entries"
        print(f"wrote {args.runs} {what} in {time.perf_counter() - t0:.2f} s")
        print(f"index.read     median {median_s(lambda: index.read(root), args.repeats) * 1e3:8.1f} ms")
        print(f"index.refresh  median {median_s(lambda: index.refresh(root), args.repeats) * 1e3:8.1f} ms")
        exe = str(Path(sys.executable).parent / "sslspec")
        ls = lambda: subprocess.run([exe, "ls", str(root)], check=True, capture_output=True)
        print(f"sslspec ls     median {median_s(ls, args.repeats) * 1e3:8.1f} ms (whole process)")


if __name__ == "__main__":
    main()
