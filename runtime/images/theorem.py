"""The theorem check on an image encoder's projection head (covariance-operator.md, loss-operators.md).

Where the identity is defined: a Linear layer of the head, for the losses of distances of
runtime.losses (simple, triplet, infonce) on the raw head output, the network in eval mode (batch
norm with its running statistics, so that each view has its own K; in training mode batch norm
couples the examples of a batch, which is BYOL's effect, not this identity). For the layer's
weights W (vec(W) = W.reshape(-1), runtime.images.operator) and M training batches of the run's
own kind (anchor, positive, H negatives per example) it compares:

1. g, autograd's d loss / d vec(W) averaged over the M batches, with the per-batch chain-rule form
   sum_{b,k} w_kb (K(a_kb) - K(b_kb)) Delta f_kb, w = dL / dd the loss's pair weights
   (runtime.loss_operators.pair_weights, view_coefficients) and K = J^T (x) h built from the
   layer's inputs and the head's Jacobian (runtime.images.operator.head_connections):
   `batch_rel_error` = ||chain - g|| / ||g||, float noise for every loss (a test of K).
2. the loss's population prediction p, applied to vec(W) as operator-vector products over the
   measurement views (`Connections.unbiased_apply`, the unbiased OP_hat and V_hat):
       simple:                      p = -2 c (OP - beta V) vec(W), c = 1 (sample) or 2 / D (batch);
       triplet, infonce:            p = -2 E[c] OP vec(W), c = -B sum_k w_k the batch's total
                                    negative weight, its mean over the M batches.
   It is exact in expectation for the simple loss on the head's last layer: f = W h + b there, so
   Delta f = Delta K^T vec(W) (the bias cancels). On a lower layer the biases (and batch norm's
   shift) above it add a term the prediction omits; for triplet and InfoNCE the weights vary with
   the pair (on images every image is its own class, so the HLTM's class-pair weights have no
   counterpart) and their covariance with the pair's K is left out. `attrs["note"]` says which.
   `rel_error` = ||g - p|| / ||g||, `cosine` = cos(g, p); `residue_other` = ||u - p|| / ||g|| with
   u the chain-rule form's mean (there is no output normalization here, so residue_normalization
   is 0 and u = g up to float noise).
The operator estimate must come from images and views of the distribution the batches are drawn
from; its own sampling error adds to the finite-M error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from runtime.images.encoders import Encoder
from runtime.images.head import head_connections
from runtime.images.operator import FLOAT, Layer, Products, eval_mode, layers_of
from runtime.loss_operators import pair_weights, view_coefficients
from runtime.losses import loss_value
from runtime.theorem import PREDICTION, REDUCTION_FACTOR, TheoremResult
from sslspec.spec import schema

# () -> x (B, 3, S, S), x_pos (B, 3, S, S), x_neg (H, B, 3, S, S): one fresh training batch
DrawImages = Callable[[], Sequence[Tensor]]
CONTRASTIVE = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss


def prediction_rule(loss_cfg: schema.Loss, layer: Layer, last: bool, out_dim: int) -> dict[str, Any]:
    """The loss's prediction for a head layer: its weights' kind, c, beta and whether it is exact."""
    if not isinstance(loss_cfg, CONTRASTIVE):
        raise ValueError(f"the theorem check needs a loss of distances (got {schema.kind_of(loss_cfg)!r})")
    kind = schema.kind_of(loss_cfg)
    beta = float(loss_cfg.beta) if isinstance(loss_cfg, schema.SimpleLoss) else 0.0
    weights = "analytic" if kind == "simple" else "batch_scalar"
    why = []
    if weights == "batch_scalar":
        why.append("the pair weights' covariance with the pair's connections is left out")
    if not last:
        why.append(f"{layer.name} is below the head's last layer: biases and batch norm above it add a term")
    return {
        "loss": kind,
        "reduction": loss_cfg.reduction,
        "weights": weights,
        "factor": REDUCTION_FACTOR[loss_cfg.reduction](out_dim),
        "beta": beta,
        "out_dim": out_dim,
        "exact": not why,
        "note": "; ".join(why) or "exact in expectation",
        "mode": "eval (batch norm with running statistics)",
    }


def _chain_form(enc: Encoder, layer: Layer, views: Tensor, c: Tensor) -> Tensor:
    """Views (V, B, 3, S, S) and cotangents c (V, B, D) -> (P,) sum_vb K_vb c_vb from K = J^T (x) h."""
    h, jac = head_connections(enc, layer, views)  # (V, B, n_in), (V, B, D, n_out)
    jt = torch.einsum("vbdo,vbd->vbo", jac, c.to(FLOAT))
    return torch.einsum("vbo,vbi->oi", jt, h).reshape(-1)


def sweep(
    enc: Encoder,
    loss_cfg: schema.Loss,
    draw: DrawImages,
    layers: Sequence[Layer],
    batches: Sequence[int],
    identity: bool = True,
) -> tuple[Tensor, Tensor | None, float]:
    """One sweep of max(M) batches -> per M the means over the first M batches of autograd's gradient
    and (with `identity`) of the chain-rule form, both (m, n, P_max) zero-padded, and the mean batch
    scalar c."""
    assert isinstance(loss_cfg, CONTRASTIVE), loss_cfg
    params = [enc.get_parameter(lay.param) for lay in layers]
    p_max = max(lay.size for lay in layers)
    grad = torch.zeros(len(layers), p_max, dtype=FLOAT)
    chain = torch.zeros_like(grad)
    out_g = torch.zeros(len(batches), len(layers), p_max, dtype=FLOAT)
    out_c = torch.zeros_like(out_g)
    scalar = 0.0
    with eval_mode(enc):
        for k in range(1, max(batches) + 1):
            x, pos, neg = draw()[:3]
            views = torch.cat([x[None], pos[None], neg])  # (V, B, 3, S, S), V = 2 + H
            z = enc(views.flatten(0, 1)).unflatten(0, views.shape[:2])  # (V, B, D)
            gs = torch.autograd.grad(loss_value(loss_cfg, z[0], z[1], z[2:]), params)
            w = pair_weights(loss_cfg, z)  # (H + 1, B)
            scalar += float(-(w.shape[1] * w[1:]).sum(0).mean())
            c = view_coefficients(w, z.detach())
            for n, (lay, g) in enumerate(zip(layers, gs, strict=True)):
                grad[n, : lay.size] += g.detach().reshape(-1).to(FLOAT)
                if identity:
                    chain[n, : lay.size] += _chain_form(enc, lay, views, c)
            for m in (j for j, mm in enumerate(batches) if mm == k):
                out_g[m], out_c[m] = grad / k, chain / k
    return out_g, out_c if identity else None, scalar / max(batches)


def head_theorem_check(
    enc: Encoder,
    loss_cfg: schema.Loss,
    draw: DrawImages,
    conns: Sequence[Products],
    batches: Sequence[int] = (1, 4, 16, 64, 256),
    identity: bool = True,
) -> TheoremResult:
    """Check E[d loss / d W] against the loss's prediction for the head layers of `conns` (each a
    Connections over measurement views of fresh images, for one Linear layer of the head), weights
    unchanged. draw: a fresh training batch per call (the run's check generator). Cost: max(M)
    forwards and backwards of a training batch, plus the head's Jacobians of its views (a jacrev
    of the small head per view, with `identity`; else batch_rel_error and residue_other are NaN),
    plus one jvp and one vjp over the measurement views per layer."""
    ms = sorted(set(batches))
    if not conns or not ms or ms[0] < 1:
        raise ValueError(f"need at least one layer and values of M >= 1 (got {len(conns)}, {list(batches)})")
    layers = [conn.layer for conn in conns]
    head = _linear_layers(enc)
    out_dim = int(enc.get_parameter(head[-1].param).shape[0])
    rules = [prediction_rule(loss_cfg, lay, lay.name == head[-1].name, out_dim) for lay in layers]
    g, chain, scalar = sweep(enc, loss_cfg, draw, layers, ms, identity)
    preds, simple = [], []
    for conn, rule in zip(conns, rules, strict=True):
        vec = conn.weight.detach().reshape(-1).to(FLOAT)
        opv = conn.unbiased_apply(vec, rule["beta"])  # (OP - beta V) vec(W)
        simple.append(-2 * rule["factor"] * opv)
        preds.append(simple[-1] if rule["weights"] == "analytic" else -2 * scalar * conn.unbiased_apply(vec))
    p, p_simple = _padded(preds, g.shape[-1]), _padded(simple, g.shape[-1])
    rel, cos = _compare(g, p)
    rel_simple, cos_simple = _compare(g, p_simple)
    sizes = torch.tensor([lay.size for lay in layers])
    real = torch.arange(g.shape[-1])[None, :] < sizes[:, None]  # (n, P_max)
    attrs = {**rules[-1], "exact": all(r["exact"] for r in rules), "mean_weight": scalar}
    attrs["note"] = "; ".join(f"{lay.name}: {r['note']}" for lay, r in zip(layers, rules, strict=True))
    attrs["prediction"] = PREDICTION[rules[-1]["weights"]]
    return TheoremResult(
        nodes=torch.tensor([int(lay.name.removeprefix("head")) for lay in layers]),
        batches=torch.tensor(ms),
        rel_error=rel,
        cosine=cos,
        rel_error_own=rel,
        cosine_own=cos,
        rel_error_simple=rel_simple,
        cosine_simple=cos_simple,
        batch_rel_error=_relative(chain, g, g),
        residue_normalization=torch.zeros_like(rel),
        residue_other=_relative(chain, p[None], g),
        grad_norm=g.norm(dim=-1).T,
        pred_norm=p.norm(dim=-1),
        pred_norm_own=p.norm(dim=-1),
        grad=g.transpose(0, 1).masked_fill(~real[:, None, :], torch.nan),
        pred=p.masked_fill(~real, torch.nan),
        attrs=attrs,
    )


def _linear_layers(enc: Encoder) -> list[Layer]:
    return [lay for lay in layers_of(enc).values() if lay.linear]


def _padded(vs: Sequence[Tensor], size: int) -> Tensor:
    return torch.stack([torch.nn.functional.pad(v, (0, size - v.shape[0])) for v in vs])


def _compare(g: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """g (m, n, P), p (n, P), zero-padded alike -> rel error and cosine, both (n, m)."""
    g_norm, p_norm = g.norm(dim=-1), p.norm(dim=-1)[None]
    rel = (g - p[None]).norm(dim=-1) / g_norm
    cos = (g * p[None]).sum(-1) / (g_norm * p_norm)
    return rel.T, cos.T


def _relative(a: Tensor | None, b: Tensor, g: Tensor) -> Tensor:
    """(m, n, P) a and b (or (1, n, P)) -> (n, m) ||a - b|| / ||g||; NaN when a is None."""
    if a is None:
        return torch.full(g.shape[:2], torch.nan, dtype=g.dtype).T
    out: Tensor = ((a - b).norm(dim=-1) / g.norm(dim=-1)).T
    return out
