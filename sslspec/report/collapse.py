"""The report's collapse section, for sweeps whose stores hold `measure.collapse` (BYOL's ablation,
specs/paper/8_byol.ssl): per setting, the spread of the l2-normalized output at initialization and
after training, the effective rank of its covariance, the root correlation, and how many seeds
collapsed, with a figure of the spread over epochs.

Verdict, fixed before any run was read: a run *collapsed* when its output std after training
(the mean over output dimensions of the per-dimension std) is below COLLAPSED times its own value
at initialization. The HLTM tree network's output is far from isotropic at initialization (its
std there is well under 1/sqrt(D)), so each run is compared with its own start rather than with
1/sqrt(D).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sslspec.report.figures import _pyplot, _save
from sslspec.report.sweep import SweepResults, combos, final, fmt_stats, label, over_seeds, seeds_note, stats
from sslspec.report.tables import md_table
from sslspec.store.variables import LEVEL_CORR, OUTPUT_EFF_RANK, OUTPUT_STD_MEAN, root_of

COLLAPSED = 0.25


def applies(ds: Any) -> bool:
    """Whether a sweep's stores hold the collapse measurement."""
    return OUTPUT_STD_MEAN in ds


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """Markdown (with a PNG written to `out`) of the collapse measurements of one sweep."""
    std = sw.ds[OUTPUT_STD_MEAN]
    rows = []
    for c in combos(sw):
        runs = np.atleast_2d(over_seeds(std, c).transpose(..., "epoch").values)  # (seeds, epochs)
        first, last = runs[:, 0], np.asarray(over_seeds(final(std), c).values).ravel()
        done = np.isfinite(first) & np.isfinite(last)
        collapsed = int((last[done] < COLLAPSED * first[done]).sum())
        start = stats(first)
        cells = [
            f"{start[0]:.4f} → {fmt_stats(*stats(last))}" if start[2] else "—",
            fmt_stats(*stats(over_seeds(final(sw.ds[OUTPUT_EFF_RANK]), c).values)),
        ]
        if LEVEL_CORR in sw.ds:
            cells.append(fmt_stats(*stats(over_seeds(final(root_of(sw.ds[LEVEL_CORR])), c).values)))
        rows.append([name(sw, c), *cells, f"{collapsed} of {int(done.sum())}"])
    head = ["setting", "output std: init → after", "effective rank after"]
    head += ["root corr after"] * (LEVEL_CORR in sw.ds) + ["collapsed"]
    parts = [
        "### Collapse",
        "",
        f"Output std: the per-dimension std of the l2-normalized output over the measured samples, "
        f"averaged over its {std.sizes.get('output', sw.ds.sizes.get('output', 0))} dimensions "
        f"(1/sqrt(D) for an isotropic spread, 0 when every sample maps to one point); effective rank "
        f"of its covariance (scale-free, so it says nothing more once the std is ~0). A run counts "
        f"as collapsed when its std after training is below {COLLAPSED} x its own at "
        f"initialization ({seeds_note(sw)}):",
        "",
        md_table(head, rows),
        "",
    ]
    png = out / f"{stem}_collapse.png"
    if _figure(sw, png):
        caption = (
            "Output std (top, log scale) and effective rank (bottom) vs epoch; line: mean, band: min..max"
        )
        parts += [f"![output collapse vs epoch]({png.name})", "", f"*{caption}. {seeds_note(sw)}.*", ""]
    return "\n".join(parts)


def name(sw: SweepResults, combo: dict[str, Any]) -> str:
    """A setting by what its loss is (read from a run's stored plan), else by its swept values."""
    for run in sw.runs:
        if all(run.get(d) == v for d, v in combo.items()) and run["attrs"].get("plan"):
            loss = json.loads(run["attrs"]["plan"])["config"]["loss"]
            return describe(loss)
    return label(sw, combo)


def describe(loss: dict[str, Any]) -> str:
    """A loss's plan data -> a short name: BYOL's predictor, its batch norm and momentum."""
    if loss["kind"] != "byol":
        rest = ", ".join(f"{k} {v}" for k, v in sorted(loss.items()) if k != "kind")
        return f"{loss['kind']} ({rest})" if rest else loss["kind"]
    pred = loss.get("predictor")
    if pred is None:
        text = "no predictor"
    else:
        bn = "no BN" if not pred["batch_norm"] else "BN"
        if pred["batch_norm"]:
            bn += "".join(f", {p} {pred[f'bn_{p}']}" for p in ("mean", "std") if pred[f"bn_{p}"] != "normal")
        text = f"{pred['layers']} predictor ({bn})"
    return f"byol: {text}, m = {loss['momentum']}"


def _figure(sw: SweepResults, path: Path) -> bool:
    """Output std and effective rank vs epoch, one line per setting."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for c in combos(sw):
        for ax, var in ((top, OUTPUT_STD_MEAN), (bottom, OUTPUT_EFF_RANK)):
            da = over_seeds(sw.ds[var], c)
            runs = np.atleast_2d(da.transpose(..., "epoch").values)
            if not np.isfinite(runs).any():
                continue
            x = da.epoch.values
            mean = np.nanmean(runs, axis=0)
            (line,) = ax.plot(x, mean, label=name(sw, c), lw=1.2)
            ax.fill_between(
                x, np.nanmin(runs, axis=0), np.nanmax(runs, axis=0), color=line.get_color(), alpha=0.15
            )
    top.set(yscale="log", ylabel="output std (1)")
    bottom.set(xlabel="epoch", ylabel="effective rank (1)")
    top.legend(fontsize=6, loc="lower left")
    _save(plt, fig, path)
    return True
