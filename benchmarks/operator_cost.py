"""Cost of the covariance-operator measurement: whole runs with and without it, and per width.

    python benchmarks/operator_cost.py [--repeats 5] [--widths 5,10,20,50,100] [--dense-max-gib 8]
                                       [--out benchmarks/results/operator_cost_cpu_2core.json]

1. Whole runs, side by side in one call (alternating, `--repeats` each): the reference spec cut to
   depth 3, branching 3, width 20, 256 samples per epoch, 19 epochs, measured every epoch (latent
   correlation and weights as in the spec), with `covariance_operator { top = 8 }` and without it.
   Each run's own `wall_time_s` (as `sslspec run` records it) is reported; target: with <= 2x without.
2. Per width (same tree): one measured epoch's operator cost on 256 fresh samples, split into
   the accumulation (sampling, forward, Jacobians, class sums), the spectrum / trace / norms by the
   route the runtime takes (Gram matrix when (C - 1) D < P), and the theorem-check prediction for nodes
   0, 1, 4; beside them the dense route (P x P matrices, eigh; the dense block-row product) where
   its matrices and eigh's workspace (3 N_l P^2 float64 numbers a level) fit `--dense-max-gib`.
Medians over `--repeats` (the dense route at widths >= 50 once: minutes per eigh there), as wall
time and as the process's CPU time (the latter less sensitive to other processes on a shared machine).
Not a test: speed targets are checked here, on whatever machine this runs on (it says which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import zarr

from runtime.device import set_determinism
from runtime.measure import CovarianceOperator
from runtime.measurements import NetNodes, measure_pass
from runtime.run import build_run, execute
from runtime.spectrum import spectrum
from runtime.theorem import predictions
from sslspec.spec.lower import lower

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "hltm_simclr.ssl"
SHAPE = ["data.depth=3", "data.branching=3", "train.samples=256", "measure.every=1"]
NODES = (0, 1, 4)  # the root, a level-1 node, a level-2 node
F64 = 8


def whole_runs(repeats: int) -> dict[str, Any]:
    """Wall and CPU time of the width-20 run with and without the operator, alternating, `repeats` each.

    wall: the run's own `wall_time_s`; cpu: the process's CPU time over `execute` (all its threads;
    less sensitive than wall time to other processes on a shared machine)."""
    sets = [*SHAPE, "network.width=20", "train.epochs=19"]
    variants = {
        "with_operator": [*sets, "measure.covariance_operator.top=8"],
        "without_operator": [*sets, "measure.covariance_operator=false"],
    }
    walls: dict[str, list[float]] = {k: [] for k in variants}
    cpus: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):  # the first round warms up (imports, caches) and is dropped
            for name, variant in variants.items():
                out = Path(tmp) / f"{name}{r}"
                cpu = time.process_time()
                assert execute(lower(SPEC, variant), str(out), device="cpu") == 0
                cpu = time.process_time() - cpu
                (store,) = out.glob("*/*/v0001.zarr")
                if r:
                    walls[name].append(float(zarr.open(str(store), mode="r").attrs["wall_time_s"]))
                    cpus[name].append(cpu)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    return {
        "config": "specs/hltm_simclr.ssl with " + ", ".join(sets) + "; measured at epochs 0..19",
        "wall_s": walls,
        "cpu_s": cpus,
        "median_wall_s": wall,
        "median_cpu_s": cpu_med,
        "ratio_with_over_without_wall": wall["with_operator"] / wall["without_operator"],
        "ratio_with_over_without_cpu": cpu_med["with_operator"] / cpu_med["without_operator"],
        "target_ratio": 2.0,
    }


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of `repeats` calls of fn."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}


def per_width(width: int, repeats: int, dense_max_gib: float) -> dict[str, Any]:
    """One measured epoch's operator cost at `width`, by the runtime's route and (where it fits) dense."""
    run = lower(SPEC, [*SHAPE, f"network.width={width}", "train.epochs=1"]).runs[0]
    cfg = run.config
    ctx = build_run(run, torch.device("cpu")).ctx
    net = ctx.net.eval()
    levels = NetNodes.of(cfg, ctx.source.layout, ctx.source.input_dim).level_fan_in()
    n_cls = ctx.source.n_classes()

    def accumulate() -> CovarianceOperator:
        op = CovarianceOperator(levels, n_cls, top=8)
        with torch.no_grad():
            measure_pass(ctx, None, op)
        return op

    op = accumulate()
    factors = [op.reduced_factor(lvl) for lvl in range(len(levels))]
    sizes = [fan * width for fan in levels]
    p_of = [a.shape[1] for a in factors]
    dense_bytes = max(3 * a.shape[0] * a.shape[1] ** 2 * F64 for a in factors)
    out: dict[str, Any] = {
        "width": width,
        "P_per_level": p_of,
        "R_per_level ((C-1) D)": [a.shape[2] for a in factors],
        "routes": ["gram" if a.shape[2] < a.shape[1] else "dense" for a in factors],
        "dense_peak_gib": dense_bytes / 2**30,
    }
    out["accumulate_s"] = timed(accumulate, repeats)
    out["spectrum_s"] = timed(op.result, repeats)
    out["prediction_s"] = timed(lambda: predictions(net, op, NODES, 1.0, 0.0), repeats)
    out["operator_per_epoch_s"] = {k: out["accumulate_s"][k] + out["spectrum_s"][k] for k in ("wall", "cpu")}
    if dense_bytes > dense_max_gib * 2**30:
        out["dense"] = f"not run: needs {dense_bytes / 2**30:.1f} GiB (limit {dense_max_gib} GiB)"
        return out
    dense_repeats = repeats if width < 50 else 1

    def dense_spectrum() -> None:
        for a, size in zip(factors, sizes, strict=True):
            spectrum(a, size, 8, route="dense")

    def dense_prediction() -> None:
        for node in NODES:
            lvl, _ = op.locate[node]
            vec = torch.zeros(factors[lvl].shape[:2], dtype=torch.float64)
            torch.einsum("nab,nb->a", op.operator_row(node), vec)

    out["dense_spectrum_s"] = timed(dense_spectrum, dense_repeats)
    out["dense_prediction_s"] = timed(dense_prediction, dense_repeats)
    out["dense_operator_per_epoch_s"] = {
        k: out["accumulate_s"][k] + out["dense_spectrum_s"][k] for k in ("wall", "cpu")
    }
    out["dense_repeats"] = dense_repeats
    return out


def machine(note: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), platform.processor())
    return {
        "machine": note,
        "cpu": model,
        "cores": os.cpu_count(),
        "device": f"cpu ({torch.get_num_threads()} torch thread)",
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--widths", default="5,10,20,50,100")
    ap.add_argument("--dense-max-gib", type=float, default=8.0)
    ap.add_argument("--skip-runs", action="store_true", help="only the per-width part")
    ap.add_argument("--machine", default="2-core VM, shared with other sessions (timings are noisy)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "operator_cost_cpu_2core.json"))
    args = ap.parse_args()
    set_determinism()  # one CPU thread, as `sslspec run` uses
    result: dict[str, Any] = machine(args.machine)
    if not args.skip_runs:
        result["whole_run"] = whole_runs(args.repeats)
        print(json.dumps(result["whole_run"], indent=1), flush=True)
    result["per_width"] = []
    for w in (int(x) for x in args.widths.split(",")):
        result["per_width"].append(per_width(w, args.repeats, args.dense_max_gib))
        print(json.dumps(result["per_width"][-1]), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
