"""Vectorized sampling of the HLTM and of the views one training step needs.

Every random number is a uniform u in [0, 1) drawn from an explicit `torch.Generator`; the maps
from uniforms to samples (`sample_from_uniforms`, `views_from_uniforms`) are deterministic, so a
slow reference fed the same uniforms must give the same samples. How each uniform is used (S states;
floor(.) is clamped to the largest valid index against rounding):

- root: state floor(u * S);
- edge parent -> child with polarity delta: for S = 2 the child copies the parent if
  u < (1 + delta) / 2 and takes the other state otherwise; for S > 2 the child is the smallest j
  with u < C_j, where C_j = (j + 1) (1 - delta) / S + delta [j >= parent] is the cumulative sum of
  P(child = j | parent) = delta [j == parent] + (1 - delta) / S;
- leaf noise p (one uniform per leaf): if u < p the leaf becomes floor(u / p * S), else it keeps
  its value (given u < p, u / p is uniform on [0, 1), so the new state is uniform);
- flip p (one uniform per leaf of a view): if u < p the leaf v becomes (v + r) mod S with
  r = 1 + floor(u / p * (S - 1)), uniform on 1..S-1 (for S = 2 simply 1 - v).

Uniforms are float32 by default (binary transitions compare them exactly with the float64
thresholds; the tests draw float64 uniforms to compare every rule with the reference). Layout,
edges and the generator must already live on the device the samples are drawn on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from runtime.layout import Layout
from sslspec.spec import schema

# ---- polarities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Edges:
    """Polarity delta of every parent -> child edge, drawn once per run."""

    latent: tuple[Tensor, ...]  # latent[l]: (N_l,) edge into each node of level l; latent[0] empty (root)
    leaves: Tensor  # (n_leaves,) edge into each leaf

    def to(self, device: torch.device | str) -> Edges:
        return Edges(tuple(t.to(device) for t in self.latent), self.leaves.to(device))

    def flat(self) -> Tensor:
        """(n_latent - 1 + n_leaves,) every delta: non-root latent nodes breadth first, then the leaves."""
        return torch.cat([*self.latent[1:], self.leaves])

    @cached_property
    def _keep(self) -> dict[torch.dtype, tuple[Tensor, ...]]:
        return {}

    def keep(self, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """P(child = parent) = (1 + delta) / 2 per edge, by level (entry l: latent level l, entry
        depth: the leaves), as the smallest `dtype` value >= the float64 value: for uniforms u of
        that dtype, `u >= keep` is then exactly `u >= (1 + delta) / 2` in float64, without a cast."""
        if dtype not in self._keep:
            self._keep[dtype] = tuple(
                _round_up((1 + d.double()) / 2, dtype) for d in (*self.latent, self.leaves)
            )
        return self._keep[dtype]


def _round_up(x: Tensor, dtype: torch.dtype) -> Tensor:
    """The smallest value of `dtype` that is >= each float64 value of x."""
    y = x.to(dtype)
    return torch.where(y.double() < x, torch.nextafter(y, torch.full_like(y, float("inf"))), y)


def _uniform_magnitudes(pol: schema.Uniform, n: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    u = torch.rand(n, generator=gen, dtype=dtype, device=gen.device)
    return (pol.low + (pol.high - pol.low) * u).clamp_(pol.low, pol.high)


def _constant_magnitudes(pol: schema.Constant, n: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    return torch.full((n,), pol.value, dtype=dtype, device=gen.device)


MAGNITUDES: dict[type, Callable[..., Tensor]] = {
    schema.Uniform: _uniform_magnitudes,
    schema.Constant: _constant_magnitudes,
}


def draw_edges(
    data: schema.HLTM, layout: Layout, gen: torch.Generator, dtype: torch.dtype = torch.float64
) -> Edges:
    """Draw one delta per non-root latent node and per leaf, on `gen`'s device.

    Magnitudes from `data.polarity` (one rand call for `uniform`, none for `constant`), then signs:
    +-1 with probability 1/2 each (one randint call) for `sign = random`, +1 for `positive`
    (the only meaningful choice for states > 2, where a random sign is refused).
    """
    if layout.states > 2 and data.sign == "random":
        raise ValueError(f"a negative polarity has no meaning for states > 2 (states = {layout.states})")
    n = layout.n_latent - 1 + layout.n_leaves
    delta = MAGNITUDES[type(data.polarity)](data.polarity, n, gen, dtype)  # (n,)
    if data.sign == "random":
        coin = torch.randint(0, 2, (n,), generator=gen, device=gen.device)
        delta = delta * (2 * coin - 1).to(dtype)
    parts = delta.split([*layout.sizes[1:], layout.n_leaves])
    return Edges((delta.new_empty(0), *parts[:-1]), parts[-1])


# ---- samples ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """B draws of the whole tree."""

    latents: tuple[Tensor, ...]  # latents[l]: (B, N_l) long, states of latent level l
    leaves: Tensor  # (B, n_leaves) long, observed states

    @property
    def batch(self) -> int:
        return int(self.leaves.shape[0])

    def inputs(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, n_leaves) the raw leaf states as the network's input."""
        return self.leaves.to(dtype)

    def rows(self, start: int, stop: int) -> Sample:
        """The draws start..stop-1 (views, no copy)."""
        return Sample(tuple(t[start:stop] for t in self.latents), self.leaves[start:stop])


