"""Luck matters: the rank statistics on synthetic stores whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sslspec.report.luck import hits, luck, ranks, spearman, top_k_hit
from sslspec.report.luck_section import section
from sslspec.report.sweep import SweepResults

SEEDS, NODES, UNITS = 6, 15, 20


def _store(tmp_path: Path, final_of: str, states: int = 3, seed: int = 0) -> xr.Dataset:
    """A sweep-shaped Dataset (seed, epoch, node, state, unit) written to and read back from zarr:
    the initial |corr| uniform in [0, 0.6]; the final one `initial + noise`, a permutation of the
    units' initial values, or `2 * initial`."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], size=(SEEDS, NODES, states, UNITS))
    init = rng.uniform(0, 0.6, size=(SEEDS, NODES, states, UNITS))
    if final_of == "noise":
        last = init + rng.normal(0, 0.01, size=init.shape)
    elif final_of == "permuted":
        last = np.take_along_axis(init, rng.permuted(np.argsort(init, -1), axis=-1), -1) + 0.2
    else:
        last = 2 * init
    corr = np.stack([sign * init, np.full_like(init, np.nan), sign * np.clip(last, 0, 1)], axis=1)
    seed_c = xr.DataArray(np.arange(1, SEEDS + 1), dims="seed", attrs={"swept_path": "seed"})
    ds = xr.Dataset(
        {
            "corr": (("seed", "epoch", "node", "state", "unit"), corr.astype(np.float32)),
        },
        coords={
            "seed": seed_c,
            "epoch": [0, 5, 10],
            "state": np.arange(states),
            "node_level": ("node", [0] + [1] * (NODES - 1)),
        },
        attrs={"swept_paths": {"seed": "seed"}, "experiment": "synthetic"},
    )
    ds.epoch.attrs["units"] = "epochs"
    ds.to_zarr(tmp_path / f"{final_of}.zarr", consolidated=False, zarr_format=3)
    ds = xr.open_zarr(tmp_path / f"{final_of}.zarr", consolidated=False).load()
    return ds.assign(status=("seed", ["complete"] * SEEDS))


def test_final_equal_initial_plus_noise_gives_high_rank_agreement(tmp_path: Path) -> None:
    """final = initial + small noise: Spearman near 1 and top-1 hits far above chance; the null
    (units permuted) and the cross-seed comparison sit near 0 and chance."""
    lk = luck(_store(tmp_path, "noise"))
    assert float(lk.spearman.mean()) > 0.95
    assert float(lk.hit.sel(k=1).mean()) > 0.8
    assert float(lk.chance.sel(k=1).mean()) == pytest.approx(1 / UNITS)
    assert abs(float(lk.null_spearman.mean())) < 0.05
    assert abs(float(lk.cross_spearman.mean())) < 0.1
    assert float(lk.null_hit.sel(k=1).mean()) == pytest.approx(1 / UNITS, abs=0.03)


def test_permuted_units_give_chance(tmp_path: Path) -> None:
    """final = the units' initial values shuffled: Spearman near 0 and hit rates near k / units."""
    lk = luck(_store(tmp_path, "permuted"))
    assert abs(float(lk.spearman.mean())) < 0.06
    for k in (1, 2):
        assert float(lk.hit.sel(k=k).mean()) == pytest.approx(k / UNITS, abs=0.04)


def test_amplification_gain_grows_with_the_initial_value(tmp_path: Path) -> None:
    """final = 2 * initial: the mean gain per bin equals the bin's mean initial value, so it rises."""
    lk = luck(_store(tmp_path, "double"))
    gain = lk.gain.mean(["seed", "node", "state"]).values
    seen = np.isfinite(gain)
    assert seen.sum() >= 5 and np.all(np.diff(gain[seen]) > 0)
    assert int(lk.count_in_bin.sum()) == SEEDS * NODES * 3 * UNITS
    assert float(lk.init_best.mean()) < float(lk.final_best.mean())


def test_two_states_use_one_state(tmp_path: Path) -> None:
    """With two states (corr[0] = -corr[1]) only state 1 is counted, so nothing is counted twice."""
    lk = luck(_store(tmp_path, "noise", states=2))
    assert list(lk.state.values) == [1] and lk.attrs["states_used"] == [1]


def test_last_epoch_is_the_last_finite_one(tmp_path: Path) -> None:
    """A run whose last epoch is NaN (interrupted) is read at its last finite epoch."""
    ds = _store(tmp_path, "noise")
    ds["corr"][dict(epoch=2)] = np.nan
    ds["corr"][dict(epoch=1)] = ds["corr"].isel(epoch=0)
    lk = luck(ds)
    assert float(lk.spearman.mean()) == pytest.approx(1.0)


