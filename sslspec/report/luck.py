""" "Luck matters": does training amplify the units that were selective at initialization?

`luck(ds)` takes any Dataset holding the stored `corr` (a run opened with xarray, or a sweep from
`load_sweep`, whose swept fields are dims) and returns, per run, node and latent state, how the
units' |corr| at initialization predicts their |corr| after training:

- `spearman`: Spearman rank correlation across the node's units of |corr| at the first measured
  epoch and at the run's last finite epoch (NaN for fewer than 3 live units or constant ranks);
- `hit` (k): whether the unit with the largest final |corr| was among the k largest at
  initialization (ties counted in its favour; NaN when all initial values are equal, e.g. a node
  whose units are all dead), with `chance` = k / units, its rate if initial and final ranks
  were unrelated;
- the null model, the same statistics with the units' initial values permuted (`null_spearman`,
  `null_hit`, averaged over `permutations` seeded permutations: what "no memory of the
  initialization" looks like), and, when `seed` is a dim with at least two seeds, a seed-matched
  comparison (`cross_spearman`, `cross_hit`): the initialization of seed i against the final
  values of the next seed at the same setting, node and state;
- amplification per unit: `gain` and `final_in_bin`, the mean of final - initial |corr| and of
  final |corr| over the units whose initial |corr| falls in each bin of `bins`, and `count_in_bin`;
- the over-parameterization effect: `init_best` and `final_best`, the largest |corr| over the
  node's units and states at initialization and after training.

For two states the one-vs-rest correlations of the states are each other's negatives, so only
state 1 is used (the attribute `states_used` says which). The statistics are plain numpy over
rows of units (a Python loop over nodes × states × runs, at most a few thousand rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from sslspec.report.sweep import final
from sslspec.store.variables import CORR

BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
KS = (1, 2)
UNIT = "unit"


def luck(
    ds: Any,
    ks: Sequence[int] = KS,
    bins: Sequence[float] = BINS,
    permutations: int = 20,
    seed: int = 0,
) -> Any:
    """A Dataset with `corr` (..., epoch, [layer,] node, state, unit) -> the statistics above.

    Dims of the result: the non-epoch dims of `corr` without `unit` (the sweep dims, node,
    state), plus `k` for the top-k hits and `bin` for the amplification table."""
    import xarray as xr

    if CORR not in ds:
        raise ValueError("luck() needs the stored `corr` (measure { latent_correlation })")
    corr = ds[CORR]
    if corr.sizes.get("epoch", 0) < 2:
        raise ValueError("luck() needs `corr` at two or more measured epochs (initialization and later)")
    states_used = [int(s) for s in corr.state.values]
    if len(states_used) == 2:
        states_used = states_used[1:]
        corr = corr.isel(state=[1])
    first = abs(corr.sel(epoch=corr.epoch.min())).drop_vars("epoch")
    last = abs(final(corr))
    dims = [d for d in first.dims if d != UNIT]
    a0 = first.transpose(*dims, UNIT).values.astype(float)
    a1 = last.transpose(*dims, UNIT).values.astype(float)
    rng = np.random.default_rng(seed)
    rows = _rows(a0.reshape(-1, a0.shape[-1]), a1.reshape(-1, a1.shape[-1]), ks, bins, permutations, rng)
    lead = a0.shape[:-1]
    coords = {d: first[d] for d in dims}
    out = xr.Dataset(coords=coords)
    for name, arr in rows.items():
        extra = arr.shape[1:]
        tail = ["k"] if name.endswith("hit") or name == "chance" else ["bin"] if extra else []
        out[name] = (dims + tail, arr.reshape(*lead, *extra))
    out = out.assign_coords(k=list(ks), bin=[f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(bins)])
    for node_coord in ("node_level",):
        if node_coord in corr.coords:
            out = out.assign_coords({node_coord: corr[node_coord]})
    if "seed" in dims and out.sizes["seed"] >= 2:
        cross = _cross_seed(a0, a1, dims.index("seed"), ks)
        out["cross_spearman"] = (dims, cross["spearman"])
        out["cross_hit"] = ([*dims, "k"], cross["hit"])
    if "status" in ds:
        out["status"] = ds["status"]
    out.attrs.update(states_used=states_used, permutations=permutations, permutation_seed=seed)
    return out


def _rows(
    a0: np.ndarray, a1: np.ndarray, ks: Sequence[int], bins: Sequence[float], perms: int, rng: Any
) -> dict[str, np.ndarray]:
    """Rows of units (n, U) at initialization and after training -> per-row statistics."""
    n, nb = a0.shape[0], len(bins) - 1
    out = {
        "spearman": np.full(n, np.nan),
        "hit": np.full((n, len(ks)), np.nan),
        "chance": np.full((n, len(ks)), np.nan),
        "null_spearman": np.full(n, np.nan),
        "null_hit": np.full((n, len(ks)), np.nan),
        "gain": np.full((n, nb), np.nan),
        "final_in_bin": np.full((n, nb), np.nan),
        "count_in_bin": np.zeros((n, nb)),
        "init_best": np.full(n, np.nan),
        "final_best": np.full(n, np.nan),
    }
    for i in range(n):
        live = np.isfinite(a0[i]) & np.isfinite(a1[i])
        x, y = a0[i][live], a1[i][live]
        if x.size == 0:
            continue
        out["init_best"][i], out["final_best"][i] = x.max(), y.max()
        out["spearman"][i] = spearman(x, y)
        out["hit"][i] = hits(x, y, ks)
        out["chance"][i] = np.where(np.isfinite(out["hit"][i]), np.asarray(ks) / x.size, np.nan)
        null = [(spearman(p, y), hits(p, y, ks)) for p in _permuted(x, perms, rng)]
        if null:
            out["null_spearman"][i] = _finite_mean(np.array([s for s, _ in null]))
            out["null_hit"][i] = _finite_mean(np.array([h for _, h in null]))
        which = np.clip(np.digitize(x, bins[1:-1]), 0, nb - 1)
        for b in range(nb):
            sel = which == b
            if sel.any():
                out["gain"][i, b] = (y[sel] - x[sel]).mean()
                out["final_in_bin"][i, b] = y[sel].mean()
                out["count_in_bin"][i, b] = sel.sum()
    return out


def _finite_mean(a: np.ndarray) -> Any:
    """Mean over axis 0 of the finite values; NaN (without numpy's empty-slice warning) when none."""
    ok = np.isfinite(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, a, 0.0).sum(0) / ok.sum(0)


def _permuted(x: np.ndarray, perms: int, rng: Any) -> list[np.ndarray]:
    return [x[rng.permutation(x.size)] for _ in range(perms)] if x.size > 1 else []


def _cross_seed(a0: np.ndarray, a1: np.ndarray, axis: int, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Initialization of seed i against the final values of seed i + 1 (cyclic), same everything else."""
    shifted = np.roll(a1, -1, axis=axis)
    flat0, flat1 = a0.reshape(-1, a0.shape[-1]), shifted.reshape(-1, a1.shape[-1])
    sp = np.full(flat0.shape[0], np.nan)
    hit = np.full((flat0.shape[0], len(ks)), np.nan)
    for i in range(flat0.shape[0]):
        live = np.isfinite(flat0[i]) & np.isfinite(flat1[i])
        if live.any():
            sp[i] = spearman(flat0[i][live], flat1[i][live])
            hit[i] = hits(flat0[i][live], flat1[i][live], ks)
    return {"spearman": sp.reshape(a0.shape[:-1]), "hit": hit.reshape(*a0.shape[:-1], len(ks))}


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; tied values share the mean of their ranks), as Spearman needs."""
    order = np.argsort(x, kind="stable")
    r = np.empty(x.size)
    r[order] = np.arange(1, x.size + 1)
    values, inverse = np.unique(x, return_inverse=True)
    if values.size < x.size:
        sums = np.bincount(inverse, weights=r)
        r = (sums / np.bincount(inverse))[inverse]
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length vectors; NaN below 3 values or for constant ranks."""
    if x.size < 3:
        return float("nan")
    rx, ry = ranks(x) - (x.size + 1) / 2, ranks(y) - (y.size + 1) / 2
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def hits(x: np.ndarray, y: np.ndarray, ks: Sequence[int]) -> list[float]:
    """top_k_hit for each k; NaN where k >= the number of units (a hit is then certain and says
    nothing, like an undefined Spearman). The observed, null and cross-seed hits all use this."""
    return [top_k_hit(x, y, k) if k < x.size else float("nan") for k in ks]


def top_k_hit(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """1.0 when the unit with the largest `y` is among the k largest `x` (ties in its favour), else 0.0;
    NaN when every `x` is equal (no unit was ahead at initialization)."""
    if x.size == 0 or np.all(x == x[0]):
        return float("nan")
    best = int(np.argmax(y))
    return float((x > x[best]).sum() < k)
