"""Images per second of the image augmentation pipelines on one CPU thread (the issue's target for
the CIFAR-10 pipeline: >= 5,000 images/s at 32 x 32), per step and whole.

    python benchmarks/augment_speed.py [--batch 512] [--repeats 5] [--json out.json]

Each figure is the median over `repeats` timed calls (after one warm-up call) of one view of a
batch of random uint8 images, as ImageSource draws them (runtime.images.augment.Pipeline, seeded
from a torch.Generator). The per-step rows run the pipeline with only that step (plus the resize
that stands in for a missing crop), so they show where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import attrs
import torch

from runtime.images.augment import CIFAR10_STEPS, STL10_STEPS, Pipeline
from sslspec.spec.images import AUGMENT_STEPS, ImageAugment


def rate(aug: ImageAugment, size: int, batch: int, repeats: int) -> float:
    """Median images/s of one view of a (batch, 3, size, size) uint8 batch."""
    pipe, gen = Pipeline(aug, size), torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    pipe(x, gen)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe(x, gen)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def only(step: str) -> ImageAugment:
    """The CIFAR-10 pipeline with every step but `step` removed."""
    off = {name: None for name in AUGMENT_STEPS if name != step}
    cfg = attrs.evolve(CIFAR10_STEPS, **off)
    if getattr(cfg, step) is None:  # a step that is off by default: its defaults
        cfg = attrs.evolve(cfg, **{step: AUGMENT_STEPS[step]()})
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = {"cifar10 pipeline (32 px)": rate(CIFAR10_STEPS, 32, args.batch, args.repeats)}
    for step in AUGMENT_STEPS:
        rows[f"  only {step} (32 px)"] = rate(only(step), 32, args.batch, args.repeats)
    rows["stl10 pipeline (96 px)"] = rate(STL10_STEPS, 96, max(args.batch // 4, 1), args.repeats)
    for name, r in rows.items():
        print(f"{name:28s} {r:10,.0f} images/s")
    if args.json:
        meta = {"threads": 1, "batch": args.batch, "torch": torch.__version__, "load": os.getloadavg()}
        with open(args.json, "w") as f:
            json.dump({"images_per_s": rows, **meta}, f, indent=2)


if __name__ == "__main__":
    main()
