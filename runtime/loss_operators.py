"""Loss-specific covariance operators: the per-pair weights of a contrastive loss, the exact
chain-rule form of one batch's gradient, and the weighted operator the weights define
(reference: loss-operators.md, sections 1 to 3).

A batch holds, per example b, the pairs k = 0 (x_b, x_pos_b) and k = 1..H (x_b, x_neg_kb), with
d_kb = 1/2 ||f(a_kb) - f(b_kb)||^2 and Delta f_kb = f(a_kb) - f(b_kb). Every loss of the family is
a function of those distances (for `reduction = batch` through D_k = (2 / D) mean_b d_kb), so its
weights w_kb = dL / dd_kb (`pair_weights`) and, with the ReLU gates held fixed,

    dL / dvec(W_n) = sum_{b,k} w_kb (K_n(a_kb) - K_n(b_kb)) Delta f_kb           (chain rule)

exactly for every batch, with K_n(x) = f_in(x) (kron) J_n(x)^T (`chain_rule_form`). With an
l2-normalized output f~ = f / (||f|| + eps) the same holds with K~ = K N^T and Delta f~, where
N = d f~ / d f = (I - f~ f~^T (||f|| + eps) / ||f||) / (||f|| + eps) is symmetric; so K~ Delta f~
is K applied to N Delta f~.

In expectation (section 2), with omega = B w the weights of the mean-over-the-batch loss, the
negatives' pairs give the weighted operator

    OP_Omega = 1/2 sum_{j, j'} P_j P_j' Omega_jj' (Kbar_j - Kbar_j')(Kbar_j - Kbar_j')^T

where j, j' are the classes of the anchor and of the negative and Omega_jj' = H E[-omega_k | j, j']
is the mean negated weight of such a pair, times H (so the simple loss, omega_k = -1/H, has
Omega = 1 and OP_Omega = OP: the identity (X - X')(X - X')^T = 2 Cov for independent X, X').
The within-class (augmentation) terms enter with the mean total weight E[omega_0 + sum_k omega_k]
(beta for the simple loss, 0 for triplet and InfoNCE, whose weights sum to zero per example);
the part of them that follows the pair's classes, and everything that follows the weights'
dependence on the views themselves, is the residue. With Delta_j = Kbar_j - Kbar,
S the symmetric part of Omega (the sum is symmetric in j, j') and p_j = P_j, expanding the square,

    OP_Omega = sum_j p_j (S p)_j Delta_j Delta_j^T - sum_{j, j'} p_j p_j' S_jj' Delta_j Delta_j'^T
             = A (Lt (kron) I_D) A^T,   Lt_jj' = delta_jj' (S p)_j - sqrt(p_j) S_jj' sqrt(p_j'),

with A the operator's factor (columns sqrt(p_j) Delta_j[:, d], runtime.measure.level_factor):
a graph Laplacian of the class-pair weights between the factor and its transpose. For constant
S = c, Lt = c (I - sqrt(p) sqrt(p)^T) and A sqrt(p) = 0, so OP_Omega = c OP (`pair_laplacian`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from runtime.losses import LOSSES
from runtime.network import EPS_NORM, Forward
from sslspec.spec import schema

ContrastiveLoss = schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss


def pair_distances(z: Tensor) -> Tensor:
    """z (V, B, D) the outputs of x, x_pos and the H negatives -> (H + 1, B) d_kb = 1/2 ||.||^2."""
    return 0.5 * (z[:1] - z[1:]).square().sum(-1)


def pair_weights(cfg: ContrastiveLoss, z: Tensor) -> Tensor:
    """z (V, B, D) outputs (x, x_pos, negatives) -> (H + 1, B) w_kb = dL / dd_kb, the loss being
    runtime.losses' value of the batch written as a function of the per-pair distances."""
    d = pair_distances(z.detach()).requires_grad_()  # (H + 1, B), a leaf
    if cfg.reduction == "batch":
        scale = 2.0 / z.shape[-1]  # D_k = mean over the batch and dims of squared differences
        pos, neg = scale * d[0].mean(), scale * d[1:].mean(dim=1)
    else:
        pos, neg = d[0], d[1:]
    kind = schema.kind_of(cfg)
    assert kind is not None, cfg
    with torch.enable_grad():
        (w,) = torch.autograd.grad(LOSSES[kind](cfg, pos, neg), d)
    return w


def view_coefficients(w: Tensor, z: Tensor) -> Tensor:
    """w (H + 1, B) pair weights, z (V, B, D) outputs -> (V, B, D) c_v with
    sum_{b,k} w_kb (K(a_kb) - K(b_kb)) Delta f_kb = sum_{v,b} K(view_vb) c_vb: the anchor takes
    sum_k w_kb Delta f_kb, the positive -w_0b Delta f_0b, negative k -w_kb Delta f_kb."""
    u = w[..., None] * (z[:1] - z[1:])  # (H + 1, B, D)
    return torch.cat([u.sum(0, keepdim=True), -u])


