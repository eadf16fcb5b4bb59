"""The store writer (sslspec.store.write) called directly: what a small store written through its API
holds, in which order a version's status becomes readable, and the run lock. Fast and torch-free,
so that mutation testing (benchmarks/mutation.sh) reaches the writer without running sslspec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from sslspec.errors import StoreError
from sslspec.store.files import Files
from sslspec.store.layout import (
    LOCK,
    SCHEMA_VERSION,
    Status,
    checkpoint_path,
    read_attrs,
    run_dir,
    run_dirs,
    status,
    version_attrs,
    version_label,
    version_path,
)
from sslspec.store.location import Place, of
from sslspec.store.variables import Entry
from sslspec.store.write import RunLock, RunStore, claim_version, dumps, host, jsonable

NODE = Entry("node", ("node",), "1", "latent node of {tree}", "int64", chunk="whole")
CORR = Entry("corr", ("epoch", "node"), "1", "correlation at {where}", attrs={"valid_min": -1.0})
STEPS = Entry("steps", ("epoch",), "steps", "steps done", "int64")


def small_store(tmp_path: Path) -> tuple[Path, RunStore]:
    """A claimed version with attributes, one coordinate and two variables declared (nothing written)."""
    path = claim_version(tmp_path, "exp", "run")
    attrs = {"run_hash": "abc", "seeds": (np.int64(3), 4), "where": tmp_path, "scale": np.float32(0.5)}
    store = RunStore(path, attrs)
    store.coord(NODE, [0, 1, 2], {"tree": "t7"})
    store.variable(CORR, ("epoch", "node"), (4, 3), 1, {"where": "the root"}, extra={"note": np.int64(2)})
    store.variable(STEPS, ("epoch",), (4,), 3, {})
    return path, store


def test_declared_arrays_carry_dims_units_fill_chunks_and_checksums(tmp_path: Path) -> None:
    """Each declared array has the entry's dtype, dims, units, formatted long name and extra
    attributes, NaN (float) or 0 (int) fill, `lead_chunk` rows per chunk, zstd then crc32c."""
    path, _ = small_store(tmp_path)
    g = zarr.open_group(str(path), mode="r")
    node, corr, steps = g["node"], g["corr"], g["steps"]
    assert node[...].tolist() == [0, 1, 2] and node.dtype == np.int64
    assert node.metadata.dimension_names == ("node",)
    assert dict(node.attrs) == {"units": "1", "long_name": "latent node of t7"}
    assert corr.dtype == np.float32 and corr.shape == (4, 3) and corr.chunks == (1, 3)
    assert corr.metadata.dimension_names == ("epoch", "node")
    assert dict(corr.attrs) == {
        "units": "1",
        "long_name": "correlation at the root",
        "valid_min": -1.0,
        "note": 2,
    }
    assert np.isnan(corr[...]).all()
    assert steps.dtype == np.int64 and steps.chunks == (3,) and steps[...].tolist() == [0, 0, 0, 0]
    assert steps.metadata.dimension_names == ("epoch",)
    for arr in (node, corr, steps):
        codecs = arr.compressors
        assert [type(c) for c in codecs] == [ZstdCodec, Crc32cCodec], arr.name


def test_a_lead_chunk_is_clipped_to_the_array(tmp_path: Path) -> None:
    """`lead_chunk` larger than the first dim gives one chunk; 0 gives chunks of one row."""
    _, store = small_store(tmp_path)
    wide = Entry("wide", ("epoch",), "1", "w")
    narrow = Entry("narrow", ("epoch", "node"), "1", "n")
    store.variable(wide, ("epoch",), (4,), 9, {})
    store.variable(narrow, ("epoch", "node"), (4, 3), 0, {})
    assert store.arrays["wide"].chunks == (4,) and store.arrays["narrow"].chunks == (1, 3)


def test_root_attributes_are_plain_json_with_the_schema_version(tmp_path: Path) -> None:
    """The root attributes hold the schema version and the given attributes made plain JSON
    (numpy scalars as numbers, tuples as lists, paths as strings); no status is written yet."""
    path, store = small_store(tmp_path)
    attrs = read_attrs(path)
    want = {
        "schema_version": SCHEMA_VERSION,
        "run_hash": "abc",
        "seeds": [3, 4],
        "where": str(tmp_path),
        "scale": 0.5,
    }
    assert attrs == want
    store.update_attrs(epochs_done=np.int64(2), measured=(0, 1))
    assert read_attrs(path) == {**want, "epochs_done": 2, "measured": [0, 1]}


def test_rows_written_one_by_one_and_in_a_batch_read_back_in_place(tmp_path: Path) -> None:
    """`write` puts a row at its index; `write_many` writes its items in order (a later write to
    the same place wins); rows not written stay NaN."""
    path, store = small_store(tmp_path)
    store.write("corr", 0, [0.1, 0.2, 0.3])
    store.write_many(
        [("corr", 2, [1.0, 2.0, 3.0]), ("steps", slice(0, 2), [5, 6]), ("corr", 2, [4.0, 5.0, 6.0])]
    )
    corr = zarr.open_group(str(path), mode="r")["corr"][...]
    np.testing.assert_array_equal(corr[0], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(corr[2], [4.0, 5.0, 6.0])
    assert np.isnan(corr[[1, 3]]).all()
    assert zarr.open_group(str(path), mode="r")["steps"][...].tolist() == [5, 6, 0, 0]


def test_a_version_reads_running_until_its_status_is_written_last(tmp_path: Path) -> None:
    """A claimed version reads as running before its first zarr.json, after its attributes and
    epochs are written, and becomes complete only when `status` is set; nothing else changes then."""
    path = claim_version(tmp_path, "exp", "run")
    assert status(path) == Status.RUNNING and version_attrs(path) == {}
    store = RunStore(path, {"run_hash": "abc"})
    store.variable(STEPS, ("epoch",), (2,), 1, {})
    store.write("steps", 0, 7)
    store.update_attrs(epochs_done=1)
    assert status(path) == Status.RUNNING
    before = read_attrs(path)
    store.update_attrs(status=Status.COMPLETE)
    assert status(path) == Status.COMPLETE
    assert read_attrs(path) == {**before, "status": "complete"}


def test_a_reopened_store_keeps_its_arrays_and_attributes_and_writes_on(tmp_path: Path) -> None:
    """`reopen` gives every array of the store as written (values and attributes kept, nothing
    truncated), and rows written through it land in the same arrays."""
    path, store = small_store(tmp_path)
    store.write("corr", 0, [0.5, 0.5, 0.5])
    store.update_attrs(epochs_done=1)
    again = RunStore.reopen(path)
    assert sorted(again.arrays) == ["corr", "node", "steps"] and again.path == path
    again.write("corr", 1, [1.5, 2.5, 3.5])
    again.update_attrs(epochs_done=2)
    g = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(g["corr"][:2], [[0.5, 0.5, 0.5], [1.5, 2.5, 3.5]])
    assert g["node"][...].tolist() == [0, 1, 2]
    assert read_attrs(path)["epochs_done"] == 2 and read_attrs(path)["run_hash"] == "abc"


def test_claim_skips_names_that_are_not_versions_and_never_reuses_one(tmp_path: Path) -> None:
    """A claim takes one past the highest vNNNN.zarr, ignoring other names, and creates it."""
    directory = run_dir(tmp_path, "exp", "run")
    for name in ("v0003.zarr", "v0009.zarr.tmp", "notes", LOCK):
        (directory / name).mkdir(parents=True)
    path = claim_version(tmp_path, "exp", "run")
    assert path == version_path(directory, 4) and path.is_dir()
    assert claim_version(tmp_path, "exp", "run") == version_path(directory, 5)


class Racing(Files):
    """Files where other processes take `taken` versions between a claim's listing and its mkdir."""

    def __init__(self, taken: set[str]) -> None:
        self.taken, self.tries = taken, 0

    def mkdir(self, path: Place, parents: bool = False, exist_ok: bool = False) -> None:
        if path.name.endswith(".zarr"):
            self.tries += 1
            assert self.tries < 10, "the claim keeps trying versions already taken"
            if path.name in self.taken:
                super().mkdir(path, exist_ok=True)  # the other process's version
                raise FileExistsError(path)
        super().mkdir(path, parents=parents, exist_ok=exist_ok)


