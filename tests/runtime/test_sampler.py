"""The vectorized HLTM sampler: exact agreement with a slow reference, and its statistics."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from ref_sampler import ref_sample, ref_views

from runtime.layout import Layout
from runtime.sampler import (
    Edges,
    Sample,
    Views,
    draw_edges,
    draw_measure_batch,
    draw_uniforms,
    draw_view_uniforms,
    draw_views,
    flip_leaves,
    sample_from_uniforms,
    views_from_uniforms,
)
from sslspec.spec import schema
from sslspec.spec.fields import uniform_tree

BINARY3 = uniform_tree(3, 2)  # latent levels of 1, 2, 4 nodes; 8 leaves
RAGGED = ((2, 3), (1,))  # depth 3, nodes with 2, 3 and 1 leaves
TERNARY = uniform_tree(3, 3)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def setup(shape, states=2, sign="random", polarity=None, leaf_noise=0.0, seed=0):
    """A layout, its HLTM config and edges drawn from `seed`."""
    polarity = polarity or schema.Uniform(0.3, 0.9)
    data = schema.HLTM(states=states, polarity=polarity, sign=sign, tree=shape, leaf_noise=leaf_noise)
    layout = Layout.from_shape(shape, states)
    return layout, data, draw_edges(data, layout, gen(seed))


def assert_same(a: Sample, b: Sample) -> None:
    assert len(a.latents) == len(b.latents)
    for ta, tb in zip(a.latents, b.latents, strict=True):
        assert ta.dtype == torch.long and torch.equal(ta, tb)
    assert a.leaves.dtype == torch.long and torch.equal(a.leaves, b.leaves)


def within(p_hat: float, p: float, n: int, z: float = 4.0) -> bool:
    return abs(p_hat - p) <= z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9


CASES = [  # shape, states, sign, leaf_noise, share
    (BINARY3, 2, "random", 0.0, 0),
    (BINARY3, 2, "random", 0.2, 1),
    (RAGGED, 2, "random", 0.2, 0),
    (RAGGED, 2, "random", 0.0, 1),
    (TERNARY, 3, "positive", 0.0, 0),
    (TERNARY, 3, "positive", 0.3, 1),
    (RAGGED, 3, "positive", 0.3, 1),
    (4, 2, "random", 0.1, 0),  # depth 1: the root is the leaves' parent
]


@pytest.mark.parametrize(("shape", "states", "sign", "noise", "share"), CASES)
def test_sample_matches_reference(shape, states, sign, noise, share):
    """sample_from_uniforms equals the per-sample, per-node reference exactly, plain and conditioned."""
    layout, _, edges = setup(shape, states, sign, seed=3)
    g = gen(4)
    u0, u1 = (draw_uniforms(layout, 64, g, "cpu", torch.float64) for _ in range(2))
    x = sample_from_uniforms(layout, edges, u0, leaf_noise=noise)
    assert_same(x, ref_sample(shape, states, edges, u0, noise))
    pos = sample_from_uniforms(layout, edges, u1, leaf_noise=noise, given=x, share=share)
    assert_same(pos, ref_sample(shape, states, edges, u1, noise, given=x, share=share))


VIEW_CASES = [  # shape, states, sign, negative, flip, share, H, leaf_noise
    (BINARY3, 2, "random", "independent", 0.0, 0, 1, 0.0),
    (BINARY3, 2, "random", "independent", 0.25, 1, 2, 0.1),
    (RAGGED, 2, "random", "batch", 0.25, 0, 3, 0.1),
    (RAGGED, 2, "random", "batch", 0.0, 1, 1, 0.0),
    (TERNARY, 3, "positive", "independent", 0.4, 0, 2, 0.1),
    (RAGGED, 3, "positive", "batch", 0.4, 1, 2, 0.2),
]


@pytest.mark.parametrize(("shape", "states", "sign", "negative", "flip", "share", "H", "noise"), VIEW_CASES)
def test_views_match_reference(shape, states, sign, negative, flip, share, H, noise):
    """views_from_uniforms equals the reference's x, pos and negatives exactly, flips and noise included."""
    layout, data, edges = setup(shape, states, sign, leaf_noise=noise, seed=5)
    augment = schema.Augment(share=share, flip=flip, negative=negative)
    vu = draw_view_uniforms(layout, data, augment, 16, H, gen(6), "cpu", torch.float64)
    assert vu.tree.leaves.dtype == torch.float64  # the uniforms come in the dtype asked for
    views = views_from_uniforms(layout, edges, data, augment, vu)
    x, pos, negs = ref_views(shape, states, edges, data, augment, vu)
    assert_same(views.x, x)
    assert_same(views.pos, pos)
    assert len(views.neg) == H
    for got, want in zip(views.neg, negs, strict=True):
        assert_same(got, want)


