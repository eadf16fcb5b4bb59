"""Time writing a run's arrays epoch by epoch under each integrity choice for stored chunks.

Compared: zstd alone (zarr's default, no check), zstd with its frame checksum, and zstd followed
by a crc32c of the compressed chunk (zarr v3's crc32c codec, sslspec's choice). Each trial writes
one store like a run's: per epoch one chunk of each of three arrays of 1 KiB, 32 KiB and 1 MiB of
float32 measurements (random values: measurements compress little). Reported: median seconds per
epoch row over the repeats, and the overhead against zstd alone.

Usage: python benchmarks/checksum_speed.py [--epochs 50] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

CHOICES: dict[str, tuple[Any, ...]] = {
    "zstd (no check)": (ZstdCodec(level=0, checksum=False),),
    "zstd + frame checksum": (ZstdCodec(level=0, checksum=True),),
    "zstd + crc32c": (ZstdCodec(level=0, checksum=False), Crc32cCodec()),
}
ROW_FLOATS = (256, 8192, 262144)  # 1 KiB, 32 KiB, 1 MiB of float32 per epoch


def trial(root: Path, compressors: tuple[Any, ...], epochs: int, rows: list[np.ndarray]) -> float:
    """Seconds to create the arrays and write `epochs` rows of each."""
    t0 = time.perf_counter()
    g = zarr.open_group(str(root), mode="w", zarr_format=3)
    arrays = [
        g.create_array(
            f"a{i}", shape=(epochs, r.size), chunks=(1, r.size), dtype="float32", compressors=compressors
        )
        for i, r in enumerate(rows)
    ]
    for e in range(epochs):
        for a, r in zip(arrays, rows, strict=True):
            a[e] = r
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal(n).astype(np.float32) for n in ROW_FLOATS]
    times: dict[str, list[float]] = {k: [] for k in CHOICES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved, so machine load hits every choice alike
            for k, codecs in CHOICES.items():
                times[k].append(trial(Path(tmp) / f"{r}_{len(times[k])}.zarr", codecs, args.epochs, rows))
    base = statistics.median(times["zstd (no check)"])
    print(f"{args.epochs} epoch rows of {sum(ROW_FLOATS) * 4 / 2**20:.2f} MiB, median of {args.repeats}:")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"  {k:24s} {1e3 * m / args.epochs:7.2f} ms/epoch  {100 * (m / base - 1):+6.1f} %")


if __name__ == "__main__":
    main()
