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
from test_datasets import _cifar_python

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