def test_float32_uniforms_match_reference_for_binary_trees():
    """With default float32 uniforms, binary views without leaf noise still equal the reference exactly."""
    layout, data, edges = setup(RAGGED)
    augment = schema.Augment(share=1, flip=0.3)
    vu = draw_view_uniforms(layout, data, augment, 32, 2, gen(16), "cpu")
    assert vu.tree.leaves.dtype == torch.float32
    views = views_from_uniforms(layout, edges, data, augment, vu)
    x, pos, negs = ref_views(RAGGED, 2, edges, data, augment, vu)
    for got, want in zip([views.x, views.pos, *views.neg], [x, pos, *negs], strict=True):
        assert_same(got, want)


def test_draw_views_uses_its_uniforms():
    """draw_views is views_from_uniforms applied to draw_view_uniforms on the same generator stream."""
    layout, data, edges = setup(RAGGED, leaf_noise=0.1)
    augment = schema.Augment(share=1, flip=0.2)
    views = draw_views(layout, edges, data, augment, 32, 2, gen(7), "cpu")
    again = views_from_uniforms(
        layout, edges, data, augment, draw_view_uniforms(layout, data, augment, 32, 2, gen(7), "cpu")
    )
    assert_same(views.x, again.x)
    assert_same(views.pos, again.pos)
    for a, b in zip(views.neg, again.neg, strict=True):
        assert_same(a, b)


def edge_pairs(layout: Layout, edges: Edges, s: Sample):
    """(B, E) parent states, (B, E) child states and (E,) deltas of every edge of the sample."""
    parents = [s.latents[lvl - 1][:, layout.parent[lvl]] for lvl in range(1, layout.depth)]
    parents.append(s.latents[-1][:, layout.leaf_parent])
    return torch.cat(parents, 1), torch.cat([*s.latents[1:], s.leaves], 1), edges.flat()


def test_binary_child_copies_parent_at_rate():
    """Binary: empirical P(child == parent) is (1 + delta) / 2 within 4 standard errors on every edge."""
    layout, data, edges = setup(BINARY3, polarity=schema.Uniform(0.0, 1.0))
    n = 4000
    parent, child, delta = edge_pairs(
        layout, edges, draw_measure_batch(layout, edges, data, n, gen(1), "cpu")
    )
    assert (delta < 0).any() and (delta > 0).any()
    rates = (parent == child).double().mean(0)
    for rate, d in zip(rates.tolist(), delta.tolist(), strict=True):
        assert within(rate, (1 + d) / 2, n)


def test_ternary_transition_probabilities():
    """S = 3: P(child = parent) = delta + (1 - delta)/3 and each other state (1 - delta)/3."""
    layout, data, edges = setup(TERNARY, states=3, sign="positive", polarity=schema.Uniform(0.2, 0.8))
    n = 4000
    parent, child, delta = edge_pairs(
        layout, edges, draw_measure_batch(layout, edges, data, n, gen(2), "cpu")
    )
    offset = (child - parent) % 3  # (B, E): 0 = same, 1 and 2 = the two other states
    for k in range(3):
        rates = (offset == k).double().mean(0)
        for rate, d in zip(rates.tolist(), delta.tolist(), strict=True):
            assert within(rate, d * (k == 0) + (1 - d) / 3, n)


@pytest.mark.parametrize("states", [2, 3])
def test_root_uniform(states):
    """The root takes each of the S states with probability 1/S."""
    layout, data, edges = setup(BINARY3 if states == 2 else TERNARY, states=states, sign="positive")
    n = 6000
    root = draw_measure_batch(layout, edges, data, n, gen(3), "cpu").latents[0]
    assert root.shape == (n, 1)
    for j in range(states):
        assert within((root == j).double().mean().item(), 1 / states, n)


def test_full_leaf_noise_makes_leaves_independent():
    """With leaf_noise = 1 every leaf is uniform whatever its parent, even with delta = 1."""
    layout, data, edges = setup(BINARY3, sign="positive", polarity=schema.Constant(1.0), leaf_noise=1.0)
    s = draw_measure_batch(layout, edges, data, 4000, gen(4), "cpu")
    same = (s.leaves == s.latents[-1][:, layout.leaf_parent]).double().mean().item()
    assert within(same, 0.5, 4000 * layout.n_leaves)
    clean = draw_measure_batch(layout, edges, schema.HLTM(tree=BINARY3), 100, gen(4), "cpu")
    assert torch.equal(clean.leaves, clean.latents[-1][:, layout.leaf_parent])


