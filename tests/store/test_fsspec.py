"""Results roots given as fsspec URLs: run, skip, force, resume and load against a memory filesystem."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner

import sslspec
from sslspec.cli import app
from sslspec.spec.lower import lower
from sslspec.store.location import Location, of

SPECS = Path(__file__).resolve().parents[2] / "specs"
BODY = (
    "  data.depth = 2\n  network.width = 3\n  train.samples = 64\n  train.batch = 32\n"
    "  train.epochs = 1\n  measure.samples = 256\n"
)
MEMORY = fsspec.filesystem("memory")


def write_spec(tmp_path: Path, results: str | None = None) -> Path:
    """A two-run sweep (seed = 1..2) of a tiny hltm_simclr, optionally naming its results root."""
    named = f'  results = "{results}"\n' if results else ""
    spec = tmp_path / "spec.ssl"
    spec.write_text(
        f'include "{SPECS / "hltm_simclr.ssl"}" {{\n{named}{BODY}}}\nsweep hltm_simclr {{ seed = 1..2 }}\n'
    )
    return spec


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh results root in this process's memory filesystem (removed afterwards)."""
    name = f"sslspec-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}/results"
    if MEMORY.exists(f"/{name}"):
        MEMORY.rm(f"/{name}", recursive=True)


@pytest.fixture
def restore_torch() -> Iterator[None]:
    """Put back the process-wide torch state that `execute` sets."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def execute(spec: Path, out: str, force: bool = False) -> int:
    from runtime.run import execute as run

    return run(lower(spec, ()), out=out, device="cpu", force=force)


def stores(url: str) -> list[str]:
    """The version stores under a memory root, as paths relative to it."""
    root = of(url)
    assert isinstance(root, Location)
    found = MEMORY.glob(f"{root.path}/*/*/v*.zarr")
    return sorted(p.removeprefix(f"{root.path}/") for p in found)


def test_run_writes_stores_into_the_memory_filesystem(url: str, restore_torch: None, tmp_path: Path) -> None:
    """`execute` with a memory:// root writes one v0001.zarr per run there, no lock, index or checkpoint."""
    spec = write_spec(tmp_path)
    assert execute(spec, url) == 0
    ids = sorted(r.id for r in lower(spec, ()).runs)
    assert stores(url) == [f"hltm_simclr/{i}/v0001.zarr" for i in ids]
    root = of(url)
    assert isinstance(root, Location)
    left = [p for p in MEMORY.find(root.path) if p.endswith((".lock", ".ckpt.pt", ".tmp", "index.jsonl"))]
    assert left == []
    assert not list(tmp_path.glob("**/*.zarr")) and not Path("memory:").exists()


def test_load_and_load_sweep_read_a_url_root(url: str, restore_torch: None, tmp_path: Path) -> None:
    """`load(url)` gives both runs complete; `load_sweep(spec, root=url)` has the seed dimension."""
    spec = write_spec(tmp_path)
    assert execute(spec, url) == 0
    tree = sslspec.load(url)
    runs = [tree[f"hltm_simclr/{r.id}"] for r in lower(spec, ()).runs]
    assert [node.attrs["status"] for node in runs] == ["complete", "complete"]
    assert tree.attrs["skipped"] == {}
    ds = sslspec.load_sweep(spec, root=url)
    assert dict(ds.sizes)["seed"] == 2
    assert list(ds.status.values) == ["complete", "complete"]
    assert list(ds.version.values) == [1, 1]
    assert ds.best_corr.notnull().all()
    assert sslspec.load_sweep(url).sizes["seed"] == 2  # from the stores' swept attrs


def test_second_run_is_up_to_date_and_force_makes_v0002(
    url: str, restore_torch: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second execute on a URL root writes nothing; with force every run gets a v0002."""
    spec = write_spec(tmp_path)
    assert execute(spec, url) == 0
    first = stores(url)
    capsys.readouterr()
    assert execute(spec, url) == 0
    assert stores(url) == first
    assert capsys.readouterr().err.count("up to date: ") == 2
    assert execute(spec, url, force=True) == 0
    assert sorted(s for s in stores(url) if s.endswith("v0002.zarr")) == [
        s.replace("v0001", "v0002") for s in first
    ]
    assert list(sslspec.load_sweep(spec, root=url).version.values) == [2, 2]


def test_cli_run_with_spec_results_url_then_ls_and_show(
    url: str, restore_torch: None, tmp_path: Path
) -> None:
    """`sslspec run` uses a spec's `results = "memory://..."`; `ls URL` scans it and `show` reads it."""
    spec = write_spec(tmp_path, results=url)
    cli = CliRunner()
    ran = cli.invoke(app, ["run", str(spec), "--device", "cpu"])
    assert ran.exit_code == 0, ran.output
    assert len(stores(url)) == 2
    listed = cli.invoke(app, ["ls", url])
    assert listed.exit_code == 0, listed.output
    run_id = lower(spec, ()).runs[0].id
    assert [line.split()[:3] for line in listed.output.splitlines() if run_id in line] == [
        ["hltm_simclr", run_id, "complete"]
    ]
    shown = cli.invoke(app, ["show", run_id[:8], "--root", url])
    assert shown.exit_code == 0, shown.output
    assert f"store: {url}/hltm_simclr/{run_id}/v0001.zarr" in shown.output


def test_checkpoint_round_trips_through_a_url(url: str) -> None:
    """A checkpoint saved next to a URL store loads back (same run hash) and is removed cleanly."""
    import torch

    from runtime import checkpoint

    version = of(url) / "e" / "r" / "v0001.zarr"
    assert isinstance(version, Location)
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(3)
    run_state = {"net": net.state_dict(), "opt": opt.state_dict(), "generators": {"data": gen.get_state()}}
    checkpoint.save(version, "h", 1, run_state, 0.5)
    state, note = checkpoint.load(version, "h", epochs_done=1)
    assert state is not None and state["epoch"] == 1 and note == ""
    assert torch.equal(state["net"]["weight"], net.state_dict()["weight"])
    assert checkpoint.load(version, "other", epochs_done=1)[0] is None
    checkpoint.remove(version)
    assert checkpoint.load(version, "h", epochs_done=1) == (None, "")
    assert MEMORY.find(version.parent.path) == []  # the temp name was moved, then removed


def test_location_keeps_urls_whole() -> None:
    """A URL keeps its `//` through joins and parents; file:// and plain paths become local Paths."""
    loc = of("memory://bucket/a")
    assert isinstance(loc, Location)
    assert str(loc / "b" / "v0001.zarr") == "memory://bucket/a/b/v0001.zarr"
    assert (loc / "b").parent == loc and (loc / "v0001.zarr").name == "v0001.zarr"
    assert (loc / "x.ckpt.pt").suffix == ".pt"
    assert of("file:///tmp/r") == Path("/tmp/r")
    assert of("results") == Path("results")
