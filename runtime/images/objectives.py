"""Losses on two views' projections (B, D) each: NT-Xent (SimCLR) and the official `exact_cov`
surrogate of the covariance-operator analysis.

NT-Xent: the 2B projections are l2-normalized; view i's positive is the other view of the same
image and its negatives the 2B - 2 other projections; loss = mean over the 2B anchors of
-log softmax over (positive, negatives) of cosine / tau.

exact_cov (real-data.md): with r = 1 - cosine (a distance), the negative weights
w = exp(-r_neg / tau) are detached, w <- w / (1 + w) / tau / H, and the loss is
mean_i( sum_k w_ik r_pos_i - sum_k w_ik r_neg_ik ) (H = 2B - 2 negatives, `beta` scaling the
positive term by 1 + beta): a weighted simple loss whose weights carry no gradient, so its
expected update is exactly a weighted covariance operator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from runtime.stateless import Parts, Stateless
from sslspec.spec.images import ExactCovLoss, NTXentLoss
from sslspec.spec.schema import Config


def _similarities(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (cosine of every anchor with every other projection (2B, 2B) with the diagonal
    excluded later, index of each anchor's positive (2B,))."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    b = z1.shape[0]
    pos = torch.cat([torch.arange(b, 2 * b, device=z.device), torch.arange(0, b, device=z.device)])
    return z @ z.T, pos


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Two views' projections (B, D) -> the NT-Xent loss (a scalar)."""
    return nt_xent_of(*_similarities(z1, z2), temperature)


def nt_xent_of(sim: torch.Tensor, pos: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent from the cosines (2B, 2B) and each anchor's positive (2B,) (`_similarities`): the
    loss as a function of the pairs' similarities, which the theorem check differentiates."""
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    logits = (sim / temperature).masked_fill(eye, float("-inf"))
    return F.cross_entropy(logits, pos)


def exact_cov(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, beta: float = 0.0
) -> torch.Tensor:
    """Two views' projections (B, D) -> the detached-weight covariance surrogate (a scalar)."""
    return exact_cov_of(*_similarities(z1, z2), temperature, beta)


def exact_cov_of(sim: torch.Tensor, pos: torch.Tensor, temperature: float, beta: float) -> torch.Tensor:
    """exact_cov from the cosines (2B, 2B) and each anchor's positive (2B,), as `nt_xent_of`."""
    n = sim.shape[0]
    r = 1 - sim  # (2B, 2B) distances
    r_pos = r.gather(1, pos[:, None])  # (2B, 1)
    neg = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    neg[torch.arange(n, device=sim.device), pos] = False
    r_neg = r[neg].reshape(n, n - 2)  # (2B, H)
    w = torch.exp(-r_neg.detach() / temperature)
    w = w / (1 + w) / temperature / r_neg.shape[1]
    return ((1 + beta) * (w * r_pos).sum(1) - (w * r_neg).sum(1)).mean()


class TwoViews(Stateless):
    """The objective of `loss nt_xent` and `loss exact_cov` (runtime.objective's interface): two
    views per image and no separately drawn negatives (the batch's other views are the negatives),
    no state of its own."""

    negatives = 0
    graphable = False  # not yet tried under CUDA graph capture

    def __init__(self, cfg: Config, net: torch.nn.Module, parts: Parts) -> None:
        loss = cfg.loss
        assert isinstance(loss, NTXentLoss | ExactCovLoss), loss
        self.cfg = loss
        self.attrs: dict[str, Any] = {"negatives": "the 2B - 2 other views of the batch"}

    def loss(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """z (2, B, D) the projections of the two views -> the scalar loss."""
        if isinstance(self.cfg, NTXentLoss):
            return nt_xent(z[0], z[1], self.cfg.temperature)
        return exact_cov(z[0], z[1], self.cfg.temperature, self.cfg.beta)
