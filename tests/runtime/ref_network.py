"""Slow, obviously-correct references for runtime.network and runtime.losses.

One torch.nn.Linear per latent node (per layer for the MLP), evaluated one example at a time by
recursion over the tree, and losses written out example by example. Built independently of
runtime.layout: nodes are numbered breadth first here by a plain queue.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

import torch
from torch import nn

from sslspec.spec.fields import Tree


def bfs(shape: Tree) -> tuple[list[int], list[list[int]], list[bool]]:
    """Per latent node in breadth-first order: its level, its children (node ids, or leaf ids
    for a parent of leaves) and whether those children are leaves."""
    levels: list[int] = []
    kids: list[list[int]] = []
    leafy: list[bool] = []
    queue: deque[tuple[Tree, int]] = deque([(shape, 0)])
    enqueued, n_leaves = 1, 0
    while queue:
        node, lvl = queue.popleft()
        levels.append(lvl)
        if isinstance(node, int):
            kids.append(list(range(n_leaves, n_leaves + node)))
            n_leaves += node
            leafy.append(True)
        else:
            kids.append(list(range(enqueued, enqueued + len(node))))
            enqueued += len(node)
            queue.extend((child, lvl + 1) for child in node)
            leafy.append(False)
    return levels, kids, leafy


def act(g: torch.Tensor, slope: float) -> torch.Tensor:
    """relu (slope 0) or leaky_relu, written out."""
    return torch.where(g > 0, g, slope * g)


def l2(raw: torch.Tensor, normalize: str) -> torch.Tensor:
    """The official output normalization raw / (||raw|| + 1e-4), or the identity."""
    return raw / (torch.sqrt((raw * raw).sum()) + 1e-4) if normalize == "l2" else raw


class RefTree(nn.Module):
    """The tree network as the official code builds it: a dict of per-node nn.Linear modules."""

    def __init__(
        self,
        shape: Tree,
        width: int,
        bias: bool = True,
        slope: float = 0.0,
        normalize: str = "l2",
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.levels, self.kids, self.leafy = bfs(shape)
        self.slope, self.normalize, self.bn = slope, normalize, None
        order = sorted(range(len(self.levels)), key=lambda i: (-self.levels[i], i))  # bottom up
        linears: dict[int, nn.Linear] = {}
        with torch.random.fork_rng(devices=[]):  # nn.Linear draws from the global generator
            torch.manual_seed(seed)
            for i in order:
                fan_in = len(self.kids[i]) * (1 if self.leafy[i] else width)
                linears[i] = nn.Linear(fan_in, width, bias=bias, dtype=dtype)
        self.nodes = nn.ModuleList([linears[i] for i in range(len(self.levels))])

    @torch.no_grad()
    def load_from(self, net: nn.Module) -> RefTree:
        """Copy every node's weights (and eval-mode batch-norm constants) out of a LevelNet."""
        weights, biases = net.level_weights(), net.level_biases()
        index = [self.levels[:i].count(self.levels[i]) for i in range(len(self.levels))]
        for i, lin in enumerate(self.nodes):
            lvl, n = self.levels[i], index[i]
            lin.weight.copy_(weights[lvl][n, :, : lin.in_features])
            if lin.bias is not None:
                lin.bias.copy_(biases[lvl][n])
        if net.norms:
            self.bn = {}
            for i in range(len(self.nodes)):
                lvl, n = self.levels[i], index[i]
                if lvl > 0:
                    bn, w = net.norms[lvl], net.widths[lvl]
                    rows = slice(n * w, (n + 1) * w)
                    self.bn[i] = (
                        bn.running_mean[rows],
                        bn.running_var[rows],
                        bn.weight[rows],
                        bn.bias[rows],
                        bn.eps,
                    )
        return self

    def node_pre(
        self, i: int, x: torch.Tensor, pre: dict[int, torch.Tensor], f_in: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        """Node i's (W,) pre-activation on one example x (n_leaves,), filling pre and f_in."""
        if self.leafy[i]:
            f = torch.stack([x[j] for j in self.kids[i]])
        else:
            f = torch.cat([act(self.node_pre(c, x, pre, f_in), self.slope) for c in self.kids[i]])
        g = self.nodes[i](f)
        if self.bn is not None and i in self.bn:
            mean, var, gamma, beta, eps = self.bn[i]
            g = (g - mean) / torch.sqrt(var + eps) * gamma + beta
        pre[i], f_in[i] = g, f
        return g

    def forward(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[dict], list[dict]]:
        """xs (B, n_leaves) -> raw (B, D), out (B, D), per example {node: pre} and {node: f_in}."""
        raws, outs, pres, f_ins = [], [], [], []
        for x in xs:
            pre: dict[int, torch.Tensor] = {}
            f_in: dict[int, torch.Tensor] = {}
            raw = self.node_pre(0, x.to(self.nodes[0].weight.dtype), pre, f_in)
            raws.append(raw)
            outs.append(l2(raw, self.normalize))
            pres.append(pre)
            f_ins.append(f_in)
        return torch.stack(raws), torch.stack(outs), pres, f_ins


class RefMLP(nn.Module):
    """An MLP as a list of nn.Linear layers in input-to-output order."""

    def __init__(
        self,
        n_in: int,
        widths: tuple[int, ...],
        bias: bool = True,
        slope: float = 0.0,
        normalize: str = "l2",
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.slope, self.normalize = slope, normalize
        dims = [n_in, *widths]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layers = nn.ModuleList(
                [nn.Linear(a, b, bias=bias, dtype=dtype) for a, b in itertools.pairwise(dims)]
            )

    @torch.no_grad()
    def load_from(self, net: nn.Module) -> RefMLP:
        """Copy the layers out of an MLP LevelNet (its level 0 is our last layer)."""
        weights, biases = net.level_weights(), net.level_biases()
        for k, lin in enumerate(reversed(self.layers)):
            lin.weight.copy_(weights[k][0])
            if lin.bias is not None:
                lin.bias.copy_(biases[k][0])
        return self

    def forward(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
        """xs (B, n_in) -> raw (B, D), out (B, D), per example the pre-activations input layer first."""
        raws, outs, pres = [], [], []
        for x in xs:
            h, pre = x.to(self.layers[0].weight.dtype), []
            for k, lin in enumerate(self.layers):
                g = lin(h)
                pre.append(g)
                h = act(g, self.slope) if k + 1 < len(self.layers) else g
            raws.append(h)
            outs.append(l2(h, self.normalize))
            pres.append(pre)
        return torch.stack(raws), torch.stack(outs), pres


def ref_loss(
    kind: str,
    reduction: str,
    z: torch.Tensor,
    zp: torch.Tensor,
    zn: torch.Tensor,
    tau: float = 1.0,
    beta: float = 0.0,
    margin: float = 0.0,
) -> torch.Tensor:
    """The loss of z, zp (B, D) and zn (H, B, D), example by example, as the formulas read."""
    n_b, n_h = z.shape[0], zn.shape[0]
    if reduction == "batch":
        pos = sum(((z[b] - zp[b]) ** 2).sum() for b in range(n_b)) / z.numel()
        neg = [sum(((z[b] - zn[k, b]) ** 2).sum() for b in range(n_b)) / z.numel() for k in range(n_h)]
        return _one(kind, pos, neg, tau, beta, margin, negative_probability=True)
    losses = []
    for b in range(n_b):
        pos = 0.5 * ((z[b] - zp[b]) ** 2).sum()
        neg = [0.5 * ((z[b] - zn[k, b]) ** 2).sum() for k in range(n_h)]
        losses.append(_one(kind, pos, neg, tau, beta, margin, negative_probability=False))
    return sum(losses) / n_b


def _one(
    kind: str,
    pos: torch.Tensor,
    neg: list[torch.Tensor],
    tau: float,
    beta: float,
    margin: float,
    negative_probability: bool,
) -> torch.Tensor:
    if kind == "simple":
        return (1 + beta) * pos - sum(neg) / len(neg)
    if kind == "triplet":
        return sum(tau * torch.log(1 + torch.exp((pos - n + margin) / tau)) for n in neg) / len(neg)
    p = torch.exp(-pos / tau) / (torch.exp(-pos / tau) + sum(torch.exp(-n / tau) for n in neg))
    return -p if negative_probability else -tau * torch.log(p)


def official_nce(pos: float, neg: float, tau: float) -> float:
    """The official `nce` loss of two batch-reduced distances, literally."""
    return -math.exp(-pos / tau) / (math.exp(-pos / tau) + math.exp(-neg / tau))
