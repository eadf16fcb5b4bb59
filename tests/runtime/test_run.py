"""sslspec run, end to end: the CLI writes complete, self-describing, reproducible stores."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
import xarray as xr
import zarr

import sslspec
from sslspec.spec import schema
from sslspec.spec.lower import lower
from sslspec.store.layout import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
REFERENCE = SPECS / "hltm_simclr.ssl"
SSLSPEC = Path(sys.executable).parent / "sslspec"

# The reference experiment cut to about a second: a 7-node tree (depth 3, branching 2, width 4),
# 20 SGD steps per epoch, 5 epochs measured at 0, 2, 4 and 5, the loss kept as 4 means per epoch.
TINY = f"""\
include "{REFERENCE}" {{
  data.depth         = 3
  network.width      = 4
  train.batch        = 16
  train.samples      = 320
  train.epochs       = 5
  measure.every      = 2
  measure.samples    = 1024
  measure.loss.every = 5
}}
"""
DEPTH, BRANCHING, WIDTH, EPOCHS, STEPS_PER_EPOCH = 3, 2, 4, 5, 20
MEASURED = [0, 2, 4, 5]
VARIABLES = {
    "corr": ("epoch", "node", "state", "unit"),
    "best_corr": ("epoch", "node"),
    "level_corr": ("epoch", "level"),
    "dead_fraction": ("epoch", "node"),
    "op_eigval": ("epoch", "node", "eig"),
    "op_eigvec": ("epoch", "node", "op_index", "eig"),
    "op_trace": ("epoch", "node"),
    "op_fro": ("epoch", "node"),
    "weight": ("epoch", "node", "unit", "input"),
    "loss": ("step",),
    "polarity": ("edge",),
}


def cli(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the installed `sslspec` command in a fresh process."""
    return subprocess.run(
        [str(SSLSPEC), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def stores(out: Path) -> list[Path]:
    """Every store written under `out` (a results root, or a folder in it), in path order."""
    return sorted(out.rglob("v*.zarr"))


def only_store(out: Path) -> Path:
    (path,) = stores(out)
    return path


def open_store(path: Path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False)


def same(a: xr.DataArray, b: xr.DataArray) -> bool:
    """Bit-identical values (NaN equal to NaN) with the same dtype."""
    x, y = a.values, b.values
    return x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")


def completes(path: Path) -> bool:
    """The store says its run completed every epoch its plan asked for."""
    at = open_store(path).attrs
    return (
        at["status"] == "complete"
        and at["epochs_done"] == json.loads(at["plan"])["config"]["train"]["epochs"]
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], Path]:
    """The tiny spec run once through the installed CLI: (spec path, process, store path)."""
    tmp = tmp_path_factory.mktemp("tiny")
    spec = tmp / "tiny.ssl"
    spec.write_text(TINY)
    proc = cli("run", spec, "--out", tmp / "out")
    assert proc.returncode == 0, proc.stderr
    return spec, proc, only_store(tmp / "out")


# ---- 1. the store ---------------------------------------------------------------------------


def test_cli_run_writes_the_store_it_names(tiny) -> None:
    """`sslspec run` exits 0 and its last stderr line ends with the path of the one store it wrote."""
    spec, proc, path = tiny
    run = lower(spec).runs[0]
    assert path.relative_to(path.parents[2]) == Path("hltm_simclr", run.id, "v0001.zarr")
    assert proc.stderr.strip().splitlines()[-1].endswith(f"-> {path}")
    assert "Traceback" not in proc.stderr


def test_store_variables_dims_and_coordinates(tiny) -> None:
    """The store holds every documented variable with its dims; coords carry units and long_name."""
    ds = open_store(tiny[2])
    for name, dims in VARIABLES.items():
        assert ds[name].dims == dims, name
    for name in {"height", "node_level", "node_parent"}:
        assert name in ds.coords and name not in ds.data_vars, name
    assert ds["height"].dims == ("level",) and ds["node_level"].dims == ("node",)
    for name, var in ds.variables.items():
        assert isinstance(var.attrs.get("units"), str) and var.attrs.get("long_name"), name
    assert list(ds["epoch"].values) == MEASURED
    assert list(ds["node_level"].values) == [0, 1, 1, 2, 2, 2, 2]
    assert list(ds["node_parent"].values) == [-1, 0, 0, 1, 1, 2, 2]
    assert list(ds["height"].values) == [3, 2, 1]
    assert ds.sizes["edge"] == 6 + 8  # into each non-root latent node, then each leaf


def test_store_root_attributes(tiny) -> None:
    """Root attrs hold the spec text, this run's plan and hash, its seeds, versions and a complete status."""
    spec, _, path = tiny
    run = lower(spec).runs[0]
    at = open_store(path).attrs
    assert at["spec_text"] == TINY
    assert at["run_hash"] == run.hash
    plan = json.loads(at["plan"])
    assert plan["hash"] == run.hash and plan == json.loads(json.dumps(run.to_data()))
    assert at["seeds"] == attrs.asdict(run.seeds) and set(at["seeds"]) == {"tree", "init", "data", "measure"}
    versions = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
        "python": platform.python_version(),
        "sslspec": sslspec.__version__,
    }
    assert {k: at["versions"].get(k) for k in versions} == versions
    assert at["device"].startswith("cpu")
    assert at["status"] == "complete" and at["epochs_done"] == EPOCHS
    assert isinstance(at["wall_time_s"], float) and at["wall_time_s"] > 0
    assert at["schema_version"] == SCHEMA_VERSION


