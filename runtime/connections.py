"""Sums over samples of the connections K = f_in (x) J of a level's nodes (runtime.measure's
covariance operator), without forming K per sample: per-class sums as class-grouped matrix
products, and the second moments K_s K_m^T from the factors' own products. Inputs are per level,
f (B, N, F) and J (B, N, D, W) (transposed views of the network's node-major (N, B, .) layout);
every product is formed in float64 (exact for float32 inputs) and every sum is a float64 sum."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

FLOAT = torch.float64
_BLOCK_NUMBERS = 1 << 22  # Jacobian entries per float64 copy of the class sums at most (32 MiB, reused)
_MOMENT_BLOCK = 512  # samples per block of the within-class products: keeps the float64 copies in cache


def class_sums(counts: Sequence[int], f: Tensor, jac: Tensor, out: Tensor, scratch: Scratch) -> None:
    """Add the per-class sums of K = f (x) J to out (C, N, F, D, W) float64, without forming K per sample.

    f (B, N, F), jac (B, N, D, W) with the samples grouped by class, counts[c] of class c in order
    (`CovarianceOperator.update` sorts them). The inputs are copied to float64 (the products of
    float32 numbers are then exact, and every sum is a float64 sum), block by block into reused
    buffers of at most _BLOCK_NUMBERS Jacobian entries, and each class's run of a block is one bmm
    (N, F, b) @ (N, b, D W). A Jacobian that is the same for every sample (stride 0 along the
    batch, as the root's identity is) needs no product per sample: the class's inputs are summed
    and multiplied by it once.
    """
    (b, n, nf), (nd, nw) = f.shape, jac.shape[-2:]
    acc = out.view(out.shape[0], n, nf, nd * nw)  # (C, N, F, D W)
    ends = list(itertools.accumulate(counts))
    bounds = [(c, end - k, end) for c, (k, end) in enumerate(zip(counts, ends, strict=True)) if k]
    if jac.stride(0) == 0:
        j0 = jac[0].reshape(n, 1, nd * nw).to(FLOAT)  # (N, 1, D W)
        for c, s, e in bounds:
            acc[c] += f[s:e].sum(dim=0, dtype=FLOAT)[:, :, None] * j0
        return
    step = max(1, _BLOCK_NUMBERS // (n * nd * nw))
    for s in range(0, b, step):
        e = min(s + step, b)
        # node-major float64 copies: plain conversions for the network's (N, B, .) layout
        fb = scratch.copy("f", f[s:e].transpose(0, 1))  # (N, b, F)
        jb = scratch.copy("jac", jac[s:e].transpose(0, 1)).view(n, e - s, nd * nw)  # (N, b, D W)
        for c, lo, hi in bounds:
            lo, hi = max(lo, s) - s, min(hi, e) - s
            if lo < hi:
                acc[c].baddbmm_(fb[:, lo:hi].mT, jb[:, lo:hi])  # in place: no product to allocate and add


class Scratch:
    """Float64 buffers reused across blocks and updates (no allocation per block), by name."""

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}
        self.views: dict[tuple[str, torch.Size, torch.device], Tensor] = {}  # shaped views of them

    def copy(self, name: str, x: Tensor) -> Tensor:
        """A contiguous float64 copy of x (one pass, whatever x's strides) in the buffer `name`."""
        key = (name, x.shape, x.device)
        view = self.views.get(key)
        if view is None:  # a shape not seen yet (a pass has a few: its blocks and its last block)
            buf = self.buffers.get(name)
            if buf is None or buf.numel() < x.numel() or buf.device != x.device:
                buf = self.buffers[name] = torch.empty(x.numel(), dtype=FLOAT, device=x.device)
                self.views = {k: v for k, v in self.views.items() if k[0] != name}  # on the old buffer
            view = self.views[key] = buf[: x.numel()].view(x.shape)
        return view.copy_(x)


def cross_moment(f: Tensor, jac: Tensor, sel: Tensor) -> Tensor:
    """sum_b K_s K_m^T for the selected nodes s against every node m of a level: (S, N, P, P).

    f (B, N, F), jac (B, N, D, W), sel (S,) local ids; P = F * W, i major o minor on both sides.
    K_s K_m^T [(i, o), (i', o')] = f_s[i] f_m[i'] (J_s^T J_m)[o, o'], so no K is formed.
    """
    (b, n, nf), nw, ns = f.shape, jac.shape[-1], len(sel)
    acc = torch.zeros(ns * n, nf * nf, nw * nw, dtype=FLOAT, device=f.device)
    for s in range(0, b, _MOMENT_BLOCK):
        fb, jb = f[s : s + _MOMENT_BLOCK].to(FLOAT), jac[s : s + _MOMENT_BLOCK].to(FLOAT)
        ff = fb[:, sel, None, :, None] * fb[:, None, :, None, :]  # (b, S, N, F, F)
        jj = torch.einsum("bsdo,bmdp->bsmop", jb[:, sel], jb)  # (b, S, N, W, W)
        acc += torch.bmm(
            ff.reshape(-1, ns * n, nf * nf).permute(1, 2, 0), jj.reshape(-1, ns * n, nw * nw).transpose(0, 1)
        )
    acc = acc.reshape(ns, n, nf, nf, nw, nw).permute(0, 1, 2, 4, 3, 5)  # (S, N, F, W, F, W)
    return acc.reshape(ns, n, nf * nw, nf * nw)
