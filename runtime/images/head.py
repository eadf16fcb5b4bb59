"""The covariance operator of a projection-head Linear layer, exactly, from its factors.

For a Linear layer g = W h + b of the head, K(x)[(o, i), d] = J(x)[d, o] h(x)[i] with h the
layer's input and J = d f / d g the Jacobian of the head above it (runtime.images.operator's
docstring). With h (A, N, n_in) and J (A, N, D, n_out) of every measurement view in hand
(`head_connections`: one forward and a jacrev of the small head above the layer per view), every
product is a pair of small einsums, with no pass through the network:

    K_an^T v = J_an (V h_an),   sum_an K_an c_an = vec(sum_an (J_an^T c_an) h_an^T)   (V: v as n_out x n_in),

and the traces are closed forms over the views' Gram matrices, with C the (A N x A N) matrix of the
operator's coefficients (OP_A = sum_xy C_xy K_x K_y^T):

    tr(OP_A) = sum_xy C_xy (h_x . h_y) <J_x, J_y>_F.

So the head's operators are exact (`HeadProducts`): exact products, exact traces, and eigenpairs by
subspace iteration run to convergence (runtime.images.spectra.converged_spectrum), never a P x P
matrix; `head_operator` forms that matrix for tests and small layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from runtime.images.encoders import Encoder
from runtime.images.operator import FLOAT, Layer, Products, eval_mode


class HeadProducts(Products):
    """Products with a head Linear layer's K = J^T (x) h over views, from h (A, N, n_in) and
    J (A, N, D, n_out) (`head_connections`); `weight` is the layer's weight parameter."""

    def __init__(
        self, layer: Layer, weight: Tensor, h: Tensor, jac: Tensor, *, unbiased: bool = True
    ) -> None:
        self.a, self.n = h.shape[:2]
        if self.a < 2 or (unbiased and self.n < 2):
            raise ValueError(f"need at least 2 views and 2 images (got {self.a} views of {self.n} images)")
        self.layer, self.weight, self.unbiased = layer, weight, unbiased
        self.h, self.jac = h.to(FLOAT), jac.to(FLOAT)

    def jvp(self, v: Tensor) -> Tensor:
        """v (P, k) -> (k, A, N, D): J_an (V h_an) for each column's V (n_out, n_in)."""
        n_out, n_in = self.jac.shape[-1], self.h.shape[-1]
        vs = v.T.to(FLOAT).reshape(-1, n_out, n_in)
        u = torch.einsum("ani,koi->kano", self.h, vs)
        return torch.einsum("ando,kano->kand", self.jac, u)

    def vjp(self, c: Tensor) -> Tensor:
        """c (k, A, N, D) -> (P, k): vec(sum_an (J_an^T c_an) h_an^T) for each k."""
        s = torch.einsum("ando,kand->kano", self.jac, c.to(FLOAT))
        return torch.einsum("kano,ani->koi", s, self.h).reshape(c.shape[0], -1).T

    def traces(self) -> tuple[Tensor, Tensor]:
        """tr(OP_A) and tr(V_hat), exactly, from the views' Gram matrices (module docstring)."""
        a, n = self.a, self.n
        h, jac = self.h.flatten(0, 1), self.jac.flatten(0, 1)  # (A N, n_in), (A N, D, n_out)
        gram = (h @ h.T) * torch.einsum("xdo,ydo->xy", jac, jac)  # (A N, A N): <K_x, K_y>_F
        same = torch.eye(n, dtype=FLOAT, device=h.device).repeat(a, a)  # [x and y show one image]
        b_div, w_div = self.divisors()
        between = (same / a**2 - 1.0 / (a**2 * n)) / b_div
        within = (torch.eye(a * n, dtype=FLOAT, device=h.device) - same / a) / w_div
        return (between * gram).sum(), (within * gram).sum()


def head_connections(enc: Encoder, layer: Layer, views: Tensor) -> tuple[Tensor, Tensor]:
    """A head Linear layer's exact factors over views (A, N, 3, S, S): its inputs h (A, N, n_in) and
    the Jacobians J = d f / d g (A, N, D, n_out) of the output by its outputs g = W h + b, so that
    K_an[(o, i), d] = J_an[d, o] h_an[i]. J comes from the head above the layer (per view, by
    jacrev), the network in eval mode; float64."""
    if not layer.linear:
        raise ValueError(f"{layer.name} is not a Linear layer of the head")
    head = enc.head
    assert isinstance(head, nn.Sequential), head
    idx = int(layer.module.split(".")[-1])
    tail = head[idx + 1 :]
    seen: list[Tensor] = []
    hook = head[idx].register_forward_hook(lambda m, inp, out: seen.extend([inp[0].clone(), out.clone()]))
    try:
        with eval_mode(enc), torch.no_grad():
            enc(views.flatten(0, 1))
    finally:
        hook.remove()
    h, g = seen[0].detach(), seen[1].detach()  # (A N, n_in), (A N, n_out)
    with eval_mode(enc):
        # a copy: without batch norm the tail starts with the head's in-place ReLU, which may not
        # write into (a view of) jacrev's input
        jac = torch.func.vmap(torch.func.jacrev(lambda y: tail(y[None].clone())[0]))(g)  # (A N, D, n_out)
    a, n = views.shape[:2]
    return h.to(FLOAT).unflatten(0, (a, n)), jac.detach().to(FLOAT).unflatten(0, (a, n))


def head_operator(h: Tensor, jac: Tensor, *, unbiased: bool = True, within: bool = False) -> Tensor:
    """Factors h (A, N, n_in), J (A, N, D, n_out) (`head_connections`) -> the dense (P, P) OP_A
    (or V_hat with `within`), P = n_out n_in in vec(W) order, formed from K = J^T (x) h exactly."""
    a, n = h.shape[:2]
    k = torch.einsum("ando,ani->anoid", jac, h).flatten(2, 3)  # (A, N, P, D)
    mean_n = k.mean(dim=0)  # (N, P, D): Kbar_n
    dev_a = (k - mean_n).permute(2, 0, 1, 3).reshape(k.shape[2], -1)  # (P, A N D)
    b_div, w_div = (n - 1, n * (a - 1)) if unbiased else (n, a * n)
    if within:
        return dev_a @ dev_a.T / w_div
    dev_n = (mean_n - mean_n.mean(dim=0)).permute(1, 0, 2).reshape(k.shape[2], -1)  # (P, N D)
    return dev_n @ dev_n.T / b_div
