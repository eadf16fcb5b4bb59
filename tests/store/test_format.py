"""The results format has one owner: sslspec/store/layout.py spells the paths, the schema version
and the status values, sslspec/store/variables.py the variable names; no other module does."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from sslspec.spec import schema
from sslspec.store.layout import Status, checkpoint_path, version_number, version_path, versions
from sslspec.store.variables import COORDS, VARIABLES, resolve_dims, root_values, wanted

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "sslspec").rglob("*.py"), *(ROOT / "runtime").rglob("*.py")])
LAYOUT = ROOT / "sslspec" / "store" / "layout.py"
TABLE = ROOT / "sslspec" / "store" / "variables.py"
# The accumulators (measure.py, and measurements.py for an mlp's layers) key their results by
# words some variables share ("corr"); the table maps each result key to its variable
# (Entry.result) and the writer, runtime/record.py, loops over that, spelling no name itself.
MEASURING = {ROOT / "runtime" / m for m in ("measure.py", "measurements.py")}


def strings(path: Path) -> Iterator[str]:
    """Every string constant of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.value


def spelled(names: set[str], allowed: set[Path]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)}: {s!r}" for p in SOURCES if p not in allowed for s in strings(p) if s in names
    ]


def test_schema_version_is_assigned_once() -> None:
    """SCHEMA_VERSION is assigned in exactly one module of sslspec/ and runtime/."""
    found = [
        p
        for p in SOURCES
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SCHEMA_VERSION" for t in node.targets)
    ]
    assert found == [LAYOUT]


def test_status_values_and_version_paths_are_spelled_only_by_the_layout() -> None:
    """Status values, `.zarr`, `.ckpt.pt` and `index.jsonl` appear as strings only in the layout."""
    assert spelled({str(s) for s in Status}, {LAYOUT}) == []
    pieces = [
        p
        for p in SOURCES
        if p != LAYOUT
        for s in strings(p)
        if any(x in s for x in (".zarr", ".ckpt", "index.jsonl"))
    ]
    assert pieces == []


def test_variable_names_are_spelled_only_by_the_table() -> None:
    """No module but the table (and the measurement pass, until it moves) spells a variable name
    ('loss' and 'polarity' are also names of spec fields and are left out)."""
    names = {e.name for e in VARIABLES} - {"loss", "polarity"}
    assert spelled(names, {TABLE, *MEASURING}) == []


def test_table_dims_resolve_per_network() -> None:
    """NET and LAYERS resolve to node for a tree network and to layer (leading) for an mlp; every
    dim a variable uses is a coordinate of the table."""
    corr = next(e for e in VARIABLES if e.name == "corr")
    assert resolve_dims(corr.dims, "node") == ("epoch", "node", "state", "unit")
    assert resolve_dims(corr.dims, "layer") == ("epoch", "layer", "node", "state", "unit")
    coords = {e.name for e in COORDS}
    for e in VARIABLES:
        for net in ("node", "layer"):
            assert set(resolve_dims(e.dims, net)) <= coords, e.name


def test_wanted_follows_the_measure_block_and_its_options() -> None:
    """An entry is declared when its measurement is on and its option (if any) is true, and the
    learning rate only for a run with an lr schedule."""
    by = {e.name: e for e in VARIABLES}
    off = schema.Measure()
    on = schema.Measure(covariance_operator=schema.CovarianceOperator(vectors=False, full=True))
    assert wanted(by["polarity"], off) and wanted(by["loss"], off)
    assert not wanted(by["op_eigval"], off) and wanted(by["op_eigval"], on)
    assert not wanted(by["op_eigvec"], on) and wanted(by["op_full"], on)
    assert not wanted(by["learning_rate"], off) and wanted(by["learning_rate"], off, scheduled=True)
    assert not wanted(by["learning_rate"], schema.Measure(loss=None), scheduled=True)


def test_root_values_take_the_root_by_dim_name() -> None:
    """The root correlation is node 0 (and layer 0 of an mlp) whatever the dims' order."""
    import numpy as np

    values = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert root_values(values, ("epoch", "layer", "node")).tolist() == [0, 12]
    assert root_values(values[:, 0], ("epoch", "node")).tolist() == [0, 12]
    assert root_values(values.transpose(0, 2, 1), ("epoch", "node", "layer")).tolist() == [0, 12]


@pytest.mark.parametrize("n", [1, 42, 12345])
def test_version_paths_round_trip(n: int, tmp_path: Path) -> None:
    """version_path and version_number invert each other; the checkpoint sits beside its version;
    versions lists only vNNNN.zarr, in number order."""
    path = version_path(tmp_path, n)
    assert version_number(path) == n
    assert checkpoint_path(path).parent == tmp_path and checkpoint_path(path) != path
    for name in (path.name, "v0007.zarr", "v7.zarr", "x0001.zarr", "v0001.zarr.tmp"):
        (tmp_path / name).mkdir(exist_ok=True)
    assert [k for k, _ in versions(tmp_path)] == sorted({n, 7})
