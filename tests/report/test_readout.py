"""The report's readout section: linear probe and k-NN accuracy of image runs, at initialization
and after training, per setting, with a figure over epochs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
from click.testing import Result

from sslspec.report import readout
from sslspec.spec.lower import lower

DIGITS = Path(__file__).resolve().parents[2] / "specs" / "images" / "digits_simclr.ssl"
SPEC = f"""\
include "{DIGITS}" {{
  train.samples = 256
  train.epochs  = 2
  measure.every = 1
}}
sweep digits_simclr {{
  seed         = 1..2
  optimizer.lr = [0.05, 0.1]
}}
"""


def test_readout_section_of_a_digits_sweep(sslspec_cli: Callable[..., Result], tmp_path: Path) -> None:
    """A 2 x 2 digits sweep (lr x seed, probe and k-NN at epochs 0-2): the report has one row per lr
    whose cells are the mean over seeds of each store's probe, train probe and k-NN accuracy at
    epoch 0 and 2 and of the paired gain, computed here from the stores, and links the figure."""
    spec, root, out = tmp_path / "d.ssl", tmp_path / "results", tmp_path / "report"
    spec.write_text(SPEC)
    assert sslspec_cli("run", str(spec), "--out", str(root)).exit_code == 0
    assert sslspec_cli("report", str(spec), "--root", str(root), "--out", str(out)).exit_code == 0
    text = (out / "report.md").read_text()
    block = text[text.index("### Readout") :].split("\n\n")[2]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in block.splitlines()[2:]}
    assert sorted(rows) == ["optimizer.lr=0.05", "optimizer.lr=0.1"]
    for run_lr in (0.05, 0.1):
        stores = [
            xr.open_zarr(root / r.experiment / r.id / "v0001.zarr", consolidated=False)
            for r in lower(spec).runs
            if dict(r.swept)["optimizer.lr"] == run_lr
        ]
        want = []
        for var in ("probe_accuracy", "probe_train_accuracy", "knn_accuracy"):
            start = np.array([ds[var].sel(epoch=0).item() for ds in stores])
            end = np.array([ds[var].sel(epoch=2).item() for ds in stores])
            want += [start.mean(), end.mean(), (end - start).mean()]
        got = [float(cell.split("±")[0]) for cell in rows[f"optimizer.lr={run_lr}"]]
        np.testing.assert_allclose(got, want, atol=5e-4)
    assert "![readout vs epoch](d_readout.png)" in text and (out / "d_readout.png").stat().st_size > 0


def test_no_readout_section_without_probe_or_knn() -> None:
    """Stores without a probe or k-NN variable (every HLTM run) get no readout section."""
    assert not readout.applies(xr.Dataset({"loss": ("epoch", [1.0])}))
    assert readout.applies(xr.Dataset({"knn_accuracy": ("epoch", [0.5])}))
