"""The shape of an HLTM tree as index tensors, so every level is processed in one batched op.

Latent nodes are numbered level by level (breadth first): level 0 is the root, level
`depth - 1` holds the parents of the observed leaves; leaves are level `depth`. The children
of a node are contiguous in the next level. A node's global id is `offsets[l] + i`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslspec.spec.fields import Tree


@dataclass(frozen=True)
class Layout:
    """Index tensors of one tree (all on the CPU; move with `.to(device)`)."""

    depth: int  # edges root -> leaf; latent levels are 0..depth-1
    states: int
    sizes: tuple[int, ...]  # latent nodes per level
    n_leaves: int
    parent: tuple[torch.Tensor, ...]  # parent[l]: (N_l,) index into level l-1; parent[0] = [-1]
    leaf_parent: torch.Tensor  # (n_leaves,) index into level depth-1
    children: tuple[torch.Tensor, ...]  # children[l]: (N_l, K_l) index into level l+1 (leaves for the last)
    child_mask: tuple[torch.Tensor, ...]  # (N_l, K_l) bool, False where padded
    uniform: bool  # every node of a level has the same number of children (no padding)

    @property
    def n_latent(self) -> int:
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Global id of the first node of each latent level."""
        out, acc = [], 0
        for n in self.sizes:
            out.append(acc)
            acc += n
        return tuple(out)

    def node_level(self) -> torch.Tensor:
        """(n_latent,) level of every latent node, by global id."""
        return torch.cat([torch.full((n,), lvl) for lvl, n in enumerate(self.sizes)])

    def node_parent(self) -> torch.Tensor:
        """(n_latent,) global id of every latent node's parent (-1 for the root)."""
        offs = self.offsets
        parts = [torch.tensor([-1])] + [self.parent[lvl] + offs[lvl - 1] for lvl in range(1, self.depth)]
        return torch.cat(parts)

    def to(self, device: torch.device | str) -> Layout:
        move = lambda ts: tuple(t.to(device) for t in ts)
        return Layout(
            self.depth,
            self.states,
            self.sizes,
            self.n_leaves,
            move(self.parent),
            self.leaf_parent.to(device),
            move(self.children),
            move(self.child_mask),
            self.uniform,
        )

    @classmethod
    def from_shape(cls, shape: Tree, states: int = 2) -> Layout:
        """Build from the nested shape of sslspec (a list = latent node; int k = k leaves)."""
        levels: list[list[Tree]] = [[shape]]
        while not isinstance(levels[-1][0], int):
            levels.append([c for node in levels[-1] for c in node])  # type: ignore[union-attr]
        depth = len(levels)
        sizes = tuple(len(lv) for lv in levels)
        parent = [torch.tensor([-1])]
        children, masks = [], []
        uniform = True
        for lvl, nodes in enumerate(levels):
            counts = [n if isinstance(n, int) else len(n) for n in nodes]
            uniform &= len(set(counts)) == 1
            k = max(counts)
            starts = torch.tensor([0, *counts[:-1]]).cumsum(0)
            idx = starts[:, None] + torch.arange(k)[None, :]
            mask = torch.arange(k)[None, :] < torch.tensor(counts)[:, None]
            children.append(torch.where(mask, idx, torch.zeros_like(idx)))
            masks.append(mask)
            owner = torch.repeat_interleave(torch.arange(len(nodes)), torch.tensor(counts))
            if lvl + 1 < depth:
                parent.append(owner)
            else:
                leaf_parent = owner
        return cls(
            depth,
            states,
            sizes,
            int(leaf_parent.numel()),
            tuple(parent),
            leaf_parent,
            tuple(children),
            tuple(masks),
            uniform,
        )