def test_a_claim_that_loses_a_race_takes_the_next_free_version(tmp_path: Path) -> None:
    """When other processes take v0001 and v0002 while a claim is deciding, it gets v0003."""
    files = Racing({"v0001.zarr", "v0002.zarr"})
    path = claim_version(tmp_path, "exp", "run", files)
    assert path.name == "v0003.zarr" and files.tries == 3


def test_a_scalar_variable_is_one_chunk(tmp_path: Path) -> None:
    """A variable with no dims is declared (one chunk, NaN fill) and written like any other."""
    path, store = small_store(tmp_path)
    store.variable(Entry("total", (), "1", "total"), (), (), 1, {})
    assert np.isnan(zarr.open_group(str(path), mode="r")["total"][...])
    store.write("total", (), 2.5)
    assert zarr.open_group(str(path), mode="r")["total"][...] == 2.5


def test_a_url_root_claims_versions_by_creating_their_groups() -> None:
    """Under a memory:// root a claim creates the version's group and the next claim the next one."""
    root = of(f"memory://claim-{os.getpid()}/results")
    first, second = claim_version(root, "exp", "run"), claim_version(root, "exp", "run")
    assert (first.name, second.name) == ("v0001.zarr", "v0002.zarr")
    assert (first / "zarr.json").exists() and (second / "zarr.json").exists()


