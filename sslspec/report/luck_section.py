"""The report's "luck matters" section: the statistics of `luck.py` as tables and two figures.

Every number is a per-run value (the mean over the run's nodes and states, or over its units in
a bin) summarized as mean ± std over the runs of a row, with the run count; the observed value
stands beside its null (units permuted), the cross-seed comparison and, for hits, the chance
rate k / units, so that no number is read without its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sslspec.report.luck import luck
from sslspec.report.sweep import SweepResults, combos, final, fmt_stats, label, stats
from sslspec.report.tables import md_table
from sslspec.store.layout import Status
from sslspec.store.variables import CORR

WIDTH = "network.width"


def applies(ds: Any) -> bool:
    """Whether a sweep's stores have `corr` at two or more epochs (initialization and later)."""
    return CORR in ds and ds[CORR].sizes.get("epoch", 0) >= 2


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """Markdown (with PNGs written to `out`) of the luck-matters statistics of one sweep."""
    lk = _complete(sw, luck(sw.ds))
    parts = [
        "### Luck matters: does training amplify the units selective at initialization?",
        "",
        "Per node and latent state, across the node's units: Spearman correlation of |corr| at "
        "initialization with |corr| after training, and whether the unit best after training was "
        "among the top k at initialization. *Null*: the same with units permuted between the two "
        "epochs; *cross-seed*: initialization of one seed against the end of the next; *chance*: "
        "k / units. Values: mean ± std over runs of each run's mean over nodes and states.",
        "",
        _agreement_table(sw, lk),
        "",
        _level_table(lk),
        "",
        _gain_table(lk),
        "",
    ]
    width = _width_dim(sw)
    if width is not None:
        parts += [_width_table(lk, width, sw), ""]
    png = out / f"{stem}_luck_scatter.png"
    if _scatter(sw, png):
        parts += [f"![initial vs final |corr| per unit]({png.name})", "", _SCATTER_CAPTION, ""]
    png = out / f"{stem}_luck_topk.png"
    if width is not None and _topk_vs_width(lk, width, sw, png):
        parts += [f"![top-k hit rate vs width]({png.name})", "", _TOPK_CAPTION, ""]
    return "\n".join(parts)


_SCATTER_CAPTION = (
    "*Initial vs final |corr| of every unit and state of complete runs, one panel per level "
    "(hexagons: unit count, log colour); the dashed line is final = initial.*"
)
_TOPK_CAPTION = (
    "*Rate at which the best unit after training was among the top k at initialization, vs width "
    "(mean ± std over runs); dashed: chance k / width.*"
)


def _complete(sw: SweepResults, lk: Any) -> Any:
    """Statistics of complete runs only (others NaN), like every other table of the report."""
    lk = lk.drop_vars("status", errors="ignore")  # strings: `where` cannot fill them with NaN
    return lk.where(sw.ds.status == Status.COMPLETE) if "status" in sw.ds else lk


def _per_run(da: Any, keep: tuple[str, ...] = ()) -> Any:
    """Mean over nodes, states and layers (whatever is not a sweep dim or in `keep`)."""
    inner = [d for d in da.dims if d in {"node", "state", "layer"} and d not in keep]
    return da.mean(inner, skipna=True) if inner else da


def _cell(da: Any) -> str:
    return fmt_stats(*stats(da.values))


def _agreement_table(sw: SweepResults, lk: Any) -> str:
    """One row per setting; a setting where no statistic is defined (a node of one unit has
    nothing to rank) is named below the table instead of filling a row with dashes."""
    rows, undefined = [], []
    for c in combos(sw):
        sel = {d: v for d, v in c.items() if d in lk.dims}
        r = lk.sel(sel) if sel else lk
        row = [_cell(_per_run(r.spearman)), _cell(_per_run(r.null_spearman))]
        row.append(_cell(_per_run(r.cross_spearman)) if "cross_spearman" in r else "—")
        for k in lk.k.values:
            hit = r.sel(k=k)
            row += [_cell(_per_run(hit.hit)), _cell(_per_run(hit.chance))]
        if all(cell == "—" for cell in row):
            undefined.append(label(sw, c))
        else:
            rows.append([label(sw, c), *row])
    head = ["setting", "Spearman", "null", "cross-seed"]
    for k in lk.k.values:
        head += [f"top-{int(k)} hit", f"chance (k={int(k)})"]
    text = md_table(head, rows) if rows else ""
    if undefined:
        text += (
            "\n\nNo statistic is defined (fewer than two units per node, or no complete run) for: "
            + "; ".join(undefined)
            + "."
        )
    return text.strip()


def _levels(node_level: Any) -> Any:
    """The tree levels present: a sweep over depth pads the shallower trees' missing nodes with NaN."""
    values = np.asarray(node_level.values, dtype=float)
    return np.unique(values[np.isfinite(values)])


