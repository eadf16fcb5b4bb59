"""The theorem check: the mean gradient over M fresh batches against the loss's covariance-operator
prediction, the exact chain-rule form of each batch, and the residue.

Per chosen node n (of level l) and value of M it compares three things (loss-operators.md):

1. The exact identity: per batch, dL / dvec(W_n) = sum_{b,k} w_kb (K_n(a_kb) - K_n(b_kb)) Delta f_kb
   with the loss's pair weights w = dL / dd (runtime.loss_operators; K~ and Delta f~ with an
   l2-normalized output). `batch_rel_error` is ||chain - g|| / ||g|| of their means over M batches,
   g autograd's: float noise for every loss, reduction, bias and normalization. With batch norm a
   training batch has no per-example Jacobian, so it is NaN (the note says so).
2. The loss's population prediction p. For a bias-free, unnormalized network f = sum_m K_m^T vec(W_m)
   over the nodes m of one level, so the chain-rule form is sum_m [sum_{b,k} w ΔK_n ΔK_m^T] vec(W_m)
   and, taking expectations pair by pair (positive: E ΔK ΔK^T = 2 V, V = E_x V_aug[K | x]; negative:
   2 (V + OP) with OP = Cov_x(Kbar)),
       simple (either reduction):  p = -2 c sum_m (OP[n, m] - beta V[n, m]) vec(W_m), c = 1 (sample)
                                   or 2 / D (batch: the loss is (2 / D) times the per-sample one);
       batch reduction, triplet / InfoNCE: every example of a batch has the same weights, a scalar
                                   of the batch; p = -2 E[c] sum_m OP[n, m] vec(W_m) with
                                   c = -B sum_k w_k, its mean over the M batches of the sweep (the
                                   covariance between c and the batch's own gradient is left out:
                                   it vanishes as the batch grows);
       sample reduction, triplet / InfoNCE: the weights vary per pair; p = -2 sum_m OP_Omega[n, m]
                                   vec(W_m) with the weighted operator of the classes' pair weights
                                   Omega (grouped over the sweep's negatives by the classes of anchor
                                   and negative; runtime.loss_operators), which is c OP for constant
                                   weights. Their weights sum to zero per example, so V drops out.
   `rel_error` = ||g - p|| / ||g|| and `cosine` = cos(g, p) against it; `*_own` with the node's own
   block only; `*_simple` against the simple-loss prediction (c, beta; beta = 0 for the other losses)
   that this check used for every loss before, kept for continuity.
3. The residue g - p, split as (g - u) + (u - p) with u the mean over the M batches of the chain-rule
   form with K and the raw output's Delta f (the unnormalized operator form, the same weights):
   `residue_normalization` = ||g - u|| / ||g||, the part the output normalization's Jacobian explains
   (0 without normalization), and `residue_other` = ||u - p|| / ||g|| (the weights' dependence on the
   views, the biases' propagated term, and the finite M).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from runtime.loss_operators import (
    PairWeights,
    chain_rule_form,
    pair_laplacian,
    pair_weights,
    weighted_row_products,
)
from runtime.losses import loss_value
from runtime.measure import FLOAT, CovarianceOperator
from runtime.network import Forward, LevelNet
from sslspec.spec import schema

# () -> x (B, n), x_pos (B, n), x_neg (H, B, n)[, classes (H + 1, B): the anchor's, then each negative's]
DrawBatch = Callable[[], Sequence[Tensor]]
REDUCTION_FACTOR: dict[str, Callable[[int], float]] = {"sample": lambda d: 1.0, "batch": lambda d: 2.0 / d}


@dataclass(frozen=True)
class TheoremResult:
    """Per chosen node (n) and value of M (m), g = mean gradient over M batches, p = prediction
    (the module docstring defines every field)."""

    nodes: Tensor  # (n,) long, global breadth-first ids
    batches: Tensor  # (m,) long, the values of M
    rel_error: Tensor  # (n, m)
    cosine: Tensor  # (n, m)
    rel_error_own: Tensor  # (n, m)
    cosine_own: Tensor  # (n, m)
    rel_error_simple: Tensor  # (n, m)
    cosine_simple: Tensor  # (n, m)
    batch_rel_error: Tensor  # (n, m) the exact identity's error, NaN without per-example Jacobians
    residue_normalization: Tensor  # (n, m)
    residue_other: Tensor  # (n, m)
    grad_norm: Tensor  # (n, m) ||g||
    pred_norm: Tensor  # (n,) ||p||
    pred_norm_own: Tensor  # (n,)
    grad: Tensor  # (n, m, P) g in vec(W_node) order (i major, o minor), NaN past the node level's P
    pred: Tensor  # (n, P) p, NaN-padded alike
    attrs: dict[str, Any] = field(default_factory=dict)  # loss, reduction, weights, exact, note

    def data(self) -> dict[str, Tensor]:
        """The tensors by name (everything but attrs)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, Tensor)}


