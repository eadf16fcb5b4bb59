"""Spectra and norms of a positive semi-definite operator given by a factor: OP = A A^T.

A is (N, P, R), one factor per node of a level (runtime.measure's class-mean connections:
R = seen classes * output dims, so OP has rank at most R). Every quantity is exact and is computed
by the cheaper of two routes:
  - the Gram matrix G = A^T A (N, R, R) when R < P: OP's nonzero eigenvalues are G's, its
    eigenvectors are A u / ||A u|| for G's eigenvectors u, trace(OP) = trace(G) and
    ||OP||_F = ||G||_F, so nothing of size P x P is formed;
  - the dense operator A A^T (N, P, P) otherwise.
Eigenvalues at numerical zero (the null space, past OP's rank) have no preferred eigenvectors;
the Gram route returns a deterministic orthonormal basis of the null space for them, so on both
routes the returned columns are orthonormal eigenvectors.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FEW_CLASSES = 8  # class_contrasts: up to this many classes as one matrix product


def uses_gram(p: int, r: int) -> bool:
    """Whether the Gram route is the cheaper one for a (P x R) factor (strictly fewer columns)."""
    return r < p


def spectrum(a: Tensor, size: Tensor, top: int, route: str | None = None) -> dict[str, Tensor]:
    """Factors a (N, P, R) whose real rows are the leading size[n] -> eigvals (N, top) descending,
    eigvecs (N, P, top) (NaN past each node's size and past P), trace (N,), fro (N,).

    route: "gram" or "dense" forces one (for tests and benchmarks); None takes the cheaper."""
    _, p, r = a.shape
    if route not in (None, "gram", "dense"):
        raise ValueError(f"route must be 'gram' or 'dense' (got {route!r})")
    if uses_gram(p, r) if route is None else route == "gram":
        g = a.mT @ a  # (N, R, R): trace and norm of OP are the Gram matrix's
        vals, vecs = _gram_top(a, g, size, top)
    else:
        g = a @ a.mT  # (N, P, P)
        vals, vecs = _dense_top(g, size, top)
    vals, vecs = _finish(vals, vecs, size, top)
    trace = g.diagonal(dim1=1, dim2=2).sum(dim=1)
    return {"eigvals": vals, "eigvecs": vecs, "trace": trace, "fro": torch.linalg.matrix_norm(g)}


def class_contrasts(x: Tensor, s: Tensor, scale: Tensor | None = None) -> Tensor:
    """Rows x (C, ...) (times `scale` (C,) first, when given) whose combination with s vanishes
    (sum_c s_c x_c = 0, |s| = 1) -> (C - 1, ...) rows Y with Y^T Y = X^T X: the same operator
    sum_c x_c x_c^T from one row fewer.

    The columns of X lie in the complement of s, so X^T X = X^T Q Q^T X for an orthonormal basis Q
    of that complement: the Householder reflection H = I - 2 u u^T that maps s to e_m (m: s's
    largest entry, u = (s - e_m) / |s - e_m|), without its row m (which is s itself). Up to
    _FEW_CLASSES rows H is applied as a (C - 1) x C matrix (one pass over x), beyond as a
    reflection (a few passes, no C x C matrix). One class alone (C = 1) gives one zero row."""
    c = x.shape[0]
    if c == 1:
        return torch.zeros_like(x)
    m = int(s.argmax())
    u = s.clone()
    u[m] -= 1.0
    u = u / u.norm()  # s != e_m: with two classes seen neither has all of the probability
    keep = torch.cat([torch.arange(m), torch.arange(m + 1, c)]).to(x.device)
    if c <= _FEW_CLASSES:
        h = torch.eye(c, dtype=x.dtype, device=x.device) - 2 * u[:, None] * u[None, :]  # (C, C)
        h = h[keep] if scale is None else h[keep] * scale[None, :]
        y: Tensor = (h @ x.reshape(c, -1)).reshape(c - 1, *x.shape[1:])
        return y
    lead = (-1, *[1] * (x.dim() - 1))
    x = x if scale is None else x * scale.view(lead)
    y = x - 2 * u.view(lead) * torch.tensordot(u, x, dims=1)  # H x, (C, ...)
    return y[keep]


def product_fro(b: Tensor) -> Tensor:
    """b (N, X, Y) -> (N,) ||B B^T||_F, computed as ||B^T B||_F (the same number) when Y < X."""
    norm: Tensor = torch.linalg.matrix_norm(b.mT @ b if uses_gram(b.shape[-2], b.shape[-1]) else b @ b.mT)
    return norm


def _dense_top(op: Tensor, size: Tensor, top: int) -> tuple[Tensor, Tensor]:
    """Top min(top, P) eigenpairs of op (N, P, P) whose real block is the leading size[n] x size[n].

    The padded block's diagonal is set to -1 (below every eigenvalue of a PSD block), so the top
    pairs come from the real block."""
    p = op.shape[-1]
    pad = torch.arange(p, device=op.device)[None, :] >= size[:, None]  # (N, P)
    vals, vecs = torch.linalg.eigh(op + torch.diag_embed(pad.to(op.dtype) * -1.0))  # ascending
    k = min(top, p)
    return vals.flip(-1)[:, :k], vecs.flip(-1)[:, :, :k]


def _gram_top(a: Tensor, g: Tensor, size: Tensor, top: int) -> tuple[Tensor, Tensor]:
    """Top min(top, P) eigenpairs of A A^T from its Gram matrix g = A^T A (N, R, R), R < P.

    A pair whose eigenvalue is at numerical zero (<= largest * max(P, R) * eps, as for a matrix
    rank) takes its vector from an orthonormal basis of the null space instead of A u, which is
    noise there; past R the eigenvalues are exactly zero."""
    _, p, r = a.shape
    k = min(top, r)
    vals, u = torch.linalg.eigh(g)  # ascending
    vals, u = vals[:, r - k :].flip(-1), u[:, :, r - k :].flip(-1)  # (N, k), (N, R, k) descending
    v = a @ u  # (N, P, k): eigenvectors of A A^T, norm sqrt(lambda)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    tol = vals[:, :1].clamp_min(0) * max(p, r) * torch.finfo(a.dtype).eps  # (N, 1)
    good = vals > tol  # (N, k), a prefix of each row (vals descend)
    extra = min(top, p) - k
    if not extra and bool(good.all()):
        return vals, v
    v = torch.where(good[:, None, :], v, 0.0)
    vals = torch.nn.functional.pad(vals, (0, extra))  # (N, min(top, P))
    v = torch.nn.functional.pad(v, (0, extra))
    good = torch.nn.functional.pad(good, (0, extra), value=False)
    if not bool(good.all()):
        v = _null_completion(v, good, size)
    return vals, v


def _null_completion(v: Tensor, good: Tensor, size: Tensor) -> Tensor:
    """v (N, P, k) with orthonormal columns where good (N, k) (a prefix), zeros elsewhere -> the
    other columns filled with orthonormal vectors of the real block orthogonal to the good ones.

    Candidates are the first m = min(P, 2k) unit vectors of each node's real block, projected off
    the good columns (twice, for orthogonality in floating point); the span of the projections
    has dimension >= k - (good columns) and its top left singular vectors are an orthonormal basis."""
    n, p, k = v.shape
    m = min(p, 2 * k)
    real = torch.arange(p, device=v.device)[None, :] < size[:, None]  # (N, P)
    e = torch.eye(p, m, dtype=v.dtype, device=v.device) * real[:, :, None]  # (N, P, m)
    for _ in range(2):
        e = e - v @ (v.mT @ e)
    basis = torch.linalg.svd(e, full_matrices=False).U  # (N, P, m), singular values descending
    first_bad = good.sum(dim=1, keepdim=True)  # (N, 1)
    idx = (torch.arange(k, device=v.device)[None, :] - first_bad).clamp(0, m - 1)  # (N, k)
    fill = basis.gather(2, idx[:, None, :].expand(n, p, k))
    return torch.where(good[:, None, :], v, fill)


def _finish(vals: Tensor, vecs: Tensor, size: Tensor, top: int) -> tuple[Tensor, Tensor]:
    """Eigenpairs (N, k), (N, P, k) -> (N, top), (N, P, top): each vector's largest-magnitude entry
    made positive, NaN past k, past each node's size (pairs and rows)."""
    n, p, k = vecs.shape
    peak = vecs.gather(1, vecs.abs().argmax(dim=1, keepdim=True))  # (N, 1, k)
    vecs = vecs * torch.where(peak < 0, -1.0, 1.0)
    if k == top and not bool((size < max(p, top)).any()):
        return vals, vecs  # nothing to pad (the common case)
    out_vals = torch.full((n, top), torch.nan, dtype=vals.dtype, device=vals.device)
    out_vecs = torch.full((n, p, top), torch.nan, dtype=vecs.dtype, device=vecs.device)
    out_vals[:, :k], out_vecs[:, :, :k] = vals, vecs
    beyond = torch.arange(top, device=vals.device)[None, :] >= size[:, None]  # (N, top)
    pad = torch.arange(p, device=vals.device)[None, :] >= size[:, None]  # (N, P)
    out_vals[beyond] = torch.nan
    out_vecs.masked_fill_(beyond[:, None, :] | pad[:, :, None], torch.nan)
    return out_vals, out_vecs
