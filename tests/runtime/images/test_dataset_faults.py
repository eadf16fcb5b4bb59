"""Fault injection on image data files: copies in the exact CIFAR-10 and STL-10 layouts
(test_datasets' generators), damaged in the ways a real copy breaks or a foreign file sneaks in.
Each is a DataError naming the file and what was expected, never another exception."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from test_datasets import _cifar_binary, _cifar_python, _stl

from runtime.images.datasets import DataError, read

N = 3  # images per batch in the damaged copies


def _foreign_pickle() -> bytes:
    """A pickle of an instance of a class from a module that does not exist where it is read."""
    module = types.ModuleType("sslspec_foreign_module")
    cls = type("Thing", (), {"__module__": module.__name__})
    module.Thing = cls  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        return pickle.dumps({b"data": cls(), b"labels": [0]})
    finally:
        del sys.modules[module.__name__]


class _Called(Exception):
    pass


def _boom() -> None:
    raise _Called


def test_a_pickle_naming_any_other_global_is_refused_before_it_runs(tmp_path: Path) -> None:
    """A batch pickle that names a class of another module, or a callable (a pickle is code),
    is a DataError naming the file and the global; nothing it names is imported or called."""
    _cifar_python(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(_foreign_pickle())
    with pytest.raises(DataError, match=r"data_batch_2.*sslspec_foreign_module\.Thing"):
        read("cifar10", tmp_path)
    batch.write_bytes(b"c" + __name__.encode() + b"\n_boom\n)R.")  # protocol 0: calls _boom()
    with pytest.raises(DataError, match=r"data_batch_2.*_boom"):
        read("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(_foreign_pickle())
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((N, 3072), np.uint8), b"labels": [0] * N})
    )
    with pytest.raises(DataError, match=r"batches.meta"):
        read("cifar10", tmp_path)


def _batch(data: object, labels: object) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"})


@pytest.mark.parametrize(
    ("data", "labels", "words"),
    [
        (np.zeros((N, 3072), np.uint8), [1.5] * N, r"labels of dtype float64 \(expected whole numbers"),
        (np.zeros((N, 3072), np.uint8), [2**70] * N, r"labels of dtype object"),
        (np.full((N, 3072), 300.0), [1] * N, r"data of dtype float64"),
        (np.full((N, 3072), 300), [1] * N, r"pixel values 300..300 \(expected 0..255\)"),
        (np.full((N, 3072), -1), [1] * N, r"pixel values -1..-1"),
        (np.zeros((0, 3072), np.uint8), [], r"data \(0, 3072\) and 0 labels \(expected .* N >= 1\)"),
    ],
    ids=["float_labels", "huge_labels", "float_pixels", "pixels_over_255", "negative_pixels", "empty"],
)
def test_batch_values_that_would_change_when_cast_are_refused(
    tmp_path: Path, data: object, labels: object, words: str
) -> None:
    """A python batch whose labels are not whole numbers or do not fit, whose pixels are not whole
    numbers in 0..255, or that holds no image is a DataError naming the file: never silently
    truncated, wrapped (300 -> 44) or an empty data set that fails later."""
    _cifar_python(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").write_bytes(_batch(data, labels))
    with pytest.raises(DataError, match=r"data_batch_4.* " + words):
        read("cifar10", tmp_path)


def test_batches_of_other_integer_dtypes_read_as_the_same_pixels(tmp_path: Path) -> None:
    """Pixels stored as int64 in 0..255 (a rewritten copy) read as the same uint8 images."""
    _cifar_python(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    d = pickle.loads(batch.read_bytes())
    before = read("cifar10", tmp_path).pixels
    batch.write_bytes(_batch(d[b"data"].astype(np.int64), np.asarray(d[b"labels"], np.int32)))
    assert (read("cifar10", tmp_path).pixels == before).all()


def test_class_name_files_that_are_not_text_are_refused(tmp_path: Path) -> None:
    """A class-names file (STL-10's class_names.txt, CIFAR-10 binary's batches.meta.txt) that is
    not UTF-8 text is a DataError naming it, not a UnicodeDecodeError traceback."""
    _stl(tmp_path / "s")
    (tmp_path / "s" / "stl10_binary" / "class_names.txt").write_bytes(b"\xff\xfe\x00airplane\n")
    with pytest.raises(DataError, match=r"class_names.txt' is not UTF-8 text"):
        read("stl10", tmp_path / "s", "train")
    _cifar_binary(tmp_path / "c")
    (tmp_path / "c" / "cifar-10-batches-bin" / "batches.meta.txt").write_bytes(b"\x80cat\n")
    with pytest.raises(DataError, match=r"batches.meta.txt' is not UTF-8 text"):
        read("cifar10", tmp_path / "c", "test")


@pytest.mark.parametrize("layout", ["cifar_python", "cifar_binary", "stl10"])
def test_a_file_that_cannot_be_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A data file whose read fails (no permission, an I/O error on a failing disk or mount;
    injected here, since the tests run as root) is a DataError naming the file and the reason."""
    kind, make = {
        "cifar_python": ("cifar10", _cifar_python),
        "cifar_binary": ("cifar10", _cifar_binary),
        "stl10": ("stl10", _stl),
    }[layout]
    make(tmp_path)

    def denied(path: object, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "open", denied)
    monkeypatch.setattr(np, "fromfile", denied)
    with pytest.raises(DataError, match=rf"data {kind}: cannot read '{tmp_path}/.*': Permission denied"):
        read(kind, tmp_path, "train")


SPEC = """\
experiment broken {{
  data cifar10 {{ root = "{root}" }}
  augment images {{ crop {{ scale = [0.5, 1.0] }} }}
  network convnet {{ channels = [4]; projector = [4] }}
  loss nt_xent {{}}
  optimizer sgd {{}}
  train {{ batch = 4; samples = 8; epochs = 1 }}
  measure {{ {measure} }}
}}
"""


@pytest.mark.parametrize("measure", ["linear_probe", "knn { k = 3 }"])
def test_a_missing_readout_split_is_exit_2_before_anything_runs(
    sslspec_cli, write_spec, tmp_path: Path, measure: str
) -> None:
    """A run that trains on CIFAR-10's train split but reads out on its test split (probe, k-NN)
    with test_batch missing is refused by `run` up front (exit 2, the file named), where it failed
    at the first measurement with a traceback and left a failed version behind."""
    _cifar_python(tmp_path / "cifar")
    (tmp_path / "cifar" / "cifar-10-batches-py" / "test_batch").unlink()
    spec = write_spec(SPEC.format(root=tmp_path / "cifar", measure=measure))
    result = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert "test_batch" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.zarr"))
