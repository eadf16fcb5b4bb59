"""The run index: appends from concurrent processes, refresh from stores, and `ls` / `show`."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from sslspec.cli import app
from sslspec.store import index
from tests.store.conftest import write_store


def synthetic_entries(root: Path, n: int) -> None:
    """Append n index entries (no stores) for runs r0000.. of experiment 'e'."""
    for i in range(n):
        index.record(
            root,
            {
                "experiment": "e",
                "run_id": f"r{i:04d}",
                "version": 1,
                "status": "complete" if i % 10 else "failed",
                "swept": {"network.width": i % 7, "seed": i},
                "epochs_done": 2,
                "metrics": {"root_corr": 0.5, "loss": -1.0},
                "path": f"e/r{i:04d}/v0001.zarr",
            },
        )


def _append(root: str, tag: int, n: int) -> None:
    for i in range(n):
        index.record(root, {"experiment": "e", "run_id": f"p{tag}-{i}", "version": 1, "status": "running"})


def test_two_processes_appending_at_once_lose_no_line(tmp_path: Path) -> None:
    """Two processes appending 1,500 entries each leave 3,000 whole, parseable lines."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(str(tmp_path), t, 1500)) for t in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / index.INDEX).read_bytes().splitlines()
    assert len(lines) == 3000
    assert len(index.read(tmp_path)) == 3000


def test_read_keeps_the_last_entry_per_version(tmp_path: Path) -> None:
    """A later line for the same (experiment, run id, version) wins; a torn line is skipped."""
    index.record(tmp_path, {"experiment": "e", "run_id": "r", "version": 1, "status": "running"})
    index.record(tmp_path, {"experiment": "e", "run_id": "r", "version": 1, "status": "complete"})
    with open(tmp_path / index.INDEX, "ab") as f:
        f.write(b'{"experiment": "e", "run_')
    assert index.read(tmp_path)[("e", "r", 1)]["status"] == "complete"


def test_refresh_indexes_new_stores_and_status_changes(tmp_path: Path) -> None:
    """refresh adds unindexed stores and re-reads ones indexed as running once they complete."""
    path = write_store(tmp_path, "e", "r1", status="running", value=0.25)
    assert index.refresh(tmp_path)[("e", "r1", 1)]["status"] == "running"
    zarr.open_group(str(path), mode="r+").attrs["status"] = "complete"
    e = index.refresh(tmp_path)[("e", "r1", 1)]
    assert e["status"] == "complete"
    assert e["metrics"] == {"root_corr": 0.25, "loss": 0.25}
    assert e["path"] == "e/r1/v0001.zarr"
    assert index.read(tmp_path)[("e", "r1", 1)]["status"] == "complete"  # it was appended


