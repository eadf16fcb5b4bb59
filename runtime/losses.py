"""Contrastive losses on network outputs, in the official (`batch`) or textbook (`sample`) form.

`reduction = batch` reduces each distance over the batch before the loss (the official HLTM code):
pos = mean over batch and dims of (z - z_pos)^2, neg_k likewise for negative k; the loss is one
number of those H + 1 scalars. `reduction = sample` uses d = 1/2 ||a - b||^2 per example and
averages the per-example loss over the batch (the form the paper analyses).

- simple:  (1 + beta) pos - mean_k neg_k                   (H = 1, beta = 0: official `subtract`)
- triplet: tau * softplus((pos - neg_k + margin) / tau), mean over k (and the batch)
- infonce: batch:  -e^{-pos/tau} / (e^{-pos/tau} + sum_k e^{-neg_k/tau})   (a negative probability,
           not its log; H = 1: official `nce`, computed as a softmax so it cannot overflow)
           sample: mean_b of -tau * log softmax_{pos}(-d_pos/tau, -d_neg_k/tau)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sslspec.spec import schema


def distances(
    reduction: str, z: torch.Tensor, z_pos: torch.Tensor, z_neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """z, z_pos: (B, D), z_neg: (H, B, D) -> (pos, neg): ((), (H,)) for batch, ((B,), (H, B)) for sample."""
    if reduction == "batch":
        return (z - z_pos).square().mean(), (z[None] - z_neg).square().mean(dim=(1, 2))
    if reduction == "sample":
        return 0.5 * (z - z_pos).square().sum(-1), 0.5 * (z[None] - z_neg).square().sum(-1)
    raise ValueError(f"unknown reduction {reduction!r}")


def simple(cfg: schema.SimpleLoss, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """L_simp = (1 + beta) pos - mean_k neg_k, averaged over the batch."""
    return ((1 + cfg.beta) * pos - neg.mean(0)).mean()


def triplet(cfg: schema.TripletLoss, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Soft triplet tau * log(1 + exp((pos - neg_k + margin) / tau)), averaged over k and the batch."""
    tau = cfg.temperature
    arg = (pos - neg + cfg.margin) / tau  # (H,) or (H, B)
    return (tau * torch.logaddexp(arg, torch.zeros_like(arg))).mean()


def infonce(cfg: schema.InfoNCELoss, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """InfoNCE: the negative probability of the positive (batch) or tau * its -log (sample)."""
    tau = cfg.temperature
    logits = torch.cat([-pos[None], -neg]) / tau  # (H + 1,) or (H + 1, B)
    if cfg.reduction == "batch":
        return -torch.softmax(logits, dim=0)[0]
    return (-tau * torch.log_softmax(logits, dim=0)[0]).mean()


LossFn = Callable[..., torch.Tensor]  # (loss cfg, pos, neg) -> scalar
LOSSES: dict[str, LossFn] = {"simple": simple, "triplet": triplet, "infonce": infonce}


def loss_value(
    cfg_loss: schema.Loss, z: torch.Tensor, z_pos: torch.Tensor, z_neg: torch.Tensor
) -> torch.Tensor:
    """The scalar loss of outputs z, z_pos: (B, D) and negatives z_neg: (H, B, D)."""
    kind = schema.kind_of(cfg_loss)
    if kind not in LOSSES:  # the checker refuses such a spec (sslspec.spec.kinds)
        raise ValueError(f"no contrastive loss {kind!r}")
    if isinstance(cfg_loss, schema.InfoNCELoss) and z_neg.shape[0] != cfg_loss.negatives:
        raise ValueError(f"infonce has negatives = {cfg_loss.negatives} but got {z_neg.shape[0]}")
    assert isinstance(cfg_loss, schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss), cfg_loss
    pos, neg = distances(cfg_loss.reduction, z, z_pos, z_neg)
    return LOSSES[kind](cfg_loss, pos, neg)
