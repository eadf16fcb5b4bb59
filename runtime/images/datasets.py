"""Image data sets read from their real on-disk formats into one uint8 tensor each.

`read(kind, root, split)` -> `Images`: `pixels` (N, 3, H, W) uint8 and `labels` (N,) int64
(-1 for STL-10's unlabeled images). Nothing is downloaded, ever: a missing or malformed root is
a `DataError` naming the file and what was expected, raised before any training starts.

Formats (see the CIFAR-10 and STL-10 pages; checked against generated files in the tests):
- CIFAR-10 python: cifar-10-batches-py/{data_batch_1..5, test_batch}, pickled dicts with
  b"data" (10000, 3072) uint8 in R, G, B planes of 32 x 32 row-major and b"labels".
- CIFAR-10 binary: cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin}, records of
  1 label byte + 3072 pixel bytes in the same plane order.
- STL-10 binary: stl10_binary/{train,test}_{X,y}.bin and unlabeled_X.bin; images 3 x 96 x 96,
  each channel column-major; labels bytes 1..10.
- digits: scikit-learn's bundled 8 x 8 grey digits (values 0..16), upscaled (nearest) to
  `size` and replicated to 3 channels; split "train" is the first 80% in a fixed shuffle.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from attrs import frozen

CIFAR_BATCH = 10_000
CIFAR_RECORD = 1 + 3 * 32 * 32
STL_PIXELS = 3 * 96 * 96
# What a CIFAR-10 python batch may name when unpickled: numpy's array reconstruction (the module is
# numpy.core in the official files, numpy._core in numpy 2's) and the bytes codec of protocol 2.
# Anything else is refused before it is imported or called: a pickle is code, and a copy of a data
# set is not trusted to run any.
PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class DataError(Exception):
    """A data set root or file that is missing or malformed: the message names the file and what
    was expected (shown to the user as is, exit 2)."""


@frozen
class Images:
    pixels: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64; -1 where a split has no labels
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def read(kind: str, root: str | Path | None = None, split: str = "train", size: int = 32) -> Images:
    """A data set kind ("cifar10", "stl10", "digits") and split -> its images in memory."""
    readers: dict[str, Callable[[], Images]] = {
        "cifar10": lambda: read_cifar10(_root(root, kind), split),
        "stl10": lambda: read_stl10(_root(root, kind), split),
        "digits": lambda: read_digits(split, size),
    }
    if kind not in readers:
        raise DataError(f"unknown image data set {kind!r} (expected cifar10, stl10 or digits)")
    try:
        return readers[kind]()
    except OSError as e:  # unreadable (permissions, a failing disk or network mount)
        raise DataError(f"data {kind}: cannot read {str(e.filename or root)!r}: {e.strerror or e}") from None


def _root(root: str | Path | None, kind: str) -> Path:
    if root is None:
        raise DataError(f"data {kind}: `root` must name the folder holding the data set")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data {kind}: root {str(path)!r} is not a directory")
    return path


def _splits(split: str, allowed: tuple[str, ...], what: str) -> list[str]:
    parts = split.split("+")
    bad = [p for p in parts if p not in allowed]
    if bad or not parts:
        raise DataError(f"{what}: unknown split {split!r} (expected {', '.join(allowed)}, joined with '+')")
    return parts


# ---- CIFAR-10 -----------------------------------------------------------------------------------


def read_cifar10(root: Path, split: str = "train") -> Images:
    """CIFAR-10 from `root` (the folder itself or its parent): the python pickles when present,
    else the binary version."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    files = [n for part in _splits(split, ("train", "test"), "data cifar10") for n in names[part]]
    py = _find(root, "cifar-10-batches-py", files[0])
    if py is not None:
        _all_present(py, files, "cifar10")
        chunks = [_cifar_pickle(py / n) for n in files]
        classes = _cifar_meta(py / "batches.meta")
    else:
        binary = _find(root, "cifar-10-batches-bin", files[0] + ".bin")
        if binary is None:
            raise DataError(
                f"data cifar10: no CIFAR-10 under {str(root)!r} (expected cifar-10-batches-py/"
                f"{files[0]} or cifar-10-batches-bin/{files[0]}.bin)"
            )
        _all_present(binary, [n + ".bin" for n in files], "cifar10")
        chunks = [_cifar_binary(binary / (n + ".bin")) for n in files]
        classes = _text_lines(binary / "batches.meta.txt", "cifar10")
    pixels = torch.from_numpy(np.concatenate([c[0] for c in chunks]).reshape(-1, 3, 32, 32))
    labels = torch.from_numpy(np.concatenate([c[1] for c in chunks]).astype(np.int64))
    return Images(pixels, labels, classes)


def _find(root: Path, folder: str, first: str) -> Path | None:
    for base in (root / folder, root):
        if (base / first).is_file():
            return base
    return None


