"""Training: one SGD step on freshly drawn views, and a whole epoch of them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from runtime.layout import Layout
from runtime.losses import loss_value
from runtime.sampler import Edges, draw_views
from sslspec.lang.check import Config

WARMUP = 3  # eager steps before a CUDA graph is captured


@dataclass
class Trainer:
    """Everything one run's training loop touches; `gen` is the data stream's generator."""

    cfg: Config
    layout: Layout
    edges: Edges
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    device: torch.device
    dtype: torch.dtype
    graphs: bool = True  # on CUDA with SGD: replay one captured CUDA graph per step
    _graph: Any = field(default=None, repr=False)
    _graph_loss: torch.Tensor | None = field(default=None, repr=False)

    @property
    def negatives(self) -> int:
        return int(getattr(self.cfg.loss, "negatives", 1))

    def step(self, zero_grad: bool = True) -> torch.Tensor:
        """Draw one batch of views, take one optimizer step; return the loss (a 0-d tensor)."""
        cfg = self.cfg
        views = draw_views(
            self.layout,
            self.edges,
            cfg.data,
            cfg.augment,
            cfg.train.batch,
            self.negatives,
            self.gen,
            self.device,
        )
        x, pos, neg = views.inputs(self.dtype)  # (B, n), (B, n), (H, B, n)
        b, h = x.shape[0], neg.shape[0]
        out = self.net(torch.cat([x, pos, neg.reshape(h * b, -1)])).out  # (B * (2 + H), D)
        loss = loss_value(cfg.loss, out[:b], out[b : 2 * b], out[2 * b :].reshape(h, b, -1))
        if zero_grad:
            self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def run_steps(self, steps: int) -> torch.Tensor:
        """Take `steps` SGD steps; return their losses, (steps,) on the device (no sync per step).

        On CUDA the step (sampling, forward, backward, SGD update) is captured once as a CUDA graph
        after a few eager warm-up steps and replayed: one launch per step instead of ~150. The
        warm-up steps are ordinary training steps and count towards `steps`."""
        losses = torch.empty(steps, device=self.device, dtype=torch.float64)
        done = 0
        if self._graph is None and self._graphable() and steps > WARMUP:
            done = self._capture(losses)
        if self._graph is not None:
            for i in range(done, steps):
                self._graph.replay()
                losses[i] = self._graph_loss  # type: ignore[assignment]
            return losses
        for i in range(done, steps):
            losses[i] = self.step()
        return losses

    def _graphable(self) -> bool:
        return self.graphs and self.device.type == "cuda" and isinstance(self.opt, torch.optim.SGD)

    def _capture(self, losses: torch.Tensor) -> int:
        """Run WARMUP eager steps on a side stream, then capture one step; return steps done."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for i in range(WARMUP):
                losses[i] = self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        register = getattr(graph, "register_generator_state", None)
        try:
            if register is not None:
                register(self.gen)
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self._graph_loss = self.step(zero_grad=False)
        except Exception as exc:  # an op that cannot be captured: stay eager, and say so once
            print(
                f"sslspec: CUDA graph capture failed ({type(exc).__name__}: {exc}); training eagerly",
                file=sys.stderr,
            )
            self.graphs, self._graph_loss = False, None
            self.opt.zero_grad(set_to_none=True)
            return WARMUP
        self._graph = graph
        return WARMUP

    def epoch(self) -> torch.Tensor:
        """Run one epoch (samples / batch steps); return the per-step losses, (steps,)."""
        self.net.train()
        return self.run_steps(self.cfg.train.samples // self.cfg.train.batch)
