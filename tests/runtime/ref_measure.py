"""Slow, obviously-correct references for runtime.measure: loops per sample and per node, float64.

Also a tiny per-node bias-free ReLU tree network (autograd Jacobians) and an HLTM sampler, so the
measurement tests do not depend on the other runtime modules.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two 1-D samples; 0 when either is constant."""
    a, b = a.to(F64) - a.to(F64).mean(), b.to(F64) - b.to(F64).mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def correlation(z: Tensor, h: Tensor, states: int) -> Tensor:
    """z (n, n_latent) long, h (n, n_latent, W) -> (n_latent, S, W), one Pearson call per entry."""
    out = torch.zeros(z.shape[1], states, h.shape[2], dtype=F64)
    for node in range(z.shape[1]):
        for s in range(states):
            for w in range(h.shape[2]):
                out[node, s, w] = pearson((z[:, node] == s).to(F64), h[:, node, w])
    return out


def connection(f: Tensor, jac: Tensor) -> Tensor:
    """One sample's K: f (F,), jac (D, W) -> (F * W, D) with K[i * W + o, d] = f[i] jac[d, o]."""
    nf, (nd, nw) = f.shape[0], jac.shape
    k = torch.zeros(nf * nw, nd, dtype=F64)
    for i in range(nf):
        for o in range(nw):
            k[i * nw + o] = f[i].to(F64) * jac[:, o].to(F64)
    return k


def class_covariances(cls: Tensor, ks: list[Tensor], n_cls: int) -> tuple[Tensor, Tensor]:
    """Per-sample matrices ks[b] (R, D) -> (between-class sum_j p_j (M_j - M)(M_j - M)^T,
    within-class (1/n) sum_b (K_b - M_c(b))(K_b - M_c(b))^T), both (R, R), by explicit loops."""
    ks = [k.detach() for k in ks]
    mean = sum(ks) / len(ks)
    between, within = (
        torch.zeros(mean.shape[0], mean.shape[0], dtype=F64),
        torch.zeros(mean.shape[0], mean.shape[0], dtype=F64),
    )
    for c in range(n_cls):
        members = [b for b in range(len(cls)) if int(cls[b]) == c]
        if not members:
            continue
        mc = sum(ks[b] for b in members) / len(members)
        between += len(members) / len(cls) * (mc - mean) @ (mc - mean).T
        within += sum((ks[b] - mc) @ (ks[b] - mc).T for b in members) / len(cls)
    return between, within


def level_operators(cls: Tensor, f: Tensor, jac: Tensor, n_cls: int) -> tuple[Tensor, Tensor, list[Tensor]]:
    """One level over n samples: cls (n,), f (n, N, F), jac (n, N, D, W) ->
    (paper operator of the stacked K of all N nodes (N P, N P), its within-class term (N P, N P),
    per node the official matrix (F D, F D)); node m's block is rows/cols m P .. (m + 1) P."""
    n, nodes, nf = f.shape
    nd, nw = jac.shape[2:]
    stacked = [torch.cat([connection(f[b, m], jac[b, m]) for m in range(nodes)]) for b in range(n)]
    paper, within = class_covariances(cls, stacked, n_cls)
    official = []
    for m in range(nodes):  # official order: rows (i, d), columns o
        ko = [
            connection(f[b, m], jac[b, m]).reshape(nf, nw, nd).transpose(1, 2).reshape(nf * nd, nw)
            for b in range(n)
        ]
        official.append(class_covariances(cls, ko, n_cls)[0])
    return paper, within, official


class RefTree:
    """A bias-free ReLU tree network on a Layout, one weight matrix per node, per-node loops."""

    def __init__(self, layout, width: int, gen: torch.Generator) -> None:
        self.layout, self.width = layout, width
        last = layout.depth - 1
        self.weights = []  # per level (N_l, W, F_l), zero columns for padded inputs
        for lvl, n in enumerate(layout.sizes):
            per_child = 1 if lvl == last else width
            fan = layout.children[lvl].shape[1] * per_child
            w = (torch.rand(n, width, fan, generator=gen, dtype=F64) * 2 - 1) / math.sqrt(fan)
            real = torch.repeat_interleave(layout.child_mask[lvl], per_child, dim=1)  # (N, F)
            self.weights.append(w * real[:, None, :])

    def forward(self, x: Tensor, at: tuple[int, int] = (-1, -1), delta: Tensor | None = None):
        """x (B, n_leaves) -> (inputs per level (B, N_l, F_l), pre per level (B, N_l, W)), node by node.

        `delta` (W,) is added to the pre-activation of node `at` = (level, index), for Jacobians.
        """
        lay, depth = self.layout, self.layout.depth
        inputs, pre = [None] * depth, [None] * depth
        below = x.to(F64)[:, :, None]  # (B, n_below, 1 or W): what the level below feeds upward
        for lvl in range(depth - 1, -1, -1):
            ins, outs = [], []
            for node in range(lay.sizes[lvl]):
                kids = zip(lay.children[lvl][node], lay.child_mask[lvl][node], strict=True)
                f = torch.cat([below[:, int(c)] if m else torch.zeros_like(below[:, 0]) for c, m in kids], 1)
                g = f @ self.weights[lvl][node].T  # (B, W)
                ins.append(f)
                outs.append(g + delta if (lvl, node) == at else g)
            inputs[lvl], pre[lvl] = torch.stack(ins, 1), torch.stack(outs, 1)
            below = torch.relu(pre[lvl])
        return inputs, pre

    def jacobians(self, x: Tensor) -> list[Tensor]:
        """Per level (B, N_l, D, W): d root pre / d node pre, by autograd per sample and node."""
        out = []
        for lvl, n in enumerate(self.layout.sizes):
            jl = torch.zeros(x.shape[0], n, self.width, self.width, dtype=F64)
            for b in range(x.shape[0]):
                for node in range(n):
                    root = lambda d, b=b, lvl=lvl, node=node: self.forward(x[b : b + 1], (lvl, node), d)[1][
                        0
                    ][0, 0]
                    jl[b, node] = torch.autograd.functional.jacobian(root, torch.zeros(self.width, dtype=F64))
            out.append(jl)
        return out


def sample_hltm(layout, delta: list[Tensor], n: int, gen: torch.Generator, root: Tensor | None = None):
    """Binary/m-state HLTM draws: delta per level >= 1 (N_l,) and for leaves (n_leaves,), loops per level.

    Returns (latents per level (n, N_l) long, leaves (n, n_leaves) long); `root` fixes the root values.
    """
    s = layout.states
    z0 = torch.randint(0, s, (n, 1), generator=gen) if root is None else root.reshape(n, 1)
    latents = [z0]
    parents = [*layout.parent[1:], layout.leaf_parent]
    for lvl, par in enumerate(parents, start=1):
        up = latents[-1][:, par]  # (n, N)
        d = delta[lvl - 1]
        keep = torch.rand(up.shape, generator=gen, dtype=F64) < d.abs()
        other = torch.randint(0, s, up.shape, generator=gen)
        z = torch.where(keep, up, other)
        if s == 2:  # negative polarity flips the kept value
            z = torch.where(keep & (d < 0), 1 - up, z)
        latents.append(z)
    return latents[:-1], latents[-1]
