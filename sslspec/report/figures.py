"""The report's PNG figures (matplotlib, Agg backend, imported on first use). Each figure function
draws one sweep into a file and returns False when it does not apply (too many settings, no
numeric axis); panels of settings with no complete run say so instead of staying blank."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sslspec.report.sweep import (
    MAX_PANELS,
    SEED,
    SweepResults,
    combos,
    final,
    label,
    over_seeds,
    seeds_note,
    show,
    stats,
)
from sslspec.store.variables import (
    LEVEL_CORR,
    LOSS,
    LR,
    NODE_LEVEL,
    OP_EIGVAL,
    TC_COSINE,
    TC_REL_ERROR,
    net_dim,
    output_layer,
    root_of,
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(n: int, rows_per: int = 1) -> tuple[Any, Any, list[list[Any]]]:
    """A grid for n settings with `rows_per` stacked axes each; [setting][row] -> axes."""
    plt = _pyplot()
    cols = min(n, 3)
    rows = -(-n // cols)
    size = (5.0 * cols, 3.8 * rows * rows_per)
    fig, axes = plt.subplots(rows * rows_per, cols, figsize=size, squeeze=False)
    out = []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        stack = [axes[r * rows_per + k, c] for k in range(rows_per)]
        if i >= n:
            for ax in stack:
                ax.set_visible(False)
        else:
            out.append(stack)
    return plt, fig, out


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


def _band(ax: Any, x: Any, runs: Any, label: str, spread: str = "std", **kw: Any) -> None:
    """A line over x and a band, from `runs` (seeds, x): mean ± std, or (spread="range", for log
    axes) the median and the min..max over seeds."""
    runs = np.asarray(runs, dtype=float).reshape(-1, len(x))
    ok = np.isfinite(runs).any(0)
    if not ok.any():
        return
    with np.errstate(invalid="ignore"):
        v = runs[:, ok]
        if spread == "range":
            m, lo, hi = np.nanmedian(v, 0), np.nanmin(v, 0), np.nanmax(v, 0)
        else:
            m, s = np.nanmean(v, 0), np.nanstd(v, 0)
            lo, hi = m - s, m + s
    (line,) = ax.plot(np.asarray(x)[ok], m, label=label, **kw)
    ax.fill_between(np.asarray(x)[ok], lo, hi, color=line.get_color(), alpha=0.2)


def _seed_runs(da: Any, combo: dict[str, Any], along: str) -> Any:
    """(seed, along) values of one setting."""
    v = over_seeds(da, combo)
    return v.transpose(..., along).values if SEED in v.dims else v.values[None]


def _column_stats(runs: Any, n: int) -> tuple[list[float], list[float]]:
    """(seeds, n) values -> the mean and std over seeds of each of the n columns (finite only)."""
    ms, ss = [], []
    for i in range(n):
        m, s, _ = stats(runs[..., i])
        ms.append(m)
        ss.append(s)
    return ms, ss


def _positive(ax: Any) -> bool:
    """Whether any line drawn in `ax` has a finite point with both coordinates > 0."""
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if (np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)).any():
            return True
    return False


def _epoch_axis(ax: Any, epochs: Any) -> None:
    """Epoch on x; a symlog axis when every early epoch was measured, so that the first epochs,
    where most of the change happens, are not squeezed against the last."""
    e = np.asarray(epochs)
    ax.set_xlabel("epoch (epochs)")
    if e.size > 2 and e[1] == 1 and e[-1] > 10:
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        ax.set_xlim(0, e[-1] * 1.05)
        ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= e[-1]]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()


def fig_levels(sw: SweepResults, path: Path) -> bool:
    """Correlation of each level vs epoch, one panel per setting."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    lc = output_layer(sw.ds[LEVEL_CORR])
    plt, fig, axes = _panels(len(cs))
    for (ax,), c in zip(axes, cs, strict=True):
        for lv in lc.level.values:
            _band(ax, lc.epoch.values, _seed_runs(lc.sel(level=lv), c, "epoch"), f"level {int(lv)}")
        ax.set(title=label(sw, c, 48), ylabel="mean best |corr| (1)", ylim=(0, 1.02))
        _epoch_axis(ax, lc.epoch.values)
        ax.title.set_fontsize(8)
        _legend(ax, fontsize=7, loc="lower right")
    _save(plt, fig, path)
    return True