def _level_table(lk: Any) -> str:
    """All settings pooled, per level (0 = root)."""
    if "node_level" not in lk.coords:
        return ""
    rows = []
    for lv in _levels(lk.node_level):
        r = lk.where(lk.node_level == lv)
        cells = [_cell(_per_run(r.spearman)), _cell(_per_run(r.null_spearman))]
        cells += [
            f"{_cell(_per_run(r.hit.sel(k=k)))} vs {_cell(_per_run(r.chance.sel(k=k)))}" for k in r.k.values
        ]
        rows.append([str(int(lv)), *cells])
    head = ["level", "Spearman", "null", *(f"top-{int(k)} hit vs chance" for k in lk.k.values)]
    return "Per level, all settings pooled:\n\n" + md_table(head, rows)


def _gain_table(lk: Any) -> str:
    """Amplification: final - initial |corr| by the unit's initial |corr|, all settings pooled."""
    rows = []
    for b in lk.bin.values:
        r = lk.sel(bin=b)
        units = int(np.nansum(r.count_in_bin.values))
        if units == 0:
            continue
        rows.append([str(b), str(units), _cell(_per_run(r.gain)), _cell(_per_run(r.final_in_bin))])
    head = [r"initial \|corr\|", "units", "gain: final − initial", r"final \|corr\|"]
    text = (
        "Amplification, all settings pooled: per run the mean over the units whose initial |corr| "
        "falls in the bin; amplification predicts a gain that grows with the initial value."
    )
    return text + "\n\n" + md_table(head, rows)


def _width_dim(sw: SweepResults) -> str | None:
    return next((d for d in sw.settings if sw.path(d) == WIDTH), None)


def _width_table(lk: Any, width: str, sw: SweepResults) -> str:
    """Over-parameterization: the best initial and final |corr| and the top-k hit rate vs width."""
    rows = []
    for w in lk[width].values:
        r = lk.sel({width: w})
        cells = [_cell(_per_run(r.init_best)), _cell(_per_run(r.final_best))]
        cells += [
            f"{_cell(_per_run(r.hit.sel(k=k)))} vs {_cell(_per_run(r.chance.sel(k=k)))}" for k in r.k.values
        ]
        rows.append([str(w), *cells])
    head = [
        "width",
        r"best initial \|corr\|",
        r"best final \|corr\|",
        *(f"top-{int(k)} hit vs chance" for k in lk.k.values),
    ]
    text = (
        "Over-parameterization, other settings pooled: more units give a luckier best unit at "
        "initialization (more draws); does the best after training track it?"
    )
    return text + "\n\n" + md_table(head, rows)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scatter(sw: SweepResults, path: Path) -> bool:
    corr = sw.ds[CORR]
    if corr.sizes["state"] == 2:
        corr = corr.isel(state=[1])
    if "status" in sw.ds:
        corr = corr.where(sw.ds.status == Status.COMPLETE)
    a0, a1 = abs(corr.sel(epoch=corr.epoch.min())), abs(final(corr))
    if "node_level" not in corr.coords:
        return False
    levels = _levels(corr.node_level)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.4), squeeze=False)
    for ax, lv in zip(axes[0], levels, strict=True):
        x = a0.where(corr.node_level == lv).values.ravel()
        y = a1.where(corr.node_level == lv).values.ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ax.hexbin(x[ok], y[ok], gridsize=25, extent=(0, 1, 0, 1), bins="log", mincnt=1, cmap="viridis")
        ax.plot([0, 1], [0, 1], "w--", linewidth=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"level {int(lv)}", xlabel="initial |corr| (1)")
        ax.set_ylabel("final |corr| (1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _topk_vs_width(lk: Any, width: str, sw: SweepResults, path: Path) -> bool:
    ws = np.asarray(lk[width].values, dtype=float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for k in lk.k.values:
        m, s, ch = [], [], []
        for w in lk[width].values:
            r = lk.sel({width: w, "k": k})
            mean, std, _ = stats(_per_run(r.hit).values)
            m.append(mean)
            s.append(std)
            ch.append(stats(_per_run(r.chance).values)[0])
        bars = ax.errorbar(ws, m, yerr=s, marker="o", capsize=3, label=f"top-{int(k)} hit")
        ax.plot(ws, ch, "--", color=bars.lines[0].get_color(), label=f"chance {int(k)} / width")
    ax.set(xlabel="width (units per node)", ylabel="hit rate (1)", ylim=(0, 1.05))
    if (ws > 0).all() and ws.max() / ws.min() >= 8:
        ax.set_xscale("log")
        ax.set_xticks(ws, [str(int(w)) for w in ws])
        ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
