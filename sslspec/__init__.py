"""sslspec: a declarative experiment language for the theory of self-supervised learning.

The front end (this package) never imports torch: parse -> check -> lower to a Plan. The
PyTorch back end is the separate top-level package `runtime`.

From Python: `check`, `plan` and `run` a spec (sslspec.api), `load` and `load_sweep` results.
Importing the package is cheap: each name loads its module on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sslspec.api import check, plan, run
    from sslspec.errors import Diagnostic, SpecError
    from sslspec.spec.plan import Plan
    from sslspec.store.read import Version

__all__ = [
    "Diagnostic",
    "Plan",
    "SpecError",
    "__version__",
    "check",
    "load",
    "load_sweep",
    "luck",
    "plan",
    "run",
]

# Names loaded on first use, and the module each comes from.
_LAZY = {
    "check": "sslspec.api",
    "plan": "sslspec.api",
    "run": "sslspec.api",
    "Diagnostic": "sslspec.errors",
    "SpecError": "sslspec.errors",
    "Plan": "sslspec.spec.plan",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sslspec' has no attribute '{name}'")
    from importlib import import_module

    return getattr(import_module(_LAZY[name]), name)


__version__ = "0.1.0"


def load(path: str | Path, version: Version = None) -> Any:
    """A results root or experiment directory -> xarray.DataTree of runs (see sslspec.store.read.load)."""
    from sslspec.store.read import load as _load

    return _load(path, version)


def load_sweep(
    path_or_spec: str | Path | Plan,
    root: str | Path | None = None,
    sets: Sequence[str] = (),
    experiment: str | None = None,
    version: int | Literal["latest"] | None = None,
) -> Any:
    """A spec, Plan or results directory -> one xarray.Dataset, swept fields as dims (sslspec.store.read)."""
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
