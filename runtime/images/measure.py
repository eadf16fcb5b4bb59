"""The measurements an image network computes on itself (`network resnet`, `network convnet`;
runtime.images.network), after each measured epoch, in eval mode.

`MEASUREMENTS` maps a measurement (a sub-block of `measure`) to its hook: (run context, epoch) ->
its results keyed as the variable table's `result`s (sslspec.store.variables.results_of), which
the Recorder writes. runtime.measurements runs every hook the config switches on for an image
network; the checker decides which measurements an image network may have (sslspec.spec.kinds),
so a measurement added here is also declared there. The linear probe and k-NN, which read any
network's features on image data, are runtime.images.readout's, for every network alike.

- `collapse`: the spread of the l2-normalized output of the projection head (runtime.collapse)
  over `measure.samples` plain images drawn from the measure generator, in chunks of CHUNK.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from runtime.collapse import OutputSpread
from runtime.context import RunContext

CHUNK = 512  # images per forward

Hook = Callable[[RunContext, int], dict[str, Tensor]]


def collapse(ctx: RunContext, epoch: int) -> dict[str, Tensor]:
    """The output's per-dimension std, their mean and its effective rank (runtime.collapse)."""
    spread, gen = OutputSpread(), ctx.gens["measure"]
    left = int(ctx.cfg.measure.samples or ctx.cfg.train.samples)
    while left > 0:
        b = min(CHUNK, left)
        left -= b
        x = ctx.source.measure_batch(b, gen).inputs(ctx.dtype)  # (b, 3 S S)
        spread.update(ctx.net(x).raw)
    return spread.result()


MEASUREMENTS: dict[str, Hook] = {"collapse": collapse}


@torch.no_grad()
def measure_images(ctx: RunContext, epoch: int) -> dict[str, dict[str, Tensor]]:
    """Every measurement of MEASUREMENTS that the config switches on -> its results."""
    m = ctx.cfg.measure
    return {name: hook(ctx, epoch) for name, hook in MEASUREMENTS.items() if getattr(m, name) is not None}
