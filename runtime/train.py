"""Training: one SGD step on freshly drawn views, and a whole epoch of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from runtime import optim
from runtime.context import RunContext
from runtime.graphs import SCHEDULED, StepGraph


@dataclass
class Trainer:
    """One run's training loop over its context: draw a batch of views from the data source, one
    forward pass of all views, the objective's loss, one optimizer step (and the objective's
    own step and after-step update). The optimizers' learning rate is set before each step from
    the lr schedule and the context's step count (runtime.optim.LRSchedule), which the loop
    advances; a constant lr is never touched."""

    ctx: RunContext
    graphs: bool = True  # on CUDA with SGD: replay one captured CUDA graph per step
    _graph: StepGraph = field(init=False, repr=False)
    _schedules: list[tuple[torch.optim.Optimizer, optim.LRSchedule]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        """The lr schedule of the run's optimizer and of the objective's own one (scaled to its
        base lr); none for a constant lr."""
        self._graph = StepGraph(self.device, [self.gen])
        main = optim.lr_schedule(self.ctx.cfg)
        own = self.ctx.objective.optimizer()
        if main is not None:
            self._schedules.append((self.opt, main))
            if own is not None:
                own_schedule = optim.lr_schedule(self.ctx.cfg, base=float(own.defaults["lr"]))
                assert own_schedule is not None
                self._schedules.append((own, own_schedule))

    @property
    def net(self) -> torch.nn.Module:
        return self.ctx.net

    @property
    def opt(self) -> torch.optim.Optimizer:
        return self.ctx.opt

    @property
    def gen(self) -> torch.Generator:
        """The data stream's generator."""
        return self.ctx.gens["data"]

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def step(self, zero_grad: bool = True) -> torch.Tensor:
        """Draw one batch of views, take one optimizer step; return the loss (a 0-d tensor)."""
        ctx = self.ctx
        views = ctx.source.views(ctx.cfg.train.batch, ctx.objective.negatives, self.gen)
        x, pos, neg = views.inputs(ctx.dtype)  # (B, n), (B, n), (H, B, n)
        b = x.shape[0]
        inputs = torch.cat([x, pos, neg.flatten(0, 1)])  # (V B, n), V = 2 + H views
        out = ctx.net(inputs, views=2 + neg.shape[0]).out  # (V B, D); batch norm per view
        loss = ctx.objective.loss(out.reshape(-1, b, out.shape[-1]), inputs.reshape(-1, b, *x.shape[1:]))
        own = ctx.objective.optimizer()
        if zero_grad:
            self._drop_grads()
        loss.backward()
        optim.step(self.opt)
        if own is not None:
            optim.step(own)
        ctx.objective.after_step()
        return loss.detach()

    def run_steps(self, steps: int) -> torch.Tensor:
        """Take `steps` SGD steps; return their losses, (steps,) on the device (no sync per step).

        On CUDA the step (sampling, forward, backward, SGD update) is captured once as a CUDA graph
        after a few eager warm-up steps and replayed (runtime.graphs): one launch per step instead
        of ~150. With an lr schedule every step is eager (a replayed step would keep the lr it was
        captured with)."""
        losses = torch.empty(steps, device=self.device, dtype=torch.float64)
        capture = self._graphable()
        self._graph.run(losses, self.scheduled_step, self._captured, self._count, capture, self._drop_grads)
        return losses

    def _captured(self) -> torch.Tensor:
        """The step a CUDA graph captures: gradients were set to None before (`_drop_grads`)."""
        return self.step(zero_grad=False)

    def _drop_grads(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        own = self.ctx.objective.optimizer()
        if own is not None:
            own.zero_grad(set_to_none=True)

    def _count(self) -> None:
        self.ctx.steps += 1

    def scheduled_step(self) -> torch.Tensor:
        """`step()` at the learning rate the schedule gives the run's next step; counts it."""
        for opt, schedule in self._schedules:
            schedule.apply(opt, self.ctx.steps)
        loss = self.step()
        self._count()
        return loss

    def _graphable(self) -> bool:
        return not self._why_eager()

    def _why_eager(self) -> str:
        """Why steps cannot be captured as a CUDA graph ('' when they can; a failed capture is
        the StepGraph's to say)."""
        if not self.graphs:
            return "CUDA graphs switched off"
        if self.device.type != "cuda":
            return f"device {self.device.type}"
        if not isinstance(self.opt, torch.optim.SGD):
            return f"optimizer {type(self.opt).__name__} (graphs are captured for SGD only)"
        if not self.ctx.objective.graphable:
            return f"objective {type(self.ctx.objective).__name__} not tried under graph capture"
        if self._schedules:
            return SCHEDULED
        return ""

    def mode(self) -> str:
        """How the steps ran (for the store's provenance): 'cuda graph', or 'eager (why)'."""
        return self._graph.mode(self._why_eager())

    def epoch(self) -> torch.Tensor:
        """Run one epoch (samples / batch steps); return the per-step losses, (steps,)."""
        self.net.train()
        train = self.ctx.cfg.train
        return self.run_steps(train.samples // train.batch)
