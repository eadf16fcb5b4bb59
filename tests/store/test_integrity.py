"""Damaged stores: a flipped byte in a chunk is named (store, variable, chunk) by load, load_sweep,
ls, report and verify, which exit 1; a torn index line is repaired; a newer schema is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from sslspec.cli import app
from sslspec.errors import DamagedStore, StoreError
from sslspec.store import index
from sslspec.store.layout import INDEX, SCHEMA_VERSION
from sslspec.store.read import load, load_sweep
from tests.store.conftest import write_store


def flip(store: Path, variable: str, chunk: str = "c/0/0", at: int = -10) -> str:
    """Flip one byte of a chunk file; return the chunk's key."""
    path = store / variable / chunk
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    return chunk


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path]:
    """A root of two complete runs, one with a flipped byte in best_corr: (root, damaged store)."""
    write_store(tmp_path, "e", "good", swept={"seed": 1})
    bad = write_store(tmp_path, "e", "bad", swept={"seed": 2})
    flip(bad, "best_corr")
    return tmp_path, bad


def named(text: str, store: Path) -> bool:
    return f"{store}: variable 'best_corr', chunk c/0/0: checksum mismatch" in text


def test_load_and_load_sweep_name_the_damaged_chunk(damaged: tuple[Path, Path]) -> None:
    """load and load_sweep raise DamagedStore naming the store, the variable and the chunk."""
    root, bad = damaged
    for read in (lambda: load(root), lambda: load_sweep(root)):
        with pytest.raises(DamagedStore) as info:
            read()
        assert named(info.value.render(), bad)


def test_ls_lists_the_rest_and_names_the_damage_exit_1(damaged: tuple[Path, Path]) -> None:
    """ls lists every run, marks the damaged one, names its chunk on stderr, exits 1 and does not
    index it (so the next ls says it again)."""
    root, bad = damaged
    for _ in range(2):
        result = CliRunner().invoke(app, ["ls", str(root)])
        assert result.exit_code == 1
        rows = {line.split()[1]: line.split()[2] for line in result.stdout.splitlines()[1:]}
        assert rows == {"bad": "damaged", "good": "complete"}
        assert named(result.stderr, bad) and "Traceback" not in result.stderr
    assert [k[1] for k in index.read(root)] == ["good"]


def test_report_names_the_damaged_chunk_exit_1(damaged: tuple[Path, Path], tmp_path: Path) -> None:
    """report on a results directory with a damaged chunk exits 1 naming it, writing no report."""
    root, bad = damaged
    result = CliRunner().invoke(app, ["report", str(root / "e"), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 1
    assert named(result.stderr, bad)
    assert not (tmp_path / "rep" / "report.md").exists()


def test_verify_lists_every_damaged_chunk(tmp_path: Path) -> None:
    """verify reads every chunk of complete versions: clean -> exit 0; two flips -> both listed, exit 1;
    a running version is not read."""
    write_store(tmp_path, "e", "a")
    b = write_store(tmp_path, "e", "b")
    running = write_store(tmp_path, "e", "c", status="running")
    ok = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == "2 complete versions, 14 arrays, 14 chunks read: nothing damaged\n"
    flip(b, "best_corr")
    flip(b, "loss", "c/0", at=3)
    flip(running, "loss", "c/0")
    bad = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert bad.exit_code == 1
    lines = [x for x in bad.stderr.splitlines() if x.startswith("damaged: ")]
    assert lines == [
        f"damaged: {b}: variable 'best_corr', chunk c/0/0: checksum mismatch",
        f"damaged: {b}: variable 'loss', chunk c/0: checksum mismatch",
    ]
    assert "2 damaged" in bad.stdout


def test_a_store_without_checksums_is_verified_as_far_as_it_can_be(tmp_path: Path) -> None:
    """Arrays written without a checksum are counted as unchecked by verify."""
    path = write_store(tmp_path, "e", "old")
    g = zarr.open_group(str(path), mode="r+")
    g.create_array("plain", shape=(2,), dtype="float32")[...] = [1.0, 2.0]
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0
    assert "note: 1 arrays have no checksum" in result.stdout


def test_ls_repairs_an_index_with_a_truncated_last_line(tmp_path: Path) -> None:
    """A crash mid-append leaves a torn last line: ls lists every run, says the index was rebuilt,
    and the rebuilt index parses whole."""
    write_store(tmp_path, "e", "r1")
    write_store(tmp_path, "e", "r2")
    index.refresh(tmp_path)
    text = (tmp_path / INDEX).read_bytes()
    (tmp_path / INDEX).write_bytes(text[: len(text) - 40])  # the second line cut short
    result = CliRunner().invoke(app, ["ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["r1", "r2"]
    assert "1 damaged line (an append cut short by a crash); the index was rebuilt" in result.stderr
    lines = (tmp_path / INDEX).read_bytes().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["status"] == "complete" for x in lines)
    again = CliRunner().invoke(app, ["ls", str(tmp_path)])
    assert again.exit_code == 0 and "rebuilt" not in again.stderr


NEWER = SCHEMA_VERSION + 1


@pytest.mark.parametrize(
    "args",
    [["ls", "{root}"], ["show", "r1", "--root", "{root}"], ["verify", "{root}"], ["report", "{root}/e"]],
    ids=["ls", "show", "verify", "report"],
)
def test_every_reader_refuses_a_newer_schema_naming_both_versions(args: list[str], tmp_path: Path) -> None:
    """ls, show, verify and report refuse a store of a newer schema version, naming both versions."""
    root = tmp_path / "root"
    write_store(root, "e", "r1", schema_version=NEWER)
    argv = [a.format(root=root) for a in args]
    if args[0] == "report":
        argv += ["--out", str(tmp_path / "rep")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    text = result.stderr
    assert f"store schema version {NEWER} is newer than this sslspec reads ({SCHEMA_VERSION})" in text


def test_load_and_load_sweep_refuse_a_newer_schema(tmp_path: Path) -> None:
    """The library readers refuse a newer schema with the same message."""
    write_store(tmp_path, "e", "r1", schema_version=NEWER)
    for read in (lambda: load(tmp_path), lambda: load_sweep(tmp_path)):
        with pytest.raises(StoreError, match=f"schema version {NEWER} is newer .*\\({SCHEMA_VERSION}\\)"):
            read()


def test_a_claimed_but_unwritten_version_reads_as_running(tmp_path: Path) -> None:
    """A version directory with no zarr.json yet (its process died before the first write) lists as
    running; load reads the older complete version; verify skips it."""
    good = write_store(tmp_path, "e", "r1", value=0.25)
    (good.parent / "v0002.zarr").mkdir()
    result = CliRunner().invoke(app, ["ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[2:4] == ["running", "2"]
    assert float(load(tmp_path)["e/r1"].ds.best_corr[-1, 0]) == 0.25  # the root at the last epoch
    assert CliRunner().invoke(app, ["verify", str(tmp_path)]).exit_code == 0