def test_the_run_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    """While one holder has the lock, another cannot take it without waiting and sees it held
    elsewhere; the lock file names the holder's pid and host while held and is emptied on release."""
    directory = run_dir(tmp_path, "exp", "run")
    first, second = RunLock(directory), RunLock(directory)
    assert not second.held_elsewhere() and not (directory / LOCK).exists()
    assert first.acquire(wait=False)
    assert (directory / LOCK).read_text() == f"{os.getpid()} {host()}\n"
    assert second.held_elsewhere()
    assert not second.acquire(wait=False) and second.fd is None
    first.release()
    assert first.fd is None and (directory / LOCK).read_text() == ""
    assert not second.held_elsewhere()
    assert second.acquire(wait=True)
    assert first.held_elsewhere()
    second.release()
    first.release()  # releasing a lock not held does nothing


def test_a_url_root_has_no_lock() -> None:
    """Under a URL root the lock is always free, taken without a file, never held elsewhere."""
    lock = RunLock(of("memory://locks/results/exp/run"))
    assert not lock.local and lock.acquire(wait=False) and lock.fd is None
    assert not lock.held_elsewhere()


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({1: np.float64(0.25), "a": (np.int32(1), [Path("/x")])}, {"1": 0.25, "a": [1, ["/x"]]}),
        (np.arange(3).reshape(1, 3), [[0, 1, 2]]),
        (np.bool_(True), True),
        ("text", "text"),
    ],
)
def test_jsonable_gives_plain_python(value: object, plain: object) -> None:
    """Attribute values become plain Python of the same content (and of the right types)."""
    out = jsonable(value)
    assert out == plain and json.loads(json.dumps(out)) == plain
    assert type(out) is type(plain)


def test_dumps_is_compact_sorted_json() -> None:
    """The plan's JSON has sorted keys and no spaces, so equal plans give equal text."""
    assert dumps({"b": (1, np.int64(2)), "a": {"y": 1, "x": None}}) == '{"a":{"x":null,"y":1},"b":[1,2]}'


# ---- the layout the writer fills (sslspec.store.layout), read back -------------------------------