def test_rank_statistics_on_known_values() -> None:
    """Average ranks for ties, Spearman's known values, and top-k hits with ties and constants."""
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    x = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(x, x**2) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman(x[:2], x[:2])) and np.isnan(spearman(x, np.ones(4)))
    y = np.array([0.0, 0.0, 1.0, 0.0])  # the best final unit is unit 2, third at initialization
    assert top_k_hit(x, y, 2) == 0.0 and top_k_hit(x, y, 3) == 1.0
    assert np.isnan(top_k_hit(np.zeros(4), y, 1))  # every unit dead at initialization
    assert hits(x, y, (2, 3, 4))[:2] == [0.0, 1.0] and np.isnan(hits(x, y, (4,))[0])  # k >= units: NaN


def test_report_section_has_baselines_and_figure(tmp_path: Path) -> None:
    """The report section shows the observed values beside null, cross-seed and chance, and a scatter."""
    ds = _store(tmp_path, "noise")
    runs = [{"seed": s, "status": "complete", "run_id": f"r{s}", "attrs": {}} for s in range(1, SEEDS + 1)]
    md = section(SweepResults(tmp_path, ds, None, "", runs), tmp_path, "syn")
    assert "| setting | Spearman | null | cross-seed | top-1 hit | chance (k=1) |" in md
    assert "(n=6)" in md and "| level | Spearman | null |" in md
    assert (tmp_path / "syn_luck_scatter.png").read_bytes().startswith(b"\x89PNG")


def test_nodes_missing_in_shallower_trees_are_not_a_level(tmp_path: Path) -> None:
    """A sweep over depth pads the shallower trees' absent nodes with a NaN level: the per-level
    table and the scatter show only the levels that exist (a NaN level crashed the report)."""
    ds = _store(tmp_path, "noise")
    levels = np.array([0] + [1] * (NODES - 5) + [np.nan] * 4)
    ds = ds.assign_coords(node_level=("node", levels))
    runs = [{"seed": s, "status": "complete", "run_id": f"r{s}", "attrs": {}} for s in range(1, SEEDS + 1)]
    md = section(SweepResults(tmp_path, ds, None, "", runs), tmp_path, "deep")
    table = md.split("| level | Spearman | null |")[1].split("\n\n")[0]
    assert [row.split("|")[1].strip() for row in table.strip().splitlines()[2:]] == ["0", "1"]
    assert (tmp_path / "deep_luck_scatter.png").read_bytes().startswith(b"\x89PNG")


def test_report_section_on_a_single_run_without_a_sweep(tmp_path: Path) -> None:
    """One run, no sweep dims (a 0-d status, as `sslspec report` on a quickstart result gives):
    the section is built, with one row for all runs."""
    ds = _store(tmp_path, "noise").isel(seed=0, drop=True)
    ds = ds.assign(status=((), "complete"))
    runs = [{"status": "complete", "run_id": "r1", "attrs": {}}]
    md = section(SweepResults(tmp_path, ds, None, "", runs), tmp_path, "one")
    row = next(r for r in md.splitlines() if r.startswith("| all runs | "))
    assert "(n=1)" in row and "| — |" in row  # no cross-seed comparison with one seed


def test_a_setting_of_one_unit_per_node_is_named_not_a_row_of_dashes(tmp_path: Path) -> None:
    """Width 1 (the sweep pads its missing units with NaN) defines no statistic: the agreement
    table leaves it out and names it below; a setting with units keeps its row."""
    ds = _store(tmp_path, "noise")
    one = ds.corr.where(xr.DataArray(np.arange(UNITS) == 0, dims="unit"))  # width 1, padded
    corr = xr.concat([one, ds.corr], dim="w").assign_coords(w=[1, UNITS])
    status = xr.DataArray(np.full((2, SEEDS), "complete"), dims=("w", "seed"))
    sweep = ds.drop_vars(["corr", "status"]).assign(corr=corr, status=status)
    sweep.attrs["swept_paths"] = {"w": "network.width", "seed": "seed"}
    runs = [
        {"w": w, "seed": s, "status": "complete", "run_id": f"r{w}-{s}", "attrs": {}}
        for w in (1, UNITS)
        for s in range(1, SEEDS + 1)
    ]
    md = section(SweepResults(tmp_path, sweep, None, "", runs), tmp_path, "widths")
    table = md.split("| setting | Spearman |")[1].split("\n\n")[0]
    assert [row.split("|")[1].strip() for row in table.strip().splitlines()[2:]] == [f"network.width={UNITS}"]
    assert "no complete run) for: network.width=1." in md