@pytest.mark.parametrize("negative", ["independent", "batch"])
def test_negative_roots_match_half(negative):
    """A negative's root equals its anchor's root about half of the time."""
    layout, data, edges = setup(BINARY3)
    augment = schema.Augment(negative=negative)
    views = draw_views(layout, edges, data, augment, 3000, 1, gen(5), "cpu")
    same = (views.neg[0].latents[0] == views.x.latents[0]).double().mean().item()
    assert within(same, 0.5, 3000)


@pytest.mark.parametrize("share", [0, 1])
def test_positive_shares_exactly_the_shared_levels(share):
    """pos copies x's latent levels 0..share and resamples the deeper levels and the leaves."""
    layout, data, edges = setup(BINARY3)
    views = draw_views(layout, edges, data, schema.Augment(share=share), 256, 1, gen(6), "cpu")
    for lvl in range(layout.depth):
        same = torch.equal(views.pos.latents[lvl], views.x.latents[lvl])
        assert same == (lvl <= share)
    assert not torch.equal(views.pos.leaves, views.x.leaves)


def test_batch_negatives_are_other_examples_positives():
    """With negative = batch, negative k of example b is example (b + k) mod B's positive view."""
    layout, data, edges = setup(RAGGED)
    augment = schema.Augment(negative="batch", flip=0.3)
    views = draw_views(layout, edges, data, augment, 8, 3, gen(7), "cpu")
    for k, neg in enumerate(views.neg, start=1):
        order = (torch.arange(8) + k) % 8
        assert torch.equal(neg.leaves, views.pos.leaves[order])
        for a, b in zip(neg.latents, views.pos.latents, strict=True):
            assert torch.equal(a, b[order])
    with pytest.raises(ValueError, match="H < B"):
        draw_views(layout, edges, data, augment, 4, 4, gen(7), "cpu")


def test_flips_change_leaves_at_rate_and_keep_latents():
    """flip = p changes each leaf of every view with probability p and leaves the latents alone."""
    layout, data, edges = setup(BINARY3)
    p, n = 0.3, 2000
    augment = schema.Augment(flip=p)
    vu = draw_view_uniforms(layout, data, augment, n, 2, gen(8), "cpu")
    flipped = views_from_uniforms(layout, edges, data, augment, vu)
    plain = views_from_uniforms(layout, edges, data, schema.Augment(), replace(vu, flip=None))
    for a, b in zip([plain.x, plain.pos, *plain.neg], [flipped.x, flipped.pos, *flipped.neg], strict=True):
        for ta, tb in zip(a.latents, b.latents, strict=True):
            assert torch.equal(ta, tb)
        assert within((a.leaves != b.leaves).double().mean().item(), p, n * layout.n_leaves)


def test_ternary_flip_moves_to_another_state_uniformly():
    """S = 3: a flipped leaf always changes, to each of the two other states equally often."""
    leaves = torch.randint(0, 3, (20000,), generator=gen(9))
    u = torch.rand(20000, generator=gen(10), dtype=torch.float64)
    shift = (flip_leaves(leaves, u, 0.5, 3) - leaves) % 3
    hit = u < 0.5
    assert torch.equal(shift != 0, hit)
    assert within((shift[hit] == 1).double().mean().item(), 0.5, int(hit.sum()))


def test_polarity_magnitudes_and_signs():
    """|delta| is uniform on [low, high]; signs random half/half, or all positive (required for S > 2)."""
    layout = Layout.from_shape(uniform_tree(5, 2), 2)
    edges = draw_edges(schema.HLTM(polarity=schema.Uniform(0.4, 0.6)), layout, gen(11))
    flat = edges.flat()
    assert flat.shape == (layout.n_latent - 1 + layout.n_leaves,) and flat.dtype == torch.float64
    assert ((flat.abs() >= 0.4) & (flat.abs() <= 0.6)).all()
    assert abs(flat.abs().mean().item() - 0.5) < 4 * 0.2 / math.sqrt(12 * flat.numel())  # fills the range
    assert within((flat > 0).double().mean().item(), 0.5, flat.numel())
    pos = draw_edges(schema.HLTM(polarity=schema.Uniform(0.4, 0.6), sign="positive"), layout, gen(11))
    assert (pos.flat() > 0).all()
    with pytest.raises(ValueError, match="states > 2"):
        draw_edges(schema.HLTM(states=3), Layout.from_shape(uniform_tree(2, 2), 3), gen(11))
    const = draw_edges(
        schema.HLTM(polarity=schema.Constant(0.75), sign="positive"), layout, gen(11), torch.float32
    )
    assert const.flat().dtype == torch.float32 and (const.flat() == 0.75).all()


