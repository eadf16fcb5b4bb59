"""The report's loss-operator section: per loss setting, the theorem check's three records
(runtime.theorem): the exact per-batch identity's error, the loss's own prediction's error
against M, and the residue over training with the part the output normalization explains.

Per-run values are means over the checked nodes; cells are mean ± std over seeds. A setting's
verdict is read off its numbers at initialization (epoch 0, where every seed of a setting starts
from its own fresh network): the prediction is *exact in expectation* when its error at the
largest M is below EXACT_BELOW and at most FALL of the error at the smallest M (it falls as the
sampling noise does), otherwise it leaves a *residue* of the size shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sslspec.report.sweep import SweepResults, combos, label, over_seeds, seeds_note, show, stats
from sslspec.report.tables import md_table
from sslspec.store.layout import Status
from sslspec.store.variables import (
    TC_BATCH_REL_ERROR,
    TC_REL_ERROR,
    TC_REL_ERROR_SIMPLE,
    TC_RESIDUE_NORMALIZATION,
    TC_RESIDUE_OTHER,
)

EXACT_BELOW = 0.3  # the error at the largest M of a prediction called exact in expectation
FALL = 0.5  # and its ratio to the error at the smallest M
IDENTITY_NOISE = 1e-4  # an identity error above this is flagged (runs train in float32: ~1e-7)


def applies(ds: Any) -> bool:
    """Whether a sweep's stores hold the per-loss theorem check (the exact identity's error)."""
    return TC_BATCH_REL_ERROR in ds


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """Markdown (and a PNG written to `out`) of the loss-operator records of one sweep."""
    ds = _complete(sw)
    cs = combos(sw)
    heads = [sw.path(d) for d in sw.settings]
    parts = [
        "### Loss-specific covariance operators: exact identity, prediction vs M, residue",
        "",
        f"Per run the mean over the checked nodes; cells mean ± std over seeds ({seeds_note(sw)}).",
        "",
        _identity_table(sw, ds, cs, heads),
        "",
        _m_table(sw, ds, cs, heads),
        "",
        _residue_table(sw, ds, cs, heads),
        "",
        _verdict(sw, ds, cs),
        "",
    ]
    png = out / f"{stem}_loss_residue.png"
    if _residue_figure(sw, ds, cs, png):
        parts += [f"![residue over training]({png.name})", "", _CAPTION, ""]
    return "\n".join(parts)


_CAPTION = (
    "*The residue ||g - p|| / ||g|| at the largest M over training, one line per setting (mean over "
    "seeds and nodes; many settings are split into panels by their last swept fields); dashed: the "
    "part the output normalization explains.*"
)


def _complete(sw: SweepResults) -> Any:
    """The theorem-check variables of complete runs only (the others NaN)."""
    names = [
        TC_BATCH_REL_ERROR,
        TC_REL_ERROR,
        TC_REL_ERROR_SIMPLE,
        TC_RESIDUE_NORMALIZATION,
        TC_RESIDUE_OTHER,
    ]
    ds = sw.ds[[n for n in names if n in sw.ds]]
    return ds.where(sw.ds.status == Status.COMPLETE) if "status" in sw.ds else ds


def _node_mean(da: Any) -> Any:
    return da.mean("tc_node", skipna=True)


def _cell(values: Any, digits: int = 3) -> str:
    m, s, n = stats(values)
    return "—" if n == 0 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _identity_table(sw: SweepResults, ds: Any, cs: list[dict[str, Any]], heads: list[str]) -> str:
    """The largest identity error per setting, over seeds, epochs, nodes and M."""
    rows = []
    for c in cs:
        v = np.asarray(over_seeds(ds[TC_BATCH_REL_ERROR], c).values, dtype=float)
        finite = v[np.isfinite(v)]
        worst = f"{finite.max():.1e}" if finite.size else "— (no per-example Jacobian: batch norm)"
        flag = "" if not finite.size or finite.max() < IDENTITY_NOISE else " **not float noise**"
        rows.append([*(show(c[d]) for d in sw.settings), worst + flag])
    text = (
        "Exact per-batch identity: the chain-rule form sum_{b,k} w_kb (K(a) - K(b)) Delta f against "
        "autograd's gradient of the same batches, ||chain - g|| / ||g||, the largest over seeds, "
        f"checked epochs, nodes and M (runs compute in float32, whose noise here is about 1e-7; "
        f"above {IDENTITY_NOISE:.0e} it is flagged; in float64 the tests see about 1e-15):"
    )
    return text + "\n\n" + md_table([*heads, "largest error"], rows)


def _m_table(sw: SweepResults, ds: Any, cs: list[dict[str, Any]], heads: list[str]) -> str:
    """The loss's prediction's error against M at initialization, and the simple-loss one's."""
    first = _node_mean(ds[TC_REL_ERROR].isel(epoch=0))
    simple = _node_mean(ds[TC_REL_ERROR_SIMPLE].isel(epoch=0))
    ms = [int(m) for m in first.tc_batches.values]
    rows = []
    for c in cs:
        e = over_seeds(first, c)
        cells = [_cell(e.sel(tc_batches=m).values) for m in ms]
        rows.append(
            [*(show(c[d]) for d in sw.settings), *cells, _cell(over_seeds(simple, c).isel(tc_batches=-1))]
        )
    text = (
        "The loss's own prediction p (batch scalar for reduction = batch, class-pair weighted operator "
        "for per-sample triplet and InfoNCE, OP for simple) against the mean gradient over M batches, "
        "||g - p|| / ||g|| at initialization; last column: the simple-loss prediction at the largest M:"
    )
    head = [*heads, *(f"M={m}" for m in ms), f"simple p, M={ms[-1]}"]
    return text + "\n\n" + md_table(head, rows)


