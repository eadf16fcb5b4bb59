"""Throughput of the reference config (specs/hltm_simclr.ssl): training and measurement samples/s.

    python benchmarks/throughput.py [--device cpu|cuda] [--threads N] [--repeats 5] [--steps 200]

Training: whole epochs' worth of SGD steps (draw views, forward, loss, backward, step) on fresh
samples, timed over `--steps` steps per repeat. Measurement: a pass of `--measure-samples` fresh
samples with latent correlations and the operator spectrum (top 8) on. The two alternate, repeat by
repeat, so that both see the same load on a shared machine. Reports the median over repeats and the
spread, of wall time and of the process's CPU time (less sensitive to other processes), with the
machine it ran on. Not a test: speed targets are checked here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from runtime.device import device_name, resolve_device, set_determinism
from runtime.measure import CovarianceOperator, LatentCorrelation
from runtime.measurements import measure_pass
from runtime.run import build_run
from runtime.train import Trainer
from sslspec.spec.lower import lower


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(spec: str, device: torch.device, sets: list[str]) -> tuple:
    """The spec's first run as `sslspec run` builds it (same seeds, layout, network, optimizer)."""
    run = lower(spec, sets).runs[0]
    return run.config, build_run(run, device)


def time_training(trainer: Trainer, steps: int, device: torch.device) -> tuple[float, float]:
    """Samples/s of `steps` SGD steps (examples counted as the batch size per step): wall, CPU."""
    trainer.net.train()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.run_steps(steps)
    _sync(device)
    n = steps * trainer.ctx.cfg.train.batch
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def time_measure(cfg, trainer: Trainer, samples: int, device: torch.device) -> tuple[float, float]:
    """Samples/s of one measurement pass with latent correlation and the top-8 spectrum: wall, CPU."""
    ctx = trainer.ctx
    layout, w = ctx.source.layout, cfg.network.width
    assert layout is not None
    corr = LatentCorrelation(layout, w)
    op = CovarianceOperator.for_tree(layout, w, ctx.source.n_classes(), top=8)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        trainer.net.eval()
        measure_pass(ctx, corr, op)
        corr.result(), op.result()
    _sync(device)
    return samples / (time.perf_counter() - t0), samples / (time.process_time() - c0)


def spread(rates: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max of the wall and CPU rates."""
    out = {}
    for i, kind in enumerate(("wall", "cpu")):
        xs = [r[i] for r in rates]
        out[kind] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/hltm_simclr.ssl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--measure-samples", type=int, default=64000)
    ap.add_argument("--eager", action="store_true", help="on CUDA, do not replay a captured CUDA graph")
    ap.add_argument("--machine", default="2-core VM, busy with other sessions")
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    args = ap.parse_args()
    load = os.getloadavg()
    device = resolve_device(args.device)
    set_determinism()  # one CPU thread, as `sslspec run` uses
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, trainer = setup(args.spec, device, [f"measure.samples={args.measure_samples}"])
    trainer.graphs = not args.eager
    time_training(trainer, 20, device)  # warm-up
    time_measure(cfg, trainer, args.measure_samples, device)  # warm-up
    train, meas = [], []
    for _ in range(args.repeats):  # alternating: both see the same load
        train.append(time_training(trainer, args.steps, device))
        meas.append(time_measure(cfg, trainer, args.measure_samples, device))
    report = {
        "machine": f"{args.machine}: {platform.node()} {platform.processor() or platform.machine()}",
        "device": device_name(device),
        "torch": torch.__version__,
        "load_average_at_start": load,
        "train_samples_per_s": spread(train),
        "measure_samples_per_s": spread(meas),
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "measure_samples": args.measure_samples,
    }
    report["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