def test_edges_layout_and_flat_order():
    """Edges hold an empty root entry, one delta per node of a level and per leaf; flat() joins them."""
    layout, _, edges = setup(RAGGED)
    assert [t.numel() for t in edges.latent] == [0, *layout.sizes[1:]]
    assert edges.leaves.shape == (layout.n_leaves,)
    assert torch.equal(edges.flat(), torch.cat([edges.latent[1], edges.latent[2], edges.leaves]))
    assert torch.equal(edges.to("cpu").flat(), edges.flat())


def test_float32_keep_thresholds_round_up():
    """Edges.keep(float32) is the smallest float32 >= (1 + delta) / 2, so float32 comparisons stay exact."""
    edges = setup(uniform_tree(5, 2))[2]
    want = (1 + edges.flat()) / 2
    got = torch.cat(edges.keep(torch.float32)[1:])
    below = torch.nextafter(got, torch.full_like(got, -1.0))
    assert got.dtype == torch.float32 and (got.double() >= want).all() and (below.double() < want).all()
    assert torch.equal(torch.cat(edges.keep(torch.float64)[1:]), want)


def test_same_seed_same_views_different_seed_different():
    """The same generator seed gives bit-identical views; another seed gives different ones."""
    layout, data, edges = setup(BINARY3, leaf_noise=0.1)
    augment = schema.Augment(flip=0.1)
    a, b, c = (draw_views(layout, edges, data, augment, 64, 1, gen(s), "cpu") for s in (12, 12, 13))
    assert all(torch.equal(s, t) for s, t in zip(a.inputs(), b.inputs(), strict=True))
    assert_same(a.pos, b.pos)
    assert not torch.equal(a.x.leaves, c.x.leaves)
    assert torch.equal(draw_edges(data, layout, gen(1)).flat(), draw_edges(data, layout, gen(1)).flat())
    assert not torch.equal(draw_edges(data, layout, gen(1)).flat(), draw_edges(data, layout, gen(2)).flat())


def test_inputs_are_float_views_of_the_leaves():
    """Views.inputs gives x, pos (B, n_leaves) and neg (H, B, n_leaves) floats equal to the leaves."""
    layout, data, edges = setup(BINARY3)
    views = draw_views(layout, edges, data, schema.Augment(), 10, 3, gen(14), "cpu")
    x, pos, neg = views.inputs(torch.float64)
    assert x.shape == pos.shape == (10, 8) and neg.shape == (3, 10, 8) and neg.dtype == torch.float64
    assert torch.equal(x, views.x.inputs(torch.float64)) and torch.equal(pos, views.pos.leaves.double())
    assert torch.equal(neg, torch.stack([s.leaves for s in views.neg]).double())
    loose = Views(views.x, views.pos, views.neg)  # without the stacked copy
    assert all(torch.equal(s, t) for s, t in zip(loose.inputs(), views.inputs(), strict=True))


def test_official_spec_batch():
    """The reference spec's data block gives |delta| in [0.8, 1] and a 128-example batch of 32-leaf views."""
    from sslspec.spec.lower import lower

    cfg = lower("specs/hltm_simclr.ssl", ["train.epochs=1"]).runs[0].config
    layout = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, layout, gen(cfg.seed))
    assert ((edges.flat().abs() >= 0.8) & (edges.flat().abs() <= 1.0)).all()
    views = draw_views(layout, edges, cfg.data, cfg.augment, 128, 1, gen(1), "cpu")
    x, _, neg = views.inputs()
    assert x.shape == (128, 32) and neg.shape == (1, 128, 32) and x.dtype == torch.float32
    assert torch.equal(views.pos.latents[0], views.x.latents[0])


def test_share_needs_given_and_shallower_level():
    """Conditioning without a given sample or on every level, or noise without its uniforms, is refused."""
    layout, _, edges = setup(BINARY3)
    u = draw_uniforms(layout, 4, gen(15), "cpu")
    with pytest.raises(ValueError, match="given"):
        sample_from_uniforms(layout, edges, u, leaf_noise=0.0, share=0)
    x = sample_from_uniforms(layout, edges, u, leaf_noise=0.0)
    with pytest.raises(ValueError, match="< depth"):
        sample_from_uniforms(layout, edges, u, leaf_noise=0.0, given=x, share=3)
    quiet = draw_uniforms(layout, 4, gen(15), "cpu", noise=False)
    with pytest.raises(ValueError, match="noise"):
        sample_from_uniforms(layout, edges, quiet, leaf_noise=0.1)
