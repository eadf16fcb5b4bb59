"""runtime.loss_operators and the per-loss theorem check: the exact per-batch identity for every loss,
the weights of section 1, and the weighted operator of section 2 (loss-operators.md)."""

from __future__ import annotations

import attrs
import pytest
import torch

from runtime.layout import Layout
from runtime.loss_operators import (
    PairWeights,
    normalization_adjoint,
    pair_distances,
    pair_laplacian,
    pair_weights,
    weighted_row_products,
)
from runtime.measure import CovarianceOperator, class_index, n_classes
from runtime.network import EPS_NORM, build_network
from runtime.sampler import draw_edges, draw_measure_batch, draw_views
from runtime.theorem import prediction_rule, predictions, sweep, theorem_check
from sslspec.spec import schema
from sslspec.spec.lower import lower

F64 = torch.float64
SPEC = """
experiment small {
  seed = 1
  data hltm {
    depth = 3
    polarity = uniform(low = 0.7, high = 1.0)
  }
  network tree_relu {
    width = 4
  }
  loss simple { }
  optimizer sgd { }
}
"""
NODES = (0, 1, 4)  # one node of each level
LOSSES = {
    "simple": schema.SimpleLoss(beta=0.5),
    "triplet": schema.TripletLoss(temperature=0.5, margin=0.2),
    "infonce_h3": schema.InfoNCELoss(temperature=0.1, negatives=3),
    "infonce_t1": schema.InfoNCELoss(temperature=1.0, negatives=1),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(network: dict[str, object] | None = None):
    """The config, layout, edges and a float64 network of the small tree (network fields overridden)."""
    cfg = lower("small.ssl", text=SPEC).runs[0].config
    cfg = attrs.evolve(cfg, network=attrs.evolve(cfg.network, **(network or {})))
    lay = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, lay, gen(1))
    return cfg, lay, edges, build_network(cfg, lay, gen(2), F64)


def draws(cfg, lay, edges, negatives: int, g: torch.Generator, batch: int = 64):
    """A draw_batch callable with the classes (share = 0: the root value) of anchors and negatives."""

    def draw():
        v = draw_views(lay, edges, cfg.data, cfg.augment, batch, negatives, g, "cpu")
        classes = torch.stack([class_index(s.latents, 0, 2) for s in (v.x, *v.neg)])
        return (*v.inputs(F64), classes)

    return draw


def negatives_of(loss: schema.Loss) -> int:
    return loss.negatives if isinstance(loss, schema.InfoNCELoss) else 1


