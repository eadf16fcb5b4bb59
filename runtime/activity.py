"""Dead units: which of a network's units never activate over a measurement pass.

A unit is inactive on a sample when its pre-activation is <= 0 (its ReLU gate is closed; for a
leaky ReLU, on the slope side). A unit inactive on every measured sample passes nothing of the
input upward and carries no information about any latent, so a correlation of 0 at its node can
mean "had no live unit" rather than "learned nothing". The root's (or an mlp's output layer's)
units are not gated, but the same count is kept there: a root unit that is never positive is the
one the issue of dead roots is about.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class DeadUnits:
    """Per network node, the fraction of its units inactive on every sample seen.

    update(pre): pre-activations per network level (B, N_l, W_l) (`Forward.pre`); result():
    (n,) float64 over the network's nodes in level order (breadth first for a tree, layer 0 first
    for an mlp), NaN before any sample. Padded units do not exist here: a level's W_l is real.
    """

    def __init__(self) -> None:
        self.alive: list[Tensor] = []  # per level (N_l, W_l) bool: positive on some sample

    def update(self, pre: Sequence[Tensor]) -> None:
        """Add a chunk of pre-activations, per level (B, N_l, W_l).

        A unit is alive when its largest pre-activation is positive: one max over the samples of
        all levels at once, (B, sum_l N_l W_l) contiguous, costs a third of a comparison and an
        `any` per level across the network's node-major layout. A NaN pre-activation makes its
        unit's maximum NaN, so not alive on that chunk."""
        if len({p.shape[2] for p in pre}) == 1:  # a tree: one width, levels side by side
            flat = torch.cat([p.detach() for p in pre], dim=1).flatten(1)  # (B, sum N_l W_l)
        else:  # an mlp's layers
            flat = torch.cat([p.detach().flatten(1) for p in pre], dim=1)
        live = flat.amax(dim=0) > 0
        parts = live.split([p[0].numel() for p in pre])
        seen = [x.view(p.shape[1:]) for x, p in zip(parts, pre, strict=True)]  # (N_l, W_l)
        self.alive = seen if not self.alive else [a | s for a, s in zip(self.alive, seen, strict=True)]

    def result(self) -> Tensor:
        """(n,) float64: per node the fraction of its units never positive."""
        if not self.alive:
            return torch.full((0,), torch.nan, dtype=torch.float64)
        return torch.cat([1 - a.to(torch.float64).mean(dim=1) for a in self.alive])