class _ArraysOnly(pickle.Unpickler):
    """An unpickler of plain data and numpy arrays: any other global is an UnpicklingError."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data batch never holds")
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    """The object pickled in `path`, read with byte-string keys, only plain data and arrays."""
    with path.open("rb") as f:
        return _ArraysOnly(f, encoding="bytes").load()


def _cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"data cifar10: missing batch file {str(path)!r}")
    try:
        d = _unpickle(path)
        data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(
            f"data cifar10: {str(path)!r} is not a CIFAR-10 python batch (a pickled dict with "
            f"b'data' (N, 3072) uint8 and b'labels'): {type(e).__name__}: {e}"
        ) from None
    return _cifar_arrays(path, data, labels)


def _cifar_arrays(path: Path, data: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A python batch's arrays, checked (shapes, whole numbers, pixels 0..255, labels 0..9), as
    (N, 3072) uint8 and (N,) int64: nothing is cast that would change a value."""
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],) or not len(data):
        raise DataError(
            f"data cifar10: {str(path)!r} holds data {data.shape} and {labels.size} labels "
            "(expected (N, 3072) and N labels, N >= 1)"
        )
    if data.dtype.kind not in "ui" or labels.dtype.kind not in "ui":
        raise DataError(
            f"data cifar10: {str(path)!r} holds data of dtype {data.dtype} and labels of dtype "
            f"{labels.dtype} (expected whole numbers: uint8 pixels, integer labels)"
        )
    if data.min() < 0 or data.max() > 255:
        raise DataError(
            f"data cifar10: {str(path)!r} has pixel values {data.min()}..{data.max()} (expected 0..255)"
        )
    _labels_in(labels, 0, 9, path, "cifar10")
    return data.astype(np.uint8, copy=False), labels.astype(np.int64, copy=False)


def _cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _bytes(path, "cifar10")
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(
            f"data cifar10: {str(path)!r} has {raw.size} bytes, not a whole number of "
            f"{CIFAR_RECORD}-byte records (1 label byte + 3072 pixel bytes); truncated?"
        )
    rec = raw.reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    _labels_in(labels, 0, 9, path, "cifar10")
    return rec[:, 1:], labels


def _cifar_meta(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return tuple(str(i) for i in range(10))
    try:
        names = _unpickle(path)[b"label_names"]
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError):
        raise DataError(f"data cifar10: {str(path)!r} is not a batches.meta pickle") from None


# ---- STL-10 -------------------------------------------------------------------------------------


def read_stl10(root: Path, split: str = "train") -> Images:
    """STL-10 binary from `root` (the folder itself or its parent); "unlabeled" has labels -1."""
    parts = _splits(split, ("train", "test", "unlabeled"), "data stl10")
    base = root / "stl10_binary" if (root / "stl10_binary").is_dir() else root
    pix, lab = [], []
    for part in parts:
        x = _bytes(base / f"{part}_X.bin", "stl10")
        if x.size == 0 or x.size % STL_PIXELS:
            raise DataError(
                f"data stl10: {str(base / f'{part}_X.bin')!r} has {x.size} bytes, not a whole number "
                f"of {STL_PIXELS}-byte images (3 x 96 x 96); truncated?"
            )
        # each channel is stored column-major: (N, C, W, H) -> (N, C, H, W)
        pix.append(x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
        n = pix[-1].shape[0]
        if part == "unlabeled":
            lab.append(np.full(n, -1, dtype=np.int64))
            continue
        y = _bytes(base / f"{part}_y.bin", "stl10").astype(np.int64)
        if y.size != n:
            raise DataError(f"data stl10: {str(base / f'{part}_y.bin')!r} has {y.size} labels for {n} images")
        _labels_in(y, 1, 10, base / f"{part}_y.bin", "stl10")
        lab.append(y - 1)
    classes = _text_lines(base / "class_names.txt", "stl10")
    pixels = torch.from_numpy(np.ascontiguousarray(np.concatenate(pix)))
    return Images(pixels, torch.from_numpy(np.concatenate(lab)), classes)


# ---- digits -------------------------------------------------------------------------------------


def read_digits(split: str = "train", size: int = 32) -> Images:
    """scikit-learn's digits (ships with the package; no download) as (N, 3, size, size) uint8."""
    parts = _splits(split, ("train", "test"), "data digits")
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))  # fixed: the split is part of the data
    cut = int(0.8 * len(order))
    index = np.concatenate([order[:cut] if p == "train" else order[cut:] for p in parts])
    img = (d.images[index] * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8)
    t = torch.from_numpy(img)[:, None].float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="nearest").to(torch.uint8)
    classes = tuple(str(i) for i in range(10))
    return Images(
        t.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(d.target[index].astype(np.int64)), classes
    )


# ---- helpers ------------------------------------------------------------------------------------


def _all_present(folder: Path, names: list[str], kind: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"data {kind}: missing batch file(s) {', '.join(missing)} in {str(folder)!r}")


def _bytes(path: Path, kind: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"data {kind}: missing file {str(path)!r}")
    return np.fromfile(path, dtype=np.uint8)


def _labels_in(labels: np.ndarray, lo: int, hi: int, path: Path, kind: str) -> None:
    if labels.size and (labels.min() < lo or labels.max() > hi):
        raise DataError(
            f"data {kind}: {str(path)!r} has labels {labels.min()}..{labels.max()} (expected {lo}..{hi})"
        )


def _text_lines(path: Path, kind: str) -> tuple[str, ...]:
    if not path.is_file():
        return tuple(str(i) for i in range(10))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"data {kind}: {str(path)!r} is not UTF-8 text (class names, one a line): {e}"
        ) from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())
