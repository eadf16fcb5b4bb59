"""Training: one SGD step on freshly drawn views, and a whole epoch of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.layout import Layout
from runtime.losses import loss_value
from runtime.sampler import Edges, draw_views
from sslspec.check import Config


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

    @property
    def negatives(self) -> int:
        return int(getattr(self.cfg.loss, "negatives", 1))

    def step(self) -> torch.Tensor:
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
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def run_steps(self, steps: int) -> torch.Tensor:
        """Take `steps` SGD steps; return their losses, (steps,) on the device (no sync per step)."""
        losses = torch.empty(steps, device=self.device, dtype=torch.float64)
        for i in range(steps):
            losses[i] = self.step()
        return losses

    def epoch(self) -> torch.Tensor:
        """Run one epoch (samples / batch steps); return the per-step losses, (steps,)."""
        self.net.train()
        return self.run_steps(self.cfg.train.samples // self.cfg.train.batch)