def test_ls_lists_a_thousand_indexed_runs(tmp_path: Path) -> None:
    """`sslspec ls` on 1,000 index entries prints a header and one line per run with status and metrics."""
    synthetic_entries(tmp_path, 1000)
    result = CliRunner().invoke(app, ["ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1001
    assert lines[1].split()[:6] == ["e", "r0000", "failed", "1", "0.5000", "-1.0000"]
    assert lines[1].endswith("network.width=0 seed=0")


def test_ls_counts_versions_and_shows_the_newest_status(tmp_path: Path) -> None:
    """A run with v1 complete and v2 running is one line: status running, 2 versions; the index is built."""
    write_store(tmp_path, "e", "r1", version=1, swept={"seed": 3})
    write_store(tmp_path, "e", "r1", version=2, status="running", swept={"seed": 3})
    result = CliRunner().invoke(app, ["ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].split() == ["e", "r1", "running", "2", "0.5000", "0.5000", "seed=3"]
    assert (tmp_path / index.INDEX).exists()


def test_show_prints_provenance_of_a_run_prefix(tmp_path: Path) -> None:
    """`sslspec show PREFIX` prints the newest version's attrs, the plan by block and the spec text."""
    write_store(tmp_path, "e", "abc123", version=1)
    write_store(tmp_path, "e", "abc123", version=2, status="failed", error="FloatingPointError: boom")
    result = CliRunner().invoke(app, ["show", "abc", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "v0002.zarr" in out.splitlines()[0]
    assert "store versions: v0001.zarr (complete), v0002.zarr (failed)" in out
    assert "error: FloatingPointError: boom" in out
    assert '  train: {"epochs": 2}' in out
    assert "  |   seed = 1" in out


def test_show_refuses_unknown_ambiguous_and_newer_schema_with_exit_2(tmp_path: Path) -> None:
    """Unknown or ambiguous prefixes and a newer-schema store exit 2 with a message, no traceback."""
    write_store(tmp_path, "e", "abc1")
    path = write_store(tmp_path, "e", "abc2")
    runner = CliRunner()
    assert runner.invoke(app, ["show", "zzz", "--root", str(tmp_path)]).exit_code == 2
    amb = runner.invoke(app, ["show", "abc", "--root", str(tmp_path)])
    assert amb.exit_code == 2 and "ambiguous" in amb.output
    zarr.open_group(str(path), mode="r+").attrs["schema_version"] = 7
    new = runner.invoke(app, ["show", "abc2", "--root", str(tmp_path)])
    assert new.exit_code == 2 and "newer than this sslspec reads (1)" in new.output
    assert "Traceback" not in new.output


def test_index_metrics_are_the_last_measured_values_of_the_root(tmp_path: Path) -> None:
    """The index and `ls` show the root's best_corr at the last measured epoch and the last loss, not
    the first finite values nor another node's; for a killed run, the last epoch it measured."""
    write_store(tmp_path, "e", "done", value=0.875)
    write_store(tmp_path, "e", "killed", status="running", value=0.875, measured=2)
    entries = index.refresh(tmp_path)
    assert entries[("e", "done", 1)]["metrics"] == {"root_corr": 0.875, "loss": 0.875}
    assert entries[("e", "killed", 1)]["metrics"] == {"root_corr": 0.75, "loss": 0.875}
    lines = CliRunner().invoke(app, ["ls", str(tmp_path)]).output.splitlines()
    assert [line.split()[:6] for line in lines[1:]] == [
        ["e", "done", "complete", "1", "0.8750", "0.8750"],
        ["e", "killed", "running", "1", "0.7500", "0.8750"],
    ]


def test_index_line_limit_is_exact_and_long_entries_are_shortened(tmp_path: Path) -> None:
    """A line of exactly MAX_LINE bytes is written as is; one byte more shortens long swept values
    (metrics kept); when that is not enough the metrics go; an entry still too long is refused."""

    def entry(swept: dict, version: int = 1) -> dict:
        return {
            "experiment": "e",
            "run_id": "r",
            "version": version,
            "swept": swept,
            "metrics": {"loss": 0.5},
            "time": 0,  # fixed, so the line's length is known
        }

    def line(e: dict) -> bytes:  # as the index writes it
        return (json.dumps(e, separators=(",", ":")) + "\n").encode()

    base = len(line(entry({"tree": ""})))
    exact = entry({"tree": "x" * (index.MAX_LINE - base)})
    index.record(tmp_path, exact)
    written = (tmp_path / index.INDEX).read_bytes()
    assert written == line(exact) and len(written) == index.MAX_LINE
    index.record(tmp_path, entry({"tree": "x" * (index.MAX_LINE - base + 1)}, version=2))
    shortened = index.read(tmp_path)[("e", "r", 2)]
    assert shortened["swept"]["tree"].endswith("...") and len(shortened["swept"]["tree"]) == 200
    assert shortened["metrics"] == {"loss": 0.5}
    # 22 values, each short enough to be kept whole, that overflow the line only with the metrics
    sized = ({f"k{i:02d}": "x" * n for i in range(22)} for n in range(150, 198))
    many = next(m for m in sized if len(line(entry(m))) > index.MAX_LINE)
    index.record(tmp_path, entry(many, version=3))
    dropped = index.read(tmp_path)[("e", "r", 3)]
    assert "metrics" not in dropped and dropped["swept"] == many
    with pytest.raises(ValueError, match="index entry is"):
        index.record(tmp_path, entry({f"k{i}": "x" * 150 for i in range(40)}, version=4))