@dataclass(frozen=True)
class Uniforms:
    """The uniforms that determine R draws of the tree (see the module docstring)."""

    latent: tuple[Tensor, ...]  # latent[l]: (R, N_l) edge into each node; latent[0] (R, 1) picks the root
    leaves: Tensor  # (R, n_leaves) edge into each leaf
    noise: Tensor | None  # (R, n_leaves) leaf noise; None when drawn without

    def rows(self, start: int, stop: int) -> Uniforms:
        noise = None if self.noise is None else self.noise[start:stop]
        return Uniforms(tuple(t[start:stop] for t in self.latent), self.leaves[start:stop], noise)


def _tree_columns(layout: Layout, noise: bool) -> list[int]:
    return [*layout.sizes, layout.n_leaves] + ([layout.n_leaves] if noise else [])


def _split_uniforms(layout: Layout, u: Tensor, noise: bool) -> Uniforms:
    """Cut (R, C) uniforms into levels (views, no copy): the latent levels, the leaves, the noise."""
    parts = u.split(_tree_columns(layout, noise), dim=1)
    d = layout.depth
    return Uniforms(tuple(parts[:d]), parts[d], parts[d + 1] if noise else None)


def draw_uniforms(
    layout: Layout,
    B: int,
    gen: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    *,
    noise: bool = True,
) -> Uniforms:
    """Uniforms for B draws: one rand call of (B, n_latent + n_leaves [+ n_leaves of noise]), split."""
    cols = sum(_tree_columns(layout, noise))
    return _split_uniforms(layout, torch.rand(B, cols, generator=gen, device=device, dtype=dtype), noise)


def _index(u: Tensor, n: int) -> Tensor:
    """floor(u * n) as long, clamped to n - 1; u in [0, 1)."""
    return (u * n).long().clamp_(max=n - 1)


def _children(states: Tensor, parent: Tensor, edges: Edges, lvl: int, u: Tensor, S: int) -> Tensor:
    """(R, N) states of level `lvl` (depth = the leaves) from the (R, N_prev) states of the level above,
    each node's parent index (N,) and the (R, N) uniforms."""
    par = states.index_select(1, parent)  # (R, N)
    if S == 2:
        return par.bitwise_xor_(
            u >= edges.keep(u.dtype)[lvl]
        )  # keeps the parent's state iff u < (1 + delta) / 2
    # The child is the number of cumulative sums C_j <= u. C_j is `below` for j < parent and
    # `above` for j >= parent; both rise with j, so each side's count comes from its own row.
    delta = (edges.latent[lvl] if lvl < len(edges.latent) else edges.leaves)[:, None]  # (N, 1)
    below = torch.arange(1, S + 1, device=states.device) * (1 - delta) / S  # (N, S)
    above = below + delta  # (N, S)
    n_below = (u[..., None] >= below).sum(-1)  # (R, N) #{j : below_j <= u}
    n_above = (u[..., None] >= above).sum(-1)  # (R, N) #{j : above_j <= u}
    return (torch.minimum(n_below, par) + (n_above - par).clamp_(min=0)).clamp_(max=S - 1)


