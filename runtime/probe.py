"""Measurement passes: the network's own nodes (tree nodes or mlp layers) and one pass of fresh
samples through the accumulators of runtime.measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from runtime.layout import Layout
from runtime.measure import CovarianceOperator, LatentCorrelation, class_index
from runtime.sampler import Edges, draw_measure_batch
from sslspec.lang.check import Config
from sslspec.spec import schema

CHUNK = 4096  # measurement samples per batched pass


@dataclass(frozen=True)
class NetNodes:
    """The network's own nodes, which weights and operators are indexed by: the latent nodes for
    `tree_relu` (dim `node`), the layers for `mlp` (dim `layer`, 0 = the output layer)."""

    dim: str
    widths: tuple[int, ...]  # units of each network node
    fan_in: tuple[int, ...]  # inputs of each network node
    levels: tuple[int, ...]  # network nodes per level of the network (tree levels, or 1 per layer)

    @classmethod
    def of(cls, cfg: Config, layout: Layout) -> NetNodes:
        net = cfg.network
        if isinstance(net, schema.MLP):
            widths = tuple(reversed(net.widths))  # level 0 = output layer
            fan_in = (*widths[1:], layout.n_leaves)
            return cls("layer", widths, fan_in, (1,) * len(widths))
        kids = torch.cat([m.sum(1) for m in layout.child_mask])  # (n_latent,)
        w = net.width
        last = layout.n_latent - layout.sizes[-1]  # parents of leaves take one input per child
        fan_in = tuple(int(k) * (w if i < last else 1) for i, k in enumerate(kids))
        return cls("node", (w,) * layout.n_latent, fan_in, layout.sizes)

    @property
    def count(self) -> int:
        return len(self.widths)

    def level_fan_in(self) -> list[torch.Tensor]:
        """Per network level, (N_l,) the real fan-in of each node (for CovarianceOperator)."""
        out, i = [], 0
        for n in self.levels:
            out.append(torch.tensor(self.fan_in[i : i + n]))
            i += n
        return out


class LayerCorrelation:
    """Latent correlation for an `mlp`: every latent node against every unit of every layer,
    as one LatentCorrelation per layer fed that layer's pre-activations for each latent node.
    result(): `corr` (L, n_latent, S, W_max), `best` (L, n_latent), `level_mean` (L, depth);
    units beyond a layer's width are NaN."""

    def __init__(self, layout: Layout, widths: tuple[int, ...]) -> None:
        self.layout, self.widths = layout, widths
        self.layers = [LatentCorrelation(layout, w) for w in widths]

    def update(self, latents: Any, pre: list[torch.Tensor]) -> None:
        for acc, p in zip(self.layers, pre, strict=True):  # p: (B, 1, W_l)
            acc.update(latents, [p.expand(-1, n, -1) for n in self.layout.sizes])

    def result(self) -> dict[str, torch.Tensor]:
        rs = [acc.result() for acc in self.layers]
        w_max = max(self.widths)
        corr = torch.stack(
            [
                torch.nn.functional.pad(r["corr"], (0, w_max - r["corr"].shape[-1]), value=torch.nan)
                for r in rs
            ]
        )
        return {
            "corr": corr,
            "best": torch.stack([r["best"] for r in rs]),
            "level_mean": torch.stack([r["level_mean"] for r in rs]),
        }


def require_finite(result: dict[str, torch.Tensor], keys: tuple[str, ...], what: str) -> None:
    """Raise FloatingPointError naming the quantity and node when a result is not finite."""
    for key in keys:
        bad = ~torch.isfinite(result[key].reshape(result[key].shape[0], -1)).all(dim=1)
        if bad.any():
            node = int(bad.nonzero()[0])
            raise FloatingPointError(f"{what} {key} of node {node} is not finite")


def measure_pass(
    cfg: Config,
    net: Any,
    layout: Layout,
    edges: Edges,
    gen: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
    corr: LatentCorrelation | LayerCorrelation | None,
    op: CovarianceOperator | None,
) -> int:
    """Feed `measure.samples` fresh samples, in chunks, to the accumulators; return the count."""
    left = total = int(cfg.measure.samples or cfg.train.samples)
    while (corr is not None or op is not None) and left > 0:
        b = min(CHUNK, left)
        left -= b
        sample = draw_measure_batch(layout, edges, cfg.data, b, gen, device)
        fwd = net(sample.inputs(dtype))
        if corr is not None:
            corr.update(sample.latents, fwd.pre)
        if op is not None:
            op.update(
                class_index(sample.latents, cfg.augment.share, layout.states), fwd.inputs, net.jacobians(fwd)
            )
    return total
