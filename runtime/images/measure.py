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
- `covariance_operator`: the operator of each selected layer over augmented views of fresh
  images (runtime.images.layer_ops).

`head_check` is the theorem check on the head's layers (runtime.images.layer_ops.head_check), at
the epochs runtime.measurements finds it due.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from runtime.collapse import OutputSpread
from runtime.context import RunContext
from runtime.images import layer_ops
from runtime.images.layer_ops import layer_operators
from runtime.images.network import ImageNet
from runtime.images.source import ImageSource
from runtime.theorem import TheoremResult

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


def covariance_operator(ctx: RunContext, epoch: int) -> dict[str, Tensor]:
    """Each selected layer's top eigenpairs, traces and view noise (runtime.images.layer_ops)."""
    op, net = ctx.cfg.measure.covariance_operator, ctx.net
    assert op is not None and isinstance(net, ImageNet) and isinstance(ctx.source, ImageSource), net
    with torch.enable_grad():
        return layer_operators(net.encoder, ctx.source, op, ctx.gens["measure"], ctx.dtype)


def head_check(ctx: RunContext) -> TheoremResult:
    """The theorem check on the head layers the config names, on the run's measure generator."""
    tc, net = ctx.cfg.measure.theorem_check, ctx.net
    assert tc is not None and isinstance(net, ImageNet) and isinstance(ctx.source, ImageSource), net
    negatives, gen = ctx.objective.negatives, ctx.gens["measure"]
    with torch.enable_grad():
        return layer_ops.head_check(net.encoder, ctx.source, ctx.cfg, tc, gen, ctx.dtype, negatives)


MEASUREMENTS: dict[str, Hook] = {"collapse": collapse, "covariance_operator": covariance_operator}


@torch.no_grad()
def measure_images(ctx: RunContext, epoch: int) -> dict[str, dict[str, Tensor]]:
    """Every measurement of MEASUREMENTS that the config switches on -> its results."""
    m = ctx.cfg.measure
    return {name: hook(ctx, epoch) for name, hook in MEASUREMENTS.items() if getattr(m, name) is not None}
