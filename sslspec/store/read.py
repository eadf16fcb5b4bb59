"""Load: results stores -> xarray. `load` gives a DataTree of runs, `load_sweep` one Dataset per sweep.

A results root holds one version per execution of each run (the layout: sslspec.store.layout). By
default a run is read at its newest *complete* version; an older complete version wins over a
newer running or failed one. Every store read is checked against the schema version first, and
read into memory at once, so that a damaged chunk is named here (sslspec.store.integrity).

Sweep dimensions are named after the swept path without its leading block name, joined by `_`
(`network.width` -> `width`, `data.polarity.low` -> `polarity_low`, `seed` -> `seed`); a name
that would be `kind`, repeat another axis's name, or clash with a variable, coordinate or
dimension of the stores is the whole path joined by `_` instead (`loss.kind` -> `loss_kind`).

Every path may also be an fsspec URL (`s3://bucket/results`, `memory://results`): see
sslspec.store.location.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sslspec.errors import did_you_mean
from sslspec.store.integrity import load_checked
from sslspec.store.layout import (
    Status,
    error,
    read_attrs,
    run_dirs,
    status,
    version_label,
    version_number,
    versions,
)
from sslspec.store.location import Place, of

if TYPE_CHECKING:
    from sslspec.spec.plan import Plan

Version = int | Literal["latest", "all"] | None

__all__ = ["load", "load_sweep", "open_store", "pick", "read_attrs", "run_dirs", "versions"]


def pick(run_dir: str | Place, version: int | Literal["latest"] | None = None) -> tuple[Place | None, Status]:
    """The store to read for a run and the run's status.

    `None`: the newest complete version, else (None, status of the newest version); "latest":
    the newest version whatever its status; N: vNNNN (StoreError when absent). A run directory
    without versions is (None, MISSING).
    """
    vs = versions(run_dir)
    if isinstance(version, int):
        for n, p in vs:
            if n == version:
                return p, status(p)
        have = ", ".join(p.name for _, p in vs) or "none"
        raise error(f"{run_dir}: no version {version} (have {have})")
    newest = Status.MISSING
    for i, (_, p) in enumerate(reversed(vs)):
        st = status(p)
        if i == 0:
            newest = st
            if version == "latest":
                return p, st
        if st == Status.COMPLETE:
            return p, st
    return None, newest


def open_store(store: str | Place) -> Any:
    """One store as an xarray.Dataset, schema-checked first and read into memory, so that a
    damaged chunk is found (and named: DamagedStore) here, not later inside xarray."""
    import xarray as xr

    read_attrs(store)
    return load_checked(of(store), xr.open_zarr(str(store), consolidated=False))


# ---- load: a tree of runs -------------------------------------------------------------------


def load(path: str | Place, version: Version = None) -> Any:
    """A results root, experiment dir or run dir -> xarray.DataTree with nodes `/<experiment>/<run id>`.

    `version`: None (newest complete), "latest" (newest, any status), N (vNNNN of every run) or
    "all" (nodes `/<experiment>/<run id>/vNNNN`). Runs without the version asked for are not
    nodes; they are listed in the root attribute `skipped` as {"exp/run": status}.
    """
    import xarray as xr

    nodes: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for exp, d in run_dirs(of(path)):
        if version == "all":
            for _, p in versions(d):
                nodes[f"/{exp}/{d.name}/{version_label(p)}"] = open_store(p)
            continue
        store, st = pick(d, version)
        if store is None:
            skipped[f"{exp}/{d.name}"] = str(st)
        else:
            nodes[f"/{exp}/{d.name}"] = open_store(store)
    tree = xr.DataTree.from_dict(nodes) if nodes else xr.DataTree()
    tree.attrs["root"] = str(path)
    tree.attrs["skipped"] = skipped
    return tree


# ---- load_sweep: one Dataset with the swept fields as dimensions ----------------------------


def dim_names(paths: Sequence[str], taken: Sequence[str] = ()) -> dict[str, str]:
    """Swept path -> dimension name (the rule in the module docstring)."""
    short = {p: "_".join(p.split(".")[1:]) or p for p in paths}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for p, name in short.items():
        bad = name == "kind" or counts[name] > 1 or name in taken
        out[p] = p.replace(".", "_") if bad else name
    return out


def _coord_value(v: Any) -> Any:
    """A swept value as a coordinate value: scalars as they are, lists and calls as JSON text."""
    return v if isinstance(v, bool | int | float | str) else json.dumps(v, sort_keys=True)


def load_sweep(
    path_or_spec: str | Place | Plan,
    root: str | Place | None = None,
    sets: Sequence[str] = (),
    experiment: str | None = None,
    version: int | Literal["latest"] | None = None,
) -> Any:
    """A spec (.ssl, lowered with `sets`), a Plan or a results directory -> one xarray.Dataset of a
    sweep (a Plan is taken as it is: `sets` does not apply to it).

    Every swept path is a dimension (see `dim_names`) with the swept values as coordinates.
    Variables of runs that are missing or have no complete version are NaN; the variable
    `status` (complete, failed, running, missing), `run_id` and `version` (0: none) have the
    sweep dims. With a results directory the points are the `swept` attrs of the stores.
    """
    from sslspec.spec.plan import Plan

    if isinstance(path_or_spec, Plan):
        exp, axes, points = _from_plan(path_or_spec, None if root is None else of(root), experiment)
        return _assemble(exp, axes, points, version, path_or_spec.spec, sort=False)
    src = of(path_or_spec)
    if isinstance(src, Path) and (src.suffix == ".ssl" or src.is_file()):
        exp, axes, points = _from_spec(src, None if root is None else of(root), sets, experiment)
        return _assemble(exp, axes, points, version, str(src), sort=False)
    exp, axes, points = _from_results(src, experiment)
    return _assemble(exp, axes, points, version, str(src), sort=True)


# A point of a sweep: (experiment, run id, run dir, swept values in axis order).
Point = tuple[str, str, Place, tuple[Any, ...]]


def _one_experiment(names: Sequence[str], experiment: str | None, where: str) -> str:
    if experiment is not None:
        if experiment not in names:
            raise error(f"{where}: no experiment '{experiment}'{did_you_mean(experiment, names)}")
        return experiment
    if len(set(names)) != 1:
        listed = ", ".join(sorted(set(names))) or "none"
        raise error(f"{where}: holds experiments {listed}; pick one with experiment=")
    return names[0]


def _from_spec(
    spec: Path, root: Place | None, sets: Sequence[str], experiment: str | None
) -> tuple[str, list[str], list[Point]]:
    from sslspec.spec.lower import lower

    return _from_plan(lower(spec, sets), root, experiment)


def _from_plan(plan: Plan, root: Place | None, experiment: str | None) -> tuple[str, list[str], list[Point]]:
    exp = _one_experiment([r.experiment for r in plan.runs], experiment, plan.spec)
    if root is None:  # the root the spec names (`results = "..."`, default ./results)
        root = of(next(r.config.results for r in plan.runs if r.experiment == exp))
    axes = list(dict(plan.axes).get(exp, ()))
    points = [
        (exp, r.id, root / exp / r.id, tuple(_coord_value(dict(r.swept)[a]) for a in axes))
        for r in plan.runs
        if r.experiment == exp
    ]
    return exp, axes, points


def _from_results(path: Place, experiment: str | None) -> tuple[str, list[str], list[Point]]:
    found = list(run_dirs(path))
    exp = _one_experiment([e for e, _ in found], experiment, str(path))
    swept: list[tuple[str, Place, dict[str, Any]]] = []
    for e, d in found:
        vs = versions(d)
        if e == exp and vs:
            swept.append((d.name, d, dict(read_attrs(vs[-1][1]).get("swept", {}))))
    axes = list(dict.fromkeys(k for _, _, s in swept for k in s))
    points: list[Point] = []
    seen: dict[tuple[Any, ...], str] = {}
    for run_id, d, s in swept:
        if set(s) != set(axes):
            raise error(
                f"{d}: swept over {sorted(s)} but other runs of '{exp}' over {sorted(axes)}; "
                "load these with load_sweep(spec, root=...)"
            )
        key = tuple(_coord_value(s[a]) for a in axes)
        if key in seen:
            raise error(
                f"{path}: runs {seen[key]} and {run_id} of '{exp}' have the same swept values {s} "
                "(other settings differ); load them with load_sweep(spec, root=..., sets=...)"
            )
        seen[key] = run_id
        points.append((exp, run_id, d, key))
    return exp, axes, points


def _ordered(values: Sequence[Any], sort: bool) -> list[Any]:
    uniq = list(dict.fromkeys(values))
    if sort:
        try:
            return sorted(uniq)
        except TypeError:
            pass
    return uniq


def _union_coords(data: Any, opened: Sequence[Any]) -> dict[str, Any]:
    """The non-index coordinates of the stacked runs, each the union over the runs rather than the
    first run's (what concat's "minimal" keeps): runs of a depth sweep hold trees of different
    sizes, and a node's `node_level` must not be NaN because the first run's tree lacked it."""
    out: dict[str, Any] = {}
    for name, coord in data.coords.items():
        if name in data.indexes or "run" in coord.dims or coord.dtype.kind != "f":
            continue
        merged = opened[0][name] if name in opened[0].coords else coord
        for ds in opened[1:]:
            if name in ds.coords:
                merged = merged.combine_first(ds[name])
        out[str(name)] = merged.reindex_like(coord)
    return out


def _assemble(exp: str, axes: list[str], points: list[Point], version: Any, source: str, sort: bool) -> Any:
    """Open each point's store, stack them on a MultiIndex of the swept values and unstack."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]
    import xarray as xr

    opened: list[tuple[tuple[Any, ...], Any]] = []
    found: dict[tuple[Any, ...], tuple[Status, str, int]] = {}
    for _, run_id, d, key in points:
        store, st = pick(d, version) if d.is_dir() else (None, Status.MISSING)
        number = version_number(store) if store is not None else 0
        found[key] = (st, run_id, number)
        if store is not None:
            opened.append((key, open_store(store)))
    taken = sorted({str(n) for _, ds in opened[:1] for n in (*ds.variables, *ds.dims)})
    names = dim_names(axes, taken)
    dims = [names[a] for a in axes]
    order = {dim: _ordered([k[i] for *_, k in points], sort) for i, dim in enumerate(dims)}
    if opened:
        data = xr.concat(
            [ds for _, ds in opened],
            dim="run",
            join="outer",
            coords="minimal",
            compat="override",
            combine_attrs="drop",
            fill_value=np.nan,
        )
        data = data.assign_coords(_union_coords(data, [ds for _, ds in opened]))
        index = pd.MultiIndex.from_tuples([k for k, _ in opened], names=dims) if dims else None
        if index is not None:
            data = data.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "run")).unstack("run")
            data = data.reindex(order).transpose(*dims, ...)
        else:
            data = data.isel(run=0, drop=True)
    else:
        data = xr.Dataset(coords=order)
    shape = tuple(len(order[d]) for d in dims)
    st_arr = np.full(shape, str(Status.MISSING), dtype=object)
    id_arr = np.full(shape, "", dtype=object)
    v_arr = np.zeros(shape, dtype=np.int64)
    for key, (st, run_id, number) in found.items():
        idx = tuple(order[d].index(k) for d, k in zip(dims, key, strict=True))
        st_arr[idx], id_arr[idx], v_arr[idx] = str(st), run_id, number
    data["status"] = (dims, st_arr.astype(str), {"long_name": "status of the run read (or missing)"})
    data["run_id"] = (dims, id_arr.astype(str), {"long_name": "run id"})
    data["version"] = (dims, v_arr, {"long_name": "version read (vNNNN; 0: none)"})
    for a, dim in zip(axes, dims, strict=True):
        data[dim].attrs.update({"long_name": a, "swept_path": a})
    paths = dict(zip(dims, axes, strict=True))
    data.attrs.update({"experiment": exp, "source": source, "swept_paths": paths})
    return data
