"""The covariance operator of an image encoder's layers (covariance-operator.md, on real data).

Objects. For a layer l of an `Encoder` (runtime.images.encoders) with weight W (a Linear's
(n_out, n_in) or a Conv2d's (c_out, c_in, k, k)), P = W.numel() and vec(W) = W.reshape(-1) (the
parameter's own row-major order: output unit major). f(x) in R^D is the network's output (the
projection head's, before any loss normalization), the network in eval mode: batch norm then uses
its running statistics, an affine map per channel, so every view has its own Jacobian (in training
mode batch norm couples the examples of a batch and there is none). The connection is

    K(x) = (d f(x) / d vec(W))^T,   (P, D):   K(x)^T v = the jvp of f in the direction v,
                                               K(x) c   = the vjp of f with the cotangent c.

For a Linear layer with input h(x) (n_in) and J(x) = d f / d g (D, n_out), g = W h + b its output,
K[(o, i), d] = J[d, o] h[i] exactly: `head_connections` builds it from h and J, without autograd
over the parameters. For a conv layer K sums such products over the spatial positions; only its
products are formed.

The sample is an image x; its views x_a ~ p_aug(. | x) are the run's augmentation pipeline applied
A times. With N images and A views each (K_an = K(x_an), Kbar_n = mean_a K_an):

    OP = V_x[Kbar(x)],   V = E_x[V_aug[K | x]]          (P, P) each, never formed by the runtime.

Estimated from a sample of N images (`unbiased`, divisors N - 1 and N (A - 1)):

    OP_A  = 1/(N - 1) sum_n (Kbar_n - Kbar)(Kbar_n - Kbar)^T,    E[OP_A] = OP + V / A,
    V_hat = 1/(N (A - 1)) sum_{a,n} (K_an - Kbar_n)(K_an - Kbar_n)^T,    E[V_hat] = V:

the covariance over images of the A-view means also holds the views' own noise, V / A, so
OP_A - V_hat / A is the unbiased estimate of OP (indefinite in general: its small eigenvalues can
be negative). OP_A is positive semi-definite and is the one whose spectrum is recorded (with
tr(V_hat) / A beside its trace); the theorem check uses the unbiased one. With `unbiased = False`
the divisors are N and A N: the population forms over an exhaustive enumeration of images and
views, where Kbar_n is exact and OP_A is OP itself. Centring one side of each outer product
suffices (the other side's deviations sum to zero), so with t_an = K_an^T v (one jvp over all
views, tbar_n = mean_a t_an, tbar = mean_n tbar_n):

    (b OP_A + w V_hat) v = sum_an K_an [b (tbar_n - tbar) / (A (N - 1)) + w (t_an - tbar_n) / (N (A - 1))]

is one vjp: an operator-vector product costs one jvp and one vjp over the N A views, and a
quadratic form v^T OP_A v = ||tbar_n - tbar||^2 / (N - 1) summed over n (Hutchinson's trace
estimate) one jvp alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from runtime.images.encoders import Encoder

FLOAT = torch.float64
CHUNK = 512  # views times columns per jvp / vjp pass: bounds the activations held at once


@dataclass(frozen=True)
class Layer:
    """A measurable layer: `name` as the spec writes it (conv0.. in the trunk's module order,
    head0.. for the projection head's Linear layers), the weight's parameter name and shape."""

    name: str
    param: str
    module: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """P, the number of weights."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def linear(self) -> bool:
        return self.name.startswith("head")


def layers_of(enc: Encoder) -> dict[str, Layer]:
    """The encoder's measurable layers by name: its trunk's Conv2d layers (conv0, conv1, ... in
    module order, shortcut convs included) and its head's Linear layers (head0, head1, ...)."""
    out: dict[str, Layer] = {}
    for prefix, kind, part in (("conv", nn.Conv2d, enc.trunk), ("head", nn.Linear, enc.head)):
        root = "trunk" if part is enc.trunk else "head"
        k = 0
        for name, mod in part.named_modules():
            if isinstance(mod, kind):
                key = f"{prefix}{k}"
                out[key] = Layer(key, f"{root}.{name}.weight", f"{root}.{name}", tuple(mod.weight.shape))
                k += 1
    return out


class Products:
    """What every way of applying a layer's operator shares: given `jvp` (P, k) -> (k, A, N, D)
    t = K_an^T v and `vjp` (k, A, N, D) -> (P, k) sum_an K_an c_an of a subclass, `apply(v, b, w)`
    -> (b OP_A + w V_hat) v, the unbiased (OP_hat - beta V_hat) v and the quadratic forms (module
    docstring), float64. `a`, `n`: views and images; `weight`: the layer's weight parameter."""

    a: int
    n: int
    unbiased: bool
    layer: Layer
    weight: Tensor

    def jvp(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def vjp(self, c: Tensor) -> Tensor:
        raise NotImplementedError

    def divisors(self) -> tuple[int, int]:
        """The divisors of OP_A's (over images) and V_hat's (over views) sums of outer products."""
        a, n = self.a, self.n
        return (n - 1, n * (a - 1)) if self.unbiased else (n, a * n)

    def coefficients(self, t: Tensor, between: float, within: float) -> Tensor:
        """t (k, A, N, D) = K^T v -> cotangents c (k, A, N, D) of (between OP_A + within V_hat) v."""
        mean_n = t.mean(dim=1, keepdim=True)  # (k, 1, N, D): tbar_n
        b_div, w_div = self.divisors()
        dev_n = (mean_n - mean_n.mean(dim=2, keepdim=True)) / (self.a * b_div)
        return between * dev_n.expand_as(t) + within * (t - mean_n) / w_div

    def apply(self, v: Tensor, between: float = 1.0, within: float = 0.0) -> Tensor:
        """v (P, k) (or (P,)) -> the same shape, float64: (between OP_A + within V_hat) v, one jvp
        and one vjp per column."""
        cols = v[:, None] if v.dim() == 1 else v
        out = self.vjp(self.coefficients(self.jvp(cols), between, within))
        return out[:, 0] if v.dim() == 1 else out

    def unbiased_apply(self, v: Tensor, beta: float = 0.0) -> Tensor:
        """v (P,) -> (OP_hat - beta V_hat) v with OP_hat = OP_A - V_hat / A (the population OP and V
        when not `unbiased`, where OP_A is OP)."""
        return self.apply(v, 1.0, -beta - (1.0 / self.a if self.unbiased else 0.0))

    def quadratic(self, g: Tensor) -> Tensor:
        """g (P, k) -> (2, k) float64: g^T OP_A g and g^T V_hat g per column, from jvps alone."""
        b_div, w_div = self.divisors()
        t = self.jvp(g)  # (k, A, N, D)
        mean_n = t.mean(dim=1)  # (k, N, D)
        between = (mean_n - mean_n.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2)) / b_div
        within = (t - mean_n[:, None]).square().sum(dim=(1, 2, 3)) / w_div
        return torch.stack([between, within])

    def apply_block(self, v: Tensor) -> Tensor:
        """v (P, k) -> (P, k) float64: OP_A v."""
        return self.apply(v)


class Connections(Products):
    """Products with the connections K_an of one layer over fixed views (A, N, 3, S, S).

    The products by autograd through the network (jvp and vjp over the N A views, in chunks): any
    layer. The encoder is put in eval mode for each product and its mode restored; its weights are
    not changed."""

    def __init__(self, enc: Encoder, layer: Layer, views: Tensor, *, unbiased: bool = True) -> None:
        a, n = views.shape[:2]
        if a < 2 or (unbiased and n < 2):
            raise ValueError(f"need at least 2 views and 2 images (got {a} views of {n} images)")
        self.enc, self.layer, self.unbiased = enc, layer, unbiased
        self.a, self.n = a, n
        self.x = views.flatten(0, 1)  # (A N, 3, S, S), view major
        self.weight = enc.get_parameter(layer.param)

    def _f(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        def f(w: Tensor) -> Tensor:
            out: Tensor = functional_call(self.enc, {self.layer.param: w}, (x,))
            return out

        return f

    def _chunks(self, k: int) -> list[slice]:
        """Slices of the views such that k products of a chunk hold about CHUNK views' activations."""
        step = max(1, CHUNK // k)
        return [slice(s, s + step) for s in range(0, self.x.shape[0], step)]

    def jvp(self, v: Tensor) -> Tensor:
        """v (P, k) -> (k, A, N, D) float64: K_an^T v_j for each column j (vmap over the columns)."""
        w = self.weight.detach()
        tangents = v.T.to(w).reshape(v.shape[1], *w.shape)
        outs: list[Tensor] = []
        with eval_mode(self.enc):
            for s in self._chunks(v.shape[1]):
                f = self._f(self.x[s])
                outs.append(torch.func.vmap(lambda t, f=f: jvp(f, (w,), (t,))[1])(tangents))
        out: Tensor = torch.cat(outs, dim=1).to(FLOAT).unflatten(1, (self.a, self.n))
        return out

    def vjp(self, c: Tensor) -> Tensor:
        """c (k, A, N, D) -> (P, k) float64: sum_an K_an c_jan for each j (one forward per chunk,
        the k cotangents pulled back together)."""
        w = self.weight.detach()
        flat = c.flatten(1, 2).to(w)  # (k, A N, D)
        total = torch.zeros(c.shape[0], self.layer.size, dtype=FLOAT, device=w.device)
        with eval_mode(self.enc), torch.enable_grad():
            for s in self._chunks(c.shape[0]):
                leaf = w.clone().requires_grad_()
                out = self._f(self.x[s])(leaf)
                (g,) = torch.autograd.grad(out, leaf, flat[:, s], is_grads_batched=True)
                total += g.reshape(c.shape[0], -1).to(FLOAT)
        return total.T


class eval_mode:
    """Puts a module in eval mode for the block, restoring its mode after."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.mode = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.mode)
