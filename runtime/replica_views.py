"""The training views of R replicas drawn as one batch of rows, each replica from its own generator.

Each replica draws its batch's uniforms exactly as alone (what runtime.sampler.draw_view_uniforms
draws in one rand call, from its own data generator, written in place into its rows); the map
from uniforms to views, which is elementwise per row given each edge's threshold, then runs once
over the R replicas' rows stacked, with every row compared against its own replica's thresholds.
The views are therefore the unbatched ones bit for bit. This covers the binary HLTM with
independent negatives (the paper's setting), where a replica's edges enter only through those
thresholds; other settings draw replica by replica. On the CPU it saves little (the draw is
bound by its data, not by op launches); on a GPU it is ~20 launches per step instead of ~20 R.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from runtime.sampler import Edges, _draw, _split_uniforms, _tree_columns, flip_leaves
from runtime.source import HLTMSource


class RowEdges(Edges):
    """Edges whose thresholds are given per row: keep(dtype)[lvl] is (R rows, N_lvl), replica r's
    thresholds repeated over its rows, for the binary transitions of runtime.sampler._children."""

    def __init__(self, like: Edges, rows: tuple[Tensor, ...]) -> None:
        super().__init__(like.latent, like.leaves)
        object.__setattr__(self, "_rows", rows)

    def keep(self, dtype: torch.dtype) -> tuple[Tensor, ...]:
        rows: tuple[Tensor, ...] = self.__dict__["_rows"]
        assert all(t.dtype == dtype for t in rows), dtype
        return rows


@dataclass
class ReplicaViews:
    """Draws the (R, V B, n) network inputs of R HLTM replicas that share everything but their edges."""

    sources: list[HLTMSource]
    batch: int
    negatives: int
    thresholds: tuple[Tensor, ...]  # per level (R, N_l): each replica's keep thresholds, float32
    keep: tuple[Tensor, ...] = field(init=False)  # per level (R rows, N_l): the thresholds per row
    order: Tensor = field(init=False)  # the views in draw order -> x, pos, negatives

    def __post_init__(self) -> None:
        """What every draw reuses, made once (inside a CUDA graph capture, making `order` from a
        Python list would be a host-to-device copy, which cannot be captured)."""
        rows, h = self.batch * (self.negatives + 2), self.negatives
        self.keep = tuple(t.repeat_interleave(rows, dim=0) for t in self.thresholds)
        self.order = torch.tensor([0, h + 1, *range(1, h + 1)], device=self.thresholds[0].device)

    @classmethod
    def of(cls, ctxs: Sequence[Any], batch: int, negatives: int) -> ReplicaViews | None:
        """The batched draw for these replicas' sources, or None when they need one draw each."""
        sources = [c.source for c in ctxs]
        if not all(isinstance(s, HLTMSource) for s in sources):
            return None
        first = sources[0]
        same = all(
            (s.data.states, s.data.leaf_noise, s.augmentation)
            == (2, first.data.leaf_noise, first.augmentation)
            for s in sources
        )
        if not same or first.augmentation.negative != "independent":
            return None
        levels = zip(*(s._edges.keep(torch.float32) for s in sources), strict=True)
        return cls(sources, batch, negatives, tuple(torch.stack(t) for t in levels))

    def draw(self, gens: Sequence[torch.Generator]) -> Tensor:
        """(R, V B, n) the views x, pos, negatives of every replica, from its generator in `gens`."""
        first = self.sources[0]
        layout, data, augment = first._layout, first.data, first.augmentation
        B, H, R = self.batch, self.negatives, len(gens)
        rows = B * (H + 2)  # x, the H negatives, pos: each replica's rows in view order
        noise, flips = data.leaf_noise > 0, augment.flip > 0
        cols = sum(_tree_columns(layout, noise))
        u = torch.empty(R * rows, cols + flips * layout.n_leaves, device=first.device)
        for r, g in enumerate(gens):  # what draw_view_uniforms' one rand call draws, in place
            u[r * rows : (r + 1) * rows].uniform_(0, 1, generator=g)
        tree = _split_uniforms(layout, u[:, :cols], noise)
        s = _draw(
            layout, RowEdges(first._edges, self.keep), tree, data.leaf_noise, augment.share, _tie(R, rows, B)
        )
        leaves = flip_leaves(s.leaves, u[:, cols:], augment.flip, layout.states) if flips else s.leaves
        views = leaves.view(R, H + 2, B, -1)  # (R, V, B, n) in draw order: x, negatives, pos
        return views.index_select(1, self.order).reshape(R, -1, views.shape[-1]).to(torch.float32)


def _tie(R: int, rows: int, B: int) -> Any:
    """Within each replica's rows, make the last B (pos) copy the first B (x) at tied levels."""

    def tie(lvl: int, states: Tensor) -> Tensor:
        per = states.view(R, rows, -1)
        per[:, -B:] = per[:, :B]
        return states

    return tie