def test_completed_store_has_nan_only_in_documented_padding(tiny) -> None:
    """NaN appears only in weight beyond a node's fan-in and op_eigvec beyond a node's operator size."""
    ds = open_store(tiny[2])
    last_level = ds["node_level"].values == DEPTH - 1
    fan_in = np.where(last_level, BRANCHING, BRANCHING * WIDTH)  # leaves are scalar inputs
    pad_w = ds["input"].values[None, :] >= fan_in[:, None]  # (node, input)
    pad_v = ds["op_index"].values[None, :] >= (fan_in * WIDTH)[:, None]  # (node, op_index)
    assert pad_w.any() and pad_v.any()  # the tiny tree has padding to check
    weight = ds["weight"].transpose("epoch", "node", "input", "unit").values
    assert np.array_equal(np.isnan(weight), np.broadcast_to(pad_w[None, :, :, None], weight.shape))
    vec = ds["op_eigvec"].values
    assert np.array_equal(np.isnan(vec), np.broadcast_to(pad_v[None, :, :, None], vec.shape))
    for name, var in ds.data_vars.items():
        if name not in {"weight", "op_eigvec"}:
            assert not np.isnan(var.values).any(), name


# ---- 2. every shipped spec ------------------------------------------------------------------


def _literal(value: object) -> str:
    """A value as `--set` text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not value.isidentifier():
        return json.dumps(value)
    return str(value)


def _shortened(spec: Path) -> list[str]:
    """--set options that shrink a spec to seconds and pin every swept path but the seed."""
    sets = ["train.batch=32", "train.samples=64", "train.epochs=2", "measure.samples=256"]
    first = lower(spec).runs[0].swept
    return sets + [f"{p}={_literal(v)}" for p, v in first if p != "seed"]


def test_stored_corr_is_the_pearson_correlation_of_pre_activations(tiny) -> None:
    """Epoch 0's stored corr equals a direct Pearson correlation of each latent's state indicators
    with the initial network's pre-activations (not its activations) on the same draws, rebuilt
    from the run's seeds."""
    import ref_measure as ref

    from runtime.layout import Layout
    from runtime.network import build_network
    from runtime.sampler import draw_edges, draw_measure_batch

    spec, _, path = tiny
    run = lower(spec).runs[0]
    cfg, seeds = run.config, run.seeds
    gen = lambda seed: torch.Generator().manual_seed(seed)
    layout = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, layout, gen(seeds.tree))
    net = build_network(cfg, layout, gen(seeds.init), torch.float32).eval()
    assert cfg.measure.samples == 1024  # one chunk of draws from the fresh measurement stream
    sample = draw_measure_batch(layout, edges, cfg.data, 1024, gen(seeds.measure), "cpu")
    with torch.no_grad():
        pre = torch.cat(net(sample.inputs(torch.float32)).pre, dim=1)  # (B, n_latent, W)
    z = torch.cat(sample.latents, dim=1)  # (B, n_latent)
    stored = open_store(path).corr.isel(epoch=0).values  # (n_latent, S, W)
    want = ref.correlation(z, pre, cfg.data.states).numpy()
    np.testing.assert_allclose(stored, want, rtol=0, atol=1e-5)
    post = ref.correlation(z, torch.relu(pre), cfg.data.states).numpy()
    assert np.abs(stored - post).max() > 0.05  # the activations would give other numbers