def prediction_rule(loss_cfg: schema.Loss, net: LevelNet, levels: Sequence[int]) -> dict[str, Any]:
    """The loss's prediction (`weights`: analytic, batch scalar or class pairs), the simple-loss
    factor c and beta, and whether the prediction is exact in expectation (with why not)."""
    kind = schema.kind_of(loss_cfg)
    contrastive = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss
    reduction = loss_cfg.reduction if isinstance(loss_cfg, contrastive) else None
    if kind not in ("simple", "triplet", "infonce") or reduction not in REDUCTION_FACTOR:
        raise ValueError(f"the theorem check supports simple, triplet and infonce losses (got {kind!r})")
    out_dim = int(net.widths[0])
    beta = float(loss_cfg.beta) if isinstance(loss_cfg, schema.SimpleLoss) else 0.0
    weights = "analytic" if kind == "simple" else "batch_scalar" if reduction == "batch" else "class_pairs"
    why = []
    if weights == "batch_scalar":
        why.append("the batch scalar's covariance with the batch's gradient is left out (small for large B)")
    if weights == "class_pairs":
        why.append("the per-pair weights vary with the views (a residue the weighted operator leaves out)")
    if net.normalize != "none":
        why.append(f"the output is normalized ({net.normalize}); the operator is for the raw output")
    if len(net.norms):
        why.append("batch norm is on (no per-example Jacobian in training: no exact identity)")
    if net.has_bias and any(lvl > 0 for lvl in levels):
        why.append("biases above a checked node add a propagated-bias term the prediction omits")
    return {
        "loss": kind,
        "reduction": reduction,
        "weights": weights,
        "factor": REDUCTION_FACTOR[reduction](out_dim),
        "beta": beta,
        "out_dim": out_dim,
        "exact": not why,
        "note": "; ".join(why) or "exact in expectation",
    }


