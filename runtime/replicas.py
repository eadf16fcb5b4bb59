"""Replica batching: R runs that share every shape train as one model with a leading replica dim.

Runs of a plan that differ only in scalars (seeds, polarities, learning rate and its schedule,
momentum, weight decay, temperature, beta, margin, the views' augmentation) build their contexts
exactly as alone (runtime.context: tree, initialization and generators from their own seeds);
`ReplicaTrainer` then stacks their networks' parameters, (N, W, F) -> (R, N, W, F), and takes one
SGD step of all of them at once: each replica draws its batch from its own data generator (so its
training samples are the unbatched run's), one forward pass of every replica and view (one batched matmul
per level over R N nodes), the R losses with per-replica temperature or beta, and one update with
per-replica lr, momentum and weight decay, at the value of each replica's own lr schedule for
the step (runtime.optim.LRSchedule, a Python float per span as alone). Replicas never mix:
the step minimizes the sum of the R losses, whose gradient with respect to replica r's
parameters is replica r's own gradient.

`sync()` writes the batched parameters and momentum buffers back into each replica's own network
and optimizer, in torch.optim.SGD's state format, so that a replica's measurements, checkpoint and
store are made by the unbatched code from its own context.

`group_key` is the one predicate of batchability: runs with equal keys may share a group; None
for a run that cannot be batched (image data, batch norm, Adam, an objective other than the
contrastive family), which then runs alone and unbatched.

Numerics: on the CPU a replica's arrays equal its unbatched run's bit for bit (tested over
every batched code path and every shipped spec's pins, tests/runtime/test_replicas.py). Every
batched op computes a replica's slice with the kernel, sizes and reduction order of the unbatched
op: the per-level bmm runs over R N matrices of the unbatched shapes, the loss reduces each
replica's (B, D) block as the unbatched loss reduces its tensor, and the update is torch's own
single-tensor SGD step, op for op, on each span of replicas sharing (lr, momentum, weight decay,
schedule) (a tensor lr, p - lr g, was one rounding off torch's fused p + (-lr) g, and training,
being chaotic, grew that to visible differences within a few hundred steps). For the same reason a
replica's arrays do not depend on which replicas share its group, so a batched execution is
bit-identical to itself on rerun, resume and regrouping. On CUDA the batched matmul may choose
other kernels over R N matrices than over N: equality there is expected to float32 rounding at
first, not bit for bit (untested: no GPU was available to this work). On CUDA without an lr
schedule the batched step is captured as one CUDA graph and replayed (runtime.graphs), as an
unbatched run's is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from runtime.context import RunContext
from runtime.graphs import SCHEDULED, StepGraph
from runtime.network import EPS_NORM, LevelNet
from runtime.networks import level_net
from runtime.objective import OBJECTIVES, Contrastive
from runtime.optim import lr_schedule
from runtime.replica_views import ReplicaViews
from sslspec.spec import schema
from sslspec.spec.plan import Run, canonical_json, config_to_data

# Config paths a replica may hold its own value of: they change only what is sampled or a scalar
# of the loss or the optimizer, never a tensor's shape or the code path.
PER_REPLICA: tuple[tuple[str, ...], ...] = (
    ("seed",),
    ("results",),
    ("device",),  # the job's resolved device is part of the key instead
    ("data", "polarity"),
    ("data", "sign"),
    ("data", "leaf_noise"),
    ("data", "states"),
    ("augment",),
    ("loss", "temperature"),
    ("loss", "beta"),
    ("loss", "margin"),
    ("optimizer", "lr"),
    ("optimizer", "momentum"),
    ("optimizer", "weight_decay"),
    ("optimizer", "schedule"),  # a scalar of each step: the lr it sets
)


def batchable(cfg: schema.Config) -> bool:
    """Whether a run of `cfg` can train as a replica: HLTM data, a tree_relu or mlp network
    without batch norm, a contrastive objective, SGD."""
    return not unbatchable(cfg)


def unbatchable(cfg: schema.Config) -> str:
    """Why a run of `cfg` never trains as a replica ('' when it can; stored with the run)."""
    net, kind = cfg.network, schema.kind_of(cfg.loss)
    if not isinstance(cfg.data, schema.HLTM):
        return f"data {schema.kind_of(cfg.data)}: replica batching covers HLTM runs only"
    if not isinstance(net, schema.TreeReLU | schema.MLP):
        return f"network {schema.kind_of(net)}: replica batching covers tree_relu and mlp only"
    if net.batch_norm:
        return "batch norm: replicas share no batch statistics"
    if kind is None or OBJECTIVES.get(kind) is not Contrastive:
        return f"loss {kind}: replica batching covers the contrastive family only"
    if not isinstance(cfg.optimizer, schema.SGD):
        return f"optimizer {schema.kind_of(cfg.optimizer)}: replica batching covers SGD only"
    return ""


def group_key(run: Run, device: str) -> str | None:
    """Runs with the same key on `device` can train as one batched group; None: never batched."""
    if not batchable(run.config):
        return None
    data = config_to_data(run.config)
    for path in PER_REPLICA:
        block = data
        for name in path[:-1]:
            block = block.get(name, {})
        block.pop(path[-1], None)
    return canonical_json({"device": device, "experiment": run.experiment, "config": data})


class ReplicaNet(nn.Module):
    """R LevelNets of one structure as one module: parameters (R, N_l, W_l, F_l) and (R, N_l, W_l),
    the padding masks and child indices shared (they are the structure's)."""

    def __init__(self, nets: Sequence[LevelNet]) -> None:
        super().__init__()
        first = nets[0]
        self.sizes, self.kids, self.fan_in = first.sizes, first.kids, first.fan_in
        self.uniform, self.slope = first.uniform, first.slope
        self.normalize, self.has_bias = first.normalize, first.has_bias
        levels = range(len(self.sizes))
        stack = lambda ps: nn.Parameter(torch.stack([p.detach() for p in ps]))  # (R, ...)
        self.weights = nn.ParameterList([stack([n.weights[lvl] for n in nets]) for lvl in levels])
        self.biases = nn.ParameterList(
            [stack([n.biases[lvl] for n in nets]) for lvl in levels] if self.has_bias else []
        )
        for lvl in range(len(self.sizes)):
            for name in ("wmask", "children", "cmask"):
                self.register_buffer(f"{name}{lvl}", first.get_buffer(f"{name}{lvl}"), persistent=False)

    def _buf(self, name: str, lvl: int) -> Tensor:
        return self.get_buffer(f"{name}{lvl}")

    def _gather(self, lvl: int, below: Tensor) -> Tensor:
        """(R N_l, VB, F_l) inputs of level l from `below`: (R, n_leaves, VB) or (R, N_{l+1}, VB, W)."""
        r, n, k, vb = below.shape[0], self.sizes[lvl], self.kids[lvl], below.shape[2]
        if self.uniform:  # children are contiguous: a view
            picked = below.reshape(r, n, k, *below.shape[2:])  # (R, N, K, VB) or (R, N, K, VB, W)
        else:
            mask = self._buf("cmask", lvl).view(1, n, k, *[1] * (below.dim() - 2))
            picked = below[:, self._buf("children", lvl)] * mask  # (R, N, K, VB) or (R, N, K, VB, W)
        return picked.transpose(2, 3).reshape(r * n, vb, self.fan_in[lvl])

    def forward(self, x: Tensor) -> Tensor:
        """x (R, VB, n_leaves) -> (R, VB, D) every replica's output, as LevelNet.forward computes
        it per replica (node-major within a replica, one bmm per level over all R N nodes)."""
        r = x.shape[0]
        below = x.to(self.weights[0].dtype).transpose(1, 2)  # (R, n_leaves, VB)
        g = below
        for lvl in reversed(range(len(self.sizes))):
            n = self.sizes[lvl]
            w = self.weights[lvl] if self.uniform else self.weights[lvl] * self._buf("wmask", lvl)
            f_in = self._gather(lvl, below)  # (R N, VB, F)
            wt = w.reshape(r * n, *w.shape[2:]).transpose(1, 2)  # (R N, F, W)
            if self.has_bias:
                g = torch.baddbmm(self.biases[lvl].reshape(r * n, 1, -1), f_in, wt)  # (R N, VB, W)
            else:
                g = torch.bmm(f_in, wt)
            g = g.view(r, n, *g.shape[1:])  # (R, N, VB, W)
            below = torch.relu(g) if self.slope == 0.0 else nn.functional.leaky_relu(g, self.slope)
        raw = g[:, 0]  # (R, VB, D)
        return raw / (raw.norm(dim=-1, keepdim=True) + EPS_NORM) if self.normalize == "l2" else raw


LOSS_SCALARS = ("beta", "temperature", "margin")  # a loss's scalars a replica may set


def loss_scalars(cfgs: Sequence[schema.Loss], like: Tensor) -> dict[str, Tensor]:
    """(R,) each replica's value of every scalar its loss kind has, on `like`'s device (made once
    per group: building them each step would copy from the host, a sync per step on a GPU)."""
    return {
        name: torch.tensor([float(getattr(c, name)) for c in cfgs], dtype=like.dtype, device=like.device)
        for name in LOSS_SCALARS
        if hasattr(cfgs[0], name)
    }


def replica_losses(cfg: schema.Loss, scalars: dict[str, Tensor], z: Tensor) -> Tensor:
    """z (R, V, B, D) outputs of x, x_pos and H negatives per replica -> (R,) each replica's loss,
    as runtime.losses computes it alone: `cfg` gives the kind and reduction (the group's), and
    `scalars` (loss_scalars) each replica's beta, temperature or margin."""
    assert isinstance(cfg, schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss), cfg
    r = z.shape[0]
    x, pos_view, neg_view = z[:, 0], z[:, 1], z[:, 2:]  # (R, B, D), (R, B, D), (R, H, B, D)
    if cfg.reduction == "batch":
        pos = (x - pos_view).square().mean(dim=(1, 2))  # (R,)
        neg = (x[:, None] - neg_view).square().mean(dim=(2, 3))  # (R, H)
    else:
        pos = 0.5 * (x - pos_view).square().sum(-1)  # (R, B)
        neg = 0.5 * (x[:, None] - neg_view).square().sum(-1)  # (R, H, B)
    shape = (-1,) + (1,) * (neg.dim() - 1)  # a per-replica scalar against (R, H[, B])
    if isinstance(cfg, schema.SimpleLoss):
        beta = scalars["beta"].view(-1, *[1] * (pos.dim() - 1))  # against (R[, B])
        return ((1 + beta) * pos - neg.mean(1)).reshape(r, -1).mean(1)
    tau = scalars["temperature"].view(shape)
    if isinstance(cfg, schema.TripletLoss):
        arg = (pos[:, None] - neg + scalars["margin"].view(shape)) / tau  # (R, H[, B])
        return (tau * torch.logaddexp(arg, torch.zeros_like(arg))).reshape(r, -1).mean(1)
    logits = torch.cat([-pos[:, None], -neg], dim=1) / tau  # (R, H + 1[, B])
    if cfg.reduction == "batch":
        return -torch.softmax(logits, dim=1)[:, 0]
    return (-tau[:, 0] * torch.log_softmax(logits, dim=1)[:, 0]).mean(-1)


class ReplicaSGD:
    """torch.optim.SGD (dampening 0, not Nesterov) over stacked parameters, with each replica's
    own lr, momentum and weight decay. The update is torch's own single-tensor step, op for op
    with the same scalar arguments, on each span of consecutive replicas that share
    (lr, momentum, weight decay, lr schedule): p[a:b] is updated exactly as a replica's own p would
    be, at the lr its schedule gives the step (`lrs`)."""

    def __init__(
        self, params: Sequence[nn.Parameter], cfgs: Sequence[schema.Optimizer], bufs: list[Any]
    ) -> None:
        self.params = list(params)
        self.spans: list[tuple[int, int, schema.SGD]] = []  # [a, b) replicas sharing one config
        setting = lambda c: (c.lr, c.momentum, c.weight_decay, c.schedule)
        for r, c in enumerate(cfgs):
            assert isinstance(c, schema.SGD), c
            if self.spans and setting(self.spans[-1][2]) == setting(c):
                self.spans[-1] = (self.spans[-1][0], r + 1, c)
            else:
                self.spans.append((r, r + 1, c))
        self.bufs: list[Tensor | None] = bufs  # (R, ...) momentum buffers, None before the first step

    @torch.no_grad()
    def step(self, lrs: Sequence[float] | None = None) -> None:
        """One update; `lrs`: each span's learning rate for this step (its lr schedule's value),
        else each span's `lr`."""
        lr = [c.lr for _, _, c in self.spans] if lrs is None else list(lrs)
        for i, p in enumerate(self.params):
            assert p.grad is not None
            first = self.bufs[i] is None
            if first and any(c.momentum != 0 for _, _, c in self.spans):
                self.bufs[i] = torch.zeros_like(p)
            for (a, b, c), span_lr in zip(self.spans, lr, strict=True):
                grad = p.grad[a:b]
                if c.weight_decay != 0:
                    grad = grad.add(p[a:b], alpha=c.weight_decay)
                if c.momentum != 0:
                    buf = self.bufs[i]
                    assert buf is not None
                    if first:
                        buf[a:b].copy_(grad)
                    else:
                        buf[a:b].mul_(c.momentum).add_(grad, alpha=1)
                    grad = buf[a:b]
                p[a:b].add_(grad, alpha=-span_lr)
            p.grad = None

    def momentum(self, r: int) -> bool:
        """Whether replica r has momentum (and so a buffer in torch's SGD state)."""
        return any(a <= r < b and c.momentum != 0 for a, b, c in self.spans)


def _own_params(ctx: RunContext) -> list[nn.Parameter]:
    """A replica's parameters in its optimizer's order (the network's; a contrastive objective has none)."""
    return list(ctx.net.parameters())


class ReplicaTrainer:
    """The training loop of R replica contexts as one batched model (see the module docstring)."""

    def __init__(self, ctxs: Sequence[RunContext]) -> None:
        self.ctxs = list(ctxs)
        first = self.ctxs[0]
        self.net = ReplicaNet([level_net(c.net) for c in self.ctxs])
        params = [*self.net.weights, *self.net.biases]
        self.opt = ReplicaSGD(params, [c.cfg.optimizer for c in self.ctxs], self._buffers())
        self.loss_cfg = first.cfg.loss
        self.loss_scalars = loss_scalars([c.cfg.loss for c in self.ctxs], params[0])
        self.negatives = first.objective.negatives
        self.batch, self.dtype = first.cfg.train.batch, first.dtype
        self.views = ReplicaViews.of(self.ctxs, self.batch, self.negatives)
        # Each span's lr schedule (the schedule is the group's; its base lr the span's): none for
        # a constant lr, which the update then takes as it is.
        self.schedules = [lr_schedule(self.ctxs[a].cfg) for a, _, _ in self.opt.spans]
        self.graph = StepGraph(first.device, [c.gens["data"] for c in self.ctxs])

    def _buffers(self) -> list[Any]:
        """The stacked momentum buffers from the replicas' optimizers (None before the first step;
        zeros for a replica without momentum, whose update does not read them)."""
        own = [_own_params(c) for c in self.ctxs]
        out: list[Any] = []
        for i in range(len(own[0])):
            state = [c.opt.state.get(ps[i], {}) for c, ps in zip(self.ctxs, own, strict=True)]
            found = [s.get("momentum_buffer") for s in state]
            if all(b is None for b in found):
                out.append(None)
                continue
            zero = torch.zeros_like(own[0][i].detach())
            out.append(torch.stack([zero if b is None else b.detach() for b in found]))
        return out

    def _inputs(self) -> Tensor:
        """(R, V B, n) every replica's views, each drawn from its own data generator."""
        if self.views is not None:
            return self.views.draw([c.gens["data"] for c in self.ctxs])
        rows = []
        for c in self.ctxs:
            x, pos, neg = c.source.views(self.batch, self.negatives, c.gens["data"]).inputs(self.dtype)
            rows.append(torch.cat([x, pos, neg.flatten(0, 1)]))  # (V B, n): x, pos, negatives
        return torch.stack(rows)

    def step(self) -> Tensor:
        """One SGD step of every replica, at each span's scheduled lr; (R,) their losses. Counts it."""
        step = self.ctxs[0].steps  # every replica of a group is at the same step
        lrs = [
            c.lr if s is None else s.lr(step)
            for s, (_, _, c) in zip(self.schedules, self.opt.spans, strict=True)
        ]
        losses = self._step(lrs)
        self._count()
        return losses

    def _step(self, lrs: Sequence[float] | None = None) -> Tensor:
        """The step's tensor work: draw, forward, the R losses, backward, update; (R,) the losses."""
        x = self._inputs()
        out = self.net(x)  # (R, V B, D)
        z = out.view(out.shape[0], -1, self.batch, out.shape[-1])  # (R, V, B, D)
        losses = replica_losses(self.loss_cfg, self.loss_scalars, z)
        losses.sum().backward()  # replica r's gradient is that of its own loss
        self.opt.step(lrs)
        return losses.detach()

    def _count(self) -> None:
        for c in self.ctxs:
            c.steps += 1

    def epoch(self) -> Tensor:
        """One epoch of every replica; (R, steps) their per-step losses, float64 as Trainer's.
        On CUDA without an lr schedule the step is captured as one CUDA graph and replayed
        (runtime.graphs), with every replica's data generator registered."""
        train = self.ctxs[0].cfg.train
        return self.run_steps(train.samples // train.batch).t().contiguous()

    def run_steps(self, steps: int) -> Tensor:
        """Take `steps` steps of every replica; (steps, R) their losses on the device."""
        losses = torch.empty(steps, len(self.ctxs), device=self.ctxs[0].device, dtype=torch.float64)
        self.graph.run(losses, self.step, self._step, self._count, not self.why_eager(), self._drop_grads)
        return losses

    def _drop_grads(self) -> None:
        for p in self.opt.params:  # ReplicaSGD leaves them None after each step already
            p.grad = None

    def why_eager(self) -> str:
        """Why the group's steps are not captured as a CUDA graph ('' when they can be; a failed
        capture is the StepGraph's to say)."""
        device = self.ctxs[0].device
        if device.type != "cuda":
            return f"device {device.type}"
        if any(s is not None for s in self.schedules):
            return SCHEDULED
        return ""

    def mode(self) -> str:
        """How the steps ran (for each replica's store): 'cuda graph', or 'eager (why)'."""
        return self.graph.mode(self.why_eager())

    @torch.no_grad()
    def sync(self) -> None:
        """Write every replica's parameters and momentum buffer into its own context."""
        batched = [*self.net.weights, *self.net.biases]
        for r, c in enumerate(self.ctxs):
            momentum = self.opt.momentum(r)
            for p, stacked, buf in zip(_own_params(c), batched, self.opt.bufs, strict=True):
                p.copy_(stacked[r])
                if momentum and buf is not None:
                    c.opt.state[p]["momentum_buffer"] = buf[r].clone()
