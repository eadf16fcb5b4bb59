"""Every network, data and augmentation variant of the language runs end to end and records
sensible arrays: mlp, a non-uniform explicit tree, three states, batch norm, leaky ReLU, no bias,
no output normalization, batch negatives, flips, leaf noise, shared levels, adam, triplet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REFERENCE = Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"
BASE = [
    "train.samples=256",
    "train.batch=32",
    "train.epochs=2",
    "measure.samples=1024",
    "measure.every=1",
]


def _args(spec: Path, out: Path, sets: list[str]) -> list:
    return ["run", spec, "--out", out, *(x for s in [*BASE, *sets] for x in ("--set", s))]


def _run(sslspec_cli, tmp_path: Path, sets: list[str], spec: Path = REFERENCE) -> xr.Dataset:
    result = sslspec_cli(*_args(spec, tmp_path / "out", sets))
    assert result.exit_code == 0, result.stderr
    (path,) = sorted((tmp_path / "out").glob("*/*/v*.zarr"))
    ds = xr.open_zarr(path, consolidated=False)
    assert ds.attrs["status"] == "complete"
    return ds


VARIANTS = {
    "mlp": ["network.kind=mlp", "network.widths=[16, 8]"],
    "ragged_tree": ["data.tree=[[2, 3], [4]]", "data.depth=2", "network.width=3"],
    "three_states": ["data.states=3", "data.sign=positive", "data.depth=3"],
    "batch_norm_leaky": [
        "network.batch_norm=true",
        "network.activation=leaky_relu(slope = 0.1)",
        "data.depth=3",
    ],
    "bare": ["network.bias=false", "network.normalize=none", "loss.kind=simple", "data.depth=3"],
    "batch_negatives": [
        "augment.negative=batch",
        "loss.negatives=4",
        "loss.reduction=sample",
        "data.depth=3",
    ],
    "flips_noise_share": ["augment.flip=0.1", "data.leaf_noise=0.05", "augment.share=1", "data.depth=3"],
    "adam_triplet": ["optimizer.kind=adam", "optimizer.lr=0.01", "loss.kind=triplet", "data.depth=3"],
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_runs_and_records(sslspec_cli, tmp_path: Path, name: str) -> None:
    """The variant completes with finite correlations, operator spectra and losses."""
    sets = VARIANTS[name]
    if name == "ragged_tree":  # `tree` excludes depth/branching: start from a spec without them
        spec = tmp_path / "ragged.ssl"
        spec.write_text(
            REFERENCE.read_text().replace("    depth     = 5", "").replace("    branching = 2", "")
        )
        ds = _run(sslspec_cli, tmp_path, [s for s in sets if not s.startswith("data.depth")], spec)
        # root -> ([2 leaves], [3 leaves]) and ([4 leaves]): 6 latent nodes on three levels
        assert list(ds.node_level.values) == [0, 1, 1, 2, 2, 2]
        assert list(ds.node_parent.values) == [-1, 0, 0, 1, 1, 2]
    else:
        ds = _run(sslspec_cli, tmp_path, sets)
    assert np.isfinite(ds.best_corr.values).all()
    assert np.isfinite(ds.op_eigval.isel(eig=0).values).all()
    assert np.isfinite(ds.loss.values).all()
    if name == "mlp":
        assert ds.best_corr.dims == ("epoch", "layer", "node") and ds.sizes["layer"] == 2
        assert ds.op_eigval.dims == ("epoch", "layer", "eig")
    if name == "three_states":
        assert ds.sizes["state"] == 3


def test_mlp_correlation_matches_a_direct_computation(sslspec_cli, tmp_path: Path) -> None:
    """For an mlp, best_corr of (output layer, root) is the max |corr| of the root with its units."""
    ds = _run(sslspec_cli, tmp_path, VARIANTS["mlp"])
    corr = ds.corr.isel(epoch=-1, layer=0, node=0).values  # (state, unit), units past 8 are NaN
    assert np.isnan(corr[:, 8:]).all()
    assert np.isclose(np.nanmax(np.abs(corr)), ds.best_corr.isel(epoch=-1, layer=0, node=0).values)
