"""A slow, obviously correct HLTM sampler for the tests: per sample, per node Python loops.

It follows /work/shared/reference/hltm-semantics.md and the uniform-usage rules documented in
runtime/sampler.py, and numbers the tree's nodes itself from the nested shape (breadth first),
independently of runtime.layout. Inputs are the same uniforms the fast sampler consumes.
"""

from __future__ import annotations

import torch

from runtime.sampler import Edges, Sample, Uniforms, ViewUniforms
from sslspec.spec import schema
from sslspec.spec.fields import Tree


def tree_parents(shape: Tree) -> tuple[list[list[int]], list[int]]:
    """Parent index of every node of each latent level (root: -1), and of every leaf."""
    parents: list[list[int]] = [[-1]]
    nodes: list[Tree] = [shape]
    while True:
        next_nodes: list[Tree] = []
        next_parents: list[int] = []
        leaf_parents: list[int] = []
        for i, node in enumerate(nodes):
            if isinstance(node, int):
                leaf_parents += [i] * node  # a latent node with `node` observed leaves
            else:
                for child in node:
                    next_nodes.append(child)
                    next_parents.append(i)
        if not next_nodes:
            return parents, leaf_parents
        parents.append(next_parents)
        nodes = next_nodes


def pick(u: float, n: int) -> int:
    """floor(u * n), at most n - 1."""
    return min(int(u * n), n - 1)


def child_state(parent: int, delta: float, u: float, S: int) -> int:
    """One draw of a child given its parent's state, from one uniform."""
    if S == 2:
        # P(child = parent) = (1 + delta) / 2
        return parent if u < (1 + delta) / 2 else 1 - parent
    # P(child = j | parent) = delta [j == parent] + (1 - delta) / S; walk the cumulative sum.
    for j in range(S):
        cumulative = (j + 1) * (1 - delta) / S + (delta if j >= parent else 0.0)
        if u < cumulative:
            return j
    return S - 1


def noisy_leaf(value: int, u: float, p: float, S: int) -> int:
    """With probability p the leaf is replaced by a uniformly random state."""
    return pick(u / p, S) if p > 0 and u < p else value


def flipped_leaf(value: int, u: float, p: float, S: int) -> int:
    """With probability p the leaf moves to another state, uniformly among the S - 1 others."""
    if not u < p:
        return value
    if S == 2:
        return 1 - value
    return (value + 1 + pick(u / p, S - 1)) % S


def ref_sample(
    shape: Tree,
    S: int,
    edges: Edges,
    u: Uniforms,
    leaf_noise: float,
    given: Sample | None = None,
    share: int = -1,
) -> Sample:
    """Draws of the tree, one sample and one node at a time."""
    parents, leaf_parents = tree_parents(shape)
    deltas = [t.tolist() for t in edges.latent]
    leaf_deltas = edges.leaves.tolist()
    u_lat = [t.tolist() for t in u.latent]
    u_leaf = u.leaves.tolist()
    u_noise = u.noise.tolist() if u.noise is not None else None
    kept = [t.tolist() for t in given.latents] if given is not None else []
    all_latents, all_leaves = [], []
    for b in range(len(u_leaf)):
        latents: list[list[int]] = []
        for lvl, level_parents in enumerate(parents):
            row = []
            for i, par in enumerate(level_parents):
                if lvl <= share:
                    row.append(kept[lvl][b][i])
                elif lvl == 0:
                    row.append(pick(u_lat[0][b][i], S))  # the root is uniform
                else:
                    row.append(child_state(latents[lvl - 1][par], deltas[lvl][i], u_lat[lvl][b][i], S))
            latents.append(row)
        leaves = []
        for i, par in enumerate(leaf_parents):
            value = child_state(latents[-1][par], leaf_deltas[i], u_leaf[b][i], S)
            leaves.append(noisy_leaf(value, u_noise[b][i], leaf_noise, S) if leaf_noise > 0 else value)
        all_latents.append(latents)
        all_leaves.append(leaves)
    return Sample(
        tuple(torch.tensor([lat[lvl] for lat in all_latents]) for lvl in range(len(parents))),
        torch.tensor(all_leaves),
    )


def ref_flip(sample: Sample, u: torch.Tensor, p: float, S: int) -> Sample:
    """The sample with each leaf flipped from its own uniform."""
    uu, vv = u.tolist(), sample.leaves.tolist()
    leaves = [
        [flipped_leaf(v, w, p, S) for v, w in zip(vr, ur, strict=True)] for vr, ur in zip(vv, uu, strict=True)
    ]
    return Sample(sample.latents, torch.tensor(leaves))


def ref_views(
    shape: Tree, S: int, edges: Edges, data: schema.HLTM, augment: schema.Augment, vu: ViewUniforms
) -> tuple[Sample, Sample, list[Sample]]:
    """x, pos and the negatives, one view at a time; rows of `vu` in view order x, neg.., pos."""
    B, H = vu.B, vu.H
    independent = augment.negative == "independent"
    n_views = H + 2 if independent else 2
    x = ref_sample(shape, S, edges, vu.tree.rows(0, B), data.leaf_noise)
    pos_rows = (n_views - 1) * B
    pos = ref_sample(
        shape, S, edges, vu.tree.rows(pos_rows, pos_rows + B), data.leaf_noise, given=x, share=augment.share
    )
    negs = [
        ref_sample(shape, S, edges, vu.tree.rows(B * k, B * (k + 1)), data.leaf_noise)
        for k in range(1, n_views - 1)
    ]
    if vu.flip is not None:
        x = ref_flip(x, vu.flip[:B], augment.flip, S)
        pos = ref_flip(pos, vu.flip[pos_rows:], augment.flip, S)
        negs = [ref_flip(s, vu.flip[B * (k + 1) : B * (k + 2)], augment.flip, S) for k, s in enumerate(negs)]
    if not independent:
        # negative k of example b is the (augmented) positive view of example (b + k) mod B
        negs = []
        for k in range(1, H + 1):
            order = [(b + k) % B for b in range(B)]
            negs.append(Sample(tuple(t[order] for t in pos.latents), pos.leaves[order]))
    return x, pos, negs