def _numeric(sw: SweepResults, dim: str) -> bool:
    return np.issubdtype(sw.ds[dim].dtype, np.number) and sw.ds[dim].dtype != bool


def _unit(dim: str) -> str:
    return {"width": "units per node", "depth": "levels", "share": "levels", "flip": "probability"}.get(
        dim, "1"
    )


def fig_root_vs(sw: SweepResults, path: Path) -> bool:
    """Root correlation vs the first numeric swept field, after training (solid) and at
    initialization (dashed), one colour per value of a second swept field."""
    dims = sw.settings
    if not dims or len(dims) > 2 or not _numeric(sw, dims[0]):
        return False
    lc = root_of(sw.ds[LEVEL_CORR])
    after, init = final(lc), lc.sel(epoch=lc.epoch.min())
    x = np.asarray(sw.ds[dims[0]].values, dtype=float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for v in sw.ds[dims[1]].values if len(dims) == 2 else [None]:
        sel = {dims[1]: v} if v is not None else {}
        name = f"{sw.path(dims[1])} = {show(v)}" if v is not None else "after training"
        m, s = _column_stats(_seed_runs(after, sel, dims[0]), len(x))
        m0, _ = _column_stats(_seed_runs(init, sel, dims[0]), len(x))
        bars = ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=name)
        ax.plot(x, m0, linestyle="--", marker=".", color=bars.lines[0].get_color(), alpha=0.7)
    ax.plot([], [], "k--", marker=".", label="at initialization (mean)")
    if (x > 0).all() and x.max() / x.min() >= 8:
        ax.set_xscale("log")
        ax.set_xticks(x, [show(v) for v in sw.ds[dims[0]].values])
        ax.minorticks_off()
    ax.set(xlabel=f"{sw.path(dims[0])} ({_unit(dims[0])})", ylabel="root best |corr| (1)", ylim=(0, 1.02))
    ax.set_title(f"root correlation vs {sw.path(dims[0])} ({seeds_note(sw)})", fontsize=9)
    _legend(ax, fontsize=8, loc="lower right")
    _save(plt, fig, path)
    return True


def fig_eigvals(sw: SweepResults, path: Path) -> bool:
    """Per setting: the top eigenvalue of each level's operator (largest over the level's nodes)
    vs epoch, and the top-k spectrum of node 1 (the root's is degenerate: its operator is
    Cov(E[f | z_0]) (x) I_W, each eigenvalue W times over). Log y; median and min..max over seeds."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    ev = sw.ds[OP_EIGVAL]
    net = net_dim(ev)  # an mlp's operators are per layer, each layer a level of its own
    levels, word = (sw.ds[NODE_LEVEL], "level") if net == "node" else (ev[net], "layer")
    node = 1 if ev.sizes[net] > 1 else 0
    plt, fig, axes = _panels(len(cs), rows_per=2)
    for (top, spec), c in zip(axes, cs, strict=True):
        for lv in np.unique(levels.values):
            lam1 = ev.isel(eig=0).where(levels == lv).max(net)
            _band(top, ev.epoch.values, _seed_runs(lam1, c, "epoch"), f"{word} {int(lv)}", "range")
        top.set(title=label(sw, c, 48), ylabel="largest eigenvalue (1)")
        for k in ev.eig.values:
            runs = _seed_runs(ev.isel({net: node}).sel(eig=k), c, "epoch")
            _band(spec, ev.epoch.values, runs, f"λ{int(k) + 1}", "range")
        spec.set(title=f"{net} {node}: top {ev.sizes['eig']} eigenvalues", ylabel="eigenvalue (1)")
        for ax, ncol in ((top, 1), (spec, 2)):
            _epoch_axis(ax, ev.epoch.values)
            if _positive(ax):
                ax.set_yscale("log")
            ax.title.set_fontsize(8)
            _legend(ax, fontsize=6, ncol=ncol)
    _save(plt, fig, path)
    return True


def fig_theorem(sw: SweepResults, path: Path) -> bool:
    """Theorem check at the last checked epoch vs M, one column per setting: the relative error
    (log-log) above, the cosine between gradient and prediction below (mean ± std over seeds)."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    err, cos = final(sw.ds[TC_REL_ERROR]), final(sw.ds[TC_COSINE])
    ms = err.tc_batches.values
    plt, fig, axes = _panels(len(cs), rows_per=2)
    for (top, low), c in zip(axes, cs, strict=True):
        for n in err.tc_node.values:
            for ax, da in ((top, err), (low, cos)):
                m, s = _column_stats(_seed_runs(da.sel(tc_node=n), c, "tc_batches"), len(ms))
                ax.errorbar(ms, m, yerr=s, marker="o", capsize=3, label=f"node {int(n)}")
        top.set(title=label(sw, c, 48), ylabel="relative error ||g − p|| / ||g|| (1)")
        if _positive(top):  # log axes need some positive data
            top.set(xscale="log", yscale="log")
        low.set(xscale="log", ylim=(-1.05, 1.05), ylabel="cosine(g, p) (1)")
        low.axhline(1, color="0.6", linewidth=0.8)
        for ax in (top, low):
            ax.set_xlabel("M (batches averaged)")
            ax.title.set_fontsize(8)
            _legend(ax, fontsize=7)
    _save(plt, fig, path)
    return True


