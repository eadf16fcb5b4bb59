"""Replica batching: training throughput per run-sample of R batched replicas against unbatched runs.

    python benchmarks/replicas.py [--device cpu|cuda] [--replicas 1 4 16 64] [--repeats 3]
                                  [--samples 25600] [--whole 16] [--out FILE]

The reference config (specs/hltm_simclr.ssl: depth 5, width 10, batch 128, InfoNCE), seeds
1..R. Unbatched: one run's Trainer (what `--replicas 1` runs), whole SGD steps (draw views,
forward, loss, backward, step). Batched: a ReplicaTrainer over R runs' contexts, the same steps
for all R at once. Both take their steps through their epoch loop (`run_steps`), so on CUDA the
steps replay a captured CUDA graph as a run's do (the report's `steps` says how each ran).
Both are timed side by side in one process, interleaved within each repeat (unbatched, then each
R), over about `--samples` samples per run-count, after a warm-up; the rate counts every
replica's samples ("run-samples/s"), so the ratio batched / unbatched is the gain per run-sample.
Medians over repeats, with the spread and the machine.

`--whole R`: also R whole runs of a shortened reference config (2 epochs of 12,800 samples,
measured at 0, 1 and 2 with the default measurements) through `sslspec.api.execute`, once with
`replicas=R` and once with `replicas=1`, one after the other: wall seconds per run, measurement
(not batched) included. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from runtime.context import RunContext
from runtime.device import device_name, resolve_device, set_determinism
from runtime.graphs import WARMUP
from runtime.replicas import ReplicaTrainer
from runtime.train import Trainer
from sslspec.spec.lower import lower

SPEC = Path(__file__).resolve().parents[1] / "specs" / "hltm_simclr.ssl"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def contexts(n: int, device: torch.device) -> list[RunContext]:
    """Runs 1..n of the reference config (seeds 1..n) as `sslspec run` builds them."""
    with tempfile.TemporaryDirectory() as tmp:  # one sweep, lowered once (thousands of replicas on a GPU)
        spec = Path(tmp) / "seeds.ssl"
        spec.write_text(f'include "{SPEC}"\nsweep hltm_simclr {{ seed = 1..{n} }}\n')
        runs = lower(spec).runs
    return [RunContext.build(run, device) for run in runs]


def rate(run_steps: object, steps: int, per_step: int, device: torch.device) -> float:
    """Run-samples/s of `run_steps(steps)` (each step training `per_step` run-samples): the loop
    of an epoch, so on CUDA the steps replay the captured graph as a run's do."""
    assert callable(run_steps)
    _sync(device)
    t0 = time.perf_counter()
    run_steps(steps)
    _sync(device)
    return steps * per_step / (time.perf_counter() - t0)


def whole_runs(n: int, device: str) -> dict[str, float]:
    """Wall seconds per run of `n` shortened reference runs, batched in one group and unbatched."""
    from sslspec.api import execute

    sweep = f'include "{SPEC}"\nsweep hltm_simclr {{ seed = 1..{n} }}\n'
    sets = ["train.samples=12800", "train.epochs=2", "measure.samples=12800"]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.ssl"
        spec.write_text(sweep)
        for name, replicas in ((f"R={n}", n), ("unbatched", 1)):
            t0 = time.perf_counter()
            done = execute([str(spec)], sets, out=f"{tmp}/{name}", device=device, jobs=1, replicas=replicas)
            assert done.code == 0, name
            out[f"{name}_s_per_run"] = (time.perf_counter() - t0) / n
    out["ratio_unbatched_to_batched"] = out["unbatched_s_per_run"] / out[f"R={n}_s_per_run"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=25600, help="run-samples timed per entry and repeat")
    ap.add_argument("--machine", default=platform.node() or "unknown", help="a name for the machine")
    ap.add_argument("--whole", type=int, default=0, help="also time this many whole runs, batched and not")
    ap.add_argument("--out", default=None, help="write the results as JSON here too")
    args = ap.parse_args()
    set_determinism()
    device = resolve_device(args.device)
    batch = 128
    alone = Trainer(contexts(1, device)[0])
    groups = {r: ReplicaTrainer(contexts(r, device)) for r in args.replicas}
    warm = WARMUP + 2  # allocator and first-call costs; on CUDA the step's graph capture
    alone.run_steps(warm)
    for g in groups.values():
        g.run_steps(warm)
    found: dict[str, list[float]] = {"unbatched": []} | {f"R={r}": [] for r in args.replicas}
    for _ in range(args.repeats):
        steps = max(3, args.samples // batch)
        found["unbatched"].append(rate(alone.run_steps, steps, batch, device))
        for r, g in groups.items():
            found[f"R={r}"].append(rate(g.run_steps, max(3, args.samples // (batch * r)), batch * r, device))
    base = statistics.median(found["unbatched"])
    table = {
        name: {
            "run_samples_per_s": statistics.median(v),
            "min": min(v),
            "max": max(v),
            "ratio_to_unbatched": statistics.median(v) / base,
        }
        for name, v in found.items()
    }
    result = {
        "benchmark": "benchmarks/replicas.py",
        "machine": args.machine,
        "device": device_name(device),
        "torch": torch.__version__,
        "config": "specs/hltm_simclr.ssl (depth 5, width 10, batch 128, infonce 1 negative)",
        "repeats": args.repeats,
        "run_samples_per_entry": args.samples,
        "training": table,
        "steps": {"unbatched": alone.mode(), **{f"R={r}": g.mode() for r, g in groups.items()}},
    }
    if args.whole:
        result["whole_runs"] = whole_runs(args.whole, args.device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