Tie = Callable[[int, Tensor], Tensor]


def _draw(layout: Layout, edges: Edges, u: Uniforms, leaf_noise: float, share: int, tie: Tie) -> Sample:
    """R draws, one batched op sequence per level; latent level l <= share is passed through `tie`
    (which replaces some rows by given states) before the levels below are drawn from it."""
    S = layout.states
    latents: list[Tensor] = []
    for lvl in range(layout.depth):
        if lvl == 0:
            states = _index(u.latent[0], S)  # (R, 1)
        else:
            states = _children(latents[-1], layout.parent[lvl], edges, lvl, u.latent[lvl], S)
        latents.append(tie(lvl, states) if lvl <= share else states)
    leaves = _children(latents[-1], layout.leaf_parent, edges, layout.depth, u.leaves, S)
    if leaf_noise > 0:
        if u.noise is None:
            raise ValueError("leaf noise needs uniforms drawn with noise = True")
        leaves = torch.where(u.noise < leaf_noise, _index(u.noise / leaf_noise, S), leaves)
    return Sample(tuple(latents), leaves)


def sample_from_uniforms(
    layout: Layout,
    edges: Edges,
    u: Uniforms,
    *,
    leaf_noise: float,
    given: Sample | None = None,
    share: int = -1,
) -> Sample:
    """B draws of the tree from B rows of uniforms.

    With share = k >= 0 the latent levels 0..k are copied from `given` (B draws) and every deeper
    latent and every leaf is drawn conditionally on them.
    """
    if share >= 0 and given is None:
        raise ValueError(f"share = {share} needs a `given` sample")
    if share >= layout.depth:
        raise ValueError(f"share must be < depth (got share = {share}, depth = {layout.depth})")
    return _draw(layout, edges, u, leaf_noise, share, lambda lvl, _: given.latents[lvl])  # type: ignore[union-attr]


def draw_measure_batch(
    layout: Layout, edges: Edges, data: schema.HLTM, B: int, gen: torch.Generator, device: torch.device | str
) -> Sample:
    """B fresh plain draws (with the data's leaf noise) for a measurement pass."""
    u = draw_uniforms(layout, B, gen, device, noise=data.leaf_noise > 0)
    return sample_from_uniforms(layout, edges, u, leaf_noise=data.leaf_noise)


# ---- views --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Views:
    """One training batch: B anchors x, their positive views and H negatives each.

    The leaves are the augmented (flipped) states the network sees; the latents are unchanged.
    """

    x: Sample
    pos: Sample
    neg: tuple[Sample, ...]  # H samples of B draws
    stacked: Tensor | None = field(default=None, repr=False)  # (H + 2, B, n_leaves) leaves: x, neg.., pos

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, n_leaves), pos (B, n_leaves), neg (H, B, n_leaves) as floats."""
        leaves = self.stacked
        if leaves is None:
            leaves = torch.stack([self.x.leaves, *(s.leaves for s in self.neg), self.pos.leaves])
        t = leaves.to(dtype)
        return t[0], t[-1], t[1:-1]


@dataclass(frozen=True)
class ViewUniforms:
    """The uniforms of one training batch. Rows are in view order: x (B), then the negatives
    (H B, only for independent negatives), then pos (B)."""

    B: int
    H: int
    tree: Uniforms  # (R B) rows, R = H + 2 (independent negatives) or 2 (batch negatives)
    flip: Tensor | None  # (R B, n_leaves), None when augment.flip = 0


def draw_view_uniforms(
    layout: Layout,
    data: schema.HLTM,
    augment: schema.Augment,
    B: int,
    H: int,
    gen: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> ViewUniforms:
    """Uniforms for one batch in one rand call: per row the tree's columns (noise only when
    leaf_noise > 0), then the flips' (only when flip > 0)."""
    if augment.negative == "batch" and H >= B:
        raise ValueError(f"batch negatives need H < B (got H = {H}, B = {B})")
    noise, flips = data.leaf_noise > 0, augment.flip > 0
    rows = B * (H + 2 if augment.negative == "independent" else 2)
    cols = sum(_tree_columns(layout, noise))
    u = torch.rand(rows, cols + flips * layout.n_leaves, generator=gen, device=device, dtype=dtype)
    return ViewUniforms(B, H, _split_uniforms(layout, u[:, :cols], noise), u[:, cols:] if flips else None)