def predictions(
    net: LevelNet,
    cov: CovarianceOperator,
    nodes: Sequence[int],
    factor: float,
    beta: float,
    lap: Tensor | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per node (P_l,) float64: the level-row prediction and the own-block prediction,
    -2 factor sum_m (OP[node, m] - beta V[node, m]) vec(W_m), with OP_Omega of the class-pair
    Laplacian `lap` (runtime.loss_operators.pair_laplacian) in place of OP when given."""
    full, own = [], []
    for node in nodes:
        lvl, i = cov.locate[node]
        w = net.level_weights()[lvl].detach().to(FLOAT)  # (N_l, W, F)
        vec = w.transpose(1, 2).reshape(w.shape[0], -1)  # (N_l, P): column-stacked, i major, o minor
        if lap is None:
            terms = cov.row_products(node, vec)  # (N_l, P): OP[node, m] vec(W_m), never forming OP
        else:
            terms = weighted_row_products(cov.level_factor(lvl), i, vec, lap)
        if beta:
            terms = terms - beta * torch.einsum("nab,nb->na", cov.within_row(node), vec.to(terms))
        full.append(-2 * factor * terms.sum(dim=0))
        own.append(-2 * factor * terms[i])
    return full, own


def _batch_forward(net: LevelNet, x: Tensor, pos: Tensor, neg: Tensor) -> tuple[Forward, Tensor]:
    """One forward over all views (as runtime.train does) -> the Forward and z (V, B, D), V = 2 + H."""
    b, h = x.shape[0], neg.shape[0]
    fwd = net(torch.cat([x, pos, neg.reshape(h * b, -1)]), views=2 + h)
    return fwd, fwd.out.reshape(2 + h, b, -1)


@dataclass
class Sweep:
    """What one sweep of max(M) batches gives: per M in `batches` the means over the first M
    batches, (m, n, P_max) zero-padded: autograd's gradient `grad`, the chain-rule form `chain`
    and its raw-output form `raw` (None without per-example Jacobians); the weights' statistics."""

    grad: Tensor
    chain: Tensor | None
    raw: Tensor | None
    scalar: float  # mean over the batches of c = -B sum_k w_k (the batch scalar for reduction = batch)
    pairs: PairWeights | None


def sweep(
    net: LevelNet,
    loss_cfg: schema.Loss,
    draw_batch: DrawBatch,
    locate: Sequence[tuple[int, int]],
    batches: Sequence[int],
    *,
    identity: bool = False,
    n_classes: int | None = None,
) -> Sweep:
    """The sweep behind the check (see `Sweep`): one forward/backward per batch; with `identity`
    also the Jacobians and the chain-rule forms; with `n_classes` the class-pair weights (the draw
    must then return the classes). Weights untouched (batch-norm running statistics are restored
    and the train/eval mode is kept)."""
    levels = sorted({lvl for lvl, _ in locate})
    params = [net.weights[lvl] for lvl in levels]  # the (N_l, W, F) leaf parameters
    sums = {
        key: [torch.zeros(p.shape[0], p.shape[1] * p.shape[2], dtype=FLOAT, device=p.device) for p in params]
        for key in ("grad", "chain", "raw")
    }
    p_max = max(s.shape[1] for s in sums["grad"])
    dev = params[0].device
    out = {key: torch.zeros(len(batches), len(locate), p_max, dtype=FLOAT, device=dev) for key in sums}
    contrastive = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss
    weighted = isinstance(loss_cfg, contrastive)
    pairs = PairWeights(n_classes) if n_classes is not None else None
    scalar = 0.0
    saved = {k: v.clone() for k, v in net.named_buffers()}
    mode = net.training
    net.train()
    try:
        for k in range(1, max(batches) + 1):
            batch = draw_batch()
            fwd, z = _batch_forward(net, *batch[:3])
            grads = torch.autograd.grad(loss_value(loss_cfg, z[0], z[1], z[2:]), params)
            _add(sums["grad"], [g.detach().transpose(1, 2).reshape(g.shape[0], -1) for g in grads])
            if weighted:
                assert isinstance(loss_cfg, contrastive)
                w = pair_weights(loss_cfg, z)  # (H + 1, B)
                scalar += float(-(w.shape[1] * w[1:]).sum(0).mean())
                if pairs is not None:
                    if len(batch) < 4:
                        raise ValueError("the class-pair weights need the classes of each batch")
                    pairs.update(w, batch[3])
                if identity:
                    _add_forms(net, fwd, w, levels, sums)
            for m in (j for j, mm in enumerate(batches) if mm == k):
                _snapshot(out, sums, m, k, locate, levels)
    finally:
        net.train(mode)
        for name, buf in net.named_buffers():
            buf.copy_(saved[name])
    chain, raw = (out["chain"], out["raw"]) if identity else (None, None)
    return Sweep(out["grad"], chain, raw, scalar / max(batches), pairs)


def _snapshot(
    out: dict[str, Tensor],
    sums: dict[str, list[Tensor]],
    m: int,
    k: int,
    locate: Sequence[tuple[int, int]],
    levels: list[int],
) -> None:
    """Write the means over the first k batches into row m of each (m, n, P_max) output."""
    for key, acc in sums.items():
        for n, (lvl, i) in enumerate(locate):
            s = acc[levels.index(lvl)]
            out[key][m, n, : s.shape[1]] = s[i] / k


def _add(acc: list[Tensor], terms: Sequence[Tensor]) -> None:
    for s, t in zip(acc, terms, strict=True):
        s += t.detach().to(s)


@torch.no_grad()
def _add_forms(
    net: LevelNet, fwd: Forward, w: Tensor, levels: list[int], sums: dict[str, list[Tensor]]
) -> None:
    """Add one batch's chain-rule forms (with the output's normalization, and on the raw output)."""
    jac = net.jacobians(fwd, depth=max(levels) + 1)
    normalized = net.normalize != "none"
    chain = chain_rule_form(jac, fwd, w, levels, normalized)
    _add(sums["chain"], [chain[lvl] for lvl in levels])
    raw = chain_rule_form(jac, fwd, w, levels, False) if normalized else chain
    _add(sums["raw"], [raw[lvl] for lvl in levels])


def mean_gradients(
    net: LevelNet,
    loss_cfg: schema.Loss,
    draw_batch: DrawBatch,
    locate: Sequence[tuple[int, int]],
    batches: Sequence[int],
) -> Tensor:
    """(m, n, P_max) float64: per M in `batches` the mean over the first M batches of d loss / d vec(W_node),
    node (level, index) in `locate`; zero past a level's P. One sweep of max(M) batches; weights untouched."""
    return sweep(net, loss_cfg, draw_batch, locate, batches).grad


def _loss_prediction(
    rule: dict[str, Any], sw: Sweep, net: LevelNet, cov: CovarianceOperator, nodes: Sequence[int]
) -> tuple[list[Tensor], list[Tensor]]:
    """The batch scalar's or the class pairs' prediction (module docstring); their weights go
    into `rule` (recorded with the result)."""
    rule["mean_weight"] = sw.scalar
    if sw.pairs is None:
        return predictions(net, cov, nodes, sw.scalar, 0.0)
    rule["pair_weight_total"] = sw.pairs.total()
    return predictions(net, cov, nodes, 1.0, 0.0, pair_laplacian(sw.pairs.omega(), cov.counts))


def compare(g: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """g (m, n, P), p (n, P), zero-padded alike -> rel error and cosine, both (n, m)."""
    g_norm, p_norm = g.norm(dim=-1), p.norm(dim=-1)[None]
    rel = (g - p[None]).norm(dim=-1) / g_norm
    cos = (g * p[None]).sum(-1) / (g_norm * p_norm)
    return rel.T, cos.T


def relative(a: Tensor | None, b: Tensor, g: Tensor) -> Tensor:
    """(m, n, P) a and b (b may be (n, P)) -> (n, m) ||a - b|| / ||g||; NaN when a is None."""
    if a is None:
        return torch.full(g.shape[:2], torch.nan, dtype=g.dtype, device=g.device).T
    out: Tensor = ((a - b).norm(dim=-1) / g.norm(dim=-1)).T
    return out


def theorem_check(
    net: LevelNet,
    loss_cfg: schema.Loss,
    draw_batch: DrawBatch,
    cov: CovarianceOperator,
    nodes: Sequence[int] = (0,),
    batches: Sequence[int] = (1, 4, 16, 64, 256),
) -> TheoremResult:
    """Check E[d L / d W_node] against the loss's covariance-operator prediction, weights unchanged.

    net: the LevelNet being trained (its `weights[l]` parameters are differentiated). loss_cfg: the
    run's loss. draw_batch: returns a fresh training batch x (B, n_leaves), x_pos (B, n_leaves),
    x_neg (H, B, n_leaves) as floats (e.g. `Views.inputs()` of `draw_views` on the check's own
    generator), and, for per-sample triplet and InfoNCE, the classes (H + 1, B) of the anchors and
    the negatives (the operator's classes). cov: a CovarianceOperator filled over fresh measurement
    samples with the current weights and the classes of the augmentation, with `within` listing
    `nodes` when the loss is simple with beta != 0. nodes: global latent ids; batches: the values of
    M (one sweep of max(M) batches serves all; cumulative means).
    Cost: max(M) forward/backward passes of a training batch plus the Jacobians of its views
    (without batch norm), plus A (A^T vec(W)) per node (P N_l C D).
    """
    batches = _validated(cov, nodes, batches)
    locate = [cov.locate[n] for n in nodes]
    rule = prediction_rule(loss_cfg, net, [lvl for lvl, _ in locate])
    identity = not len(net.norms)
    pairs = rule["weights"] == "class_pairs"
    sw = sweep(
        net,
        loss_cfg,
        draw_batch,
        locate,
        batches,
        identity=identity,
        n_classes=cov.n_classes if pairs else None,
    )
    simple = predictions(net, cov, nodes, rule["factor"], rule["beta"])
    full, own = _loss_prediction(rule, sw, net, cov, nodes) if rule["weights"] != "analytic" else simple
    g = sw.grad  # (m, n, P_max)
    pad = lambda ps: torch.stack([torch.nn.functional.pad(p, (0, g.shape[-1] - p.shape[0])) for p in ps]).to(
        g.device
    )
    p_full, p_own, p_simple = pad(full), pad(own), pad(simple[0])  # (n, P_max), zero-padded
    sizes = torch.tensor([len(p) for p in full], device=g.device)
    real = torch.arange(g.shape[-1], device=g.device)[None, :] < sizes[:, None]  # (n, P_max)
    rel, cos = compare(g, p_full)
    rel_own, cos_own = compare(g, p_own)
    rel_simple, cos_simple = compare(g, p_simple)
    no_norm = net.normalize == "none" and sw.raw is not None
    return TheoremResult(
        nodes=torch.tensor(list(nodes)),
        batches=torch.tensor(batches),
        rel_error=rel,
        cosine=cos,
        rel_error_own=rel_own,
        cosine_own=cos_own,
        rel_error_simple=rel_simple,
        cosine_simple=cos_simple,
        batch_rel_error=relative(sw.chain, g, g),
        residue_normalization=torch.zeros_like(rel) if no_norm else relative(sw.raw, g, g),
        residue_other=relative(sw.raw, p_full[None], g),
        grad_norm=g.norm(dim=-1).T,
        pred_norm=p_full.norm(dim=-1),
        pred_norm_own=p_own.norm(dim=-1),
        grad=g.transpose(0, 1).masked_fill(~real[:, None, :], torch.nan),
        pred=p_full.masked_fill(~real, torch.nan),
        attrs={**rule, "prediction": PREDICTION[rule["weights"]]},
    )


PREDICTION = {
    "analytic": "p = -2 c sum_m (OP[node, m] - beta V[node, m]) vec(W_m) over the node's level",
    "batch_scalar": "p = -2 E[c] sum_m OP[node, m] vec(W_m), c = -B sum_k w_k the batch's scalar weight",
    "class_pairs": "p = -2 sum_m OP_Omega[node, m] vec(W_m), weighted by the class pairs' mean weights",
}


def _validated(cov: CovarianceOperator, nodes: Sequence[int], batches: Sequence[int]) -> list[int]:
    """The sorted distinct values of M, after checking the nodes and M."""
    ms = sorted(set(batches))
    if not nodes or not ms or ms[0] < 1:
        raise ValueError(f"need at least one node and values of M >= 1 (got {list(nodes)}, {list(batches)})")
    bad = [n for n in nodes if n not in cov.locate]
    if bad:
        raise ValueError(f"no latent node {bad[0]} (there are {cov.n_nodes})")
    return ms
