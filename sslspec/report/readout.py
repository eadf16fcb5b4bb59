"""The report's readout section, for sweeps whose stores hold the linear probe or k-NN accuracy of
frozen encoder features (image runs with `measure { linear_probe }` or `knn`): per setting, each
readout at initialization and after training with the gain, and a figure of them over epochs.

The probe's train accuracy is shown beside its test accuracy: a large gap says the probe, not the
features, did the work. Cells are mean ± std over seeds; the gain is each seed's after minus its
own at initialization, then averaged, so it is paired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sslspec.report.figures import _band, _pyplot, _save, _seed_runs
from sslspec.report.sweep import SweepResults, combos, final, fmt_stats, label, over_seeds, seeds_note, stats
from sslspec.report.tables import md_table
from sslspec.store.variables import BY_NAME, READOUT

SHOWN = (("probe", "linear probe, test"), ("probe_train", "linear probe, train"), ("knn", "k-NN"))


def applies(ds: Any) -> bool:
    """Whether a sweep's stores hold a readout (linear probe or k-NN accuracy)."""
    return any(READOUT[key] in ds for key, _ in SHOWN)


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """Markdown (with a PNG written to `out`) of the readouts of one sweep."""
    shown = [(READOUT[key], title) for key, title in SHOWN if READOUT[key] in sw.ds]
    head = ["setting"]
    for _, title in shown:
        head += [f"{title}: init", "after training", "gain"]
    rows = [[label(sw, c), *[cell for var, _ in shown for cell in _cells(sw, var, c)]] for c in combos(sw)]
    parts = [
        "### Readout: linear probe and k-NN on frozen features",
        "",
        f"Accuracy at initialization (epoch 0) and after training, mean ± std over seeds; the gain "
        f"is paired, each seed against its own start ({seeds_note(sw)}). "
        + "; ".join(f"`{var}`: {BY_NAME[var].long_name}" for var, _ in shown)
        + ".",
        "",
        md_table(head, rows),
        "",
    ]
    png = out / f"{stem}_readout.png"
    if _figure(sw, shown, png):
        caption = "Readout accuracy vs epoch, one panel per readout; line: mean, band: ± std over seeds"
        parts += [f"![readout vs epoch]({png.name})", "", f"*{caption}. {seeds_note(sw)}.*", ""]
    return "\n".join(parts)


def _cells(sw: SweepResults, var: str, combo: dict[str, Any]) -> list[str]:
    """One readout of one setting: at initialization, after training, and the paired gain."""
    da = over_seeds(sw.ds[var], combo)
    if 0 not in da.epoch.values:
        return ["—", fmt_stats(*stats(over_seeds(final(sw.ds[var]), combo).values)), "—"]
    start = np.asarray(da.sel(epoch=0).values, dtype=float).ravel()
    end = np.asarray(over_seeds(final(sw.ds[var]), combo).values, dtype=float).ravel()
    return [fmt_stats(*stats(start)), fmt_stats(*stats(end)), fmt_stats(*stats(end - start))]


def _figure(sw: SweepResults, shown: list[tuple[str, str]], path: Path) -> bool:
    """Each readout vs epoch, one panel per readout and one line per setting; False when a sweep
    measured only one epoch (nothing to draw a line through)."""
    if sw.ds.sizes.get("epoch", 0) < 2:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False, sharey=True)
    for ax, (var, title) in zip(axes[0], shown, strict=True):
        x = sw.ds[var].epoch.values
        for c in combos(sw):
            _band(ax, x, _seed_runs(sw.ds[var], c, "epoch"), label(sw, c), lw=1.2)
        ax.set(title=title, xlabel="epoch", ylabel="accuracy")
        ax.legend(fontsize=6, loc="lower right")
    _save(plt, fig, path)
    return True
