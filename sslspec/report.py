"""Report: specs (or results directories) of sweeps -> `report.md` with tables and PNG figures.

Each source is read with `load_sweep`; the runs it should hold are the spec's Plan (for a results
directory: the runs found there), so a run that is missing, failed or still running is listed by
name, never dropped. Statistics are over the `seed` axis: mean ± std (ddof 0) and the number of
seeds that have a value. Tables and figures are made only for the variables the stores hold.
matplotlib (Agg backend) is imported inside the figure functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslspec.results import load_sweep, read_attrs

SEED = "seed"
MAX_PANELS = 20  # settings drawn as separate panels; beyond this a figure is skipped (and said so)


@dataclass
class Sweep:
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


# ---- loading --------------------------------------------------------------------------------


def load_source(source: Path, root: Path | None = None, sets: Sequence[str] = ()) -> Sweep:
    """A spec or results directory -> Sweep; a spec's planned runs absent from the stores are kept."""
    ds = load_sweep(source, root=root, sets=sets)
    is_spec = source.suffix == ".ssl" or source.is_file()
    if is_spec:
        from sslspec.lower import lower

        plan = lower(source, sets)
        exp = ds.attrs["experiment"]
        base = root if root is not None else Path(next(r.config.results for r in plan.runs))
        names = {p: d for d, p in ds.attrs["swept_paths"].items()}
        keys = [{names[p]: _coord(v) for p, v in r.swept} for r in plan.runs if r.experiment == exp]
        claim = _claim(source.read_text())
    else:
        exp, base, claim = ds.attrs["experiment"], None, ""
        keys = [dict(zip(ds.status.dims, idx, strict=True)) for idx in _present(ds)]
    runs = []
    for key in keys:
        point = ds.sel(key) if key else ds
        run = {**key, "status": str(point.status.values), "run_id": str(point.run_id.values)}
        version = int(point.version.values)
        where = (base / exp) if base is not None else _run_parent(source, exp)
        store = where / run["run_id"] / f"v{version:04d}.zarr"
        run["attrs"] = read_attrs(store) if version and store.exists() else {}
        runs.append(run)
    return Sweep(source, ds, base, claim, runs)


def _coord(v: Any) -> Any:
    return v if isinstance(v, bool | int | float | str) else json.dumps(v, sort_keys=True)


def _present(ds: Any) -> list[tuple[Any, ...]]:
    """Sweep points of a results directory that hold a run (not holes of the unstacked grid)."""
    dims = list(ds.status.dims)
    coords = [ds[d].values.tolist() for d in dims]
    ids = np.asarray(ds.run_id.values)
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