@pytest.mark.parametrize("normalize", ["l2", "none"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["sample", "batch"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_chain_rule_form_is_autograd_to_float64_precision(
    loss: str, reduction: str, bias: bool, normalize: str
) -> None:
    """sum_{b,k} w (K(a) - K(b)) Delta f equals autograd's batch gradient at every level, to 1e-12."""
    cfg, lay, edges, net = small({"bias": bias, "normalize": normalize})
    lc = attrs.evolve(LOSSES[loss], reduction=reduction)
    draw = draws(cfg, lay, edges, negatives_of(lc), gen(3))
    locate = [(0, 0), (1, 1), (2, 3)]
    sw = sweep(net, lc, draw, locate, (1, 2), identity=True)
    assert sw.chain is not None and sw.raw is not None
    err = (sw.chain - sw.grad).norm(dim=-1) / sw.grad.norm(dim=-1)
    assert torch.all(err < 1e-12), err
    assert torch.all(sw.grad.norm(dim=-1) > 0)
    if normalize == "none":  # the raw form is the same form
        torch.testing.assert_close(sw.raw, sw.chain, rtol=0, atol=0)


def test_chain_rule_form_on_an_mlp_with_leaky_relu() -> None:
    """The identity holds for an mlp (its layers as nodes) with leaky ReLU gates, per-sample InfoNCE."""
    cfg, lay, edges, _ = small()
    cfg = attrs.evolve(
        cfg,
        network=schema.MLP(widths=(8, 6), activation=schema.Activation("leaky_relu", 0.1)),
        loss=schema.InfoNCELoss(temperature=0.5, negatives=2),
    )
    net = build_network(cfg, lay, gen(2), F64)
    sw = sweep(net, cfg.loss, draws(cfg, lay, edges, 2, gen(4)), [(0, 0), (1, 0)], (2,), identity=True)
    assert sw.chain is not None
    assert torch.all((sw.chain - sw.grad).norm(dim=-1) < 1e-12 * sw.grad.norm(dim=-1))


def test_pair_weights_are_the_stated_formulas() -> None:
    """w = dL/dd per loss (section 1): simple (1 + beta, -1/H), triplet (s, -s), InfoNCE (1 - p_0, -p_k),
    all divided by B for the mean over the batch; batch reduction: (2 / (D B)) dL/dD_k."""
    z = torch.randn(5, 7, 3, dtype=F64, generator=gen(5))  # V = 5: H = 3, B = 7, D = 3
    d = pair_distances(z)
    b, h = 7, 3
    w = pair_weights(schema.SimpleLoss(beta=0.5), z)
    torch.testing.assert_close(w, torch.tensor([1.5] + [-1 / h] * h, dtype=F64)[:, None].expand(4, b) / b)
    p = torch.softmax(-d / 0.2, dim=0)
    w = pair_weights(schema.InfoNCELoss(temperature=0.2, negatives=3), z)
    torch.testing.assert_close(w, torch.cat([1 - p[:1], -p[1:]]) / b)
    z2 = z[:3]
    s = torch.sigmoid((d[0] - d[1] + 0.1) / 0.3)
    torch.testing.assert_close(
        pair_weights(schema.TripletLoss(temperature=0.3, margin=0.1), z2), torch.stack([s, -s]) / b
    )
    big_d = 2 / 3 * d[:2].mean(dim=1)  # (2,) D_0, D_1
    q = torch.softmax(-big_d / 0.5, dim=0)[0]
    w = pair_weights(schema.InfoNCELoss(temperature=0.5, reduction="batch"), z2)
    c = q * (1 - q) / 0.5 * 2 / (3 * b)
    torch.testing.assert_close(w, torch.stack([c, -c])[:, None].expand(2, b))


def test_normalization_adjoint_is_the_jacobian_of_l2_normalization() -> None:
    """N c from the closed form equals (d f~ / d f)^T c from autograd, f~ = f / (||f|| + eps)."""
    f = torch.randn(6, 4, dtype=F64, generator=gen(6))
    c = torch.randn(6, 4, dtype=F64, generator=gen(7))
    x = f.clone().requires_grad_()
    out = x / (x.norm(dim=1, keepdim=True) + EPS_NORM)
    (vjp,) = torch.autograd.grad(out, x, c)
    torch.testing.assert_close(normalization_adjoint(f, c), vjp, rtol=1e-12, atol=1e-14)


def test_normalization_adjoint_of_a_zero_output_is_c_over_eps() -> None:
    """A zero output row (every gate closed) gives N c = c / eps, autograd's value, not NaN."""
    f = torch.randn(3, 4, dtype=F64, generator=gen(12))
    f[1] = 0
    c = torch.randn(3, 4, dtype=F64, generator=gen(13))
    x = f.clone().requires_grad_()
    (vjp,) = torch.autograd.grad(x / (x.norm(dim=1, keepdim=True) + EPS_NORM), x, c)
    got = normalization_adjoint(f, c)
    torch.testing.assert_close(got[1], c[1] / EPS_NORM, rtol=1e-15, atol=0)
    torch.testing.assert_close(got, vjp, rtol=1e-12, atol=1e-14)


def operator_of(cfg, lay, edges, net, n: int = 4 * 4096) -> CovarianceOperator:
    cov = CovarianceOperator.for_tree(lay, 4, n_classes(lay, 0, 2))
    g = gen(8)
    with torch.no_grad():
        for _ in range(n // 4096):
            s = draw_measure_batch(lay, edges, cfg.data, 4096, g, "cpu")
            fwd = net(s.inputs(F64))
            cov.update(class_index(s.latents, 0, 2), fwd.inputs, net.jacobians(fwd))
    return cov


def test_constant_pair_weights_give_the_simple_operator() -> None:
    """Omega = c everywhere: the weighted prediction is c times the simple-loss prediction, every level."""
    cfg, lay, edges, net = small({"bias": False, "normalize": "none"})
    cov = operator_of(cfg, lay, edges, net)
    lap = pair_laplacian(torch.full((2, 2), 0.7, dtype=F64), cov.counts)
    weighted, _ = predictions(net, cov, NODES, 1.0, 0.0, lap)
    plain, _ = predictions(net, cov, NODES, 0.7, 0.0)
    for a, b in zip(weighted, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_weighted_operator_matches_its_dense_definition() -> None:
    """A (Lt kron I) A^T v equals 1/2 sum_jj' p_j p_j' Omega_jj' (Kbar_j - Kbar_j')(...)^T v for an
    asymmetric Omega over 4 classes (share = 1 on a depth-2 tree), the level's cross blocks included."""
    fan_in = [torch.tensor([2]), torch.tensor([3, 3])]
    cov = CovarianceOperator(fan_in, 4)
    g = gen(9)
    cls = torch.randint(0, 4, (500,), generator=g)
    inputs = [torch.randn(500, 1, 2, dtype=F64, generator=g), torch.randn(500, 2, 3, dtype=F64, generator=g)]
    jac = [
        torch.randn(500, 1, 3, 2, dtype=F64, generator=g),
        torch.randn(500, 2, 3, 1, dtype=F64, generator=g),
    ]
    cov.update(cls, inputs, jac)
    omega = torch.rand(4, 4, dtype=F64, generator=g)
    lap = pair_laplacian(omega, cov.counts)
    p = cov.counts / cov.counts.sum()
    for lvl in (0, 1):
        k = torch.stack(
            [cov._paper_order(cov.sums[lvl][c] / cov.counts[c]) for c in range(4)]
        )  # (C, N, P, D)
        vecs = torch.randn(k.shape[1], k.shape[2], dtype=F64, generator=g)
        for i in range(k.shape[1]):
            dense = torch.zeros(k.shape[1], k.shape[2], dtype=F64)
            for j in range(4):
                for jj in range(4):
                    dn, dm = k[j, i] - k[jj, i], k[j] - k[jj]  # (P, D), (N, P, D)
                    dense += 0.5 * p[j] * p[jj] * omega[j, jj] * torch.einsum("ad,nbd,nb->na", dn, dm, vecs)
            got = weighted_row_products(cov.level_factor(lvl), i, vecs, lap)
            torch.testing.assert_close(got, dense, rtol=1e-10, atol=1e-12)


def test_pair_weights_group_by_classes() -> None:
    """PairWeights: Omega is H times the mean negated negative weight per (anchor, negative) class
    pair, B w per example; the simple loss gives Omega = 1 and total = beta exactly."""
    pw = PairWeights(3)
    w = torch.tensor([[0.3, 0.1], [-0.2, -0.1], [-0.1, 0.0]], dtype=F64) / 2  # H = 2, B = 2
    classes = torch.tensor([[0, 1], [1, 1], [0, 0]])  # anchors, negative 1, negative 2
    pw.update(w, classes)
    mean = (0.4 + 0.2 + 0.2 + 0.0) / 4  # pairs never seen take the mean over all pairs
    want = torch.full((3, 3), mean, dtype=F64)
    want[0, 1], want[1, 1], want[0, 0], want[1, 0] = 0.4, 0.2, 0.2, 0.0
    torch.testing.assert_close(pw.omega(), want)
    simple = PairWeights(2)
    b = 4
    simple.update(
        torch.tensor([[1.5 / b] * b] + [[-1 / (3 * b)] * b] * 3, dtype=F64),
        torch.zeros(4, b, dtype=torch.long),
    )
    assert simple.omega()[0, 0].item() == pytest.approx(1.0, abs=1e-15)
    assert simple.total() == pytest.approx(0.5, abs=1e-15)


def test_pair_weights_total_is_the_mean_over_every_example_seen() -> None:
    """total() is sum(B w) over every update divided by the examples of all of them, a one-example
    batch included; before any update it is 0."""
    pw = PairWeights(2)
    assert pw.total() == 0.0
    pw.update(torch.tensor([[0.9], [-0.2]], dtype=F64), torch.zeros(2, 1, dtype=torch.long))  # B = 1
    assert pw.total() == pytest.approx(0.7, rel=1e-15)
    w = torch.tensor([[0.3, 0.1, 0.2], [-0.1, 0.0, -0.3]], dtype=F64)  # B = 3: sum(B w) = 0.6
    pw.update(w, torch.ones(2, 3, dtype=torch.long))
    assert pw.total() == pytest.approx((0.7 + 0.6) / 4, rel=1e-15)


def test_pair_weights_accumulate_float32_weights_in_float64() -> None:
    """Weights of a float32 network are summed in float64: Omega and total match a float64 sum of the
    same weights to 1e-13, where float32 sums drift by about 1e-7."""
    g = gen(14)
    h, b = 2, 4096
    w = torch.rand(h + 1, b, generator=g) / b  # float32
    classes = torch.randint(0, 2, (h + 1, b), generator=g)
    pw = PairWeights(2)
    pw.update(w, classes)
    omega = b * w.to(F64)
    pair = (classes[:1] * 2 + classes[1:]).reshape(-1)
    sums = torch.bincount(pair, weights=(-h * omega[1:]).reshape(-1), minlength=4)
    want = (sums / torch.bincount(pair, minlength=4)).reshape(2, 2)
    torch.testing.assert_close(pw.omega(), want, rtol=1e-13, atol=0)
    assert pw.total() == pytest.approx(float(omega.sum()) / b, rel=1e-13)


def test_pair_weights_count_past_float32_precision() -> None:
    """Past 2^24 pairs of one class pair the counts stay exact (a float32 count would stop at 2^24),
    so Omega of constant weights stays that constant."""
    pw = PairWeights(2)
    chunk = 2**16
    w = torch.tensor([[0.0], [-0.5]], dtype=F64).expand(2, chunk) / chunk  # Omega = H * 0.5 = 0.5
    zeros = torch.zeros(2, chunk, dtype=torch.long)
    for _ in range(2**8):
        pw.update(w, zeros)
    pw.update(w[:, :1] * chunk, zeros[:, :1])  # one more pair, B = 1: 2^24 + 1 pairs
    assert pw.counts[0].item() == 2**24 + 1
    assert pw.omega()[0, 0].item() == pytest.approx(0.5, rel=1e-15)


def test_batch_reduced_infonce_error_falls_with_m_like_the_simple_loss() -> None:
    """Bias-free, unnormalized, InfoNCE with reduction = batch: p = -2 E[c] OP vec W, and
    ||g(M) - p|| / ||g|| falls with M as it does for the simple loss."""
    cfg, lay, edges, net = small({"bias": False, "normalize": "none"})
    cov = operator_of(cfg, lay, edges, net, n=24 * 4096)
    ms = (1, 16, 256)
    out = {}
    for name, lc in (
        ("simple", schema.SimpleLoss()),
        ("infonce", schema.InfoNCELoss(temperature=1.0, reduction="batch")),
    ):
        out[name] = theorem_check(net, lc, draws(cfg, lay, edges, 1, gen(10), 128), cov, NODES, ms)
    res = out["infonce"]
    assert res.attrs["weights"] == "batch_scalar" and res.attrs["mean_weight"] > 0
    first, last = res.rel_error[:, 0].mean(), res.rel_error[:, -1].mean()
    assert last < 0.4 * first, res.rel_error
    assert last < 2 * out["simple"].rel_error[:, -1].mean() + 0.05, (res.rel_error, out["simple"].rel_error)
    assert torch.all(res.cosine[:, -1] > 0.97), res.cosine
    assert torch.all(res.batch_rel_error < 1e-12) and torch.all(res.residue_normalization == 0)


def test_per_sample_infonce_uses_the_class_pair_operator() -> None:
    """Per-sample InfoNCE: the prediction is the class-pair weighted operator (recorded in attrs), the
    simple-loss comparison is kept apart, and the residue's two parts bound the total error."""
    cfg, lay, edges, net = small({"bias": True, "normalize": "l2"})
    cov = operator_of(cfg, lay, edges, net)
    lc = schema.InfoNCELoss(temperature=0.5, negatives=2)
    res = theorem_check(net, lc, draws(cfg, lay, edges, 2, gen(11)), cov, NODES, (1, 8))
    assert res.attrs["weights"] == "class_pairs" and not res.attrs["exact"]
    assert not torch.equal(res.rel_error, res.rel_error_simple)
    assert torch.all(res.batch_rel_error < 1e-12), res.batch_rel_error
    assert torch.all(res.residue_normalization > 1e-6), res.residue_normalization
    assert torch.all(res.rel_error <= res.residue_normalization + res.residue_other + 1e-12)
    locate = [cov.locate[n] for n in NODES]
    sw = sweep(net, lc, draws(cfg, lay, edges, 2, gen(11)), locate, (8,), n_classes=cov.n_classes)
    assert sw.pairs is not None  # the same 8 batches, their class-pair weights
    want, _ = predictions(net, cov, NODES, 1.0, 0.0, pair_laplacian(sw.pairs.omega(), cov.counts))
    for n, p in enumerate(want):
        torch.testing.assert_close(res.pred[n, : len(p)], p)
    assert res.attrs["pair_weight_total"] == pytest.approx(sw.pairs.total(), rel=1e-12)


def test_pair_laplacian_is_the_stated_matrix_over_the_seen_classes() -> None:
    """Lt = diag(S p) - sqrt(p) S sqrt(p)^T over the classes with at least one sample (a class seen
    once included, a class never seen left out), S the symmetric part of Omega, p = counts / total."""
    omega = torch.rand(4, 4, dtype=F64, generator=gen(15))
    counts = torch.tensor([4.0, 0.0, 1.0, 3.0], dtype=F64)
    keep = [0, 2, 3]
    p = counts[keep] / 8
    s = 0.5 * (omega + omega.T)[keep][:, keep]
    want = torch.diag(s @ p) - p.sqrt()[:, None] * s * p.sqrt()[None, :]
    torch.testing.assert_close(pair_laplacian(omega, counts), want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss", ["triplet", "infonce_h3"])
def test_per_sample_weights_are_never_called_exact(loss: str) -> None:
    """Per-sample triplet and InfoNCE on a bias-free, unnormalized network without batch norm (nothing
    else to flag) are still not exact: the note names the weights' dependence on the views."""
    _, _, _, net = small({"bias": False, "normalize": "none"})
    rule = prediction_rule(LOSSES[loss], net, [0, 1])
    assert rule["weights"] == "class_pairs" and rule["exact"] is False
    assert (
        rule["note"]
        == "the per-pair weights vary with the views (a residue the weighted operator leaves out)"
    )


def test_two_classes_make_the_weighted_operator_a_multiple_of_op() -> None:
    """With the root's two classes any Omega gives OP_Omega = S_01 OP (only pairs of different classes
    enter): the weighted prediction is the simple one times the symmetrized cross-class weight."""
    cfg, lay, edges, net = small({"bias": False, "normalize": "none"})
    cov = operator_of(cfg, lay, edges, net)
    omega = torch.tensor([[0.3, 0.9], [0.5, 2.0]], dtype=F64)
    weighted, _ = predictions(net, cov, NODES, 1.0, 0.0, pair_laplacian(omega, cov.counts))
    plain, _ = predictions(net, cov, NODES, 0.7, 0.0)  # S_01 = (0.9 + 0.5) / 2
    for a, b in zip(weighted, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
