"""GPU check of replica batching: batched replicas against their unbatched runs, on CUDA.

    python benchmarks/gpu_replicas_check.py [--device cuda] [--out FILE]

An 8-run sweep of the reference network (depth 5, width 10, InfoNCE, batch 128) over seed,
polarity and learning rate, 3 epochs of 6,400 samples measured every epoch, runs three times
on the device: batched (one group of 8), unbatched (`--replicas 1`), and batched again.

1. Epoch 0 (the initialization, measured before any step) must be bit-identical: a replica's
   tree, weights and measurement samples come from its own generators, as alone.
2. Later epochs are compared with a tolerance. On the CPU batched and unbatched arrays are equal
   bit for bit (tests/runtime/test_replicas.py); on CUDA the batched matmul over R N matrices may
   pick other kernels than over N, so a replica starts one float32 rounding (~1e-7) away from its
   run and training, being chaotic, grows that over steps. The check prints the largest
   difference per epoch and fails above 1e-2 (a real defect, a replica mixing with another or
   training on the wrong samples, moves correlations by 0.1 and more within an epoch).
3. The batched execution rerun must be bit-identical to itself.
Prints one line per check and exits 1 on the first failure. Not a test: it needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from runtime.executor import LocalExecutor
from runtime.run import execute_all
from sslspec.spec.lower import lower

REFERENCE = Path(__file__).resolve().parents[1] / "specs" / "hltm_simclr.ssl"
SPEC = f"""\
include "{REFERENCE}" {{
  train.samples   = 6400
  train.epochs    = 3
  measure.samples = 8192
  measure.covariance_operator.top = 4
}}
sweep hltm_simclr {{
  seed = 1..2
  data.polarity.low = [0.7, 0.9]
  optimizer.lr = [0.05, 0.2]
}}
"""
TOLERANCE = 1e-2


def run(spec: Path, out: Path, device: str, replicas: int) -> dict[str, Path]:
    """Run every run of `spec` into `out` with groups of at most `replicas`; {run id: store}."""
    code = execute_all([(lower(spec, []), str(out))], device, executor=LocalExecutor(replicas))
    if code != 0:
        sys.exit(f"BAD run with replicas={replicas} exited {code}")
    return {p.parent.name: p for p in sorted(out.rglob("v*.zarr"))}


def diffs(a: Path, b: Path) -> dict[int, float]:
    """Largest |a - b| over every float array, per measured epoch (NaN equal to NaN)."""
    x, y = xr.open_zarr(a, consolidated=False), xr.open_zarr(b, consolidated=False)
    out: dict[int, float] = {}
    for name in x.data_vars:
        u, v = x[name], y[name]
        if u.dtype.kind != "f" or "epoch" not in u.dims:
            continue
        for e in u["epoch"].values:
            d = np.abs(u.sel(epoch=e).values.astype(np.float64) - v.sel(epoch=e).values)
            d = np.where(np.isnan(d) & np.isnan(u.sel(epoch=e).values), 0.0, d)
            out[int(e)] = max(out.get(int(e), 0.0), float(np.nanmax(d, initial=0.0)))
    return out


def identical(a: Path, b: Path) -> bool:
    x, y = xr.open_zarr(a, consolidated=False), xr.open_zarr(b, consolidated=False)
    return set(x.variables) == set(y.variables) and all(
        np.array_equal(x[n].values, y[n].values, equal_nan=x[n].dtype.kind in "fc") for n in x.variables
    )


def report(ok: bool, line: str) -> None:
    print(f"{'ok ' if ok else 'BAD'} {line}", flush=True)
    if not ok:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None, help="write the per-epoch differences here as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.ssl"
        spec.write_text(SPEC)
        batched = run(spec, Path(tmp) / "batched", args.device, 8)
        alone = run(spec, Path(tmp) / "alone", args.device, 1)
        again = run(spec, Path(tmp) / "again", args.device, 8)
        report(set(batched) == set(alone) == set(again) and len(batched) == 8, f"8 runs: {sorted(batched)}")
        worst: dict[int, float] = {}
        for rid in sorted(batched):
            for e, d in diffs(batched[rid], alone[rid]).items():
                worst[e] = max(worst.get(e, 0.0), d)
        print(
            "    largest |batched - unbatched| per epoch:", {e: f"{d:.2e}" for e, d in sorted(worst.items())}
        )
        report(worst.get(0, 1.0) == 0.0, "epoch 0 bit-identical batched and unbatched")
        report(max(worst.values()) <= TOLERANCE, f"every epoch within {TOLERANCE:g}")
        report(all(identical(batched[r], again[r]) for r in batched), "batched rerun bit-identical")
        result: dict[str, Any] = {
            "device": args.device,
            "tolerance": TOLERANCE,
            "max_abs_diff_per_epoch": worst,
        }
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