def combos(sw: Sweep) -> list[dict[str, Any]]:
    """The distinct settings (non-seed swept values) of the runs, in run order."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sw.runs:
        key = tuple(r[d] for d in sw.settings)
        seen.setdefault(key, {d: r[d] for d in sw.settings})
    return list(seen.values())


def label(sw: Sweep, combo: dict[str, Any], width: int = 0) -> str:
    """A setting as `path=value, ...`; wrapped to `width` characters a line when width > 0."""
    import textwrap

    text = ", ".join(f"{sw.path(d)}={_show(v)}" for d, v in combo.items()) or "all runs"
    return "\n".join(textwrap.wrap(text, width)) if width else text


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def over_seeds(da: Any, combo: dict[str, Any]) -> Any:
    """`da` at one setting (the seed axis kept)."""
    return da.sel(combo) if combo else da


# ---- markdown -------------------------------------------------------------------------------


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def seeds_note(sw: Sweep) -> str:
    """`N seeds per setting; K of R runs complete` (the per-point count n is in the tables)."""
    n, done = sw.n_seeds(), sum(r["status"] == "complete" for r in sw.runs)
    return f"{n} seed{'s' if n != 1 else ''} per setting; {done} of {len(sw.runs)} runs complete"


def value_table(sw: Sweep, da: Any, what: str) -> str:
    """Per-run scalars (sweep dims only) -> a markdown table of mean ± std over seeds.

    Two settings dims forming a full grid: rows = the first, columns = the second; otherwise
    one row per setting with one column per swept field."""
    cs = combos(sw)

    def cell(c: dict[str, Any]) -> str:
        return fmt_stats(*stats(over_seeds(da, c).values))

    dims = sw.settings
    if len(dims) == 2:
        rows_v = list(dict.fromkeys(c[dims[0]] for c in cs))
        cols_v = list(dict.fromkeys(c[dims[1]] for c in cs))
        if len(rows_v) * len(cols_v) == len(cs):
            head = [f"{sw.path(dims[0])} \\ {sw.path(dims[1])}", *(_show(v) for v in cols_v)]
            rows = [[_show(r), *(cell({dims[0]: r, dims[1]: c}) for c in cols_v)] for r in rows_v]
            return f"{what} ({seeds_note(sw)}):\n\n" + md_table(head, rows)
    head = [*(sw.path(d) for d in dims), what] if dims else [what]
    rows = [[*(_show(c[d]) for d in dims), cell(c)] for c in cs]
    return f"{what} ({seeds_note(sw)}):\n\n" + md_table(head, rows)


def level_table(sw: Sweep) -> str:
    """Per-level correlation at initialization -> after training, mean over seeds."""
    lc = sw.ds.level_corr
    init, last = lc.sel(epoch=lc.epoch.min()), final(lc)
    levels = [int(x) for x in lc.level.values]
    head = [*(sw.path(d) for d in sw.settings), *(f"level {lv}" for lv in levels)]
    rows = []
    for c in combos(sw):
        cells = []
        for lv in levels:
            (a, _, _), (b, sb, nb) = (stats(over_seeds(x.sel(level=lv), c).values) for x in (init, last))
            cells.append("—" if nb == 0 else f"{a:.3f} → {b:.3f} ± {sb:.3f}")
        rows.append([*(_show(c[d]) for d in sw.settings), *cells])
    text = (
        "Mean best correlation per level (0 = root), at initialization → after training "
        f"± std over seeds ({seeds_note(sw)}):"
    )
    return text + "\n\n" + md_table(head, rows)


def theorem_table(sw: Sweep) -> str:
    """Relative error of the theorem check at the last checked epoch, per setting and node, vs M."""
    err = final(sw.ds.tc_rel_error)
    ms = [int(m) for m in err.tc_batches.values]
    head = [*(sw.path(d) for d in sw.settings), "node", *(f"M={m}" for m in ms)]
    rows = []
    for c in combos(sw):
        for node in err.tc_node.values:
            e = over_seeds(err, c).sel(tc_node=node)
            cells = [fmt_stats(*stats(e.sel(tc_batches=m).values)) for m in ms]
            rows.append([*(_show(c[d]) for d in sw.settings), str(int(node)), *cells])
    text = f"Theorem check: relative error ||g - p|| / ||g|| at the last checked epoch ({seeds_note(sw)}):"
    return text + "\n\n" + md_table(head, rows)


def provenance(sw: Sweep) -> str:
    """What ran, where and how long, from the stores' root attributes; the runs not complete, by name."""
    counts = {s: sum(r["status"] == s for r in sw.runs) for s in ("complete", "failed", "running", "missing")}
    attrs = [r["attrs"] for r in sw.runs if r["attrs"]]
    devices = sorted({str(a.get("device", "?")) for a in attrs})
    hosts = sorted({str(a.get("host", "?")) for a in attrs})
    wall = [float(a["wall_time_s"]) for a in attrs if isinstance(a.get("wall_time_s"), int | float)]
    started = sorted(str(a["started"]) for a in attrs if a.get("started"))
    finished = sorted(str(a["finished"]) for a in attrs if a.get("finished"))
    vers = sorted({json.dumps(a.get("versions", {}), sort_keys=True) for a in attrs})
    out = [
        f"- Runs: {len(sw.runs)} planned; " + ", ".join(f"{n} {s}" for s, n in counts.items()),
        f"- Device: {', '.join(devices) or 'unknown'}; host: {', '.join(hosts) or 'unknown'}",
        f"- Wall time: {sum(wall):.1f} s in all, "
        f"{np.median(wall) if wall else float('nan'):.1f} s median per run",
        f"- Started {started[0] if started else '?'}, last finished {finished[-1] if finished else '?'}",
    ]
    out += [f"- Versions: {v}" for v in vers]
    bad = [r for r in sw.runs if r["status"] != "complete"]
    if bad:
        head = ["run id", *(sw.path(d) for d in sw.dims), "status", "error"]
        rows = [
            [r["run_id"], *(_show(r[d]) for d in sw.dims), r["status"], str(r["attrs"].get("error", ""))]
            for r in bad
        ]
        note = f"**Runs not complete ({len(bad)}), excluded from every statistic:**"
        out += ["", note, "", md_table(head, rows)]
    return "\n".join(out)


