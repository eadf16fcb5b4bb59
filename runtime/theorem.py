"""The theorem check: the mean gradient over M fresh batches against the covariance-operator prediction.

For the simple loss L = (1 + beta) d(x, x_pos) - d(x, x_neg) with d = 1/2 ||f(a) - f(b)||^2 per
example (reduction = sample) and a bias-free, unnormalized ReLU network, f = sum_m K_m^T vec(W_m)
over the nodes m of any one level, so for a node n of that level

    E[d L / d vec(W_n)] = -2 sum_m (OP[n, m] - beta E_x[Cov_aug(K_n, K_m | x)]) vec(W_m)

where OP[n, m] = Cov_x(Kbar_n, Kbar_m) is the block (n, m) of the level's operator (covariance-
operator.md states the single-layer case; a tree level is a layer whose weight is block diagonal,
so the cross blocks m != n enter; for a node alone on its level, the root or an MLP layer, the sum
is the node's own term). `reduction = batch` distances are means over the batch and the D output
dims of squared differences, i.e. (2 / D) times the per-example d averaged over the batch, so the
prediction is scaled by c = 2 / D. Other losses are compared with the simple-loss prediction (with
beta = 0): a comparison that leaves a residue by design, flagged in the result's attrs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from runtime.losses import loss_value
from runtime.measure import FLOAT, CovarianceOperator
from runtime.network import LevelNet
from sslspec.spec import schema

DrawBatch = Callable[[], tuple[Tensor, Tensor, Tensor]]  # () -> x (B, n), x_pos (B, n), x_neg (H, B, n)
REDUCTION_FACTOR: dict[str, Callable[[int], float]] = {"sample": lambda d: 1.0, "batch": lambda d: 2.0 / d}


@dataclass(frozen=True)
class TheoremResult:
    """Per chosen node (n) and value of M (m), g = mean gradient over M batches, p = prediction.

    `rel_error` = ||g - p|| / ||g|| and `cosine` = cos(g, p) use the level's block row (the exact
    prediction); `*_own` use the node's own block only, p = -2 c (OP - beta V) vec(W_node).
    """

    nodes: Tensor  # (n,) long, global breadth-first ids
    batches: Tensor  # (m,) long, the values of M
    rel_error: Tensor  # (n, m)
    cosine: Tensor  # (n, m)
    rel_error_own: Tensor  # (n, m)
    cosine_own: Tensor  # (n, m)
    grad_norm: Tensor  # (n, m) ||g||
    pred_norm: Tensor  # (n,) ||p||
    pred_norm_own: Tensor  # (n,)
    grad: Tensor  # (n, m, P) g in vec(W_node) order (i major, o minor), NaN past the node level's P
    pred: Tensor  # (n, P) p, NaN-padded alike
    attrs: dict[str, Any] = field(default_factory=dict)  # loss, reduction, factor, beta, exact, note

    def data(self) -> dict[str, Tensor]:
        """The tensors by name (everything but attrs)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, Tensor)}


def prediction_rule(loss_cfg: schema.Loss, net: LevelNet, levels: Sequence[int]) -> dict[str, Any]:
    """The factor c, beta, and whether the identity is exact for this loss and network (with why not)."""
    kind = schema.kind_of(loss_cfg)
    contrastive = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss
    reduction = loss_cfg.reduction if isinstance(loss_cfg, contrastive) else None
    if kind not in ("simple", "triplet", "infonce") or reduction not in REDUCTION_FACTOR:
        raise ValueError(f"the theorem check supports simple, triplet and infonce losses (got {kind!r})")
    out_dim = int(net.widths[0])
    beta = float(loss_cfg.beta) if isinstance(loss_cfg, schema.SimpleLoss) else 0.0
    why = []
    if kind != "simple":
        why.append(f"loss '{kind}' is compared with the simple-loss prediction (a residue by design)")
    if net.normalize != "none":
        why.append(f"the output is normalized ({net.normalize}); the identity is for the raw output")
    if len(net.norms):
        why.append("batch norm is on")
    if net.has_bias and any(lvl > 0 for lvl in levels):
        why.append("biases above a checked node add a propagated-bias term the prediction omits")
    return {
        "loss": kind,
        "reduction": reduction,
        "factor": REDUCTION_FACTOR[reduction](out_dim),
        "beta": beta,
        "out_dim": out_dim,
        "exact": not why,
        "note": "; ".join(why) or "exact in expectation",
    }