def needs_a_copy(spec: Path) -> bool:
    """Whether a spec trains on a data set read from a local copy (CIFAR-10, STL-10), which no
    machine here has: tests/runtime/images/test_networks.py runs those specs shortened on
    generated files in the data set's format instead."""
    return any(isinstance(r.config.data, schema.Cifar10 | schema.STL10) for r in lower(spec).runs)


@pytest.mark.parametrize(
    "spec",
    [p for p in sorted(SPECS.rglob("*.ssl")) if not needs_a_copy(p)],
    ids=lambda p: str(p.relative_to(SPECS)),
)
def test_every_shipped_spec_runs(spec: Path, sslspec_cli, tmp_path: Path) -> None:
    """Each spec under specs/ (but those that need a local data set copy), shortened with --set
    (sweeps cut to the seed axis), completes every run."""
    sets = _shortened(spec)
    plan = lower(spec, sets)
    assert all(set(axes) <= {"seed"} for _, axes in plan.axes)
    result = sslspec_cli("run", spec, *(a for s in sets for a in ("--set", s)), "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    written = stores(tmp_path)
    assert len(written) == len(plan.runs)
    assert {p.parent.name for p in written} == {r.id for r in plan.runs}
    assert all(completes(p) for p in written)


def test_several_specs_make_one_queue_and_a_shared_run_is_done_once(
    sslspec_cli, write_spec, tmp_path: Path
) -> None:
    """`sslspec run a.ssl b.ssl`: every run of both completes; the run both plan has one version."""
    a = write_spec(TINY + "sweep hltm_simclr { seed = [1, 2] }\n", "a.ssl")
    b = write_spec(TINY + "sweep hltm_simclr { seed = [2, 3] }\n", "b.ssl")
    ids = {r.id for spec in (a, b) for r in lower(spec).runs}
    assert len(ids) == 3
    result = sslspec_cli("run", a, b, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    written = stores(tmp_path / "out")
    assert sorted(p.parent.name for p in written) == sorted(ids)  # one version each
    assert all(completes(p) for p in written)
    assert result.stderr.count("up to date") == 1


def test_a_bad_second_spec_stops_the_run_before_the_first_starts(
    sslspec_cli, write_spec, tmp_path: Path
) -> None:
    """Every spec is checked before any run: an error in the second writes nothing for the first."""
    good = write_spec(TINY, "good.ssl")
    bad = write_spec(TINY.replace("width      = 4", "width      = -4"), "bad.ssl")
    out = tmp_path / "out"
    lines = _refused(sslspec_cli("run", good, bad, "--out", out), out)
    assert lines[0].startswith(f"{bad}:") and lines[-1] == "1 error"


def test_operator_without_vectors_stores_no_eigenvectors(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """`covariance_operator { vectors = false }` keeps the eigenvalues and drops op_eigvec."""
    spec = write_spec(TINY.replace("}\n", "  measure.covariance_operator.vectors = false\n}\n", 1))
    assert sslspec_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    ds = open_store(only_store(tmp_path / "out"))
    assert "op_eigvec" not in ds and ds["op_eigval"].notnull().any()


def test_batch_norm_run_records_its_view_statistics(tiny, sslspec_cli, write_spec, tmp_path: Path) -> None:
    """A batch-norm run says in its root attrs that batch norm sees each view on its own; a run
    without batch norm does not carry the attribute; dead_fraction is a fraction per node."""
    spec = write_spec(TINY.replace("}\n", "  network.batch_norm = true\n}\n", 1))
    assert sslspec_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    ds = open_store(only_store(tmp_path / "out"))
    assert ds.attrs["batch_norm_views"] == "separate"
    dead = ds["dead_fraction"].values
    assert dead.shape == (len(MEASURED), 7) and ((dead >= 0) & (dead <= 1)).all()
    assert "batch_norm_views" not in open_store(tiny[2]).attrs


# ---- 3. determinism -------------------------------------------------------------------------


def test_rerun_is_bit_identical_and_seed_changes_it(tiny, sslspec_cli, tmp_path: Path) -> None:
    """A rerun (another process, another --out) repeats every array bit for bit; another seed does not."""
    spec, _, first = tiny
    assert sslspec_cli("run", spec, "--out", tmp_path / "again").exit_code == 0
    assert sslspec_cli("run", spec, "--set", "seed=2", "--out", tmp_path / "seed2").exit_code == 0
    a, b = open_store(first), open_store(only_store(tmp_path / "again"))
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        assert same(a[name], b[name]) and a[name].attrs == b[name].attrs, name
    c = open_store(only_store(tmp_path / "seed2"))
    assert c.attrs["seeds"] != a.attrs["seeds"]
    assert not same(a["polarity"], c["polarity"])
    assert not same(a["corr"], c["corr"])


# ---- 4. refusals before any run -------------------------------------------------------------


def _refused(result, out: Path) -> list[str]:
    """stderr lines of a run refused with exit 2 that printed no traceback and wrote nothing."""
    assert result.exit_code == 2, result.stderr
    assert not isinstance(result.exception, Exception), result.exception  # only SystemExit
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
    return result.stderr.strip().splitlines()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_refused(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """--device cuda without CUDA exits 2 with one message line (then the count) and writes nothing."""
    out = tmp_path / "out"
    lines = _refused(sslspec_cli("run", write_spec(TINY), "--device", "cuda", "--out", out), out)
    assert lines == [
        "error: device 'cuda' asked for, but this machine has no CUDA device (use --device cpu or auto)",
        "1 error",
    ]


def test_meaningless_field_in_a_sweep_is_refused_before_any_run(
    sslspec_cli, write_spec, tmp_path: Path
) -> None:
    """A sweep whose second run sets a batch-norm option without batch norm exits 2 with the
    checker's message at the swept field and writes no store at all (the same spec fails
    `sslspec check`)."""
    spec = write_spec(TINY + "sweep hltm_simclr {\n  network.bn_mean = [normal, detach]\n}\n")
    out = tmp_path / "out"
    lines = _refused(sslspec_cli("run", spec, "--out", out), out)
    assert lines[0] == f"{spec}:12:3: error: 'bn_mean' needs batch_norm = true in the network (got detach)"
    assert lines[-1] == "1 error"
    assert sslspec_cli("check", spec).exit_code == 2


def test_bad_set_path_exits_2_through_the_cli(tmp_path: Path) -> None:
    """`run --set` with an unknown path exits 2 at --set:1:1 with a suggestion, no traceback, no output."""
    spec = tmp_path / "tiny.ssl"
    spec.write_text(TINY)
    proc = cli("run", spec, "--set", "los.kind=simple", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "--set:1:1: error: experiment 'hltm_simclr' has no block 'los'; did you mean"
    )
    assert not (tmp_path / "out").exists()


# ---- 5. failed runs -------------------------------------------------------------------------

# simple loss on an unnormalized output is unbounded below: lr = 1e6 sends it to NaN in epoch 1.
DIVERGES = """\
include "{reference}" {{
  data.depth        = 3
  network.width     = 4
  network.normalize = none
  loss.kind         = simple
  train.batch       = 32
  train.samples     = 320
  train.epochs      = 3
  measure.samples   = 1024
}}
sweep hltm_simclr {{
  zip {{
    optimizer.lr = [1e6, 0.001]
    seed         = [1, 2]
  }}
}}
"""


def test_diverging_run_fails_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A run whose loss turns NaN is stored failed, naming epoch and quantity; the next completes; exit 1."""
    spec = tmp_path / "diverges.ssl"
    spec.write_text(DIVERGES.format(reference=REFERENCE))
    proc = cli("run", spec, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    bad_run, good_run = lower(spec).runs
    bad = open_store(only_store(tmp_path / "out" / "hltm_simclr" / bad_run.id))
    assert bad.attrs["status"] == "failed"
    assert bad.attrs["error"].startswith("FloatingPointError: training loss became nan at epoch 1, step ")
    assert bad.attrs["epochs_done"] == 0 and bad.attrs["measured_epochs"] == [0]
    assert not np.isnan(bad["best_corr"].sel(epoch=0).values).any()  # what was measured is kept
    assert completes(only_store(tmp_path / "out" / "hltm_simclr" / good_run.id))
    lines = sorted(proc.stderr.strip().splitlines())  # the runs' workers (-j) end in any order
    assert f"run 1 {bad_run.id} FAILED: training loss became nan at epoch 1" in lines[0]
    assert lines[1].startswith(f"run 2 {good_run.id} complete")


# lr = 1e3 with one SGD step per epoch: the loss is -1.5e22 (finite) after epoch 2, the operator's
# float32 covariance overflows, and linalg.eigh raises in the epoch-3 measurement.
OVERFLOWS = f"""\
include "{REFERENCE}" {{
  data.depth        = 3
  network.width     = 4
  network.normalize = none
  loss.kind         = simple
  optimizer.lr      = 1e3
  train.batch       = 32
  train.samples     = 32
  train.epochs      = 4
  measure.samples   = 512
}}
"""


def test_blowup_seen_by_the_measurement_names_the_epoch(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """A blow-up the loss misses (finite, 1e22) but the operator sees fails naming the epoch, no traceback."""
    spec = write_spec(OVERFLOWS)
    result = sslspec_cli("run", spec, "--out", tmp_path)
    assert result.exit_code == 1
    at = open_store(only_store(tmp_path)).attrs
    assert at["status"] == "failed"
    assert "Traceback" not in result.stderr
    assert "epoch" in at["error"]


# ---- 6. learning ----------------------------------------------------------------------------

STRONG = f"""\
include "{REFERENCE}" {{
  data.depth                  = 3
  data.polarity               = uniform(low = 0.9, high = 1.0)
  network.width               = 10
  train.samples               = 3200
  train.epochs                = 5
  measure.every               = 5
  measure.samples             = 4096
  measure.covariance_operator = false
  measure.weights             = false
}}
sweep hltm_simclr {{
  seed = 1..3
}}
"""


def test_training_raises_the_root_correlation(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """On a strongly polarized depth-3 tree, official InfoNCE training raises the root's best correlation."""
    result = sslspec_cli("run", write_spec(STRONG), "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    written = [open_store(p) for p in stores(tmp_path)]
    assert sorted(ds.attrs["seed"] for ds in written) == [1, 2, 3]
    for ds in written:
        root = ds["best_corr"].sel(node=0).values
        assert root[-1] > root[0] + 0.01, (ds.attrs["seed"], root)  # observed margins 0.017 to 0.028
        top = ds["level_corr"].sel(level=0).values  # the root level's mean is the root itself
        assert np.array_equal(top, root)
        levels = ds["level_corr"].mean("level").values
        assert levels[-1] > levels[0], (ds.attrs["seed"], levels)  # observed margins 0.006 to 0.011


# ---- 7. the loss ----------------------------------------------------------------------------


def test_loss_is_recorded_per_window_of_sgd_steps(tiny, sslspec_cli, write_spec, tmp_path: Path) -> None:
    """`loss` holds one finite mean per `measure.loss.every` SGD steps; `step` counts SGD steps."""
    ds = open_store(tiny[2])
    assert ds.sizes["step"] == EPOCHS * 4  # 20 steps per epoch, every = 5
    assert list(ds["step"].values) == list(range(5, EPOCHS * STEPS_PER_EPOCH + 1, 5))
    assert np.isfinite(ds["loss"].values).all()
    # The same training with other windows: every = 1 gives each step, every = 3 an uneven last window.
    spec = write_spec(TINY + "sweep hltm_simclr {\n  measure.loss.every = [1, 3]\n}\n")
    assert sslspec_cli("run", spec, "--out", tmp_path).exit_code == 0
    each, by3 = (open_store(only_store(tmp_path / "hltm_simclr" / r.id)) for r in lower(spec).runs)
    per_step = each["loss"].values.reshape(EPOCHS, STEPS_PER_EPOCH)
    assert list(each["step"].values) == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    np.testing.assert_allclose(ds["loss"].values, per_step.reshape(EPOCHS, 4, 5).mean(-1).ravel(), rtol=1e-12)
    ends = [3, 6, 9, 12, 15, 18, 20]
    assert list(by3["step"].values) == [e * STEPS_PER_EPOCH + k for e in range(EPOCHS) for k in ends]
    windows = [per_step[:, a:b].mean(1) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    np.testing.assert_allclose(by3["loss"].values, np.stack(windows, 1).ravel(), rtol=1e-12)


# ---- 8. the theorem check -------------------------------------------------------------------

THEOREM = """\
experiment exact {
  data hltm { depth = 3 }
  network tree_relu { width = 4; bias = false; normalize = none }
  loss simple { reduction = sample }
  optimizer sgd { lr = 0.01 }
  train { batch = 128; samples = 1280; epochs = 1 }
  measure {
    samples = 65536
    theorem_check { batches = [1, 16, 256]; nodes = [0, 1, 4] }
  }
}
experiment official {
  data hltm { depth = 3 }
  network tree_relu { width = 4 }
  loss infonce { reduction = batch }
  optimizer sgd { lr = 0.1 }
  train { batch = 128; samples = 1280; epochs = 1 }
  measure {
    samples = 4096
    theorem_check { batches = [1, 4]; nodes = [0] }
  }
}
"""


def test_theorem_check_error_falls_with_m_when_exact(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """With the simple sample loss on a bias-free raw network the error falls with M and `exact` is true."""
    result = sslspec_cli("run", write_spec(THEOREM), "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    exact = open_store(only_store(tmp_path / "exact"))
    err = exact["tc_rel_error"]
    assert err.dims == ("epoch", "tc_node", "tc_batches")
    assert list(err["tc_node"].values) == [0, 1, 4] and list(err["tc_batches"].values) == [1, 16, 256]
    assert list(err["epoch"].values) == [0, 1]
    assert err.attrs["exact"] is True
    first, last = err.sel(tc_batches=1).values, err.sel(tc_batches=256).values
    assert (last < 0.5 * first).all() and (last < 0.1).all(), err.values  # observed: < 0.35 and < 0.04
    official = open_store(only_store(tmp_path / "official"))["tc_rel_error"]
    assert official.attrs["exact"] is False and official.attrs["loss"] == "infonce"
    assert np.isfinite(official.values).all()


# ---- 9. the README's quickstart -------------------------------------------------------------


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path: Path) -> None:
    """`sslspec run specs/quickstart.ssl`, as the README gives it, completes a store with every variable."""
    proc = cli("run", "specs/quickstart.ssl", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = only_store(tmp_path)
    ds = open_store(path)
    assert set(VARIABLES) <= set(ds.data_vars)
    assert list(ds["epoch"].values) == [0, 2, 4, 6, 8, 10]
    assert completes(path)
    assert proc.stderr.strip().splitlines()[-1].endswith(str(path))
