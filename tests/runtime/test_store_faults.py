"""The store under faults: write errors (a full disk) injected through the store's file-system seam,
refused checkpoints, and the root correlation `ls` reads from an mlp run."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from test_resume import identical
from test_run import REFERENCE, TINY
from zarr.storage import WrapperStore

from runtime import checkpoint
from runtime.run import execute
from sslspec.spec.lower import lower
from sslspec.store import index
from sslspec.store.files import Files
from sslspec.store.layout import Status, checkpoint_path, read_attrs, versions
from sslspec.store.location import Place

SWEEP = TINY + "sweep hltm_simclr {\n  seed = 1..2\n}\n"


class Faulty(Files):
    """Files whose n-th write of a chosen kind raises OSError(ENOSPC); with `stay_full`, every write
    after that one fails too (the disk stays full)."""

    def __init__(self, kind: str, nth: int = 1, stay_full: bool = False) -> None:
        self.kind, self.nth, self.stay_full = kind, nth, stay_full
        self.seen, self.full = 0, False

    def hit(self, kind: str) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        if kind == self.kind:
            self.seen += 1
            if self.seen == self.nth:
                self.full = self.stay_full
                raise OSError(errno.ENOSPC, "No space left on device")

    def zarr_store(self, path: Place, read_only: bool = False) -> Any:
        return _Seamed(super().zarr_store(path, read_only), self)

    def write_atomic(self, path: Place, data: bytes) -> None:
        self.hit("checkpoint")
        super().write_atomic(path, data)

    def append(self, path: Path, line: bytes) -> None:
        self.hit("index")
        super().append(path, line)


class _Seamed(WrapperStore[Any]):
    """A zarr store whose writes report their kind to a Faulty first: `metadata` for the first
    zarr.json, `chunk:<array>` for chunks, `complete` for the root's final status write."""

    def __init__(self, store: Any, files: Faulty) -> None:
        super().__init__(store)
        self.files = files

    async def set(self, key: str, value: Any) -> None:
        if key == "zarr.json":
            attrs = json.loads(value.to_bytes()).get("attributes", {})
            self.files.hit("complete" if attrs.get("status") == Status.COMPLETE else "metadata")
        elif "/c/" in key:
            self.files.hit(f"chunk:{key.split('/c/')[0]}")
        await super().set(key, value)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The two-seed sweep run without faults: (spec, {run id: store})."""
    tmp = tmp_path_factory.mktemp("reference")
    spec = tmp / "sweep.ssl"
    spec.write_text(SWEEP)
    assert execute(lower(spec), tmp / "out") == 0
    return spec, {r.id: only(tmp / "out", r.id) for r in lower(spec).runs}


def only(out: Path, run_id: str) -> Path:
    (path,) = [p for _, p in versions(out / "hltm_simclr" / run_id)]
    return Path(path)


# (kind, nth): the first write of the store, the chunk of best_corr written at the second measured
# epoch, the second checkpoint, the final status write.
POINTS = [("metadata", 1), ("chunk:best_corr", 2), ("checkpoint", 2), ("complete", 1)]


@pytest.mark.parametrize(("kind", "nth"), POINTS, ids=[k for k, _ in POINTS])
def test_a_write_error_fails_the_run_only_and_a_later_run_completes_it(
    kind: str, nth: int, reference: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: Any
) -> None:
    """ENOSPC at a write point fails that run naming the error; the other run completes; the version
    is never complete; running again gives arrays bit-identical to an unfaulted run."""
    spec, good = reference
    out = tmp_path / "out"
    first, second = lower(spec).runs
    assert execute(lower(spec), out, files=Faulty(kind, nth)) == 1
    err = capsys.readouterr().err
    assert f"{first.id} FAILED: [Errno 28] No space left on device" in err
    assert "Traceback" not in err
    hit = [p for _, p in versions(out / "hltm_simclr" / first.id)]
    for p in hit:
        if (p / "zarr.json").exists():
            at = read_attrs(p)
            assert at["status"] != Status.COMPLETE
            assert at.get("error", "").startswith("OSError: [Errno 28]") or at["status"] == Status.RUNNING
    assert all(e["status"] != Status.COMPLETE for k, e in index.read(out).items() if k[1] == first.id)
    identical(only(out, second.id), good[second.id])
    assert execute(lower(spec), out) == 0  # the disk has room again
    stored = [p for _, p in versions(out / "hltm_simclr" / first.id)]
    assert read_attrs(stored[-1])["status"] == Status.COMPLETE
    identical(Path(stored[-1]), good[first.id])


def test_a_disk_that_stays_full_fails_every_run_and_a_later_run_resumes(
    reference: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: Any
) -> None:
    """From the third checkpoint on every write fails: both runs fail (none marked complete, the
    first stays running, as even `failed` cannot be written), and a later run resumes it bit-identically."""
    spec, good = reference
    out = tmp_path / "out"
    first, second = lower(spec).runs
    assert execute(lower(spec), out, files=Faulty("checkpoint", 3, stay_full=True)) == 1
    err = capsys.readouterr().err
    assert err.count("FAILED: [Errno 28] No space left on device") == 2
    assert "could not mark it failed" in err
    (v,) = [p for _, p in versions(out / "hltm_simclr" / first.id)]
    assert read_attrs(v)["status"] == Status.RUNNING and checkpoint_path(v).exists()
    assert execute(lower(spec), out) == 0
    assert "resumed" in read_attrs(v)
    identical(Path(v), good[first.id])
    identical(only(out, second.id), good[second.id])


def _killed_with_checkpoint(spec: Path, out: Path) -> Path:
    """A version left `running` with its checkpoint after epoch 2, as a killed process leaves it."""
    files = Faulty("checkpoint", 3, stay_full=True)
    assert execute(lower(spec), out, files=files) == 1
    (v,) = [p for _, p in versions(out / "hltm_simclr" / lower(spec).runs[0].id)]
    assert read_attrs(v)["status"] == Status.RUNNING
    return Path(v)


@pytest.mark.parametrize("damage", ["truncated", "another run"])
def test_a_bad_checkpoint_is_refused_and_the_run_starts_clean(
    damage: str, tmp_path: Path, capsys: Any
) -> None:
    """A truncated checkpoint, or one of another run hash, is refused with a message; the run starts
    a clean version v0002 that equals an uninterrupted run, and v0001 is left as it was."""
    spec = tmp_path / "tiny.ssl"
    spec.write_text(TINY)
    out = tmp_path / "out"
    v1 = _killed_with_checkpoint(spec, out)
    ckpt = checkpoint_path(v1)
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
        expected = "unreadable checkpoint"
    else:
        import torch

        state = torch.load(ckpt, weights_only=True)
        torch.save({**state, "run_hash": "f" * 16}, ckpt)
        expected = f"checkpoint of another run (hash {'f' * 16}"
    capsys.readouterr()
    assert execute(lower(spec), out) == 0
    err = capsys.readouterr().err
    assert expected in err and "starting a clean version" in err
    v2 = v1.with_name("v0002.zarr")
    assert read_attrs(v2)["status"] == Status.COMPLETE and "resumed" not in read_attrs(v2)
    assert read_attrs(v1)["status"] == Status.RUNNING  # never overwritten
    clean = tmp_path / "clean"
    assert execute(lower(spec), clean) == 0
    identical(v2, only(clean, lower(spec).runs[0].id))


def test_checkpoint_load_refuses_more_epochs_than_the_store_has(tmp_path: Path) -> None:
    """A checkpoint claiming more finished epochs than its store's epochs_done is refused."""
    import torch

    version = tmp_path / "v0001.zarr"
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    run_state = {
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "generators": {"data": torch.Generator().get_state()},
    }
    checkpoint.save(version, "h", 3, run_state, 1.0)
    assert checkpoint.load(version, "h", epochs_done=3)[0] is not None
    state, note = checkpoint.load(version, "h", epochs_done=2)
    assert state is None and "after epoch 3, but its store has 2 done" in note