def _residue_table(sw: SweepResults, ds: Any, cs: list[dict[str, Any]], heads: list[str]) -> str:
    """||g - p|| / ||g|| at the largest M per checked epoch, and its two parts at the last one."""
    rel = _node_mean(ds[TC_REL_ERROR].isel(tc_batches=-1))
    norm = _node_mean(ds[TC_RESIDUE_NORMALIZATION].isel(tc_batches=-1))
    other = _node_mean(ds[TC_RESIDUE_OTHER].isel(tc_batches=-1))
    epochs = [int(e) for e in rel.epoch.values if np.isfinite(rel.sel(epoch=e).values).any()]
    rows = []
    for c in cs:
        cells = [_cell(over_seeds(rel, c).sel(epoch=e).values) for e in epochs]
        last = epochs[-1] if epochs else 0
        parts = [_cell(over_seeds(v, c).sel(epoch=last).values) for v in (norm, other)]
        rows.append([*(show(c[d]) for d in sw.settings), *cells, *parts])
    m = int(rel.tc_batches.values) if rel.tc_batches.size == 1 else "max"
    text = (
        f"The residue ||g - p|| / ||g|| at M = {m} over training (epochs as columns), then its two "
        "parts at the last epoch: the output normalization's (||g - u|| / ||g||, u the chain-rule form "
        "on the raw output with the same weights) and the rest (||u - p|| / ||g||):"
    )
    head = [*heads, *(f"epoch {e}" for e in epochs), "normalization part", "rest"]
    return text + "\n\n" + md_table(head, rows)


def _verdict(sw: SweepResults, ds: Any, cs: list[dict[str, Any]]) -> str:
    """Which settings make the covariance-operator picture exact in expectation, which leave a
    residue, and how large (at initialization, the largest M)."""
    first = _node_mean(ds[TC_REL_ERROR].isel(epoch=0))
    exact, residue = [], []
    for c in cs:
        e = over_seeds(first, c)
        lo, hi = stats(e.isel(tc_batches=-1).values)[0], stats(e.isel(tc_batches=0).values)[0]
        if not np.isfinite(lo):
            continue
        if lo < EXACT_BELOW and lo <= FALL * hi:
            exact.append(f"{label(sw, c)} ({hi:.2f} -> {lo:.2f})")
        else:
            residue.append((lo, f"{label(sw, c)} ({lo:.2f})"))
    residue.sort(key=lambda t: -t[0])
    out = [
        f"**Exact in expectation** (error at the largest M below {EXACT_BELOW} and at most {FALL} of "
        f"the smallest M's, at initialization): {len(exact)} of {len(exact) + len(residue)} settings"
        + (": " + "; ".join(exact) if exact else "."),
        "",
        f"**A residue remains** in {len(residue)} settings (error at the largest M, largest first)"
        + (": " + "; ".join(t for _, t in residue) if residue else "."),
    ]
    return "\n".join(out)


def facets(
    sw: SweepResults, cs: list[dict[str, Any]], lines: int = 20, panels: int = 6
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The settings `cs` as figure panels: [(what the panel fixes, its settings)]. One panel when
    they fit in `lines`; else the panels fix the last swept fields, as few as give at most `lines`
    settings in each and at most `panels` panels; one panel of everything when none do."""
    if len(cs) > lines:
        for k in range(len(sw.settings) - 1, 0, -1):
            fixed = sw.settings[k:]
            split: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for c in cs:
                split.setdefault(tuple(c[d] for d in fixed), []).append(c)
            if len(split) <= panels and max(map(len, split.values())) <= lines:
                return [(dict(zip(fixed, key, strict=True)), group) for key, group in split.items()]
    return [({}, cs)]


def _residue_figure(sw: SweepResults, ds: Any, cs: list[dict[str, Any]], path: Path) -> bool:
    """The residue at the largest M over epochs, one line per setting (in panels when there are
    many, see `facets`); False when nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = _node_mean(ds[TC_REL_ERROR].isel(tc_batches=-1))
    norm = _node_mean(ds[TC_RESIDUE_NORMALIZATION].isel(tc_batches=-1))
    if not np.isfinite(rel.values).any():
        return False
    panels = facets(sw, cs)
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 5 * rows), squeeze=False, sharey=True)
    for ax, (_, group) in zip(axes.flat, panels, strict=False):
        same = {d: v for d, v in group[0].items() if all(c[d] == v for c in group)}
        fixed = same if len(panels) > 1 else {}  # the panel's title; the lines show the rest
        for i, c in enumerate(group):
            color = plt.get_cmap("tab20")(i % 20)
            seeds = [d for d in over_seeds(rel, c).dims if d != "epoch"]
            r, n = over_seeds(rel, c).mean(seeds, skipna=True), over_seeds(norm, c).mean(seeds, skipna=True)
            shown = {d: v for d, v in c.items() if d not in fixed}
            ax.plot(r.epoch, r.values, "-o", color=color, ms=3, label=label(sw, shown))
            ax.plot(n.epoch, n.values, "--", color=color, lw=1)
        ax.set(xlabel="epoch", ylabel="||g - p|| / ||g||", yscale="log")
        ax.set_title(label(sw, fixed) if fixed else "", fontsize=9)
        if len(group) <= 20:
            ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120 if len(panels) == 1 else 90)
    plt.close(fig)
    return True