# ---- figures --------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(n: int) -> tuple[Any, Any, list[Any]]:
    plt = _pyplot()
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return plt, fig, flat[:n]


def _legend(ax: Any, **kw: Any) -> None:
    """A legend when something was drawn; a note in the panel when no run of it has data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)
    else:
        ax.text(0.5, 0.5, "no complete run", ha="center", va="center", transform=ax.transAxes)


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _band(ax: Any, x: Any, runs: Any, label: str, **kw: Any) -> None:
    """Mean line and ± std band over the first axis of `runs` (seeds, x)."""
    runs = np.asarray(runs, dtype=float).reshape(-1, len(x))
    ok = np.isfinite(runs).any(0)
    if not ok.any():
        return
    with np.errstate(invalid="ignore"):
        m, s = np.nanmean(runs[:, ok], 0), np.nanstd(runs[:, ok], 0)
    (line,) = ax.plot(np.asarray(x)[ok], m, label=label, **kw)
    ax.fill_between(np.asarray(x)[ok], m - s, m + s, color=line.get_color(), alpha=0.2)


def _seed_runs(da: Any, combo: dict[str, Any], along: str) -> Any:
    """(seed, along) values of one setting."""
    v = over_seeds(da, combo)
    return v.transpose(..., along).values if SEED in v.dims else v.values[None]


def fig_levels(sw: Sweep, path: Path) -> bool:
    """Correlation of each level vs epoch, one panel per setting."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    lc = sw.ds.level_corr
    plt, fig, axes = _panels(len(cs))
    for ax, c in zip(axes, cs, strict=True):
        for lv in lc.level.values:
            _band(ax, lc.epoch.values, _seed_runs(lc.sel(level=lv), c, "epoch"), f"level {int(lv)}")
        ax.set(title=label(sw, c, 48), xlabel="epoch (epochs)", ylabel="mean best |corr| (1)", ylim=(0, 1.02))
        ax.title.set_fontsize(8)
        _legend(ax, fontsize=7, loc="lower right")
    _save(plt, fig, path)
    return True


def fig_root_vs(sw: Sweep, path: Path) -> bool:
    """Root correlation after training vs the first numeric swept field, one line per other value."""
    dims = sw.settings
    if not dims or len(dims) > 2 or not _numeric(sw, dims[0]):
        return False
    root = final(sw.ds.level_corr.sel(level=0))
    x = sw.ds[dims[0]].values
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for v in sw.ds[dims[1]].values if len(dims) == 2 else [None]:
        sel = {dims[1]: v} if v is not None else {}
        runs = _seed_runs(root, sel, dims[0])
        m, s, _ = zip(*(stats(runs[..., i]) for i in range(len(x))), strict=True)
        name = f"{sw.path(dims[1])} = {_show(v)}" if v is not None else "mean ± std"
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=name)
    ax.set(xlabel=f"{sw.path(dims[0])} ({_unit(dims[0])})", ylabel="root |corr| after training (1)")
    ax.set_title(f"root correlation vs {sw.path(dims[0])} ({seeds_note(sw)})", fontsize=9)
    _legend(ax, fontsize=8)
    _save(plt, fig, path)
    return True


def _numeric(sw: Sweep, dim: str) -> bool:
    return np.issubdtype(sw.ds[dim].dtype, np.number) and sw.ds[dim].dtype != bool


def _unit(dim: str) -> str:
    return {"width": "units per node", "depth": "levels", "share": "levels", "flip": "probability"}.get(
        dim, "1"
    )


