"""Measurement accumulators: the latent correlation and the covariance operator of each latent node.

Both stream over chunks of fresh samples: `update(...)` once per chunk, `result()` at the end.
Products and sums are formed in float64 whatever the input dtype, vectorized over the batch and
over all nodes of a level (a Python loop over levels, and over blocks of samples, only).
Nodes are numbered globally in breadth-first order (`Layout.offsets[l] + i`).

The operator follows /work/shared/reference/covariance-operator.md: for a node with input
f_in (F) and Jacobian J = d raw / d pre (D, W), the connection is K[(i, o), d] = f_in[i] J[d, o],
flattened i major, o minor (P = F * W rows, = `W_node.T.reshape(-1)` order), and the operator
is the between-class covariance OP = sum_j p_j (Kbar_j - Kbar)(Kbar_j - Kbar)^T (P, P), where
the class of a sample is the joint value of the latents the positive view shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from runtime.connections import Scratch, class_sums, cross_moment
from runtime.layout import Layout
from runtime.spectrum import class_contrasts, product_fro, spectrum
from sslspec.spec import schema

FLOAT = torch.float64
MAX_CLASSES = schema.MAX_CLASSES  # checked in the front end; kept here for a direct caller


def n_classes(layout: Layout, share: int, states: int) -> int:
    """Number of joint values of the latents of levels 0..share (states ** their count)."""
    if not 0 <= share < layout.depth:
        raise ValueError(f"share must be in 0..{layout.depth - 1} (got {share})")
    count = int(states ** sum(layout.sizes[: share + 1]))
    if count > MAX_CLASSES:
        raise ValueError(f"share = {share} gives {count} classes; at most {MAX_CLASSES} are supported")
    return count


def class_index(latents: Sequence[Tensor], share: int, states: int) -> Tensor:
    """Latents (per level (B, N_l) long) -> (B,) long: the joint value of levels 0..share.

    Mixed radix over the shared nodes in breadth-first order, the root most significant, so
    for share = 0 the class is the root value itself.
    """
    z = torch.cat(list(latents[: share + 1]), dim=1)  # (B, n_shared)
    radix = states ** torch.arange(z.shape[1] - 1, -1, -1, device=z.device)
    return (z * radix).sum(dim=1)


class LatentCorrelation:
    """Pearson correlation of each latent's one-vs-rest indicators with each unit's pre-activation.

    result(): `corr` (n_latent, S, W): corr([z_node == s], pre[node, unit]) over all samples seen
    (for S = 2 state 1 is the latent value itself and state 0 its negation, so corr[:, 0] =
    -corr[:, 1]); `best` (n_latent,): max over states and units of |corr|; `level_mean` (depth,):
    mean of `best` over each level; `count` (): samples seen. A unit or indicator with zero
    variance over the samples gives corr 0, not NaN (it carries no information about the latent).
    For trees: `pre` has one (B, N_l, W) tensor per latent level of `layout` (not an MLP's layers).
    """

    def __init__(self, layout: Layout, width: int) -> None:
        self.sizes, self.states, self.width = layout.sizes, layout.states, width
        self.level = layout.node_level()  # (n_latent,)
        n, s, w = layout.n_latent, layout.states, width
        self.count = 0
        self.shift: Tensor | None = None  # (n, W) first chunk's mean: keeps the moment sums exact
        self.sum_i = torch.zeros(n, s, dtype=FLOAT)  # sums live on the device of the first chunk
        self.sum_h = torch.zeros(n, w, dtype=FLOAT)
        self.sum_hh = torch.zeros(n, w, dtype=FLOAT)
        self.sum_ih = torch.zeros(n, s, w, dtype=FLOAT)

    def update(self, latents: Sequence[Tensor], pre: Sequence[Tensor]) -> None:
        """Add a chunk: latents per level (B, N_l) long, pre-activations per level (B, N_l, W)."""
        z = torch.cat(list(latents), dim=1)  # (B, n)
        h = torch.cat([p.detach() for p in pre], dim=1)  # (B, n, W), the network's dtype
        if h.shape[1:] != self.sum_h.shape or z.shape != h.shape[:2]:
            raise ValueError(f"expected pre (B, {self.sum_h.shape[0]}, {self.width}), got {tuple(h.shape)}")
        if self.shift is None:
            self.shift = h.to(FLOAT).mean(dim=0)
            for name in ("sum_i", "sum_h", "sum_hh", "sum_ih", "level"):
                setattr(self, name, getattr(self, name).to(h.device))
        h = h - self.shift  # float64: the subtraction promotes (one pass, exact conversion first)
        ind = torch.nn.functional.one_hot(z, self.states).to(FLOAT)  # (B, n, S)
        self.count += z.shape[0]
        self.sum_i += ind.sum(dim=0)
        self.sum_h += h.sum(dim=0)
        self.sum_hh += (h * h).sum(dim=0)
        self.sum_ih += torch.einsum("bns,bnw->nsw", ind, h)

    def result(self) -> dict[str, Tensor]:
        """The correlations and their summaries (see the class docstring)."""
        n = max(self.count, 1)
        mean_i, mean_h = self.sum_i / n, self.sum_h / n  # (n, S), (n, W)
        cov = self.sum_ih / n - mean_i[:, :, None] * mean_h[:, None, :]  # (n, S, W)
        var_i = mean_i * (1 - mean_i)
        var_h = (self.sum_hh / n - mean_h**2).clamp_min(0)
        denom = (var_i[:, :, None] * var_h[:, None, :]).sqrt()
        corr = torch.where(denom > 0, cov / denom.clamp_min(1e-300), 0.0).clamp(-1, 1)
        best = corr.abs().flatten(1).amax(dim=1)  # (n,)
        depth = len(self.sizes)
        level_sum = torch.zeros(depth, dtype=FLOAT, device=best.device).index_add_(0, self.level, best)
        level_mean = level_sum / torch.tensor(self.sizes, dtype=FLOAT, device=best.device)
        return {"corr": corr, "best": best, "level_mean": level_mean, "count": torch.tensor(self.count)}


def tree_fan_in(layout: Layout, width: int) -> tuple[Tensor, ...]:
    """Per latent level (N_l,) long: each node's real input size (children * width, or its leaves)."""
    last = layout.depth - 1
    return tuple(m.sum(dim=1) * (1 if lvl == last else width) for lvl, m in enumerate(layout.child_mask))


class CovarianceOperator:
    """The covariance operator of every latent node (or layer), as a between-class covariance.

    fan_in: per level (N_l,) each node's real input size (`tree_fan_in`); inputs may be zero-padded
    beyond it to the level's F_l. update(cls (B,), inputs per level (B, N_l, F_l), jac per level
    (B, N_l, D, W_l)) accumulates per-class sums of K and class counts in float64.

    result() holds, over the n nodes in breadth-first order, padded with NaN to P = the largest
    F_l * W_l where a node's P_n = fan_in * W is smaller:
      `count` (C,) samples per class; `size` (n,) P_n; `eigvals` (n, top) descending;
      `eigvecs` (n, P, top) (column k belongs to eigvals[:, k]; largest-magnitude entry positive);
      `trace` (n,); `fro` (n,) Frobenius norm; `full` (n, P, P) when full; `conn` (n,) when
      official: the Frobenius norm of the official code's matrix, K flattened (F * D) x W and the
      between-class covariance contracted over the node's own units ((F * D) x (F * D)), derived
      from the same class means through the smaller Gram matrix (`level_conn`).
    Eigenvectors are unique only up to sign (fixed as above) for simple eigenvalues: within a
    repeated eigenvalue any rotation is as good, and devices or BLAS builds pick differently. The
    root's operator always is one: J = I there, so OP_root = Cov_x(E[f_in | class]) (x) I_W and
    each of its eigenvalues comes W times. The rank is at most (C - 1) * D; eigenvectors past it
    belong to numerically zero eigenvalues: an orthonormal basis of the null space, no information.
    Everything is computed from a factor OP = A A^T (`reduced_factor`, P x (C - 1) D), through the
    Gram matrix A^T A when (C - 1) D < P (runtime.spectrum), so no P x P matrix is formed unless
    `full`; the theorem check applies the operator as A (A^T v) (`row_products`).
    within: global node ids whose within-class term E_x[V_aug[K | x]] is also accumulated
    (`within_row(node)`), for the theorem check with beta != 0; each costs a second moment
    against every node of its level (N_l F^2 W^2 per sample, dense: not low rank).
    `operator(node)` / `operator_row(node)` give one node's matrix / its block row of the level (dense).
    """

    def __init__(
        self,
        fan_in: Sequence[Tensor],
        n_classes: int,
        *,
        top: int = 8,
        full: bool = False,
        official: bool = False,
        within: Sequence[int] = (),
        scratch: Scratch | None = None,
    ) -> None:
        self.fan_in = tuple(torch.as_tensor(x, dtype=torch.long).cpu() for x in fan_in)
        self.n_classes, self.top, self.full, self.official = n_classes, top, full, official
        sizes = [len(x) for x in self.fan_in]
        self.offsets = [sum(sizes[:lvl]) for lvl in range(len(sizes))]
        self.n_nodes = sum(sizes)
        self.locate = {
            o + i: (lvl, i)
            for lvl, (o, n) in enumerate(zip(self.offsets, sizes, strict=True))
            for i in range(n)
        }  # global id -> (level, index in level)
        bad = [g for g in within if g not in self.locate]
        if bad:
            raise ValueError(f"within: no latent node {bad[0]} (there are {self.n_nodes})")
        picked = sorted(self.locate[g] for g in set(within))
        self.within = [
            torch.tensor([i for lv, i in picked if lv == lvl], dtype=torch.long) for lvl in range(len(sizes))
        ]  # per level: local ids, ascending
        self.counts = torch.zeros(n_classes, dtype=FLOAT)
        self.sums: list[Tensor] = []  # per level (C, N, F, D, W)
        self.moments: list[Tensor] = []  # per level (n_within, P_l, P_l)
        self._factors: dict[int, Tensor] = {}  # per level, `reduced_factor` until the next update
        self._deviations: dict[int, Tensor] = {}  # per level, `level_factor` until the next update
        self._scratch = scratch or Scratch()  # float64 staging buffers: one run's epochs can share them

    @classmethod
    def for_tree(cls, layout: Layout, width: int, n_classes: int, **options: object) -> CovarianceOperator:
        """The accumulator for a tree network of the given width (options as in __init__)."""
        return cls(tree_fan_in(layout, width), n_classes, **options)  # type: ignore[arg-type]

    def update(self, cls: Tensor, inputs: Sequence[Tensor], jac: Sequence[Tensor]) -> None:
        """Add a chunk: classes (B,) long, inputs per level (B, N_l, F_l), jac per level (B, N_l, D, W)."""
        if len(inputs) != len(self.fan_in) or len(jac) != len(self.fan_in):
            got = f"{len(inputs)} inputs and {len(jac)} jacobians"
            raise ValueError(f"expected {len(self.fan_in)} levels, got {got}")
        dev = inputs[0].device
        cls = cls.to(dev)
        if not self.sums:
            self.counts = self.counts.to(dev)
            self.sums = [torch.zeros(0, device=dev)] * len(inputs)
            self.moments = [torch.zeros(0, device=dev)] * len(inputs)
        self._factors.clear()
        self._deviations.clear()
        counts = torch.bincount(cls, minlength=self.n_classes)
        self.counts += counts.to(FLOAT)
        grouped = len(cls) < 2 or bool((cls[1:] >= cls[:-1]).all())  # measure_pass sorts by class
        order = None if grouped else torch.argsort(cls, stable=True)
        for lvl, (f, j) in enumerate(zip(inputs, jac, strict=True)):
            f, j = f.detach(), j.detach()
            if self.sums[lvl].numel() == 0:
                shape = (self.n_classes, *f.shape[1:], *j.shape[-2:])  # (C, N, F, D, W)
                self.sums[lvl] = torch.zeros(shape, dtype=FLOAT, device=dev)
            by_class = (f, j) if order is None else (f[order], j if j.stride(0) == 0 else j[order])
            class_sums(counts.tolist(), *by_class, self.sums[lvl], self._scratch)
            sel = self.within[lvl].to(dev)
            if len(sel):
                mom = cross_moment(f, j, sel)
                self.moments[lvl] = mom if self.moments[lvl].numel() == 0 else self.moments[lvl] + mom

    def _class_means(self, lvl: int) -> tuple[Tensor, Tensor, Tensor]:
        """p (C,), Kbar_c (C, N, F, D, W) (zero for unseen classes) and Kbar (N, F, D, W)."""
        if not self.sums:
            raise ValueError("no samples were accumulated")
        total = self.counts.sum()
        p = self.counts / total
        means = self.sums[lvl] / self.counts.clamp_min(1)[:, None, None, None, None]
        return p, means, self.sums[lvl].sum(dim=0) / total

    def _paper_order(self, k: Tensor) -> Tensor:
        """(..., F, D, W) -> (..., P, D) with P = F * W, i major, o minor."""
        *lead, nf, nd, nw = k.shape
        return k.transpose(-1, -2).reshape(*lead, nf * nw, nd)

    def _seen(self, lvl: int) -> tuple[Tensor, Tensor, Tensor]:
        """The class sums (C', N, F, D, W) and counts (C',) of the C' seen classes, and sqrt(p) (C',)."""
        if not self.sums:
            raise ValueError("no samples were accumulated")
        sums, counts = self.sums[lvl], self.counts
        if not bool((counts > 0).all()):
            seen = (counts > 0).nonzero().flatten()
            sums, counts = sums[seen], counts[seen]
        return sums, counts, (counts / self.counts.sum()).sqrt()

    def level_factor(self, lvl: int) -> Tensor:
        """(N_l, P_l, C' D) the class-mean deviations of every node of a level, OP = A A^T: columns
        sqrt(p_c) (Kbar_c - Kbar)[:, d] in the paper's order, for each seen class c (major) and
        output d; zero in padded rows. `reduced_factor` spans the same operator with D columns fewer
        (what the spectrum and the row products use); this one keeps one column block per class
        (runtime.loss_operators weighs class pairs with it). Kept until the next `update`."""
        if lvl not in self._deviations:
            sums, counts, root_p = self._seen(lvl)
            delta = sums * (root_p / counts)[:, None, None, None, None]
            delta -= root_p[:, None, None, None, None] * (self.sums[lvl].sum(dim=0) / self.counts.sum())
            c, n, nf, nd, nw = delta.shape
            self._deviations[lvl] = delta.permute(1, 2, 4, 0, 3).reshape(n, nf * nw, c * nd)  # i, o | c, d
        return self._deviations[lvl]

    def reduced_factor(self, lvl: int) -> Tensor:
        """(N_l, P_l, R) a factor A of every node of a level, OP = A A^T, with R = (C' - 1) D columns
        for the C' seen classes (OP's rank is at most that). The class-mean deviations X
        (`level_factor`) combine to zero with sqrt(p), so in an orthonormal basis Q of sqrt(p)'s
        complement (`class_contrasts`) Q^T X keeps A A^T = X X^T with one class's worth of
        columns fewer; and Q^T X = Q^T [sqrt(p_c) Kbar_c]_c, from the class sums directly.
        Columns contrast major, output d minor; rows in the paper's order; zero in padded rows.
        Kept until the next `update` (the spectrum and the theorem check share it)."""
        if lvl not in self._factors:
            sums, counts, root_p = self._seen(lvl)
            delta = class_contrasts(sums, root_p, scale=root_p / counts)  # (C' - 1, N, F, D, W)
            c, n, nf, nd, nw = delta.shape
            self._factors[lvl] = delta.permute(1, 2, 4, 0, 3).reshape(n, nf * nw, c * nd)  # i, o | c, d
        return self._factors[lvl]

    def level_operator(self, lvl: int) -> Tensor:
        """(N_l, P_l, P_l) the paper's operator of every node of a level (zeros in padded rows)."""
        a = self.reduced_factor(lvl)
        return a @ a.mT

    def level_conn(self, lvl: int) -> Tensor:
        """(N_l,) Frobenius norm of the official code's operator: K as (F * D) x W, contracted over W.

        Derived from the same class means as `level_factor`, in the other index order: with
        B = [sqrt(p_c) (Kbar_c - Kbar)]_c as (F * D) x (C' * W) the matrix is B B^T, and its norm
        is computed as ||B^T B||_F when C' W < F D (the same number)."""
        p, means, mean = self._class_means(lvl)
        seen = p > 0
        delta = (means[seen] - mean) * p[seen].sqrt()[:, None, None, None, None]  # (C', N, F, D, W)
        c, n, nf, nd, nw = delta.shape
        return product_fro(delta.permute(1, 2, 3, 0, 4).reshape(n, nf * nd, c * nw))

    def operator(self, node: int) -> Tensor:
        """(P_l, P_l) the operator of one node (global id), in the order of `W_node.T.reshape(-1)`."""
        lvl, i = self.locate[node]
        a = self.reduced_factor(lvl)[i]
        return a @ a.T

    def operator_row(self, node: int) -> Tensor:
        """(N_l, P_l, P_l) the node's block row of its level's operator: [m] = Cov_x(Kbar_node, Kbar_m).

        The root output sums over a level, f = sum_m K_m^T vec(W_m), so the expected gradient of a
        node's weights involves sum_m OP[node, m] vec(W_m); [node's own index] is `operator(node)`.
        Dense (N_l P_l^2 numbers); `row_products` applies it without forming it.
        """
        lvl, i = self.locate[node]
        a = self.reduced_factor(lvl)
        return torch.einsum("ar,nbr->nab", a[i], a)

    def row_products(self, node: int, vecs: Tensor) -> Tensor:
        """vecs (N_l, P_l), a vector per node of the node's level -> (N_l, P_l): [m] = OP[node, m] vecs[m],
        computed as A_node (A_m^T vecs[m]) (N_l P_l R operations; no P x P block is formed)."""
        lvl, i = self.locate[node]
        a = self.reduced_factor(lvl)  # (N, P, R)
        coef = torch.einsum("npr,np->nr", a, vecs.to(a))  # (N, R)
        return coef @ a[i].T

    def within_row(self, node: int) -> Tensor:
        """(N_l, P_l, P_l) block row of E_x[V_aug[K | x]] = E[K_node K_m^T] - sum_c p_c Kbar_c,node Kbar_c,m^T
        for a node listed in `within`."""
        lvl, i = self.locate[node]
        hit = (self.within[lvl] == i).nonzero()
        if not len(hit):
            raise ValueError(f"node {node} was not in `within` when the accumulator was built")
        p, means, _ = self._class_means(lvl)
        kbar = self._paper_order(means)  # (C, N, P, D)
        of_means = torch.einsum("c,cad,cnbd->nab", p, kbar[:, i], kbar)
        return self.moments[lvl][hit[0, 0]] / self.counts.sum() - of_means

    def result(self) -> dict[str, Tensor]:
        """Eigenpairs, trace, norms (and the full matrices, the official norm) of every node.

        From the factors A (`reduced_factor`) by runtime.spectrum's cheaper exact route (the Gram
        matrix when R < P_l), one call for each run of consecutive levels whose factors have the
        same shape; the dense P x P matrices are formed for `full` only."""
        factors = [self.reduced_factor(lvl) for lvl in range(len(self.fan_in))]
        widths = [self.sums[lvl].shape[-1] for lvl in range(len(factors))]
        dev = factors[0].device
        size = torch.cat([f.to(dev) * w for f, w in zip(self.fan_in, widths, strict=True)])  # (n,)
        p_max = max(a.shape[1] for a in factors)
        nan = lambda *shape: torch.full(shape, torch.nan, dtype=FLOAT, device=dev)
        out = {"count": self.counts, "size": size, "eigvals": nan(self.n_nodes, self.top)}
        out["eigvecs"] = nan(self.n_nodes, p_max, self.top)
        out["trace"], out["fro"] = nan(self.n_nodes), nan(self.n_nodes)
        if self.full:
            out["full"] = nan(self.n_nodes, p_max, p_max)
        for first, last in _same_shape_runs(factors):
            a = factors[first] if first == last else torch.cat(factors[first : last + 1])
            rows = slice(self.offsets[first], self.offsets[last] + factors[last].shape[0])
            spec, p_l = spectrum(a, size[rows], self.top), a.shape[1]
            out["eigvals"][rows], out["eigvecs"][rows, :p_l] = spec["eigvals"], spec["eigvecs"]
            out["trace"][rows], out["fro"][rows] = spec["trace"], spec["fro"]
        for lvl, a in enumerate(factors):
            rows, p_l = slice(self.offsets[lvl], self.offsets[lvl] + a.shape[0]), a.shape[1]
            if self.full:
                real = torch.arange(p_l, device=dev)[None, :] < size[rows, None]  # (N, P_l)
                pad = ~(real[:, :, None] & real[:, None, :])
                out["full"][rows, :p_l, :p_l] = (a @ a.mT).masked_fill(pad, torch.nan)
        if self.official:
            out["conn"] = torch.cat([self.level_conn(lvl) for lvl in range(len(factors))])
        return out


def _same_shape_runs(factors: Sequence[Tensor]) -> list[tuple[int, int]]:
    """(first, last) level of each run of consecutive levels whose factors (N_l, P, R) share P and R."""
    runs: list[tuple[int, int]] = []
    for lvl, a in enumerate(factors):
        if runs and factors[runs[-1][0]].shape[1:] == a.shape[1:]:
            runs[-1] = (runs[-1][0], lvl)
        else:
            runs.append((lvl, lvl))
    return runs
