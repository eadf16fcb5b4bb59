"""Loading stores: the run tree, version choice, schema refusal and the sweep Dataset."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import sslspec
from sslspec.errors import SpecError, StoreError
from sslspec.spec.lower import lower
from sslspec.store.read import dim_names, load, load_sweep
from tests.store.conftest import write_store

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "specs" / "hltm_table.ssl"


def test_load_root_and_experiment_dir(tmp_path: Path) -> None:
    """A results root and an experiment dir both give nodes /<experiment>/<run id> holding the variables."""
    write_store(tmp_path, "a", "r1", value=0.1)
    write_store(tmp_path, "a", "r2", value=0.2)
    write_store(tmp_path, "b", "r3", value=0.3)
    tree = load(tmp_path)
    assert sorted(tree.children) == ["a", "b"]
    assert sorted(tree["a"].children) == ["r1", "r2"]
    assert float(tree["b/r3"].ds.best_corr[-1, 0]) == pytest.approx(0.3)
    sub = load(tmp_path / "a")
    assert list(sub.children) == ["a"] and sorted(sub["a"].children) == ["r1", "r2"]


def test_package_level_load_and_load_sweep(tmp_path: Path) -> None:
    """`sslspec.load(path)` and `sslspec.load_sweep(path)` work from the package, importing lazily."""
    write_store(tmp_path, "a", "r1")
    assert "r1" in sslspec.load(tmp_path)["a"].children
    assert sslspec.load_sweep(tmp_path).status.item() == "complete"


def test_newest_complete_version_wins_over_newer_running_and_failed(tmp_path: Path) -> None:
    """v1 complete, v2 complete, v3 failed, v4 running: default reads v2; a failed-only run is skipped."""
    for v, status in enumerate(["complete", "complete", "failed", "running"], start=1):
        write_store(tmp_path, "a", "r1", version=v, status=status, value=v / 10)
    write_store(tmp_path, "a", "r2", version=1, status="failed")
    tree = load(tmp_path)
    assert float(tree["a/r1"].ds.best_corr[-1, 0]) == pytest.approx(0.2)
    assert "r2" not in tree["a"].children
    assert tree.attrs["skipped"] == {"a/r2": "failed"}


def test_explicit_version_and_all(tmp_path: Path) -> None:
    """version=1 reads v0001 even when v0002 is newer and complete; version='all' gives every version."""
    write_store(tmp_path, "a", "r1", version=1, value=0.1)
    write_store(tmp_path, "a", "r1", version=2, value=0.2)
    assert float(load(tmp_path, version=1)["a/r1"].ds.best_corr[-1, 0]) == pytest.approx(0.1)
    assert sorted(load(tmp_path, version="all")["a/r1"].children) == ["v0001", "v0002"]
    with pytest.raises(StoreError, match="no version 3"):
        load(tmp_path, version=3)


def test_newer_schema_is_refused_naming_both_versions_and_the_path(tmp_path: Path) -> None:
    """A store whose schema_version was bumped to 7 raises StoreError naming 7, 1 and the path."""
    path = write_store(tmp_path, "a", "r1")
    zarr.open_group(str(path), mode="r+").attrs["schema_version"] = 7
    with pytest.raises(StoreError) as info:
        load(tmp_path)
    assert isinstance(info.value, SpecError)
    msg = str(info.value)
    assert "store schema version 7 is newer than this sslspec reads (1); upgrade sslspec" in msg
    assert str(path) in msg


@pytest.mark.parametrize("bad", [None, "1", 1.0, True])
def test_missing_or_non_integer_schema_is_refused(tmp_path: Path, bad: object) -> None:
    """A store without an integer schema_version is refused with StoreError."""
    path = write_store(tmp_path, "a", "r1")
    group = zarr.open_group(str(path), mode="r+")
    if bad is None:
        del group.attrs["schema_version"]
    else:
        group.attrs["schema_version"] = bad
    with pytest.raises(StoreError, match="schema_version"):
        load(tmp_path)


def test_dim_names_rule() -> None:
    """Block name dropped, rest joined by _; kind, repeats and store-name clashes keep the whole path."""
    names = dim_names(
        ["network.width", "data.polarity.low", "seed", "loss.kind", "a.x", "b.x", "data.polarity"],
        taken=["polarity"],
    )
    assert names == {
        "network.width": "width",
        "data.polarity.low": "polarity_low",
        "seed": "seed",
        "loss.kind": "loss_kind",
        "a.x": "a_x",
        "b.x": "b_x",
        "data.polarity": "data_polarity",
    }


def _table_stores(root: Path) -> list[tuple[str, dict[str, object]]]:
    """One synthetic complete store per run of the table spec; level_corr = width * low + seed / 100."""
    runs = []
    for r in lower(TABLE).runs:
        s = dict(r.swept)
        value = s["network.width"] * s["data.polarity.low"] + s["seed"] / 100  # type: ignore[operator]
        write_store(root, r.experiment, r.id, swept=s, value=value)
        runs.append((r.id, s))
    return runs


def test_load_sweep_of_the_table_spec_with_a_missing_and_a_failed_run(tmp_path: Path) -> None:
    """The table spec gives dims width x polarity_low x seed; deleted and failed runs are NaN with status."""
    runs = _table_stores(tmp_path)
    gone, bad = runs[0], runs[1]
    shutil.rmtree(tmp_path / "hltm_simclr" / gone[0])
    write_store(tmp_path, "hltm_simclr", bad[0], version=2, status="failed", swept=bad[1], value=9.0)
    shutil.rmtree(tmp_path / "hltm_simclr" / bad[0] / "v0001.zarr")
    ds = load_sweep(TABLE, root=tmp_path)
    assert ds.status.dims == ("width", "polarity_low", "seed")
    assert ds.status.shape == (3, 3, 5)
    assert list(ds.width.values) == [2, 5, 10] and list(ds.polarity_low.values) == [0.7, 0.8, 0.9]
    assert list(ds.seed.values) == [1, 2, 3, 4, 5]
    at = lambda s: {"width": s["network.width"], "polarity_low": s["data.polarity.low"], "seed": s["seed"]}
    assert ds.status.sel(at(gone[1])).item() == "missing"
    assert ds.status.sel(at(bad[1])).item() == "failed"
    assert (ds.status == "complete").sum().item() == 43
    assert np.isnan(ds.level_corr.sel(at(gone[1])).values).all()
    assert np.isnan(ds.level_corr.sel(at(bad[1])).values).all()
    table = ds.level_corr.sel(level=0).isel(epoch=-1).sel(seed=[3, 4, 5]).mean("seed")
    assert table.dims == ("width", "polarity_low")
    want = np.array([[w * p + 0.04 for p in (0.7, 0.8, 0.9)] for w in (2, 5, 10)])
    np.testing.assert_allclose(table.values, want, rtol=1e-5)


def test_load_sweep_of_a_results_directory_groups_by_swept_attrs(tmp_path: Path) -> None:
    """Without a spec the dims come from the stores' swept attrs, sorted, with holes marked missing."""
    write_store(tmp_path, "e", "r1", swept={"network.width": 5, "seed": 1}, value=1.0)
    write_store(tmp_path, "e", "r2", swept={"network.width": 2, "seed": 1}, value=2.0)
    write_store(tmp_path, "e", "r3", swept={"network.width": 2, "seed": 2}, value=3.0, status="running")
    ds = load_sweep(tmp_path / "e")
    assert ds.status.dims == ("width", "seed")
    assert list(ds.width.values) == [2, 5]
    assert ds.status.values.tolist() == [["complete", "running"], ["complete", "missing"]]
    assert float(ds.best_corr.sel(width=5, seed=1)[-1, 0]) == 1.0
    assert np.isnan(ds.best_corr.sel(width=2, seed=2)).all()


