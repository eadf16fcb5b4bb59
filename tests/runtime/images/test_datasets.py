"""Image loaders: round trips through files generated in the exact CIFAR-10 and STL-10 layouts,
and a clear DataError for each way a copy can be broken."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.images.datasets import CIFAR_RECORD, DataError, read

N = 7  # images per generated batch (the real files have 10,000)


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, 3, size, size) uint8 with every pixel position distinct enough to catch a transpose."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def _cifar_python(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    truth = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        img, lab = _images(N, 32, i), np.arange(N) % 10
        truth[name] = (img, lab)
        d = {b"data": img.reshape(N, 3072), b"labels": lab.tolist(), b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(d))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]})
    )
    return truth


def _cifar_binary(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    truth = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        img, lab = _images(N, 32, 10 + i), (np.arange(N) * 3) % 10
        truth[name] = (img, lab)
        rec = np.concatenate([lab[:, None].astype(np.uint8), img.reshape(N, 3072)], axis=1)
        (folder / f"{name}.bin").write_bytes(rec.tobytes())
    return truth


def _stl(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    truth: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for i, part in enumerate(("train", "test", "unlabeled")):
        img = _images(N, 96, 20 + i)  # (N, C, H, W); the file stores each channel column-major
        img.transpose(0, 1, 3, 2).tofile(folder / f"{part}_X.bin")
        lab = None
        if part != "unlabeled":
            lab = (np.arange(N) % 10) + 1
            lab.astype(np.uint8).tofile(folder / f"{part}_y.bin")
        truth[part] = (img, lab)
    (folder / "class_names.txt").write_text("\n".join(f"s{i}" for i in range(10)) + "\n")
    return truth


def test_cifar10_python_round_trip(tmp_path: Path) -> None:
    """The pickled batches decode to the exact pixels (R, G, B planes, row-major) and labels."""
    truth = _cifar_python(tmp_path)
    train = read("cifar10", tmp_path, "train")
    want = np.concatenate([truth[f"data_batch_{k}"][0] for k in range(1, 6)])
    assert train.pixels.dtype == torch.uint8 and train.pixels.shape == (5 * N, 3, 32, 32)
    assert np.array_equal(train.pixels.numpy(), want)
    assert train.classes[:2] == ("c0", "c1")
    test = read("cifar10", tmp_path / "cifar-10-batches-py", "test")
    assert np.array_equal(test.labels.numpy(), truth["test_batch"][1])


def test_cifar10_binary_round_trip(tmp_path: Path) -> None:
    """The 3073-byte records decode to the same layout; train+test concatenates in that order."""
    truth = _cifar_binary(tmp_path)
    both = read("cifar10", tmp_path, "train+test")
    assert len(both) == 6 * N
    assert np.array_equal(both.pixels[-N:].numpy(), truth["test_batch"][0])
    assert np.array_equal(both.labels[:N].numpy(), truth["data_batch_1"][1])


def test_stl10_column_major_round_trip(tmp_path: Path) -> None:
    """STL-10's column-major channels come back as (N, C, H, W); labels 1..10 become 0..9 and the
    unlabeled split has -1."""
    truth = _stl(tmp_path)
    ds = read("stl10", tmp_path, "train+unlabeled")
    assert ds.pixels.shape == (2 * N, 3, 96, 96)
    assert np.array_equal(ds.pixels[:N].numpy(), truth["train"][0])
    assert np.array_equal(ds.pixels[N:].numpy(), truth["unlabeled"][0])
    assert ds.labels[:N].tolist() == [int(v) - 1 for v in truth["train"][1]]  # type: ignore[union-attr]
    assert ds.labels[N:].tolist() == [-1] * N and ds.classes[0] == "s0"


def test_digits_ship_with_scikit_learn() -> None:
    """digits: 1,797 real images split 80/20 with a fixed shuffle, upscaled and replicated to 3 channels."""
    train, test = read("digits", split="train", size=16), read("digits", split="test", size=16)
    assert len(train) + len(test) == 1797 and train.pixels.shape[1:] == (3, 16, 16)
    assert torch.equal(train.pixels[:, 0], train.pixels[:, 2]) and int(train.pixels.max()) == 255
    assert set(train.labels.tolist()) == set(range(10))
    assert torch.equal(read("digits", split="train", size=16).pixels, train.pixels)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("truncate", "not a whole number of 3073-byte records"),
        ("record_size", "not a whole number of 3073-byte records"),
        ("missing_batch", "no CIFAR-10 under"),
        ("bad_label", "labels 0..200"),
    ],
)
def test_broken_cifar10_binary_is_a_clear_error(tmp_path: Path, damage: str, words: str) -> None:
    """A truncated file, a wrong record size, a missing batch or an impossible label: DataError
    naming the file and what was expected."""
    _cifar_binary(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) - 100]))
    elif damage == "record_size":
        path.write_bytes(bytes(raw) + bytes(CIFAR_RECORD // 2))
    elif damage == "missing_batch":
        path.unlink()
    else:
        raw[CIFAR_RECORD] = 200
        path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=words):
        read("cifar10", tmp_path, "train")


def test_broken_copies_name_the_file(tmp_path: Path) -> None:
    """A corrupt pickle, a missing later batch, a truncated STL-10 file, a missing root: each
    message names the file or folder."""
    _cifar_python(tmp_path / "a")
    (tmp_path / "a" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_2.*not a CIFAR-10 python batch"):
        read("cifar10", tmp_path / "a")
    (tmp_path / "a" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing batch file.* data_batch_3 in .*cifar-10-batches-py"):
        read("cifar10", tmp_path / "a")
    _stl(tmp_path / "b")
    x = tmp_path / "b" / "stl10_binary" / "test_X.bin"
    x.write_bytes(x.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"test_X.bin.*truncated"):
        read("stl10", tmp_path / "b", "test")
    with pytest.raises(DataError, match=r"is not a directory"):
        read("stl10", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"unknown split 'validation'"):
        read("stl10", tmp_path / "b", "validation")