def fig_schedule(sw: SweepResults, path: Path) -> bool:
    """The learning rate (left axis) and the training loss (right axis) vs optimizer step, one
    panel per setting (mean ± std over seeds, each the mean over a loss window)."""
    cs = combos(sw)
    if len(cs) > MAX_PANELS:
        return False
    lr, loss = sw.ds[LR], sw.ds[LOSS]  # a store has the learning rate only with the loss trace
    steps = lr.step.values
    plt, fig, axes = _panels(len(cs))
    for (ax,), c in zip(axes, cs, strict=True):
        _band(ax, steps, _seed_runs(lr, c, "step"), "learning rate", color="C0")
        ax.set(title=label(sw, c, 48), xlabel="optimizer steps (steps)", ylabel="learning rate (1)")
        ax.title.set_fontsize(8)
        twin = ax.twinx()
        _band(twin, steps, _seed_runs(loss, c, "step"), "training loss", color="C1")
        twin.set_ylabel("training loss (1)")
        handles = [h for a in (ax, twin) for h in a.get_legend_handles_labels()[0]]
        if handles:
            ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper right")
        else:
            _legend(ax)
    _save(plt, fig, path)
    return True


Figure = Callable[[SweepResults, Path], bool]

# (variable it needs, function, file stem, caption)
FIGURES: tuple[tuple[str, Figure, str, str], ...] = (
    (
        LEVEL_CORR,
        fig_levels,
        "levels",
        "Mean best correlation of each level vs epoch; line: mean, band: ± std",
    ),
    (
        LEVEL_CORR,
        fig_root_vs,
        "root",
        "Root correlation after training (solid; points: mean, bars: ± std) and at initialization (dashed)",
    ),
    (
        OP_EIGVAL,
        fig_eigvals,
        "eigvals",
        "Covariance-operator spectrum vs epoch: top, the largest eigenvalue of each level; bottom, the top "
        "eigenvalues of node 1 (of the root when it is the only node). Line: median over seeds, "
        "band: min..max",
    ),
    (
        TC_REL_ERROR,
        fig_theorem,
        "theorem",
        "Theorem check vs M: relative error (top) and cosine (bottom) of the operator's prediction "
        "against the mean gradient (mean ± std)",
    ),
    (
        LR,
        fig_schedule,
        "schedule",
        "Learning-rate schedule (left) and training loss (right) vs optimizer step, each the mean over a "
        "loss window; line: mean, band: ± std",
    ),
)
