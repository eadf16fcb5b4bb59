"""Images per second of the image augmentation pipelines on one CPU thread (the issue's target for
the CIFAR-10 pipeline: >= 5,000 images/s at 32 x 32), whole and per step, against kornia's own
modules for every step (`Pipeline(reference=True)`, what the pipeline ran before the batched steps).

    python benchmarks/augment_speed.py [--batch 512] [--repeats 15] [--machine TEXT] [--json out.json]

Each call augments one view of a batch of random uint8 images, as ImageSource draws them
(runtime.images.augment.Pipeline, seeded from a torch.Generator), after one warm-up call; the
calls of the pipeline and of its kornia-only twin alternate, so both meet the same load. Every
figure is given as the median and the best over `repeats` calls, twice: by wall-clock time, and by
the thread's CPU time (time.thread_time), which leaves out the time the thread waited for a core;
on a machine shared with other jobs the wall-clock figures mostly measure the others' load (the
load average before and after is recorded). The per-step rows run the pipeline with only that step
(plus the resize that stands in for a missing crop), so they show where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from typing import Any

import attrs
import torch

from runtime.images.augment import CIFAR10_STEPS, STL10_STEPS, Pipeline
from sslspec.spec.images import AUGMENT_STEPS, ImageAugment

TARGET = 5000.0  # images/s, the CIFAR-10 pipeline on one CPU thread


def rates(
    aug: ImageAugment, size: int, batch: int, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Images/s of one view of a (batch, 3, size, size) uint8 batch, by the pipeline and by the
    kornia-only one, their calls alternating so that both meet the same load: median and best, by
    wall clock and by thread CPU time."""
    x = torch.randint(
        0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    pipes = [
        (Pipeline(aug, size, reference), torch.Generator().manual_seed(0)) for reference in (False, True)
    ]
    times: list[tuple[list[float], list[float]]] = [([], []), ([], [])]
    for pipe, gen in pipes:
        pipe(x, gen)  # warm-up
    for _ in range(repeats):
        for (pipe, gen), (wall, cpu) in zip(pipes, times, strict=True):
            w0, c0 = time.perf_counter(), time.thread_time()
            pipe(x, gen)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
    ours, kornia = (
        {
            "wall_median": batch / statistics.median(wall),
            "wall_best": batch / min(wall),
            "cpu_median": batch / statistics.median(cpu),
            "cpu_best": batch / min(cpu),
        }
        for wall, cpu in times
    )
    return ours, kornia


def only(step: str) -> ImageAugment:
    """The CIFAR-10 pipeline with every step but `step` removed."""
    off = {name: None for name in AUGMENT_STEPS if name != step}
    cfg = attrs.evolve(CIFAR10_STEPS, **off)
    if getattr(cfg, step) is None:  # a step that is off by default: its defaults
        cfg = attrs.evolve(cfg, **{step: AUGMENT_STEPS[step]()})
    return cfg


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--machine", default="", help="what the machine is and who else uses it")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    b, n = args.batch, args.repeats
    rows: dict[str, dict[str, float]] = {}
    cases = [("cifar10 pipeline", CIFAR10_STEPS, 32, b, n)]
    cases += [(f"  only {step}", only(step), 32, b, n) for step in AUGMENT_STEPS]
    cases += [("stl10 pipeline", STL10_STEPS, 96, max(b // 4, 1), max(n // 3, 3))]
    for name, aug, size, batch, repeats in cases:
        ours, kornia = rates(aug, size, batch, repeats)
        rows[f"{name} ({size} px)"] = ours
        rows[f"{name}, kornia's own modules ({size} px)"] = kornia
    print(f"{'images/s':52s} {'wall med':>9s} {'wall best':>9s} {'cpu med':>9s} {'cpu best':>9s}")
    for name, r in rows.items():
        cells = " ".join(f"{r[k]:9,.0f}" for k in ("wall_median", "wall_best", "cpu_median", "cpu_best"))
        print(f"{name:52s} {cells}")
    if args.json:
        meta: dict[str, Any] = {
            "machine": args.machine,
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "threads": 1,
            "batch": b,
            "repeats": n,
            "target_images_per_s": TARGET,
            "torch": torch.__version__,
            "kornia": version("kornia"),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        with open(args.json, "w") as f:
            json.dump({"images_per_s": rows, **meta}, f, indent=2)


if __name__ == "__main__":
    main()
