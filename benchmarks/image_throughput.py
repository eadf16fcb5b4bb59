"""ResNet-18 SimCLR training throughput on CIFAR-format data generated in place, and the
augmentation's share of a training step.

    python benchmarks/image_throughput.py [--device cuda] [--batch 512] [--steps 40] [--out FILE]

No data set can be downloaded on the machines here, so the benchmark writes a CIFAR-10 copy in
the python-pickle layout (random pixels and labels, the exact file format) to a temporary
folder, then:
1. runs `sslspec run specs/images/cifar10_simclr.ssl` on it: the official configuration (ResNet-18,
   CIFAR stem, projector 512-128, NT-Xent, SGD with the cosine schedule, the official CIFAR-10
   augmentations) at `--batch` for two epochs of `--steps` steps, with the probe, k-NN and
   collapse measurements off; the run's summary line gives its training images/s (each image
   gives two views; the run's first steps, start-up excluded, are in it);
2. times the augmentation pipeline alone on the same device: both views of `--batch` images,
   median of `--repeats` calls, synchronized on CUDA;
and reports the augmentation's seconds per batch against the training step's (the issue's
target on a GPU: under 10%). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "images" / "cifar10_simclr.ssl"
SUMMARY = re.compile(r"([\d,]+) samples in ([\d.]+) s")


def write_cifar(root: Path, per_file: int, seed: int = 0) -> None:
    """CIFAR-10's python layout under `root`: five training batches and a test batch of
    `per_file` random images each, and the label names."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_file).tolist()
        batch = {b"data": data, b"labels": labels, b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names))


def train_rate(root: Path, device: str, batch: int, steps: int) -> dict[str, float]:
    """Images/s of a two-epoch `sslspec run` of the official spec on the copy at `root`."""
    sets = [
        f'data.root="{root}"',
        f"train.batch={batch}",
        f"train.samples={batch * steps}",
        "train.epochs=2",
        "measure.linear_probe=false",
        "measure.knn=false",
        "measure.collapse=false",
    ]
    argv = [sys.executable, "-m", "sslspec.cli", "run", str(SPEC), "--device", device]
    argv += ["--out", str(root / "out"), *[a for s in sets for a in ("--set", s)]]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    found = SUMMARY.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    images, seconds = int(found.group(1).replace(",", "")), float(found.group(2))
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def augment_seconds(device: str, batch: int, repeats: int) -> list[float]:
    """Seconds per call of the official CIFAR-10 pipeline's two views of `batch` images."""
    import torch

    from runtime.images.augment import CIFAR10_STEPS, Pipeline

    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=dev)
    pipe = Pipeline(CIFAR10_STEPS, 32)
    out = []
    for _ in range(repeats + 1):  # the first call warms up (kernels, caches); not kept
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        pipe.views(images, gen)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.append(time.perf_counter() - t0)
    return out[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40, help="training steps per epoch (two epochs)")
    ap.add_argument("--repeats", type=int, default=9, help="augmentation calls timed")
    ap.add_argument("--machine", default="")
    ap.add_argument("--out", default=None, help="write the report here as JSON")
    args = ap.parse_args()
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar(root, per_file=max(args.batch * args.steps // 5 + 1, args.batch))
        train = train_rate(root, args.device, args.batch, args.steps)
    aug = augment_seconds(args.device, args.batch, args.repeats)
    load.append(os.getloadavg())
    step_s = args.batch / train["images_per_s"]
    report = {
        "machine": f"{args.machine or platform.node()}: {platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "workload": f"{SPEC.relative_to(ROOT)} at batch {args.batch}, 2 epochs of {args.steps} steps, "
        "generated CIFAR-format data, no probe / k-NN / collapse",
        "training": train,
        "training_step_s": step_s,
        "augment_two_views_s": {"median": statistics.median(aug), "all": aug},
        "augment_share_of_step": statistics.median(aug) / step_s,
        "load_average_before_after": load,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