def normalization_adjoint(raw: Tensor, c: Tensor) -> Tensor:
    """raw (Y, D) outputs before the l2 normalization, c (Y, D) -> N c, N = d f~ / d f (symmetric):
    N c = c / (||f|| + eps) - f (f . c) / (||f|| (||f|| + eps)^2)."""
    norm = raw.norm(dim=1, keepdim=True)
    safe = torch.where(norm > 0, norm, 1.0)  # f = 0 (every gate closed): N = I / eps, as autograd has it
    along = (raw * c).sum(dim=1, keepdim=True) / (safe * (norm + EPS_NORM))
    out: Tensor = (c - raw * along) / (norm + EPS_NORM)
    return out


def chain_rule_form(
    jac: Sequence[Tensor], fwd: Forward, w: Tensor, levels: Sequence[int], normalized: bool
) -> dict[int, Tensor]:
    """The chain-rule gradient of one batch per level in `levels`: (N_l, P_l) in vec(W) order.

    jac: the network's Jacobians of `fwd` (LevelNet.jacobians: per level (V B, N_l, D, W_l));
    fwd: the forward of the V = H + 2 views stacked view-major (x, x_pos, negatives), (V B, n);
    w (H + 1, B) the pair weights. normalized: with K~ and Delta f~ of the l2-normalized output
    (the training loss's own gradient); otherwise K and Delta f of the raw output (the unnormalized
    operator form with the same weights). Per-example Jacobians exist without batch norm only."""
    v = w.shape[0] + 1
    out = fwd.out if normalized else fwd.raw
    z = out.detach().reshape(v, -1, out.shape[-1])  # (V, B, D)
    c = view_coefficients(w, z).reshape(-1, z.shape[-1])  # (V B, D)
    if normalized:
        c = normalization_adjoint(fwd.raw.detach(), c)
    grads = {}
    for lvl in levels:
        jt = torch.einsum("ynds,yd->yns", jac[lvl], c)  # (V B, N_l, W_l): J^T c
        g = torch.einsum("ynf,yns->nfs", fwd.inputs[lvl].detach(), jt)  # (N_l, F_l, W_l)
        grads[lvl] = g.reshape(g.shape[0], -1)  # i major, o minor: vec(W)
    return grads


class PairWeights:
    """Accumulates the negatives' weights by the classes of anchor and negative over batches:
    `omega()` is Omega (C, C), H E[-omega_k | classes j, j'] with omega = B w, and `total()` the
    mean of omega_0 + sum_k omega_k per example (the within-class terms' weight)."""

    def __init__(self, n_classes: int) -> None:
        self.c = n_classes
        self.sums = torch.zeros(n_classes * n_classes, dtype=torch.float64)
        self.counts = torch.zeros(n_classes * n_classes, dtype=torch.float64)
        self.total_sum, self.examples = 0.0, 0

    def update(self, w: Tensor, classes: Tensor) -> None:
        """w (H + 1, B) pair weights, classes (H + 1, B): the anchor's, then each negative's."""
        h, b = w.shape[0] - 1, w.shape[1]
        omega = (b * w).to(torch.float64).cpu()
        cls = classes.cpu()
        pair = (cls[:1] * self.c + cls[1:]).reshape(-1)  # (H B,) anchor major
        self.sums += torch.bincount(pair, weights=(-h * omega[1:]).reshape(-1), minlength=self.c**2)
        self.counts += torch.bincount(pair, minlength=self.c**2).to(torch.float64)
        self.total_sum += float(omega.sum())
        self.examples += b

    def omega(self) -> Tensor:
        """(C, C) Omega; pairs of classes never seen take the mean over all pairs."""
        mean = self.sums.sum() / self.counts.sum()
        seen = self.counts > 0
        out = torch.where(seen, self.sums / self.counts.clamp_min(1), mean)
        return out.reshape(self.c, self.c)

    def total(self) -> float:
        return self.total_sum / max(self.examples, 1)


def pair_laplacian(omega: Tensor, counts: Tensor) -> Tensor:
    """Omega (C, C) and the operator's class counts (C,) -> Lt (C', C') over the seen classes
    (module docstring): OP_Omega = A (Lt kron I_D) A^T for the operator's factor A."""
    seen = counts > 0
    p = counts[seen] / counts.sum()  # (C',)
    s = omega.to(p)[seen][:, seen]
    s = 0.5 * (s + s.T)
    root = p.sqrt()
    return torch.diag(s @ p) - root[:, None] * s * root[None, :]


def weighted_row_products(a: Tensor, i: int, vecs: Tensor, lap: Tensor) -> Tensor:
    """a (N_l, P_l, C' D) a level's factor, i the node's index, vecs (N_l, P_l), lap (C', C') ->
    (N_l, P_l): [m] = OP_Omega[node, m] vecs[m] = A_i (Lt kron I) A_m^T vecs[m], no P x P matrix."""
    n, _, r = a.shape
    coef = torch.einsum("npr,np->nr", a, vecs.to(a)).reshape(n, lap.shape[0], r // lap.shape[0])
    mixed = torch.einsum("cq,nqd->ncd", lap.to(a), coef).reshape(n, r)  # (N, C' D)
    return mixed @ a[i].T
