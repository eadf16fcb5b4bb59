"""The covariance operator measured per layer of an image network in a run: check refuses what the
runtime cannot do at its position, and a tiny convnet SimCLR run records every layer's spectrum,
trace and view noise at every measured epoch, bit-identically when rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_datasets import _cifar_python  # files in the exact CIFAR-10 python layout

SPEC = """\
experiment tiny {{
  seed = 3
  data cifar10 {{ root = "{root}" }}
  augment images {{ crop {{ scale = [0.5, 1.0] }} }}
  network convnet {{
    channels  = [4, 8]
    projector = [8, 4]
  }}
  loss nt_xent {{ temperature = 0.5 }}
  optimizer sgd {{ lr = 0.05 }}
  train {{
    batch   = 8
    samples = 16
    epochs  = 2
  }}
  measure {{
    covariance_operator {{
      layers = [conv0, conv1, head0, head1]
      images = 8
      views  = 2
      top    = 4
      probes = 4
      power  = 1
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 root with 7 generated images per batch file (35 train, 7 test)."""
    root = tmp_path_factory.mktemp("cifar")
    _cifar_python(root)
    return root


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            "layers = [conv0, conv1, head0, head1]",
            "18:24",
            "'covariance_operator.layers' has conv2, but convnet has conv0..conv1",
        ),
        (
            "power  = 1",
            "24:7",
            "'covariance_operator.full' applies to tree_relu and mlp, not network convnet",
        ),
        ("images = 8", "19:16", "'images' must be >= 2 (got 1)"),
    ],
)
def test_check_refuses_what_the_layer_operator_cannot_do(
    sslspec_cli, write_spec, change: str, where: str, message: str
) -> None:
    """A layer the network lacks, `full` on an image network and one image are refused at their
    positions, exit 2, no traceback."""
    text = SPEC.format(root=".")
    changed = {
        "layers = [conv0, conv1, head0, head1]": "layers = [conv0, conv2, head0, head1]",
        "power  = 1": "power  = 1\n      full   = true",
        "images = 8": "images = 1",
    }[change]
    spec = write_spec(text.replace(change, changed, 1))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2, result.stdout
    assert f"{spec}:{where}: error: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_image_fields_are_refused_on_an_mlp(sslspec_cli, write_spec) -> None:
    """`covariance_operator.layers` on an HLTM mlp run is refused where it is written."""
    spec = write_spec(
        "experiment e {\n  data hltm { depth = 2 }\n  network mlp { widths = [4] }\n  loss simple {}\n"
        "  optimizer sgd { lr = 0.1 }\n  measure {\n    covariance_operator { layers = [head0] }\n  }\n}\n"
    )
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2, result.stdout
    want = f"{spec}:7:27: error: 'covariance_operator.layers' applies to image networks (resnet, convnet)"
    assert want in result.stderr, result.stderr


def test_tiny_convnet_records_each_layers_operator(
    sslspec_cli, write_spec, cifar: Path, tmp_path: Path
) -> None:
    """Each layer's top eigenvalues (descending, at most the trace), trace, its standard error and
    the view noise are finite at epochs 0, 1, 2; head layers take the exact route (stderr 0), convs
    the randomized one; a forced rerun gives the same arrays bit for bit."""
    spec = write_spec(SPEC.format(root=cifar))
    stores = []
    for _ in range(2):
        result = sslspec_cli("run", spec, "--out", tmp_path / "out", "--force")
        assert result.exit_code == 0, result.stderr + repr(result.exception)
        (path,) = sorted((tmp_path / "out").rglob("v*.zarr"))[-1:]
        stores.append(xr.open_zarr(path, consolidated=False))
    ds = stores[0]
    assert ds["layer_op_eigval"].dims == ("epoch", "op_layer", "op_eig")
    assert ds["layer_op_eigval"].attrs["layers"] == ["conv0", "conv1", "head0", "head1"]
    assert list(ds["op_layer_exact"].values) == [0, 0, 1, 1]
    assert list(ds["op_layer_size"].values) == [108, 288, 64, 32]
    vals, trace = ds["layer_op_eigval"].values, ds["layer_op_trace"].values
    assert vals.shape == (3, 4, 4) and np.isfinite(vals).all() and np.isfinite(trace).all()
    assert (np.diff(vals, axis=-1) <= 0).all() and (vals.sum(-1) <= trace * (1 + 1e-9)).all()
    assert (ds["layer_op_trace_stderr"].values[:, 2:] == 0).all()
    assert (ds["layer_op_view_noise"].values > 0).all()
    assert ds["layer_op_eigvec"].shape == (3, 4, 288, 4)
    for name in ds.variables:
        assert np.array_equal(ds[name].values, stores[1][name].values, equal_nan=True), name


def test_report_shows_each_layers_amplification(sslspec_cli, write_spec, cifar: Path, tmp_path: Path) -> None:
    """`sslspec report` on a convnet run with the per-layer operator has the section, one row per
    layer with its route and amplification, and the figure of eigenvalue and trace vs epoch."""
    spec = write_spec(SPEC.format(root=cifar))
    result = sslspec_cli("run", spec, "--out", tmp_path / "res")
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    result = sslspec_cli("report", tmp_path / "res" / "tiny", "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### Covariance operator per layer" in md
    for row in ("conv0 (randomized)", "conv1 (randomized)", "head0 (exact)", "head1 (exact)"):
        assert f"| {row} |" in md, md
    (png,) = (tmp_path / "rep").glob("*_layer_operator.png")
    assert png.stat().st_size > 0


def test_check_refuses_a_theorem_check_it_cannot_run(sslspec_cli, write_spec) -> None:
    """On an image network the theorem check's nodes must be head layers, and BYOL (no negative
    pairs) is refused, at their positions."""
    text = SPEC.format(root=".")
    spec = write_spec(text.replace("  measure {\n", "  measure {\n    theorem_check { nodes = [0, 2] }\n", 1))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2, result.stdout
    want = f"{spec}:17:21: error: 'theorem_check.nodes' has 2, but the head of convnet has 2 Linear layers"
    assert want in result.stderr, result.stderr
    byol = "byol {\n    predictor {\n      width     = 8\n      optimizer = own\n    }\n  }"
    spec = write_spec(
        text.replace("nt_xent { temperature = 0.5 }", byol).replace(
            "  measure {\n", "  measure {\n    theorem_check\n", 1
        )
    )
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2, result.stdout
    assert "error: measurement 'theorem_check' needs a loss with negative pairs" in result.stderr, (
        result.stderr
    )


def test_tiny_convnet_theorem_check_on_the_head(sslspec_cli, write_spec, cifar: Path, tmp_path: Path) -> None:
    """A convnet NT-Xent run records the theorem check on both head layers at every measured epoch:
    the per-batch identity holds to float32 precision, the relative errors are finite, and the note
    says why the prediction is not exact (normalized projections, pair weights, head0's biases)."""
    text = SPEC.format(root=cifar).replace(
        "  measure {\n",
        "  measure {\n    theorem_check {\n      nodes = [0, 1]\n      batches = [1, 4]\n    }\n",
        1,
    )
    result = sslspec_cli("run", write_spec(text), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    (path,) = sorted((tmp_path / "out").rglob("v*.zarr"))
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["tc_rel_error"].shape == (3, 2, 2) and np.isfinite(ds["tc_rel_error"].values).all()
    assert (ds["tc_batch_rel_error"].values < 1e-4).all()
    assert (ds["tc_residue_normalization"].values > 1e-3).all()
    note = ds["tc_rel_error"].attrs["note"]
    assert "l2-normalizes" in note and "head0: " in note and "biases" in note
