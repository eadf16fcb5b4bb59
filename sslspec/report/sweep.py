"""One sweep of a report: its Dataset, the runs it should hold, and the statistics over seeds.

A spec's runs are its Plan, so a run that is missing, failed or still running is kept (and listed
by the report), never dropped; a results directory's runs are the ones found there. Statistics are
over the `seed` axis: mean ± std (ddof 0) and the number of seeds that have a finite value.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslspec.spec.lower import lower
from sslspec.store.layout import Status, read_attrs, version_attrs, version_path, versions
from sslspec.store.read import load_sweep

SEED = "seed"
MAX_PANELS = 20  # settings drawn as separate panels; beyond this a figure is skipped (and said so)


@dataclass
class SweepResults:
    """One source loaded: the Dataset, its runs (planned or found) and where the stores are."""

    source: Path
    ds: Any  # xarray.Dataset with the sweep dims, `status`, `run_id`, `version`
    root: Path | None  # results root (None: `source` is itself a results directory)
    claim: str  # the spec's leading comment
    runs: list[dict[str, Any]]  # {dim: value, ..., "status", "run_id", "attrs"}

    @property
    def dims(self) -> list[str]:
        return [d for d in self.ds.attrs.get("swept_paths", {}) if d in self.ds.dims]

    @property
    def settings(self) -> list[str]:
        return [d for d in self.dims if d != SEED]

    def path(self, dim: str) -> str:
        return str(self.ds.attrs["swept_paths"][dim])

    def n_seeds(self) -> int:
        return int(self.ds.sizes[SEED]) if SEED in self.ds.dims else 1


# ---- loading ---------------------------------------------------------------------------------


def load_source(source: Path, root: Path | None = None, sets: Sequence[str] = ()) -> SweepResults:
    """A spec or results directory -> SweepResults; a spec's planned runs absent from the stores are kept."""
    ds = load_sweep(source, root=root, sets=sets)
    is_spec = source.suffix == ".ssl" or source.is_file()
    if is_spec:
        plan = lower(source, sets)
        exp = ds.attrs["experiment"]
        base = root if root is not None else Path(next(r.config.results for r in plan.runs))
        names = {p: d for d, p in ds.attrs["swept_paths"].items()}
        keys = [{names[p]: _coord(v) for p, v in r.swept} for r in plan.runs if r.experiment == exp]
        claim = _claim(source.read_text())
    else:
        exp, base, claim = ds.attrs["experiment"], None, ""
        keys = [dict(zip(ds.status.dims, idx, strict=True)) for idx in _present(ds)]
    where = (base / exp) if base is not None else _run_parent(source, exp)
    runs = []
    for key in keys:
        point = ds.sel(key) if key else ds
        run = {**key, "status": str(point.status.values), "run_id": str(point.run_id.values)}
        run["attrs"] = _attrs(where / run["run_id"], int(point.version.values))
        runs.append(run)
    return SweepResults(source, ds, base, claim, runs)


def _attrs(run: Path, version: int) -> dict[str, Any]:
    """The root attributes of the version read; for a run with none read (failed or running), its
    newest version's, which say where it ran, for how long and its error; {} for a missing run."""
    if version:
        store = version_path(run, version)
        return read_attrs(store) if store.exists() else {}
    found = versions(run)
    return version_attrs(found[-1][1]) if found else {}


def _coord(v: Any) -> Any:
    return v if isinstance(v, bool | int | float | str) else json.dumps(v, sort_keys=True)


def _present(ds: Any) -> list[tuple[Any, ...]]:
    """Sweep points of a results directory that hold a run (not holes of the unstacked grid)."""
    dims = list(ds.status.dims)
    coords = [ds[d].values.tolist() for d in dims]
    ids = np.asarray(ds.run_id.values)
    if not dims:  # one run without a sweep: a single point, with no coordinates
        return [()] if ids.item() != "" else []
    hits = zip(*np.nonzero(ids != ""), strict=True)
    return [tuple(c[i] for c, i in zip(coords, ix, strict=True)) for ix in hits]


def _run_parent(source: Path, exp: str) -> Path:
    return source / exp if (source / exp).is_dir() else source


def _claim(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(x for x in lines if x)


# ---- numbers --------------------------------------------------------------------------------


def final(da: Any) -> Any:
    """A variable with an `epoch` dim -> its value at each run's last epoch with any finite value."""
    finite = np.isfinite(da).any([d for d in da.dims if d not in {"epoch", *_sweep_dims(da)}])
    last = finite.epoch.where(finite).max("epoch")
    return da.where(da.epoch == last).max("epoch") if last.size else da.isel(epoch=-1)


def _sweep_dims(da: Any) -> set[str]:
    return {str(d) for d in da.dims if "swept_path" in da[d].attrs}


def stats(values: Any) -> tuple[float, float, int]:
    """Finite values -> (mean, std, count); NaN mean when none."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std()), v.size) if v.size else (float("nan"), float("nan"), 0)


def fmt_stats(m: float, s: float, n: int) -> str:
    return "—" if n == 0 else f"{m:.3f} ± {s:.3f} (n={n})"


def combos(sw: SweepResults) -> list[dict[str, Any]]:
    """The distinct settings (non-seed swept values) of the runs, in run order."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sw.runs:
        key = tuple(r[d] for d in sw.settings)
        seen.setdefault(key, {d: r[d] for d in sw.settings})
    return list(seen.values())


def label(sw: SweepResults, combo: dict[str, Any], width: int = 0) -> str:
    """A setting as `path=value, ...`; wrapped to `width` characters a line when width > 0."""
    text = ", ".join(f"{sw.path(d)}={show(v)}" for d, v in combo.items()) or "all runs"
    return "\n".join(textwrap.wrap(text, width)) if width else text


def show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def over_seeds(da: Any, combo: dict[str, Any]) -> Any:
    """`da` at one setting (the seed axis kept)."""
    return da.sel(combo) if combo else da


def seeds_note(sw: SweepResults) -> str:
    """`N seeds per setting; K of R runs complete` (the per-point count n is in the tables)."""
    n, done = sw.n_seeds(), sum(r["status"] == Status.COMPLETE for r in sw.runs)
    return f"{n} seed{'s' if n != 1 else ''} per setting; {done} of {len(sw.runs)} runs complete"