def predictions(
    net: LevelNet, cov: CovarianceOperator, nodes: Sequence[int], factor: float, beta: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Per node (P_l,) float64: the level-row prediction and the own-block prediction."""
    full, own = [], []
    for node in nodes:
        lvl, i = cov.locate[node]
        w = net.level_weights()[lvl].detach().to(FLOAT)  # (N_l, W, F)
        vec = w.transpose(1, 2).reshape(w.shape[0], -1)  # (N_l, P): column-stacked, i major, o minor
        terms = cov.row_products(node, vec)  # (N_l, P): OP[node, m] vec(W_m), never forming OP
        if beta:
            terms = terms - beta * torch.einsum("nab,nb->na", cov.within_row(node), vec.to(terms))
        full.append(-2 * factor * terms.sum(dim=0))
        own.append(-2 * factor * terms[i])
    return full, own


def _batch_loss(net: LevelNet, loss_cfg: schema.Loss, x: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """The training loss of one batch, one forward over all views (as runtime.train does)."""
    b, h = x.shape[0], neg.shape[0]
    out = net(torch.cat([x, pos, neg.reshape(h * b, -1)]), views=2 + h).out  # (B (2 + H), D)
    return loss_value(loss_cfg, out[:b], out[b : 2 * b], out[2 * b :].reshape(h, b, -1))


def mean_gradients(
    net: LevelNet,
    loss_cfg: schema.Loss,
    draw_batch: DrawBatch,
    locate: Sequence[tuple[int, int]],
    batches: Sequence[int],
) -> Tensor:
    """(m, n, P_max) float64: per M in `batches` the mean over the first M batches of d loss / d vec(W_node),
    node (level, index) in `locate`; zero past a level's P. One sweep of max(M) batches; weights untouched
    (batch-norm running statistics are restored and the train/eval mode is kept)."""
    levels = sorted({lvl for lvl, _ in locate})
    params = [net.weights[lvl] for lvl in levels]  # the (N_l, W, F) leaf parameters
    sums = [torch.zeros(p.shape[0], p.shape[1] * p.shape[2], dtype=FLOAT, device=p.device) for p in params]
    p_max = max(s.shape[1] for s in sums)
    out = torch.zeros(len(batches), len(locate), p_max, dtype=FLOAT, device=params[0].device)
    saved = {k: v.clone() for k, v in net.named_buffers()}
    mode = net.training
    net.train()
    try:
        for k in range(1, max(batches) + 1):
            grads = torch.autograd.grad(_batch_loss(net, loss_cfg, *draw_batch()), params)
            for s, g in zip(sums, grads, strict=True):
                s += g.detach().transpose(1, 2).reshape(s.shape).to(FLOAT)  # vec per node
            for m in (j for j, mm in enumerate(batches) if mm == k):
                for n, (lvl, i) in enumerate(locate):
                    s = sums[levels.index(lvl)]
                    out[m, n, : s.shape[1]] = s[i] / k
    finally:
        net.train(mode)
        for name, buf in net.named_buffers():
            buf.copy_(saved[name])
    return out


def _compare(g: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """g (m, n, P), p (n, P), zero-padded alike -> rel error and cosine, both (n, m)."""
    g_norm, p_norm = g.norm(dim=-1), p.norm(dim=-1)[None]
    rel = (g - p[None]).norm(dim=-1) / g_norm
    cos = (g * p[None]).sum(-1) / (g_norm * p_norm)
    return rel.T, cos.T


def theorem_check(
    net: LevelNet,
    loss_cfg: schema.Loss,
    draw_batch: DrawBatch,
    cov: CovarianceOperator,
    nodes: Sequence[int] = (0,),
    batches: Sequence[int] = (1, 4, 16, 64, 256),
) -> TheoremResult:
    """Check E[d L / d W_node] against the covariance-operator prediction, weights unchanged.

    net: the LevelNet being trained (its `weights[l]` parameters are differentiated). loss_cfg: the
    run's loss. draw_batch: returns a fresh training batch x (B, n_leaves), x_pos (B, n_leaves),
    x_neg (H, B, n_leaves) as floats (e.g. `Views.inputs()` of `draw_views` on the check's own
    generator). cov: a CovarianceOperator filled over fresh measurement samples with the current
    weights and the classes of the augmentation (`class_index(latents, share, states)`), with
    `within` listing `nodes` when the loss is simple with beta != 0. nodes: global latent ids;
    batches: the values of M (one sweep of max(M) batches serves all; cumulative means).
    Cost: max(M) forward/backward passes of a training batch, plus A (A^T vec(W)) per node (P N_l C D).
    """
    batches = _validated(cov, nodes, batches)
    locate = [cov.locate[n] for n in nodes]
    rule = prediction_rule(loss_cfg, net, [lvl for lvl, _ in locate])
    full, own = predictions(net, cov, nodes, rule["factor"], rule["beta"])
    g = mean_gradients(net, loss_cfg, draw_batch, locate, batches)  # (m, n, P_max)
    pad = lambda ps: torch.stack([torch.nn.functional.pad(p, (0, g.shape[-1] - p.shape[0])) for p in ps])
    p_full, p_own = pad(full).to(g.device), pad(own).to(g.device)  # (n, P_max), zero-padded
    sizes = torch.tensor([len(p) for p in full], device=g.device)
    real = torch.arange(g.shape[-1], device=g.device)[None, :] < sizes[:, None]  # (n, P_max)
    rel, cos = _compare(g, p_full)
    rel_own, cos_own = _compare(g, p_own)
    note = "p = -2 c sum_m (OP[node, m] - beta V[node, m]) vec(W_m) over the node's level; *_own: own block"
    return TheoremResult(
        nodes=torch.tensor(list(nodes)),
        batches=torch.tensor(batches),
        rel_error=rel,
        cosine=cos,
        rel_error_own=rel_own,
        cosine_own=cos_own,
        grad_norm=g.norm(dim=-1).T,
        pred_norm=p_full.norm(dim=-1),
        pred_norm_own=p_own.norm(dim=-1),
        grad=g.transpose(0, 1).masked_fill(~real[:, None, :], torch.nan),
        pred=p_full.masked_fill(~real, torch.nan),
        attrs={**rule, "prediction": note},
    )


def _validated(cov: CovarianceOperator, nodes: Sequence[int], batches: Sequence[int]) -> list[int]:
    """The sorted distinct values of M, after checking the nodes and M."""
    ms = sorted(set(batches))
    if not nodes or not ms or ms[0] < 1:
        raise ValueError(f"need at least one node and values of M >= 1 (got {list(nodes)}, {list(batches)})")
    bad = [n for n in nodes if n not in cov.locate]
    if bad:
        raise ValueError(f"no latent node {bad[0]} (there are {cov.n_nodes})")
    return ms