def fig_eigvals(sw: Sweep, path: Path) -> bool:
    """The root operator's top eigenvalues over epochs, one panel per setting."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    ev = sw.ds.op_eigval.isel(node=0)
    plt, fig, axes = _panels(len(cs))
    for ax, c in zip(axes, cs, strict=True):
        for k in ev.eig.values:
            _band(ax, ev.epoch.values, _seed_runs(ev.sel(eig=k), c, "epoch"), f"λ{int(k) + 1}")
        ax.set(title=label(sw, c, 48), xlabel="epoch (epochs)", ylabel="eigenvalue of root operator (1)")
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.title.set_fontsize(8)
        _legend(ax, fontsize=6, ncol=2)
    _save(plt, fig, path)
    return True


def fig_theorem(sw: Sweep, path: Path) -> bool:
    """Theorem-check relative error vs M (log-log) at the last checked epoch, one panel per setting."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    err = final(sw.ds.tc_rel_error)
    ms = err.tc_batches.values
    plt, fig, axes = _panels(len(cs))
    for ax, c in zip(axes, cs, strict=True):
        for node in err.tc_node.values:
            runs = _seed_runs(err.sel(tc_node=node), c, "tc_batches")
            m, s, _ = zip(*(stats(runs[..., i]) for i in range(len(ms))), strict=True)
            ax.errorbar(ms, m, yerr=s, marker="o", capsize=3, label=f"node {int(node)}")
        if ax.get_legend_handles_labels()[0]:  # log axes need some positive data
            ax.set(xscale="log", yscale="log")
        ax.set(title=label(sw, c, 48))
        ax.set(xlabel="M (batches averaged)", ylabel="relative error ||g − p|| / ||g|| (1)")
        ax.title.set_fontsize(8)
        _legend(ax, fontsize=7)
    _save(plt, fig, path)
    return True


# ---- the report -----------------------------------------------------------------------------

FIGURES = (
    (
        "level_corr",
        fig_levels,
        "levels",
        "Mean best correlation of each level vs epoch; line: mean, band: ± std",
    ),
    ("level_corr", fig_root_vs, "root", "Root correlation after training; points: mean, bars: ± std"),
    (
        "op_eigval",
        fig_eigvals,
        "eigvals",
        "Top eigenvalues of the root's covariance operator vs epoch (mean ± std)",
    ),
    (
        "tc_rel_error",
        fig_theorem,
        "theorem",
        "Theorem check: relative error of the predicted gradient vs M (mean ± std)",
    ),
)


def section(sw: Sweep, out: Path, stem: str) -> str:
    """One source's markdown: claim, provenance, tables, figures (only for variables present)."""
    ds = sw.ds
    parts = [f"## {sw.source}", ""]
    if sw.claim:
        parts += [f"*Claim:* {sw.claim}", ""]
    swept = ", ".join(f"`{sw.path(d)}` ({ds.sizes[d]})" for d in sw.dims) or "nothing"
    parts += [f"Experiment `{ds.attrs['experiment']}`, swept: {swept}.", "", provenance(sw), ""]
    if "level_corr" in ds:
        root = final(ds.level_corr.sel(level=0))
        parts += [value_table(sw, root, "root correlation after training"), "", level_table(sw), ""]
    if "tc_rel_error" in ds:
        parts += [theorem_table(sw), ""]
    for var, draw, name, caption in FIGURES:
        if var not in ds:
            continue
        png = out / f"{stem}_{name}.png"
        if draw(sw, png):
            parts += [f"![{caption}]({png.name})", "", f"*{caption}. {seeds_note(sw)}.*", ""]
        elif name != "root":
            n = len(combos(sw))
            parts += [f"({name} figure omitted: {n} settings, more than {MAX_PANELS} panels)", ""]
    return "\n".join(parts)


def build(sources: Sequence[Path], out: Path, root: Path | None = None, sets: Sequence[str] = ()) -> Path:
    """Specs or results directories -> OUT/report.md and OUT/*.png; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    stems: dict[str, int] = {}
    for src in sources:
        sw = load_source(Path(src), root, sets)
        stem = slug(Path(src))
        stems[stem] = stems.get(stem, 0) + 1
        sections.append(section(sw, out, stem if stems[stem] == 1 else f"{stem}_{stems[stem]}"))
    head = ["# sslspec report", "", "Sources: " + ", ".join(f"`{s}`" for s in sources), ""]
    path = out / "report.md"
    path.write_text("\n".join(head + sections) + "\n")
    return path


def slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_") or "sweep"
