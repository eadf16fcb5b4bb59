"""The theorem check on an image encoder's projection head (covariance-operator.md, loss-operators.md).

Where the identity is defined: a Linear layer of the head, the network in eval mode (batch norm
with its running statistics, so that each view has its own K; in training mode batch norm couples
the examples of a batch, which is BYOL's effect, not this identity), for every loss an image
network trains with negative pairs (runtime.images.pair_terms: nt_xent and exact_cov on the
l2-normalized projections; simple, triplet and infonce on the raw output). For the layer's weights
W (vec(W) = W.reshape(-1)) and M training batches of the run's own kind it compares:

1. g, autograd's d loss / d vec(W) averaged over the M batches, with the chain-rule form
   sum_pairs w (K(a) - K(b)) Delta f of each batch, w = dL / dd the pair weights and
   K = J^T (x) h built from the layer's inputs and the head's Jacobian
   (runtime.images.head.head_connections): `batch_rel_error` = ||chain - g|| / ||g||, float noise
   for every loss (a test of K and of the weights).
2. the prediction p = -2 (E[c] OP - E[s] V) vec(W), applied as operator-vector products over the
   measurement views (`unbiased_apply`, the unbiased OP_hat and V_hat), with c = -(sum of the
   negative pairs' weights) and s = the sum of all pairs' weights, means over the M batches:
   taking expectations pair by pair (a positive pair: E[dK dK^T] = 2 V; a negative: 2 (V + OP)),
   sum_pairs w dK dK^T vec(W) has that mean when the weights do not vary with the pair. It is exact
   in expectation for the simple loss on the head's last layer (f = W h + b there, so
   Delta f = Delta K^T vec(W): the bias cancels); below it the biases and batch norm's shift add a
   term; for the other losses the weights vary with the pair (on images every image is its own
   class, so the HLTM's class-pair weights have no counterpart) and nt_xent and exact_cov
   normalize the projections, where the operator form does not hold. `attrs["note"]` says which.
   `rel_error` = ||g - p|| / ||g||, `cosine` = cos(g, p); `*_simple` against -2 E[c] OP vec(W).
3. the residue g - p split as (g - u) + (u - p), u the chain-rule form with the raw output's K and
   Delta f and the same weights: `residue_normalization` = ||g - u|| / ||g|| (0 without
   normalization), `residue_other` = ||u - p|| / ||g||.
The operator estimate must come from images and views of the distribution the batches are drawn
from; its own sampling error adds to the finite-M error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from runtime.images.encoders import Encoder
from runtime.images.head import head_connections
from runtime.images.operator import FLOAT, Layer, Products, eval_mode, layers_of
from runtime.images.pair_terms import FAMILY, HEAD_PAIRS, batch_terms
from runtime.theorem import TheoremResult, compare, relative
from sslspec.spec import schema

# () -> x (B, 3, S, S), x_pos (B, 3, S, S), x_neg (H, B, 3, S, S): one fresh training batch
DrawImages = Callable[[], Sequence[Tensor]]


def prediction_rule(loss_cfg: schema.Loss, layer: Layer, last: bool) -> dict[str, Any]:
    """The loss's prediction for a head layer: its weights' kind and whether it is exact (and why not)."""
    if not isinstance(loss_cfg, FAMILY | HEAD_PAIRS):
        raise ValueError(f"the theorem check needs negative pairs (got loss {schema.kind_of(loss_cfg)!r})")
    kind = schema.kind_of(loss_cfg)
    why = []
    if kind != "simple":
        why.append("the pair weights' covariance with the pairs' connections is left out")
    if isinstance(loss_cfg, HEAD_PAIRS):
        why.append("the loss l2-normalizes the projections; the operator is for the raw output")
    if not last:
        why.append("biases and batch norm above the layer add a term")
    return {
        "loss": kind,
        "weights": "analytic" if kind == "simple" else "batch_scalar",
        "exact": not why,
        "note": "; ".join(why) or "exact in expectation",
    }


def _chain_form(enc: Encoder, layer: Layer, views: Tensor, cs: Sequence[Tensor]) -> list[Tensor]:
    """Views (V, B, 3, S, S) and cotangents (V, B, D) -> (P,) sum_vb K_vb c_vb per cotangent, from
    K = J^T (x) h (one jacrev of the head above the layer per view)."""
    h, jac = head_connections(enc, layer, views)  # (V, B, n_in), (V, B, D, n_out)
    out = []
    for c in cs:
        jt = torch.einsum("vbdo,vbd->vbo", jac, c.to(FLOAT))
        out.append(torch.einsum("vbo,vbi->oi", jt, h).reshape(-1))
    return out


@dataclass
class Sweep:
    """Per M, the means over the first M batches (m, n, P_max), zero-padded: autograd's gradient,
    the chain-rule form and its raw-output form (None without `identity`); and the batch scalars'
    means over the sweep."""

    grad: Tensor
    chain: Tensor | None
    raw: Tensor | None
    neg: float
    total: float


def sweep(
    enc: Encoder,
    loss_cfg: schema.Loss,
    draw: DrawImages,
    layers: Sequence[Layer],
    batches: Sequence[int],
    identity: bool = True,
) -> Sweep:
    """One sweep of max(M) batches (runtime.images.pair_terms), the encoder in eval mode."""
    params = [enc.get_parameter(lay.param) for lay in layers]
    p_max = max(lay.size for lay in layers)
    sums = {key: torch.zeros(len(layers), p_max, dtype=FLOAT) for key in ("grad", "chain", "raw")}
    out = {key: torch.zeros(len(batches), len(layers), p_max, dtype=FLOAT) for key in sums}
    neg = total = 0.0
    with eval_mode(enc):
        for k in range(1, max(batches) + 1):
            terms = batch_terms(enc, loss_cfg, *draw()[:3])
            gs = torch.autograd.grad(terms.loss, params)
            neg, total = neg + terms.neg, total + terms.total
            for n, (lay, g) in enumerate(zip(layers, gs, strict=True)):
                sums["grad"][n, : lay.size] += g.detach().reshape(-1).to(FLOAT)
                if identity:
                    chain, raw = _chain_form(enc, lay, terms.views, (terms.coef, terms.raw))
                    sums["chain"][n, : lay.size] += chain
                    sums["raw"][n, : lay.size] += raw
            for m in (j for j, mm in enumerate(batches) if mm == k):
                for key in sums:
                    out[key][m] = sums[key] / k
    count = max(batches)
    if not identity:
        return Sweep(out["grad"], None, None, neg / count, total / count)
    return Sweep(out["grad"], out["chain"], out["raw"], neg / count, total / count)


def head_theorem_check(
    enc: Encoder,
    loss_cfg: schema.Loss,
    draw: DrawImages,
    conns: Sequence[Products],
    batches: Sequence[int] = (1, 4, 16, 64, 256),
    identity: bool = True,
) -> TheoremResult:
    """Check E[d loss / d W] against the loss's prediction for the head layers of `conns` (each the
    products of one Linear layer of the head over measurement views of fresh images: Connections or
    runtime.images.head.HeadProducts), weights unchanged. draw: a fresh training batch per call,
    (x, pos, negatives) as images. Cost: max(M) forwards and backwards of a training batch, plus,
    with `identity`, the head's Jacobians of its views (a jacrev of the small head per view; without
    it batch_rel_error and the residues are NaN), plus one operator product per layer."""
    ms = sorted(set(batches))
    if not conns or not ms or ms[0] < 1:
        raise ValueError(f"need at least one layer and values of M >= 1 (got {len(conns)}, {list(batches)})")
    layers = [conn.layer for conn in conns]
    last = _linear_layers(enc)[-1].name
    rules = [prediction_rule(loss_cfg, lay, lay.name == last) for lay in layers]
    sw = sweep(enc, loss_cfg, draw, layers, ms, identity)
    g = sw.grad
    preds, simple = [], []
    for conn in conns:
        vec = conn.weight.detach().reshape(-1).to(FLOAT)
        beta = sw.total / sw.neg if sw.neg else 0.0
        preds.append(-2 * sw.neg * conn.unbiased_apply(vec, beta))  # -2 (E[neg] OP - E[total] V) vec(W)
        simple.append(-2 * sw.neg * conn.unbiased_apply(vec))
    p, p_simple = _padded(preds, g.shape[-1]), _padded(simple, g.shape[-1])
    rel, cos = compare(g, p)
    rel_simple, cos_simple = compare(g, p_simple)
    sizes = torch.tensor([lay.size for lay in layers])
    real = torch.arange(g.shape[-1])[None, :] < sizes[:, None]  # (n, P_max)
    attrs = {
        "loss": rules[0]["loss"],
        "weights": rules[0]["weights"],
        "exact": all(r["exact"] for r in rules),
        "note": "; ".join(f"{lay.name}: {r['note']}" for lay, r in zip(layers, rules, strict=True)),
        "prediction": PREDICTION,
        "mean_negative_weight": sw.neg,
        "mean_total_weight": sw.total,
        "mode": "eval (batch norm with its running statistics: each view has its own K)",
    }
    return TheoremResult(
        nodes=torch.tensor([int(lay.name.removeprefix("head")) for lay in layers]),
        batches=torch.tensor(ms),
        rel_error=rel,
        cosine=cos,
        rel_error_own=rel,
        cosine_own=cos,
        rel_error_simple=rel_simple,
        cosine_simple=cos_simple,
        batch_rel_error=relative(sw.chain, g, g),
        residue_normalization=relative(sw.raw, g, g),
        residue_other=relative(sw.raw, p[None], g),
        grad_norm=g.norm(dim=-1).T,
        pred_norm=p.norm(dim=-1),
        pred_norm_own=p.norm(dim=-1),
        grad=g.transpose(0, 1).masked_fill(~real[:, None, :], torch.nan),
        pred=p.masked_fill(~real, torch.nan),
        attrs=attrs,
    )


PREDICTION = (
    "p = -2 (E[c] OP - E[s] V) vec(W) for the head layer, c = -(sum of the negative pairs' weights), "
    "s = sum of all pairs' weights (means over the M batches); *_simple: -2 E[c] OP vec(W)"
)


def _linear_layers(enc: Encoder) -> list[Layer]:
    return [lay for lay in layers_of(enc).values() if lay.linear]


def _padded(vs: Sequence[Tensor], size: int) -> Tensor:
    return torch.stack([torch.nn.functional.pad(v, (0, size - v.shape[0])) for v in vs])
