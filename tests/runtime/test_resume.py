"""Versioned results: up-to-date runs are skipped, killed runs resume bit for bit from their
checkpoints, concurrent `sslspec run`s share a sweep, and stores record their git provenance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_run import MEASURED, ROOT, SSLSPEC, TINY  # the same tiny reference run

from sslspec.spec.lower import lower
from sslspec.store.layout import checkpoint_path

# Long enough epochs (400 steps) for a test to kill the process while it trains.
SLOW = TINY.replace("train.samples      = 320", "train.samples      = 6400").replace(
    "train.epochs       = 5", "train.epochs       = 6"
)
SWEEP = TINY + "sweep hltm_simclr {\n  seed = 1..3\n}\n"


def popen(*args: object, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """Start the installed `sslspec` in a fresh process."""
    return subprocess.Popen(
        [str(SSLSPEC), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )


def root_attrs(path: Path) -> dict:
    """A store's root attributes, read straight from its metadata ({} while it is being rewritten)."""
    try:
        return json.loads((path / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError):
        return {}


def versions(out: Path) -> list[Path]:
    return sorted(out.rglob("v*.zarr"))


def identical(a: Path, b: Path) -> None:
    """Assert two stores hold the same variables with bit-identical values (NaN equal to NaN)."""
    x, y = xr.open_zarr(a, consolidated=False), xr.open_zarr(b, consolidated=False)
    assert set(x.variables) == set(y.variables)
    for name in x.variables:
        u, v = x[name].values, y[name].values
        assert u.dtype == v.dtype and np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"), name


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """SLOW run in a subprocess, SIGKILLed once it has finished an epoch: (spec, results root)."""
    tmp = tmp_path_factory.mktemp("killed")
    spec, out = tmp / "slow.ssl", tmp / "out"
    spec.write_text(SLOW)
    proc = popen("run", spec, "--out", out)
    store = out / "hltm_simclr" / lower(spec).runs[0].id / "v0001.zarr"
    deadline = time.monotonic() + 120
    while root_attrs(store).get("epochs_done", 0) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # into the next epoch's training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at = root_attrs(store)
    assert at["status"] == "running" and 1 <= at["epochs_done"] < 6, at
    assert checkpoint_path(store).exists()
    return spec, out


def copy_of(killed: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    spec, out = killed
    shutil.copytree(out, tmp_path / "out")
    return spec, tmp_path / "out"


def test_up_to_date_run_is_skipped(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """A second run of a completed spec prints 'up to date: <id> (<path>)' and writes no new version."""
    spec = write_spec(TINY)
    assert sslspec_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    (first,) = versions(tmp_path / "out")
    again = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert again.exit_code == 0
    run_id = lower(spec).runs[0].id
    assert again.stderr.strip().splitlines() == [f"up to date: {run_id} ({first})"]
    assert versions(tmp_path / "out") == [first]


def test_force_runs_into_a_new_version(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """--force on an up-to-date run writes a second, complete version v0002 and no checkpoint."""
    spec = write_spec(TINY)
    assert sslspec_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    assert sslspec_cli("run", spec, "--out", tmp_path / "out", "--force").exit_code == 0
    first, second = versions(tmp_path / "out")
    assert (first.name, second.name) == ("v0001.zarr", "v0002.zarr")
    assert root_attrs(second)["status"] == "complete"
    assert not list((tmp_path / "out").rglob("*.ckpt.pt"))


def test_dry_run_reports_and_writes_nothing(sslspec_cli, write_spec, killed, tmp_path: Path) -> None:
    """--dry-run says run / up to date / resume per run correctly and leaves the results root as it was."""
    spec = write_spec(TINY)
    run_id = lower(spec).runs[0].id
    fresh = sslspec_cli("run", spec, "--out", tmp_path / "none", "--dry-run")
    assert fresh.exit_code == 0 and fresh.stdout.splitlines() == [f"would run: {run_id}"]
    assert not (tmp_path / "none").exists()
    assert sslspec_cli("run", spec, "--out", tmp_path / "done").exit_code == 0
    (done,) = versions(tmp_path / "done")
    assert sslspec_cli("run", spec, "--out", tmp_path / "done", "--dry-run").stdout.splitlines() == [
        f"up to date: {run_id} ({done})"
    ]
    slow, out = killed
    before = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*"))
    report = sslspec_cli("run", slow, "--out", out, "--dry-run").stdout.splitlines()
    (store,) = versions(out)
    assert report == [
        f"would resume: {store.parent.name} ({store}, after epoch {root_attrs(store)['epochs_done']} of 6)"
    ]
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_killed_run_resumes_bit_identically(sslspec_cli, killed, tmp_path: Path) -> None:
    """Rerunning a SIGKILLed run completes the same version, bit-identical to an uninterrupted run."""
    spec, out = copy_of(killed, tmp_path)
    (store,) = versions(out)
    done = root_attrs(store)["epochs_done"]
    result = sslspec_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert versions(out) == [store]
    at = root_attrs(store)
    assert at["status"] == "complete" and at["epochs_done"] == 6
    assert [r["epoch"] for r in at["resumed"]] == [done]
    assert not checkpoint_path(store).exists()
    assert sslspec_cli("run", spec, "--out", tmp_path / "whole").exit_code == 0
    identical(store, versions(tmp_path / "whole")[0])


@pytest.mark.parametrize("spoil", ["no checkpoint", "failed"])
def test_unresumable_version_starts_a_clean_one(spoil: str, sslspec_cli, killed, tmp_path: Path) -> None:
    """A killed version without a checkpoint, or a failed one, is left as is and a clean v0002 completes."""
    spec, out = copy_of(killed, tmp_path)
    (store,) = versions(out)
    if spoil == "no checkpoint":
        checkpoint_path(store).unlink()
    else:
        meta = json.loads((store / "zarr.json").read_text())
        meta["attributes"]["status"] = "failed"
        (store / "zarr.json").write_text(json.dumps(meta))
    assert sslspec_cli("run", spec, "--out", out).exit_code == 0
    first, second = versions(out)
    assert first == store and root_attrs(first)["status"] == ("running" if spoil != "failed" else "failed")
    at = root_attrs(second)
    assert second.name == "v0002.zarr" and at["status"] == "complete" and "resumed" not in at


def test_concurrent_runs_share_the_sweep(write_spec, tmp_path: Path) -> None:
    """Two `sslspec run`s of one 3-run sweep at once both exit 0; each run gets one complete version."""
    spec, out = write_spec(SWEEP), tmp_path / "out"
    procs = [popen("run", spec, "--out", out) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    runs = lower(spec).runs
    for run in runs:
        (only,) = versions(out / "hltm_simclr" / run.id)
        assert root_attrs(only)["status"] == "complete", run.id
    lines = [line for _, err in results for line in err.strip().splitlines()]
    assert sum("complete:" in line for line in lines) == len(runs)
    assert sum(line.startswith("up to date: ") for line in lines) == len(runs)


def test_git_provenance(sslspec_cli, tmp_path: Path) -> None:
    """A spec in a git work tree records its HEAD commit and dirty flag; one outside records neither."""
    repo, outside = tmp_path / "repo", tmp_path / "plain"
    repo.mkdir()
    outside.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "tiny.ssl").write_text(TINY)
    subprocess.run([*git, "add", "tiny.ssl"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "spec"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    (outside / "tiny.ssl").write_text(TINY)
    assert sslspec_cli("run", repo / "tiny.ssl", "--out", tmp_path / "a").exit_code == 0
    assert sslspec_cli("run", outside / "tiny.ssl", "--out", tmp_path / "b").exit_code == 0
    a, b = root_attrs(versions(tmp_path / "a")[0]), root_attrs(versions(tmp_path / "b")[0])
    assert a["git_commit"] == head.strip() and a["git_dirty"] is False
    assert "git_commit" not in b and "git_dirty" not in b
    assert a["host"] == os.uname().nodename and a["started"] <= a["finished"]


def test_results_root_named_in_the_spec_is_used_without_out(sslspec_cli, tmp_path: Path) -> None:
    """With no --out, `sslspec run` writes under the spec's `results` and load_sweep finds it there."""
    import sslspec

    root = tmp_path / "from_spec"
    spec = tmp_path / "spec.ssl"
    spec.write_text(
        f'include "{Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"}" {{\n'
        f'  results = "{root}"\n  data.depth = 2\n  network.width = 3\n  train.samples = 64\n'
        "  train.batch = 32\n  train.epochs = 1\n  measure.samples = 256\n}\n"
    )
    result = sslspec_cli("run", spec)
    assert result.exit_code == 0, result.stderr
    assert len(list(root.glob("hltm_simclr/*/v0001.zarr"))) == 1
    assert sslspec.load_sweep(spec).status.item() == "complete"


def test_interrupted_final_measurement_is_not_complete_and_resumes(
    sslspec_cli, write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the last measurement (after every epoch trained) leaves the version `running`
    with its last epoch NaN; the next `sslspec run` resumes it, bit-identical to an uninterrupted run."""
    from runtime.measure import LatentCorrelation

    spec = write_spec(TINY)
    whole = sslspec_cli("run", spec, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.stderr
    result, calls = LatentCorrelation.result, []

    def interrupted(self: LatentCorrelation) -> dict:
        calls.append(1)
        if len(calls) == 4:  # measured epochs 0, 2, 4, 5: the fourth is the final one
            raise KeyboardInterrupt
        return result(self)

    monkeypatch.setattr(LatentCorrelation, "result", interrupted)
    cut = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert cut.exit_code == 130 and "interrupted" in cut.stderr
    (store,) = versions(tmp_path / "out")
    at = root_attrs(store)
    assert at["status"] == "running" and at["epochs_done"] == 5, at
    assert "finished" not in at and "wall_time_s" not in at
    best = xr.open_zarr(store, consolidated=False).best_corr.values
    assert np.isfinite(best[:3]).all() and np.isnan(best[3]).all()
    assert checkpoint_path(store).exists()
    monkeypatch.setattr(LatentCorrelation, "result", result)
    (run_id,) = [r.id for r in lower(spec).runs]
    dry = sslspec_cli("run", spec, "--out", tmp_path / "out", "--dry-run")
    assert dry.stdout.splitlines() == [f"would resume: {run_id} ({store}, after epoch 5 of 5)"]
    again = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert again.exit_code == 0, again.stderr
    assert versions(tmp_path / "out") == [store]
    at = root_attrs(store)
    assert at["status"] == "complete" and [r["epoch"] for r in at["resumed"]] == [5]
    identical(store, versions(tmp_path / "whole")[0])


def test_status_is_written_last_and_the_index_after_the_checkpoint(
    sslspec_cli, write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`complete` is the run's last attribute write, after every array row and the closing attrs; each
    index entry is appended once the store and the checkpoint say what the entry says."""
    from sslspec.store import index
    from sslspec.store.write import RunStore

    writes: list[dict] = []
    update = RunStore.update_attrs

    def logged(self: RunStore, **attrs: object) -> None:
        if attrs.get("status") == "complete":  # what a reader sees at the moment it reads complete
            ds = xr.open_zarr(self.path, consolidated=False)
            writes.append({"finite": bool(np.isfinite(ds.best_corr.values).all()), **root_attrs(self.path)})
        writes.append(dict(attrs))
        update(self, **attrs)

    entries: list[tuple[str, int, bool, str]] = []
    record = index.record

    def indexed(root: object, entry: dict, *rest: object) -> None:
        store = Path(str(root)) / entry["path"]
        on_disk = (checkpoint_path(store).exists(), root_attrs(store)["status"])
        entries.append((entry["status"], entry["epochs_done"], *on_disk))
        record(root, entry, *rest)

    monkeypatch.setattr(RunStore, "update_attrs", logged)
    monkeypatch.setattr(index, "record", indexed)
    spec = write_spec(TINY)
    assert sslspec_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    before, last = writes[-2], writes[-1]
    assert last == {"status": "complete"}
    assert before["finite"] and before["status"] == "running" and before["epochs_done"] == 5
    assert {"finished", "wall_time_s"} <= set(before) and before["measured_epochs"] == MEASURED
    assert entries == [("running", 0, False, "running"), ("complete", 5, False, "complete")]


def test_store_lacking_a_variable_is_not_continued(sslspec_cli, killed, tmp_path: Path) -> None:
    """A killed run whose store lacks a variable this sslspec writes (an older sslspec made it) is
    left exactly as it is and the run completes in a new version, saying why; no traceback."""
    spec, out = copy_of(killed, tmp_path)
    (store,) = versions(out)
    shutil.rmtree(store / "loss")  # as if written before `loss` was a variable
    before = sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*"))
    result = sslspec_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "lacks loss (another version of sslspec wrote it" in result.stderr
    assert "Traceback" not in result.stderr
    old, new = versions(out)
    assert old == store and new.name == "v0002.zarr"
    assert sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*")) == before
    assert root_attrs(old)["status"] == "running" and root_attrs(new)["status"] == "complete"
    assert sslspec_cli("run", spec, "--out", tmp_path / "whole").exit_code == 0
    identical(new, versions(tmp_path / "whole")[0])