def test_coordinates_of_trees_of_different_sizes_are_the_union(tmp_path: Path) -> None:
    """A depth sweep stacks trees of 3 and 7 nodes: node_level is known for all 7 nodes (it was the
    first run's, NaN beyond its 3 nodes), while the small tree's variables stay NaN there."""
    write_store(tmp_path, "e", "r1", swept={"data.depth": 2}, nodes=3)
    write_store(tmp_path, "e", "r2", swept={"data.depth": 3}, nodes=7)
    ds = load_sweep(tmp_path / "e")
    assert ds.node_level.dims == ("node",)
    assert ds.node_level.values.tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert np.isnan(ds.best_corr.sel(depth=2).values[:, 3:]).all()


def test_load_sweep_refuses_two_runs_at_one_point(tmp_path: Path) -> None:
    """Two runs with the same swept values (other settings differ) raise StoreError naming both run ids."""
    write_store(tmp_path, "e", "r1", swept={"seed": 1})
    write_store(tmp_path, "e", "r2", swept={"seed": 1})
    with pytest.raises(StoreError, match="r1 and r2"):
        load_sweep(tmp_path)


SETS = [
    "train.samples=128",
    "train.epochs=1",
    "measure.samples=256",
    "measure.covariance_operator=false",
    "measure.weights=false",
    "seed=1",
]


def test_load_sweep_on_real_runtime_stores(tmp_path: Path) -> None:
    """Stores from `sslspec run` (table spec, seed fixed) load as width x polarity_low; gaps show."""
    sets = [a for s in SETS for a in ("--set", s)]
    cmd = [str(Path(sys.executable).parent / "sslspec"), "run", str(TABLE), *sets, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = lower(TABLE, SETS)
    shutil.rmtree(tmp_path / "hltm_simclr" / plan.runs[0].id)
    failed = tmp_path / "hltm_simclr" / plan.runs[4].id / "v0001.zarr"
    zarr.open_group(str(failed), mode="r+").attrs["status"] = "failed"
    ds = load_sweep(TABLE, root=tmp_path, sets=SETS)
    table = ds.level_corr.sel(level=0).isel(epoch=-1)
    assert table.dims == ("width", "polarity_low")
    assert ds.status.values.tolist() == [
        ["missing", "complete", "complete"],
        ["complete", "failed", "complete"],
        ["complete", "complete", "complete"],
    ]
    assert np.isnan(table.values[0, 0]) and np.isnan(table.values[1, 1])
    assert np.isfinite(table.values[2, 2])
    assert ds.unit.size == 10  # widths 2, 5, 10 outer-joined