# Two seeds: the report of a single run without a sweep is another issue's defect (15.1).
MLP = f"""\
include "{REFERENCE}" {{
  network.kind    = mlp
  network.widths  = [16, 8]
  train.samples   = 256
  train.batch     = 32
  train.epochs    = 2
  measure.samples = 1024
}}
sweep hltm_simclr {{
  seed = 1..2
}}
"""


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """The MLP sweep run once: (spec, results root, {run id: best_corr over (epoch, layer, node)})."""
    from inprocess import sslspec_in_process

    tmp = tmp_path_factory.mktemp("mlp")
    spec, out = tmp / "mlp.ssl", tmp / "out"
    spec.write_text(MLP)
    with sslspec_in_process() as cli:
        assert cli("run", spec, "--out", out).exit_code == 0
    best = {}
    for run in lower(spec).runs:
        arr = zarr.open_group(str(only(out, run.id)), mode="r")["best_corr"]
        assert arr.metadata.dimension_names == ("epoch", "layer", "node")
        best[run.id] = np.asarray(arr[...])
    return spec, out, best


def test_ls_reads_the_root_correlation_of_an_mlp_run(mlp: tuple[Path, Path, dict], sslspec_cli) -> None:
    """For an mlp (best_corr over epoch, layer, node) ls shows best_corr at the last epoch, output
    layer, root node: the dims are looked up by name."""
    _, out, best = mlp
    listed = sslspec_cli("ls", out)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line.split()[4] for line in listed.stdout.splitlines()[1:]}
    assert rows.keys() == best.keys()
    for run_id, values in best.items():
        assert len({f"{x:.4f}" for x in values[-1].ravel()}) > 1  # another unit shows another value
        assert rows[run_id] == f"{values[-1, 0, 0]:.4f}"


def test_report_of_an_mlp_run_reads_the_root_at_the_output_layer(
    mlp: tuple[Path, Path, dict], sslspec_cli, tmp_path: Path
) -> None:
    """report on an mlp sweep gives the root correlation at the output layer (mean over seeds) and
    draws the operator spectrum per layer (it looked for a `node` dim before)."""
    spec, out, best = mlp
    result = sslspec_cli("report", spec, "--root", out, "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "report.md").read_text()
    roots = np.asarray([v[-1, 0, 0] for v in best.values()], dtype=float)
    assert f"| {roots.mean():.3f} ± {roots.std():.3f} (n=2) |" in md
    assert (tmp_path / "rep" / "mlp_eigvals.png").exists()


def test_run_refuses_a_run_directory_holding_a_newer_schema(tmp_path: Path) -> None:
    """`run` reads the versions it finds like any reader: a newer schema is refused naming both."""
    from sslspec.errors import StoreError
    from sslspec.store.layout import SCHEMA_VERSION

    spec = tmp_path / "tiny.ssl"
    spec.write_text(TINY)
    out = tmp_path / "out"
    assert execute(lower(spec), out) == 0
    store = only(out, lower(spec).runs[0].id)
    zarr.open_group(str(store), mode="r+").attrs["schema_version"] = SCHEMA_VERSION + 1
    newer = f"schema version {SCHEMA_VERSION + 1} is newer .*\\({SCHEMA_VERSION}\\)"
    with pytest.raises(StoreError, match=newer):
        execute(lower(spec), out)
    assert [p.name for _, p in versions(store.parent)] == ["v0001.zarr"]