def test_run_dirs_finds_every_run_from_a_root_an_experiment_or_a_run(tmp_path: Path) -> None:
    """run_dirs lists (experiment, run dir) of the runs under a root, an experiment directory or a
    single run, sorted, skipping directories that hold no version; a missing path is a StoreError."""
    for exp, run in (("b", "r2"), ("a", "r1"), ("b", "r1")):
        RunStore(claim_version(tmp_path, exp, run), {})
    (tmp_path / "a" / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    found = [(e, d.relative_to(tmp_path).as_posix()) for e, d in run_dirs(tmp_path)]
    assert found == [("a", "a/r1"), ("b", "b/r1"), ("b", "b/r2")]
    assert [(e, d.name) for e, d in run_dirs(tmp_path / "b")] == [("b", "r1"), ("b", "r2")]
    assert [(e, d.name) for e, d in run_dirs(tmp_path / "b" / "r2")] == [("b", "r2")]
    with pytest.raises(StoreError, match="no such results directory"):
        list(run_dirs(tmp_path / "nothing"))


@pytest.mark.parametrize(
    ("zarr_json", "message"),
    [
        (None, "not a zarr v3 store (no zarr.json)"),
        ("{", "cannot read zarr.json"),
        ('{"attributes": [1]}', "zarr.json 'attributes' is not an object"),
        ('{"attributes": {}}', "store has no 'schema_version' attribute"),
        ('{"attributes": {"schema_version": true}}', "store 'schema_version' must be an integer (got True)"),
        ('{"attributes": {"schema_version": "1"}}', "store 'schema_version' must be an integer (got '1')"),
        (
            f'{{"attributes": {{"schema_version": {SCHEMA_VERSION + 1}}}}}',
            f"store schema version {SCHEMA_VERSION + 1} is newer than this sslspec reads ({SCHEMA_VERSION})",
        ),
        ('{"attributes": {"schema_version": 1, "status": "done"}}', "unknown store status 'done'"),
        ('{"attributes": {"schema_version": 1, "status": "missing"}}', "unknown store status 'missing'"),
    ],
)
def test_a_store_not_written_by_this_sslspec_is_refused_by_name(
    tmp_path: Path, zarr_json: str | None, message: str
) -> None:
    """Reading a version's status refuses, naming the store, a missing or unreadable zarr.json,
    a missing, non-integer or newer schema version and a status no writer sets."""
    store = tmp_path / "v0001.zarr"
    store.mkdir()
    if zarr_json is not None:
        (store / "zarr.json").write_text(zarr_json)
    with pytest.raises(StoreError) as info:
        read_attrs(store) if zarr_json is None else status(store)
    assert str(info.value).startswith(f"error: {store}: {message}")


def test_status_values_read_back_as_written(tmp_path: Path) -> None:
    """Each status a writer sets reads back as itself; the schema version written is accepted."""
    for n, value in enumerate((Status.COMPLETE, Status.FAILED, Status.RUNNING), start=1):
        path = claim_version(tmp_path, "exp", "run")
        RunStore(path, {"status": value})
        assert status(path) == value and version_label(path) == f"v{n:04d}"


def test_a_versions_checkpoint_is_named_after_it_beside_it(tmp_path: Path) -> None:
    """The checkpoint of `.../v0003.zarr` is `.../v0003.ckpt.pt`, in the same run directory."""
    version = version_path(run_dir(tmp_path, "exp", "run"), 3)
    assert checkpoint_path(version) == tmp_path / "exp" / "run" / "v0003.ckpt.pt"


def test_reopening_a_version_never_written_fails_and_creates_nothing(tmp_path: Path) -> None:
    """`reopen` only opens a store that exists: a claimed version with no zarr.json is a
    FileNotFoundError, and no empty group appears there (a resume never writes into a blank store)."""
    path = claim_version(tmp_path, "exp", "run")
    with pytest.raises(FileNotFoundError, match="No group found"):
        RunStore.reopen(path)
    assert list(path.iterdir()) == []
