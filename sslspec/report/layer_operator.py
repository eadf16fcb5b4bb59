"""The report's section on the covariance operator per layer of an image network
(`measure.covariance_operator` with `network resnet/convnet`): is the operator amplified over
training, as on the HLTM? Per setting and layer, the top eigenvalue and the trace of OP_A at
initialization and after training, their ratio (the amplification), and how much of the trace is
the views' noise V / A rather than the operator itself; a figure of the top eigenvalue and the
trace against epochs, one panel per layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sslspec.lang.check_operator import layer_names as operator_layers
from sslspec.report.collapse import name
from sslspec.report.figures import _pyplot, _save
from sslspec.report.sweep import SweepResults, combos, final, fmt_stats, over_seeds, seeds_note, stats
from sslspec.report.tables import md_table
from sslspec.spec.images import ConvNet, ResNet
from sslspec.store.variables import LAYER_OP_EIGVAL, LAYER_OP_TRACE, LAYER_OP_VIEW_NOISE, OP_LAYER_EXACT


def applies(ds: Any) -> bool:
    """Whether a sweep's stores hold an image network's per-layer operator."""
    return LAYER_OP_EIGVAL in ds


def layer_names(sw: SweepResults) -> list[str]:
    """The measured layers' names: the `layers` of a run's stored plan, or every layer of its network
    (sslspec.lang.check_operator names them as the runtime does)."""
    count = sw.ds.sizes["op_layer"]
    for run in sw.runs:
        plan = run["attrs"].get("plan")
        if not plan:
            continue
        cfg = json.loads(plan)["config"]
        layers = cfg["measure"]["covariance_operator"].get("layers")
        if layers is None:
            net = cfg["network"]
            head = tuple(net["projector"])
            block: ConvNet | ResNet = (
                ResNet(depth=net["depth"], projector=head)
                if net["kind"] == "resnet"
                else ConvNet(channels=tuple(net["channels"]), projector=head)
            )
            layers = operator_layers(block)
        if len(layers) == count:
            return list(layers)
    return [f"layer {i}" for i in range(count)]


def _per_run(da: Any, combo: dict[str, Any]) -> tuple[Any, Any]:
    """A (..., epoch) variable at one setting -> its first-epoch and final values per seed."""
    at = over_seeds(da, combo)
    return np.asarray(at.isel(epoch=0).values).ravel(), np.asarray(final(at).values).ravel()


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """Markdown (with a PNG written to `out`) of the per-layer operator of one sweep."""
    ds = sw.ds
    top = ds[LAYER_OP_EIGVAL].isel(op_eig=0)
    exact = ds[OP_LAYER_EXACT].values if OP_LAYER_EXACT in ds else np.zeros(ds.sizes["op_layer"])
    rows = []
    for c in combos(sw):
        for i, layer in enumerate(layer_names(sw)):
            first, last = _per_run(top.isel(op_layer=i), c)
            t_first, t_last = _per_run(ds[LAYER_OP_TRACE].isel(op_layer=i), c)
            _, noise = _per_run(ds[LAYER_OP_VIEW_NOISE].isel(op_layer=i), c)
            rows.append(
                [
                    name(sw, c),
                    f"{layer} ({'exact' if exact[i] else 'randomized'})",
                    f"{stats(first)[0]:.3g} → {stats(last)[0]:.3g}",
                    fmt_stats(*stats(last / first)),
                    f"{stats(t_first)[0]:.3g} → {stats(t_last)[0]:.3g}",
                    fmt_stats(*stats(t_last / t_first)),
                    f"{stats(first / t_first)[0]:.3f} → {stats(last / t_last)[0]:.3f}",
                    fmt_stats(*stats(noise / t_last)),
                ]
            )
    head = ["setting", "layer", "top eigenvalue: init → after", "amplification (top)"]
    head += ["trace: init → after", "amplification (trace)", "top / trace: init → after"]
    head += ["view noise / trace after"]
    parts = [
        "### Covariance operator per layer",
        "",
        "OP_A = Cov over images of the layer's connection K = (d output / d vec W)^T averaged over "
        "each image's augmented views; amplification = value after training / value at "
        f"initialization, per run, then over seeds ({seeds_note(sw)}); top / trace is scale-free (the raw "
        f"output's scale grows when the loss normalizes it). The view noise tr(V)/A is "
        "the part of the trace that the finite number of views A adds (E[OP_A] = OP + V / A); the "
        "network is measured in eval mode.",
        "",
        md_table(head, rows),
        "",
    ]
    png = out / f"{stem}_layer_operator.png"
    _figure(sw, png)
    caption = "Top eigenvalue (solid) and trace (dashed) of each layer's operator vs epoch, mean over seeds"
    parts += [f"![layer operators vs epoch]({png.name})", "", f"*{caption}. {seeds_note(sw)}.*", ""]
    return "\n".join(parts)


def _figure(sw: SweepResults, path: Path) -> None:
    """One panel per layer: the top eigenvalue and the trace against epochs (log scale)."""
    plt = _pyplot()
    ds = sw.ds
    names = layer_names(sw)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for i, (ax, layer) in enumerate(zip(axes[0], names, strict=True)):
        for c in combos(sw):
            series = []
            for var, style in ((ds[LAYER_OP_EIGVAL].isel(op_eig=0), "-"), (ds[LAYER_OP_TRACE], "--")):
                da = over_seeds(var.isel(op_layer=i), c)
                runs = np.atleast_2d(da.transpose(..., "epoch").values)
                series.append((da.epoch.values, np.nanmean(runs, axis=0), style))
            (line,) = ax.plot(series[0][0], series[0][1], series[0][2], lw=1.2, label=name(sw, c))
            ax.plot(series[1][0], series[1][1], series[1][2], lw=1.0, color=line.get_color())
        ax.set(title=layer, xlabel="epoch", yscale="log")
    axes[0][0].set(ylabel="eigenvalue / trace (1)")
    axes[0][0].legend(fontsize=6)
    _save(plt, fig, path)
