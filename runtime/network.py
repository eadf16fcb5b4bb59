"""Networks: the tree-shaped ReLU network of the HLTM experiment and a plain MLP.

Both are one class, `LevelNet`, over a tree `Layout`: latent level l holds N_l nodes of W_l
units; a node's input is the concatenation, in child order, of act(children's pre-activations)
(K_l * W_{l+1} values), or the raw leaf values (K_l values) for parents of leaves. Each level is
one batched matmul (and one for its Jacobian); a Python loop runs over levels only. The MLP is
the chain tree: one node per level, one child per internal node, and all `n_in` inputs as leaves
of the bottom node; its level 0 is the output layer, as the root is for a tree.

Non-uniform trees are zero-padded to the level's largest fan-in; the padded inputs are zero and
the padded weights are multiplied by a 0/1 mask in forward, so they start at zero and get a zero
gradient (they stay zero under SGD and Adam, with or without weight decay).

Initialization is PyTorch's default for nn.Linear on each node's true fan-in F: weights by
`kaiming_uniform_(a=sqrt(5))` (uniform in +-1/sqrt(F)), then the bias uniform in +-1/sqrt(F).
Draw order: levels bottom up (depth-1 first, the root / output layer last), nodes in order within
a level, per node the (W, F) weight row-major and then its (W,) bias (none when bias is off).
That is the order the official code constructs its nn.Linear modules in. Values are drawn in
float32 on the generator's device and then cast and moved, so float32 and float64 networks built
from the same seed hold the same numbers.

Batch norm (`batch_norm = true`): an affine BatchNorm1d (PyTorch defaults: eps 1e-5, momentum
0.1, gamma 1, beta 0) over each (node, unit) of every level but level 0, applied to W f_in + b;
`pre` is its output. Training mode uses the batch statistics, eval mode the running ones.
Because of it, with batch norm in training mode an example's output depends on its batch.
`jacobians` needs eval mode when batch norm is on (a per-example Jacobian exists only there).
`bn_affine = false` drops gamma and beta; `bn_mean` and `bn_std` put each batch statistic in the
gradient normally, detached, or not at all (runtime.batchnorm; the BYOL ablation), in training and,
with the running statistics, in eval mode.

Views and batch norm (BN_VIEWS): a training forward of V views stacked view-major, (V B, n) with
`views = V`, normalizes each view's B samples with that view's own statistics, as V separate
forwards would (SimCLR and BYOL implementations forward each view on its own; the BYOL argument
about the batch mean is about one view's batch), in one batched call with a view dimension. The
running statistics are updated as V sequential forwards in view order would: per view v,
r <- (1 - momentum) r + momentum s_v (the unbiased variance for the running variance), and the
batch counter grows by V. There is no joint (concatenated-batch) mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runtime import batchnorm
from runtime.layout import Layout
from sslspec.spec import schema
from sslspec.spec.schema import Config

EPS_NORM = 1e-4  # official: out = raw / (||raw|| + 1e-4)
BN_VIEWS = "separate"  # batch-norm statistics per view (recorded in the store's attributes)


@dataclass(frozen=True)
class Forward:
    """Everything a forward pass exposes, per latent level l (0 = root / output layer)."""

    inputs: list[torch.Tensor]  # per level (B, N_l, F_l): each node's input vector, zero-padded
    pre: list[torch.Tensor]  # per level (B, N_l, W_l): W f_in + b (after batch norm when on)
    raw: torch.Tensor  # (B, D) root pre-activation, before output normalization
    out: torch.Tensor  # (B, D) network output after normalization


class LevelNet(nn.Module):
    """A network with one block of W_l units per latent node of `layout`, level by level."""

    def __init__(
        self,
        layout: Layout,
        widths: tuple[int, ...],
        cfg: schema.TreeReLU | schema.MLP,
        gen: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        assert len(widths) == layout.depth, (widths, layout.depth)
        self.sizes, self.widths, self.uniform = layout.sizes, widths, layout.uniform
        self.kids = tuple(int(c.shape[1]) for c in layout.children)  # K_l, padded
        self.slope = cfg.activation.slope if cfg.activation.name == "leaky_relu" else 0.0
        self.normalize = cfg.normalize
        self.has_bias = cfg.bias
        self.bn_parts = (cfg.bn_mean, cfg.bn_std)  # runtime.batchnorm: normal, detach or omit
        below = [*widths[1:], 1]  # units each child contributes: W_{l+1}, or 1 leaf value
        self.fan_in = tuple(k * b for k, b in zip(self.kids, below, strict=True))  # F_l
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.zeros(n, w, f, dtype=dtype, device=device))
                for n, w, f in zip(self.sizes, widths, self.fan_in, strict=True)
            ]
        )
        self.biases = nn.ParameterList(
            [
                nn.Parameter(torch.zeros(n, w, dtype=dtype, device=device))
                for n, w in zip(self.sizes, widths, strict=True)
            ]
            if cfg.bias
            else []
        )
        self.norms = nn.ModuleList(
            [nn.Identity()]
            + [
                nn.BatchNorm1d(n * w, affine=cfg.bn_affine, dtype=dtype, device=device)
                for n, w in zip(self.sizes[1:], widths[1:], strict=True)
            ]
            if cfg.batch_norm
            else []
        )
        self._register_indices(layout, below, dtype)
        self.to(device)
        counts = [m.sum(1) for m in layout.child_mask]  # true children per node
        self._init(gen, [c * b for c, b in zip(counts, below, strict=True)])

    def _register_indices(self, layout: Layout, below: list[int], dtype: torch.dtype) -> None:
        """Buffers per level: weight padding mask, children and their mask, parent and slot."""
        for lvl in range(layout.depth):
            mask = layout.child_mask[lvl].repeat_interleave(below[lvl], dim=1)  # (N, F)
            self.register_buffer(f"wmask{lvl}", mask[:, None, :].to(dtype), persistent=False)
            self.register_buffer(f"children{lvl}", layout.children[lvl], persistent=False)
            self.register_buffer(f"cmask{lvl}", layout.child_mask[lvl], persistent=False)
            if lvl + 1 < layout.depth:  # each node of level l+1: its parent and its place among siblings
                kids, keep = layout.children[lvl], layout.child_mask[lvl]  # (N, K)
                slot = torch.zeros(layout.sizes[lvl + 1], dtype=torch.long)
                slot[kids[keep]] = torch.nonzero(keep)[:, 1]
                self.register_buffer(f"parent{lvl + 1}", layout.parent[lvl + 1], persistent=False)
                self.register_buffer(f"slot{lvl + 1}", slot, persistent=False)

    # ---- parameters ------------------------------------------------------------------------

    @torch.no_grad()
    def _init(self, gen: torch.Generator, fan_in: list[torch.Tensor]) -> None:
        """nn.Linear's default init per node, in the documented order (bottom up)."""
        for lvl in reversed(range(len(self.sizes))):
            for node in range(self.sizes[lvl]):
                f = int(fan_in[lvl][node])
                w = torch.empty(self.widths[lvl], f, device=gen.device)
                nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
                self.weights[lvl][node, :, :f] = w.to(self.weights[lvl])
                if self.has_bias:
                    bound = 1 / math.sqrt(f)
                    b = torch.empty(self.widths[lvl], device=gen.device).uniform_(
                        -bound, bound, generator=gen
                    )
                    self.biases[lvl][node] = b.to(self.biases[lvl])

    features_doc = "the input of the network's output layer (the encoder), not the output (the head)"

    @property
    def out_dim(self) -> int:
        return self.widths[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n) -> (B, F_0) the output layer's input, what a linear probe reads (runtime.networks)."""
        return self.forward(x).inputs[0][:, 0]

    def level_weights(self) -> list[torch.Tensor]:
        """Per level the (N_l, W_l, F_l) weights, padding columns zero."""
        return [w if self.uniform else w * self._buf("wmask", lvl) for lvl, w in enumerate(self.weights)]

    def level_biases(self) -> list[torch.Tensor | None]:
        """Per level the (N_l, W_l) biases, or None when bias is off."""
        return list(self.biases) if self.has_bias else [None] * len(self.sizes)

    @torch.no_grad()
    def node_weights(self) -> torch.Tensor:
        """(n_nodes, W_max, F_max) every node's weights in global node order, NaN where padded."""
        w_max, f_max = max(self.widths), max(self.fan_in)
        parts = []
        for lvl, w in enumerate(self.weights):
            full = torch.full((w.shape[0], w_max, f_max), math.nan, dtype=w.dtype, device=w.device)
            keep = self._buf("wmask", lvl).expand(w.shape).bool()  # (N, W, F)
            full[:, : w.shape[1], : w.shape[2]] = torch.where(keep, w, math.nan)
            parts.append(full)
        return torch.cat(parts)

    def _buf(self, name: str, lvl: int) -> torch.Tensor:
        return self.get_buffer(f"{name}{lvl}")

    # ---- forward ---------------------------------------------------------------------------

    def act(self, g: torch.Tensor) -> torch.Tensor:
        """The hidden activation: relu, or leaky_relu(slope)."""
        return torch.relu(g) if self.slope == 0.0 else nn.functional.leaky_relu(g, self.slope)

    def gate(self, g: torch.Tensor) -> torch.Tensor:
        """act'(g) as autograd takes it: 1 where g > 0, else the slope."""
        return torch.where(g > 0, g.new_ones(()), g.new_tensor(self.slope))

    def _gather(self, lvl: int, below: torch.Tensor) -> torch.Tensor:
        """(N_l, B, F_l) inputs of level l from `below`: (n_leaves, B) or (N_{l+1}, B, W_{l+1})."""
        n, k, b = self.sizes[lvl], self.kids[lvl], below.shape[1]
        if self.uniform:  # children are contiguous: a view
            picked = below.reshape(n, k, *below.shape[1:])  # (N, K, B) or (N, K, B, W)
        else:
            mask = self._buf("cmask", lvl).view(n, k, *[1] * (below.dim() - 1))
            picked = below[self._buf("children", lvl)] * mask  # (N, K, B) or (N, K, B, W)
        return picked.transpose(1, 2).reshape(n, b, self.fan_in[lvl])

    def _batch_norm(self, lvl: int, g: torch.Tensor, views: int) -> torch.Tensor:
        """(N, V B, W) -> (N, V B, W), each (node, unit) normalized over each view's B samples
        (training) or with the running statistics (eval); see the module docstring. One view,
        or eval mode, is BatchNorm1d itself; several views are its per-view equivalent."""
        bn = self.norms[lvl]
        assert isinstance(bn, nn.BatchNorm1d)
        n, vb, w = g.shape
        plain = batchnorm.is_plain(*self.bn_parts)
        if plain and (not self.training or views == 1):
            flat: torch.Tensor = bn(g.transpose(0, 1).reshape(vb, n * w))  # (V B, N * W)
            return flat.view(vb, n, w).transpose(0, 1)
        if vb % views:
            raise ValueError(f"a batch of {vb} rows does not split into {views} views")
        per_view = g.reshape(n, views, vb // views, w)  # (N, V, B, W)
        if self.training:
            var, mean = torch.var_mean(per_view, dim=2, keepdim=True, correction=0)  # (N, V, 1, W)
            self._track(bn, mean, var, vb // views)
        else:  # eval mode with a statistic detached or omitted: the running statistics
            assert bn.running_mean is not None and bn.running_var is not None
            mean, var = bn.running_mean.view(n, 1, 1, w), bn.running_var.view(n, 1, 1, w)
        out = batchnorm.normalized(per_view, mean, var, bn.eps, *self.bn_parts)
        if bn.weight is not None and bn.bias is not None:  # affine
            out = out * bn.weight.view(n, 1, 1, w) + bn.bias.view(n, 1, 1, w)
        return out.reshape(n, vb, w)

    @torch.no_grad()
    def _track(self, bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, b: int) -> None:
        """Update the running statistics with each view's (N, V, 1, W) batch mean and biased
        variance over b samples, one view after the other (as sequential forwards would)."""
        rm, rv, count = bn.running_mean, bn.running_var, bn.num_batches_tracked
        assert rm is not None and rv is not None and count is not None and bn.momentum is not None
        m = bn.momentum
        unbiased = var * (b / max(b - 1, 1))
        for v in range(mean.shape[1]):
            rm.mul_(1 - m).add_(mean[:, v].reshape(-1), alpha=m)  # channel = node * W + unit
            rv.mul_(1 - m).add_(unbiased[:, v].reshape(-1), alpha=m)
        count.add_(mean.shape[1])

    def forward(self, x: torch.Tensor, views: int = 1) -> Forward:
        """x: (B, n_leaves) leaf values -> Forward (one batched matmul per level, bottom up).

        views: x holds that many views stacked view-major, (V B, n), which batch norm in training
        mode normalizes one view at a time (no effect without batch norm or in eval mode).

        Levels are computed node-major, (N, B, .), which is what bmm wants; `inputs` and `pre`
        are (B, N, .) transposed views of those, so use reshape, not view, on them."""
        depth = len(self.sizes)
        inputs: list[torch.Tensor] = [x] * depth
        pre: list[torch.Tensor] = [x] * depth
        below = x.to(self.weights[0].dtype).t()  # (n_leaves, B)
        weights = self.level_weights()
        for lvl in reversed(range(depth)):
            f_in = self._gather(lvl, below)  # (N, B, F)
            w = weights[lvl].transpose(1, 2)  # (N, F, W)
            g = torch.baddbmm(self.biases[lvl][:, None, :], f_in, w) if self.has_bias else torch.bmm(f_in, w)
            if self.norms and lvl > 0:
                g = self._batch_norm(lvl, g, views)  # (N, B, W)
            inputs[lvl], pre[lvl] = f_in.transpose(0, 1), g.transpose(0, 1)
            below = self.act(pre[lvl].transpose(0, 1))  # through pre[lvl], so autograd can reach it
        raw = pre[0][:, 0]  # (B, D)
        out = raw / (raw.norm(dim=1, keepdim=True) + EPS_NORM) if self.normalize == "l2" else raw
        return Forward(inputs, pre, raw, out)

    # ---- Jacobians ---------------------------------------------------------------------------

    def _bn_scale(self, lvl: int) -> torch.Tensor | None:
        """(N_l, W_l) the eval-mode batch-norm factor d pre / d (W f_in + b), or None."""
        if not self.norms or lvl == 0:
            return None
        bn = self.norms[lvl]
        assert isinstance(bn, nn.BatchNorm1d) and bn.running_var is not None
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        scale = gamma if self.bn_parts[1] == "omit" else gamma / torch.sqrt(bn.running_var + bn.eps)
        return scale.view(self.sizes[lvl], self.widths[lvl])

    def jacobians(self, fwd: Forward, depth: int | None = None) -> list[torch.Tensor]:
        """Per level (B, N_l, D, W_l): d raw / d pre_l, top down through the gates; only the top
        `depth` levels when given (the theorem check needs no level below its deepest node).

        Computed node-major, (N_l, B, D, W_l), one bmm per level; the results are (B, N_l, ...)
        transposed views of those, so use reshape, not view, on them."""
        if self.norms and self.training:
            raise ValueError("jacobians with batch_norm need eval mode (call net.eval() first)")
        b, d = fwd.raw.shape
        eye = torch.eye(d, dtype=fwd.raw.dtype, device=fwd.raw.device)
        up = eye.expand(1, b, d, d)  # (N_0, B, D, W_0)
        jac = [up.transpose(0, 1)]
        weights = self.level_weights()
        for lvl in range(1, len(self.sizes) if depth is None else depth):
            scale = self._bn_scale(lvl - 1)
            if scale is not None:
                up = up * scale[:, None, None, :]
            g = fwd.pre[lvl].transpose(0, 1)  # (N_l, B, W_l)
            gate = (g > 0) if self.slope == 0.0 else self.gate(g)
            up = self._child_jacobians(lvl, up, weights[lvl - 1], gate)  # (N_l, B, D, W_l)
            jac.append(up.transpose(0, 1))
        return jac

    def _child_jacobians(
        self, lvl: int, up: torch.Tensor, w_up: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        """up (N_{l-1}, B, D, W_{l-1}) d raw / d pre of level l-1, w_up its (N_{l-1}, W_{l-1}, F)
        weights, gate (N_l, B, W_l) act'(pre_l) -> (N_l, B, D, W_l) d raw / d pre_l, contiguous.
        A uniform tree's children are contiguous slots of their parent: their blocks of the
        parent's weights multiply it directly (one bmm over all parents per child slot)."""
        n_up, b, d, w_prev = up.shape
        k, w = self.kids[lvl - 1], self.widths[lvl]
        flat = up.reshape(n_up, b * d, w_prev)
        if not self.uniform:
            parent, slot = self._buf("parent", lvl), self._buf("slot", lvl)
            blocks = w_up.view(n_up, w_prev, k, w)[parent, :, slot, :]  # (N_l, W_{l-1}, W_l)
            return torch.bmm(flat[parent], blocks).view(-1, b, d, w) * gate[:, :, None, :]
        gate = gate.view(n_up, k, b, 1, w)
        if torch.is_grad_enabled() and (flat.requires_grad or w_up.requires_grad or gate.requires_grad):
            out = torch.bmm(flat, w_up).view(n_up, b, d, k, w).permute(0, 3, 1, 2, 4)  # (N_{l-1}, K, B, D, W)
            return (out * gate).reshape(n_up * k, b, d, w)
        # No autograd: a bmm per child slot writes child-major in place, then the gate; the same products
        # as one bmm and a gated copy out of its parent-major layout, which costs 3x more here.
        j = torch.empty(n_up, k, b, d, w, dtype=flat.dtype, device=flat.device)  # gate: bool or j's dtype
        for c in range(k):
            torch.bmm(flat, w_up[:, :, c * w : (c + 1) * w], out=j[:, c].view(n_up, b * d, w))
        return j.mul_(gate).view(n_up * k, b, d, w)


class TreeNet(LevelNet):
    """The HLTM tree network: `cfg.width` units per latent node of `layout`."""

    def __init__(
        self,
        layout: Layout,
        cfg: schema.TreeReLU,
        gen: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(layout, (cfg.width,) * layout.depth, cfg, gen, dtype, device)


def chain_shape(n_in: int, layers: int) -> int | tuple[Any, ...]:
    """The nested tree shape of an MLP: a chain of `layers` nodes over `n_in` leaves."""
    shape: int | tuple[Any, ...] = n_in
    for _ in range(layers - 1):
        shape = (shape,)
    return shape


class MLP(LevelNet):
    """A fully connected network on flat inputs (B, n_in); widths[-1] is the output dim D."""

    def __init__(
        self,
        n_in: int,
        cfg: schema.MLP,
        gen: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        layout = Layout.from_shape(chain_shape(n_in, len(cfg.widths)))
        super().__init__(layout, tuple(reversed(cfg.widths)), cfg, gen, dtype, device)


# (network cfg, the data's latent tree or None, input size, gen, dtype, device) -> network
Builder = Callable[
    [schema.Network, Layout | None, int, torch.Generator, torch.dtype, torch.device | str], LevelNet
]


def _tree(
    cfg: schema.Network,
    layout: Layout | None,
    n_in: int,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> LevelNet:
    assert isinstance(cfg, schema.TreeReLU) and layout is not None  # the checker asks for a tree
    return TreeNet(layout, cfg, gen, dtype, device)


def _mlp(
    cfg: schema.Network,
    layout: Layout | None,
    n_in: int,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> LevelNet:
    assert isinstance(cfg, schema.MLP)
    return MLP(n_in, cfg, gen, dtype, device)


NETWORKS: dict[str, Builder] = {"tree_relu": _tree, "mlp": _mlp}


def build_network(
    cfg: Config,
    layout: Layout | None,
    gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    n_in: int | None = None,
) -> LevelNet:
    """The network of `cfg.network` for inputs of size `n_in` (default: the leaves of `layout`,
    the data's latent tree, which a tree-shaped network mirrors), initialized from `gen`."""
    kind = schema.kind_of(cfg.network)
    assert kind is not None, cfg.network
    if n_in is None:
        assert layout is not None, "give n_in for data without a tree"
        n_in = layout.n_leaves
    return NETWORKS[kind](cfg.network, layout, n_in, gen, dtype, device)
