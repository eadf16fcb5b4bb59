"""sslspec: a declarative experiment language for the theory of self-supervised learning.

The front end (this package) never imports torch: parse -> check -> lower to a Plan. The
PyTorch back end is the separate top-level package `runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sslspec.store.read import Version

__version__ = "0.1.0"


def load(path: str | Path, version: Version = None) -> Any:
    """A results root or experiment directory -> xarray.DataTree of runs (see sslspec.store.read.load)."""
    from sslspec.store.read import load as _load

    return _load(path, version)


def load_sweep(
    path_or_spec: str | Path,
    root: str | Path | None = None,
    sets: Sequence[str] = (),
    experiment: str | None = None,
    version: int | Literal["latest"] | None = None,
) -> Any:
    """A spec or results directory -> one xarray.Dataset with swept fields as dims (sslspec.store.read)."""
    from sslspec.store.read import load_sweep as _load_sweep

    return _load_sweep(path_or_spec, root, sets, experiment, version)


def luck(ds: Any, ks: Sequence[int] = (1, 2), permutations: int = 20, seed: int = 0) -> Any:
    """A run or sweep Dataset with `corr` -> the "luck matters" statistics as an xarray.Dataset:
    per run, node and state, how units' |corr| at initialization predicts it after training
    (Spearman, top-k hits against chance), with a permuted null and a cross-seed comparison,
    the amplification per initial-|corr| bin and the best unit at both ends (sslspec.report.luck).

        ds = sslspec.load_sweep("specs/paper/2_width_polarity.ssl")
        lk = sslspec.luck(ds)
        lk.hit.sel(k=1).mean(["node", "state", "seed"]).to_pandas()   # width x polarity_low
    """
    from sslspec.report.luck import luck as _luck

    return _luck(ds, ks=ks, permutations=permutations, seed=seed)