def flip_leaves(leaves: Tensor, u: Tensor, p: float, S: int) -> Tensor:
    """(R, n_leaves) leaves, each changed where u < p: 1 - v for S = 2, else (v + r) mod S with
    r = 1 + floor(u / p * (S - 1)) uniform on 1..S-1."""
    if S == 2:
        return leaves ^ (u < p)
    r = 1 + _index(u / p, S - 1)
    return torch.where(u < p, (leaves + r) % S, leaves)


def augment_sample(
    layout: Layout, augment: schema.Augment, s: Sample, gen: torch.Generator, device: torch.device | str
) -> Sample:
    """The B draws of `s` as a view sees them: the same latents, each leaf flipped as in
    `views_from_uniforms` (one (B, n_leaves) rand call); `s` itself when augment.flip = 0 (no draw)."""
    if augment.flip == 0:
        return s
    u = torch.rand(s.batch, layout.n_leaves, generator=gen, device=device)
    return Sample(s.latents, flip_leaves(s.leaves, u, augment.flip, layout.states))


def _tie_last_to_first(B: int) -> Tie:
    """Make the last B rows (pos) copy the first B rows (x)."""

    def tie(lvl: int, states: Tensor) -> Tensor:
        states[-B:] = states[:B]  # states is freshly computed; writing in place is safe
        return states

    return tie


def views_from_uniforms(
    layout: Layout, edges: Edges, data: schema.HLTM, augment: schema.Augment, vu: ViewUniforms
) -> Views:
    """The batch determined by `vu`, drawn as one batch of rows (x, negatives, pos) level by level:
    pos's levels 0..augment.share are copied from x's before the levels below are drawn; then the
    flips on every view's leaves."""
    B, H = vu.B, vu.H
    s = _draw(layout, edges, vu.tree, data.leaf_noise, augment.share, _tie_last_to_first(B))
    leaves = s.leaves if vu.flip is None else flip_leaves(s.leaves, vu.flip, augment.flip, layout.states)
    leaves = leaves.reshape(-1, B, layout.n_leaves)  # (R, B, n_leaves)
    x = Sample(tuple(t[:B] for t in s.latents), leaves[0])
    pos = Sample(tuple(t[-B:] for t in s.latents), leaves[-1])
    if augment.negative == "independent":
        neg = tuple(Sample(s.rows(B * k, B * (k + 1)).latents, leaves[k]) for k in range(1, H + 1))
        return Views(x, pos, neg, leaves)
    return _with_batch_negatives(x, pos, H)


def _with_batch_negatives(x: Sample, pos: Sample, H: int) -> Views:
    """Negative k (1..H) of example b is the (augmented) positive view of example (b + k) mod B."""
    B, dev = x.batch, x.leaves.device
    idx = ((torch.arange(B, device=dev) + torch.arange(1, H + 1, device=dev)[:, None]) % B).view(-1)  # (H B,)
    neg_leaves = pos.leaves.index_select(0, idx).view(H, B, -1)  # (H, B, n_leaves)
    neg_latents = [t.index_select(0, idx).view(H, B, -1) for t in pos.latents]  # (H, B, N_l) per level
    neg = tuple(Sample(tuple(t[k] for t in neg_latents), neg_leaves[k]) for k in range(H))
    return Views(x, pos, neg, torch.cat([x.leaves[None], neg_leaves, pos.leaves[None]]))


def draw_views(
    layout: Layout,
    edges: Edges,
    data: schema.HLTM,
    augment: schema.Augment,
    B: int,
    H: int,
    gen: torch.Generator,
    device: torch.device | str,
) -> Views:
    """One training batch of B examples with H negatives each (see `views_from_uniforms`)."""
    vu = draw_view_uniforms(layout, data, augment, B, H, gen, device)
    return views_from_uniforms(layout, edges, data, augment, vu)
