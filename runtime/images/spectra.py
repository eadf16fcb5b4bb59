"""Spectra of a layer's covariance operator on images (runtime.images.operator): the exact route
for a matrix small enough to form, and a randomized route that only applies the operator.

`randomized_spectrum` is randomized subspace iteration (Halko, Martinsson and Tropp 2011, alg.
4.4 with a Rayleigh-Ritz step): a Gaussian start block of k = top + OVERSAMPLE columns, `power`
passes Y <- OP Q, Q <- orth(Y), then the eigenpairs of the k x k matrix Q^T OP Q. Its Ritz
values approach OP's largest eigenvalues from below, faster the larger the gap between the
top-th and the k-th; when P <= k the subspace is the whole space and they are exact. The trace is
Hutch++'s (Meyer, Musco, Musco and Woodruff 2021): tr(Q^T OP Q) + a Hutchinson estimate of the
trace of OP projected off Q with `probes` Rademacher vectors, whose standard error is recorded
(0 with no probes, when the deflated part is then dropped, or when Q spans everything).
Traces of further operators (the views' noise V_hat beside OP_A) come from the same Q and probes
through their quadratic forms alone. Cost: k (power + 2) operator-vector products, plus k + probes
quadratic forms. Every random number comes from `gen`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

FLOAT = torch.float64
OVERSAMPLE = 4  # extra columns of the subspace beyond `top`

ApplyBlock = Callable[[Tensor], Tensor]  # (P, k) float64 -> (P, k) float64: OP times each column
Quadratic = Callable[[Tensor], Tensor]  # (P, j) float64 -> (1 + m, j): quadratic forms per column


def dense_spectrum(op: Tensor, top: int) -> dict[str, Tensor]:
    """A symmetric (P, P) matrix -> eigvals (top,) descending (NaN past P), eigvecs (P, top), trace,
    fro (exact; the largest-magnitude entry of each eigenvector positive)."""
    vals, vecs = torch.linalg.eigh(op.to(FLOAT))
    return _finish(vals.flip(0), vecs.flip(1), top) | {
        "trace": op.diagonal().sum().to(FLOAT),
        "fro": torch.linalg.matrix_norm(op.to(FLOAT)),
    }


def randomized_spectrum(
    apply_block: ApplyBlock,
    quadratic: Quadratic,
    size: int,
    top: int,
    probes: int,
    power: int,
    gen: torch.Generator,
) -> dict[str, Tensor]:
    """OP (P = size) given by its products -> eigvals (top,) descending Ritz values (NaN past P),
    eigvecs (P, top) Ritz vectors, and Hutch++ traces (module docstring) of OP and of the other
    operators whose quadratic forms `quadratic` returns: trace (1 + m,), trace_stderr (1 + m,).

    quadratic: g (P, j) -> (1 + m, j) the forms g^T M g of OP (row 0) and m more operators M, for
    each column; it sees Q (without needing row 0) and the probes projected off Q."""
    k = min(size, top + OVERSAMPLE)
    dev = gen.device
    q = _orth(apply_block(torch.randn(size, k, generator=gen, dtype=FLOAT, device=dev)))
    for _ in range(power):
        q = _orth(apply_block(q))
    small = q.T @ apply_block(q)  # (k, k) Q^T OP Q
    small = 0.5 * (small + small.T)
    vals, u = torch.linalg.eigh(small)
    out = _finish(vals.flip(0), q @ u.flip(1), top)
    on_q = quadratic(q).sum(dim=1)  # (1 + m,)
    on_q[0] = torch.trace(small)
    out["trace"], out["trace_stderr"] = on_q, torch.zeros_like(on_q)
    if probes and k < size:
        g = torch.randint(0, 2, (size, probes), generator=gen, device=dev).to(FLOAT) * 2 - 1
        g = g - q @ (q.T @ g)  # (I - Q Q^T) g: the probes see only what Q leaves out
        est = quadratic(g)  # (1 + m, probes)
        out["trace"] = on_q + est.mean(dim=1)
        if probes > 1:
            out["trace_stderr"] = est.std(dim=1) / probes**0.5
    # Numbers, not part of a graph: the quadratic forms may come from the network's autograd.
    return {name: t.detach() for name, t in out.items()}


def converged_spectrum(
    apply_block: ApplyBlock, size: int, top: int, gen: torch.Generator, tol: float = 1e-10, most: int = 500
) -> dict[str, Tensor]:
    """OP (P = size) given by exact, cheap products -> eigvals (top,), eigvecs (P, top) by subspace
    iteration run until the top Ritz values move by at most tol times the largest between two
    passes (at most `most` passes), and `passes` (the count). For the head's exact products
    (runtime.images.head), where a pass costs no network pass; at convergence the Ritz values are
    the eigenvalues to about tol (the Rayleigh quotient's error is the square of the vectors')."""
    k = min(size, top + OVERSAMPLE)
    dev = gen.device
    q = _orth(torch.randn(size, k, generator=gen, dtype=FLOAT, device=dev))
    before = torch.full((min(top, k),), torch.inf, dtype=FLOAT, device=dev)
    passes = 0
    while True:
        y = apply_block(q)
        small = q.T @ y
        vals, u = torch.linalg.eigh(0.5 * (small + small.T))
        ritz = vals.flip(0)[: before.shape[0]]
        passes += 1
        if bool(((ritz - before).abs() <= tol * ritz[0].abs()).all()) or passes >= most or k == size:
            break
        before, q = ritz, _orth(y)
    out = _finish(vals.flip(0), q @ u.flip(1), top)
    return out | {"passes": torch.tensor(passes)}


def _orth(y: Tensor) -> Tensor:
    """An orthonormal basis (P, k) of y's columns (reduced QR)."""
    q: Tensor = torch.linalg.qr(y).Q
    return q


def _finish(vals: Tensor, vecs: Tensor, top: int) -> dict[str, Tensor]:
    """Descending eigenpairs (k,), (P, k) -> (top,), (P, top): NaN past k, each vector's
    largest-magnitude entry made positive."""
    k = min(top, vals.shape[0])
    vals, vecs = vals[:k], vecs[:, :k]
    peak = vecs.gather(0, vecs.abs().argmax(dim=0, keepdim=True))  # (1, k)
    vecs = vecs * torch.where(peak < 0, -1.0, 1.0)
    out_vals = torch.full((top,), torch.nan, dtype=FLOAT, device=vals.device)
    out_vecs = torch.full((vecs.shape[0], top), torch.nan, dtype=FLOAT, device=vals.device)
    out_vals[:k], out_vecs[:, :k] = vals, vecs
    return {"eigvals": out_vals, "eigvecs": out_vecs}
