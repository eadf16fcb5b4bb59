"""One training batch's terms for the theorem check on a head layer (runtime.images.theorem): the
loss, and the per-view cotangents c_v of its chain-rule form sum_v K_v c_v, for every loss an image
network can train with a negative pair.

Every such loss is a function of pair distances, so with w = dL / dd its pair weights the gradient
is sum_pairs w (K(a) - K(b)) Delta f (loss-operators.md, section 1):

- the losses of runtime.losses (simple, triplet, infonce) on the raw output, with an anchor, a
  positive and H drawn negatives per example: w from runtime.loss_operators.pair_weights and the
  view coefficients from its view_coefficients;
- nt_xent and exact_cov (runtime.images.objectives) on the l2-normalized projections z~ of the
  batch's 2B views, every other view a negative: d_ij = 1 - cos_ij = 1/2 ||z~_i - z~_j||^2, w the
  gradient of the loss (written as a function of the cosines, `nt_xent_of`, `exact_cov_of`) by
  d, and c~_i = sum_j (w_ij + w_ji)(z~_i - z~_j), taken back through the normalization,
  c_i = N_i c~_i with N_i = (I - z~_i z~_i^T) / ||z_i||, the Jacobian of z~ = z / ||z||.

`raw` is the same form with the raw output's differences and no N (the unnormalized operator form,
the same weights); `neg` = -(sum of the negative pairs' weights) and `total` = the sum of all pairs'
weights, the batch scalars of the prediction -2 (E[neg] OP - E[total] V) vec(W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from runtime.images.encoders import Encoder
from runtime.images.objectives import _similarities, exact_cov_of, nt_xent_of
from runtime.loss_operators import pair_weights, view_coefficients
from runtime.losses import loss_value
from sslspec.spec import schema
from sslspec.spec.images import ExactCovLoss, NTXentLoss

FAMILY = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss
HEAD_PAIRS = NTXentLoss | ExactCovLoss


@dataclass
class BatchTerms:
    """A batch's views (V, B, 3, S, S), its loss (with its graph), the chain-rule cotangents `coef`
    and `raw` (V, B, D), and the batch scalars `neg` and `total` (module docstring)."""

    views: Tensor
    loss: Tensor
    coef: Tensor
    raw: Tensor
    neg: float
    total: float


def batch_terms(enc: Encoder, loss_cfg: schema.Loss, x: Tensor, pos: Tensor, neg: Tensor) -> BatchTerms:
    """Views x, pos (B, 3, S, S) and negatives (H, B, 3, S, S) (none for nt_xent / exact_cov) ->
    the batch's terms; the encoder as it is (the check puts it in eval mode)."""
    if isinstance(loss_cfg, FAMILY):
        views = torch.cat([x[None], pos[None], neg])  # (V, B, 3, S, S), V = 2 + H
        z = enc(views.flatten(0, 1)).unflatten(0, views.shape[:2])  # (V, B, D)
        w = pair_weights(loss_cfg, z)  # (H + 1, B)
        coef = view_coefficients(w, z.detach())
        loss = loss_value(loss_cfg, z[0], z[1], z[2:])
        return BatchTerms(views, loss, coef, coef, float(-w[1:].sum()), float(w.sum()))
    if not isinstance(loss_cfg, HEAD_PAIRS):
        raise ValueError(f"the theorem check needs negative pairs (got loss {schema.kind_of(loss_cfg)!r})")
    views = torch.stack([x, pos])  # (2, B, 3, S, S)
    z = enc(views.flatten(0, 1))  # (2B, D), view major as the objective has them
    b = x.shape[0]
    loss = _head_loss(loss_cfg, *_similarities(z[:b], z[b:]))
    zd = z.detach()
    unit = F.normalize(zd, dim=1)
    _, positive = _similarities(zd[:b], zd[b:])
    dist = (1 - unit @ unit.T).requires_grad_()  # (2B, 2B) a leaf: d_ij = 1 - cos_ij
    with torch.enable_grad():
        (w,) = torch.autograd.grad(_head_loss(loss_cfg, 1 - dist, positive), dist)
    sym = w + w.T
    tilde = sym.sum(1, keepdim=True) * unit - sym @ unit  # (2B, D): sum_j (w_ij + w_ji)(z~_i - z~_j)
    norm = zd.norm(dim=1, keepdim=True).clamp_min(1e-12)
    coef = (tilde - unit * (unit * tilde).sum(1, keepdim=True)) / norm  # N_i c~_i
    raw = sym.sum(1, keepdim=True) * zd - sym @ zd
    is_pos = torch.zeros_like(w, dtype=torch.bool)
    is_pos[torch.arange(2 * b), positive] = True
    neg_sum = float(w[~is_pos].sum())  # the diagonal's weight is 0 (a view is never its own pair)
    coef, raw = coef.unflatten(0, (2, b)), raw.unflatten(0, (2, b))
    return BatchTerms(views, loss, coef, raw, -neg_sum, float(w.sum()))


def _head_loss(cfg: NTXentLoss | ExactCovLoss, sim: Tensor, positive: Tensor) -> Tensor:
    if isinstance(cfg, NTXentLoss):
        return nt_xent_of(sim, positive, cfg.temperature)
    return exact_cov_of(sim, positive, cfg.temperature, cfg.beta)
