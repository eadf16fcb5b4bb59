"""Cost of the per-loss theorem check: the sweep of M batches with autograd's gradients alone (the
check before issue 11), with the exact identity's chain-rule forms (the Jacobians of every view),
and with the class-pair weights too (per-sample triplet and InfoNCE), beside one training epoch.

    python benchmarks/theorem_cost.py [--repeats 3] [--batches 64]
                                      [--out benchmarks/results/theorem_cost_cpu_2core.json]

On the reference spec (depth 5, width 10, batch 128, one CPU thread as `sslspec run` uses), for
the per-sample InfoNCE with l2 output and biases (the check's costliest path) and the simple loss
on a bias-free, unnormalized network. Medians of wall and CPU time. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from operator_cost import timed  # this folder is on sys.path when a benchmark runs as a script

from runtime.device import set_determinism
from runtime.measurements import check_batch
from runtime.run import build_run
from runtime.theorem import sweep
from sslspec.spec.lower import lower

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "hltm_simclr.ssl"
LOSSES = {
    "infonce_sample_l2_bias": ["loss.reduction=sample", "loss.temperature=0.5"],
    "simple_sample_raw_nobias": ["loss.kind=simple", "network.normalize=none", "network.bias=false"],
}
LOCATE = [(0, 0), (1, 1), (2, 3)]  # nodes 0, 2 and 6: one per level of the top three


def one_loss(sets: list[str], repeats: int, m: int) -> dict[str, Any]:
    """The three sweeps of M = m batches and a training epoch, for the reference with `sets`."""
    run = lower(SPEC, ["device=cpu", *sets]).runs[0]
    trainer = build_run(run, torch.device("cpu"))
    ctx = trainer.ctx
    gen = torch.Generator().manual_seed(0)
    cfg = ctx.cfg
    draw = lambda: check_batch(ctx, ctx.source.views(cfg.train.batch, ctx.objective.negatives, gen))
    out: dict[str, Any] = {}
    with torch.enable_grad():
        out["gradients_only"] = timed(lambda: sweep(ctx.net, cfg.loss, draw, LOCATE, (m,)), repeats)
        out["with_identity"] = timed(
            lambda: sweep(ctx.net, cfg.loss, draw, LOCATE, (m,), identity=True), repeats
        )
        out["with_identity_and_pairs"] = timed(
            lambda: sweep(ctx.net, cfg.loss, draw, LOCATE, (m,), identity=True, n_classes=2), repeats
        )
    steps = cfg.train.samples // cfg.train.batch
    out["train_epoch"] = timed(trainer.epoch, 1)
    out["batches"], out["train_steps_per_epoch"] = m, steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=64)
    ap.add_argument("--machine", default="2-core VM, shared with other sessions (timings are noisy)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "theorem_cost_cpu_2core.json"))
    args = ap.parse_args()
    set_determinism()  # one CPU thread, as `sslspec run` uses
    result: dict[str, Any] = {
        "machine": args.machine,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }
    for name, sets in LOSSES.items():
        result[name] = one_loss(sets, args.repeats, args.batches)
        print(name, json.dumps(result[name]), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
