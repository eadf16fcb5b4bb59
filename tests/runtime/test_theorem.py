"""runtime.theorem: the mean gradient over M batches approaches the covariance-operator prediction."""

from __future__ import annotations

import functools

import attrs
import pytest
import torch

from runtime.layout import Layout
from runtime.losses import loss_value
from runtime.measure import CovarianceOperator, class_index, n_classes
from runtime.network import build_network
from runtime.optim import build_optimizer
from runtime.sampler import augment_sample, draw_edges, draw_measure_batch, draw_views
from runtime.theorem import mean_gradients, predictions, theorem_check
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
    bias = false
    normalize = none
  }
  loss simple {
    reduction = sample
  }
  optimizer sgd {
    lr = 0.05
  }
}
"""
NODES = (0, 1, 4)  # the root, a level-1 node, a level-2 node
MS = (1, 4, 16, 64, 256)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.cache
def setup(**network: object):
    """A small tree, its edges and a bias-free unnormalized network trained 20 steps with `simple`."""
    cfg = lower("small.ssl", text=SPEC).runs[0].config
    cfg = attrs.evolve(cfg, network=attrs.evolve(cfg.network, **network))
    lay = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, lay, gen(1))
    net = build_network(cfg, lay, gen(2), F64)
    opt = build_optimizer(cfg.optimizer, net.parameters())
    draw = batches(cfg, lay, edges, gen(3))
    for _ in range(20):
        x, pos, neg = draw()
        b = x.shape[0]
        out = net(torch.cat([x, pos, neg.reshape(b, -1)])).out
        loss = loss_value(cfg.loss, out[:b], out[b : 2 * b], out[2 * b :].reshape(1, b, -1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cfg, lay, edges, net


def batches(cfg, lay, edges, g: torch.Generator):
    """A draw_batch callable: fresh training views (pos shares the root, negatives independent)."""
    return lambda: draw_views(lay, edges, cfg.data, cfg.augment, 128, 1, g, "cpu").inputs(F64)


def measure(
    cfg, lay, edges, net, n: int = 24 * 4096, within: tuple[int, ...] = (), augmented: bool = True
) -> CovarianceOperator:
    """The operator over n fresh measurement samples, classes = the root value (share = 0), each
    sample flipped as a view is (cfg.augment.flip; as the measure pass does) unless not `augmented`."""
    cov = CovarianceOperator.for_tree(lay, 4, n_classes(lay, 0, 2), within=within)
    g = gen(4)
    with torch.no_grad():
        for _ in range(n // 4096):
            s = draw_measure_batch(lay, edges, cfg.data, 4096, g, "cpu")
            if augmented:
                s = augment_sample(lay, cfg.augment, s, g, "cpu")
            fwd = net(s.inputs(F64))
            cov.update(class_index(s.latents, 0, 2), fwd.inputs, net.jacobians(fwd))
    return cov


def test_simple_loss_gradient_converges_to_prediction() -> None:
    """Bias-free, unnormalized, simple loss: ||g(M) - p|| / ||g|| falls toward 0 as M grows, at each level."""
    cfg, lay, edges, net = setup()
    res = theorem_check(
        net, cfg.loss, batches(cfg, lay, edges, gen(5)), measure(cfg, lay, edges, net), NODES, MS
    )
    assert res.attrs["exact"] and res.attrs["factor"] == 1.0
    assert res.rel_error.shape == (3, 5) and res.batches.tolist() == list(MS)
    first, last = res.rel_error[:, 0].mean(), res.rel_error[:, -1].mean()
    assert last < 0.15, res.rel_error
    assert last < 0.4 * first, res.rel_error
    assert torch.all(res.cosine[:, -1] > 0.98), res.cosine


def test_prediction_with_leaf_flips_averages_over_them() -> None:
    """augment.flip = 0.2: with K_bar averaged over flipped views the error falls with M as without
    flips; the operator of unflipped samples (the estimate before issue 18) stays off for every M."""
    cfg, lay, edges, net = setup()
    cfg = attrs.evolve(cfg, augment=attrs.evolve(cfg.augment, flip=0.2))
    res = theorem_check(
        net, cfg.loss, batches(cfg, lay, edges, gen(5)), measure(cfg, lay, edges, net), NODES, MS
    )
    first, last = res.rel_error[:, 0].mean(), res.rel_error[:, -1].mean()
    assert last < 0.15, res.rel_error
    assert last < 0.4 * first, res.rel_error
    unflipped = measure(cfg, lay, edges, net, augmented=False)
    old = theorem_check(net, cfg.loss, batches(cfg, lay, edges, gen(5)), unflipped, NODES, MS)
    assert old.rel_error[:, -1].mean() > 2 * last, (old.rel_error, res.rel_error)
    assert old.rel_error[:, -1].mean() > 0.5 * old.rel_error[:, 0].mean(), old.rel_error


def test_prediction_holds_with_a_shared_level_and_several_negatives() -> None:
    """share = 1 (8 classes: root and level 1 jointly) with 3 negatives per example: the operator over
    those classes still predicts the mean gradient (the binary, root-only, one-negative case is not
    the only one that works)."""
    cfg, lay, edges, net = setup()
    cfg = attrs.evolve(cfg, augment=attrs.evolve(cfg.augment, share=1))
    g = gen(6)
    draw = lambda: draw_views(lay, edges, cfg.data, cfg.augment, 128, 3, g, "cpu").inputs(F64)
    cov = CovarianceOperator.for_tree(lay, 4, n_classes(lay, 1, 2))
    m = gen(7)
    with torch.no_grad():
        for _ in range(24):
            s = draw_measure_batch(lay, edges, cfg.data, 4096, m, "cpu")
            fwd = net(s.inputs(F64))
            cov.update(class_index(s.latents, 1, 2), fwd.inputs, net.jacobians(fwd))
    assert int((cov.result()["count"] > 0).sum()) == 8
    res = theorem_check(net, cfg.loss, draw, cov, NODES, (1, 256))
    assert res.rel_error[:, -1].mean() < 0.15, res.rel_error
    assert torch.all(res.cosine[:, -1] > 0.98), res.cosine
    root_only = measure(cfg, lay, edges, net)  # the classes of share = 0 predict another gradient
    p, _ = predictions(net, root_only, NODES, 1.0, 0.0)
    assert any((res.grad[n, -1, : len(q)] - q).norm() > 0.3 * q.norm() for n, q in enumerate(p))


def test_simple_loss_with_beta_uses_within_class_term() -> None:
    """With beta != 0, p = -2 (OP - beta V) vec W matches the gradient; -2 OP vec W alone does not."""
    cfg, lay, edges, net = setup()
    loss = attrs.evolve(cfg.loss, beta=1.0)
    cov = measure(cfg, lay, edges, net, within=NODES)
    res = theorem_check(net, loss, batches(cfg, lay, edges, gen(5)), cov, NODES, (1, 256))
    assert res.attrs["beta"] == 1.0 and res.attrs["exact"]
    assert res.rel_error[:, -1].mean() < 0.15, res.rel_error
    assert res.rel_error[:, -1].mean() < 0.5 * res.rel_error[:, 0].mean(), res.rel_error
    without_beta, _ = predictions(net, cov, NODES, 1.0, 0.0)
    for n, p in enumerate(without_beta):
        g = res.grad[n, -1, : len(p)]
        assert (g - p).norm() > 0.5 * g.norm()


def test_batch_reduction_factor_is_two_over_d() -> None:
    """reduction = batch scales the loss by exactly 2 / D: gradients and predictions scale alike."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    out = {}
    for red in ("sample", "batch"):
        loss = attrs.evolve(cfg.loss, reduction=red)
        out[red] = theorem_check(net, loss, batches(cfg, lay, edges, gen(6)), cov, NODES, (1, 3))
    d = net.widths[0]
    assert out["batch"].attrs["factor"] == 2 / d
    torch.testing.assert_close(out["batch"].grad_norm, out["sample"].grad_norm * 2 / d, rtol=1e-10, atol=0)
    torch.testing.assert_close(out["batch"].pred_norm, out["sample"].pred_norm * 2 / d, rtol=1e-10, atol=0)
    torch.testing.assert_close(out["batch"].rel_error, out["sample"].rel_error, rtol=1e-8, atol=0)


def test_mean_gradients_are_cumulative_means() -> None:
    """g(M) is the mean of the first M batch gradients, each the autograd gradient of the batch loss."""
    cfg, lay, edges, net = setup()
    draws = [batches(cfg, lay, edges, gen(7))() for _ in range(3)]
    it = iter(draws)
    got = mean_gradients(net, cfg.loss, lambda: next(it), [(2, 1), (0, 0)], (1, 3))  # (M, node, P_max)
    per = []
    for x, pos, neg in draws:
        b = x.shape[0]
        out = net(torch.cat([x, pos, neg[0]])).out
        loss = loss_value(cfg.loss, out[:b], out[b : 2 * b], out[2 * b :][None])
        w2, w0 = torch.autograd.grad(loss, [net.weights[2], net.weights[0]])
        per.append((w2[1].T.reshape(-1), w0[0].T.reshape(-1)))  # column-stacked vec(W): P = 8 and 32
    torch.testing.assert_close(got[0, 0, :8], per[0][0])
    torch.testing.assert_close(got[0, 1], per[0][1])
    torch.testing.assert_close(got[1, 0, :8], sum(p[0] for p in per) / 3)
    torch.testing.assert_close(got[1, 1], sum(p[1] for p in per) / 3)
    assert torch.all(got[:, 0, 8:] == 0)  # a smaller node is zero-padded to the largest P


def test_check_leaves_weights_and_batch_norm_statistics_unchanged() -> None:
    """The check computes gradients only: parameters, running statistics and the mode are untouched."""
    cfg, lay, edges, net = setup(batch_norm=True, bias=True)
    net.eval()
    cov = measure(cfg, lay, edges, net, n=4096)
    before = {k: v.clone() for k, v in [*net.named_parameters(), *net.named_buffers()]}
    res = theorem_check(net, cfg.loss, batches(cfg, lay, edges, gen(8)), cov, (0, 2), (1, 2))
    after = dict([*net.named_parameters(), *net.named_buffers()])
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net.training
    assert not res.attrs["exact"] and "batch norm" in res.attrs["note"] and "biases" in res.attrs["note"]
    assert torch.isnan(res.batch_rel_error).all()  # no per-example Jacobian in training mode


def test_other_losses_are_flagged_as_approximate() -> None:
    """batch-reduced infonce is compared with -2 E[c] OP vec W (the batch scalar's prediction) and says
    what it leaves out; the simple-loss comparison is kept apart; the numbers stay finite."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    loss = schema.InfoNCELoss(temperature=0.5, negatives=1, reduction="batch")
    res = theorem_check(net, loss, batches(cfg, lay, edges, gen(9)), cov, (0,), (1, 2))
    assert not res.attrs["exact"] and "batch scalar" in res.attrs["note"]
    assert res.attrs["weights"] == "batch_scalar"
    assert not torch.equal(res.rel_error, res.rel_error_simple)
    assert torch.isfinite(res.rel_error).all() and torch.isfinite(res.cosine).all()


def test_unknown_node_is_rejected() -> None:
    """A node id outside the tree is a ValueError naming the node count."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    with pytest.raises(ValueError, match="7"):
        theorem_check(net, cfg.loss, batches(cfg, lay, edges, gen(9)), cov, (7,), (1,))


def test_every_result_field_follows_from_the_gradients_and_predictions() -> None:
    """rel_error, cosine, their own-block versions and the norms are the stated functions of the mean
    gradients g and the two predictions (level row, own block), node by node and M by M."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    res = theorem_check(net, cfg.loss, batches(cfg, lay, edges, gen(10)), cov, NODES, (1, 3))
    full, own = predictions(net, cov, NODES, 1.0, 0.0)
    for n, (p, q) in enumerate(zip(full, own, strict=True)):
        g = res.grad[n, :, : len(p)]  # (m, P)
        assert torch.isnan(res.grad[n, :, len(p) :]).all()
        torch.testing.assert_close(res.pred[n, : len(p)], p)
        torch.testing.assert_close(res.grad_norm[n], g.norm(dim=-1))
        torch.testing.assert_close(res.pred_norm[n], p.norm())
        torch.testing.assert_close(res.pred_norm_own[n], q.norm())
        for name, pred in (("", p), ("_own", q)):
            rel = (g - pred).norm(dim=-1) / g.norm(dim=-1)
            cos = (g @ pred) / (g.norm(dim=-1) * pred.norm())
            torch.testing.assert_close(getattr(res, f"rel_error{name}")[n], rel)
            torch.testing.assert_close(getattr(res, f"cosine{name}")[n], cos)
    assert not torch.equal(res.rel_error, res.rel_error_own)  # the other nodes' blocks count


def test_losses_without_a_prediction_are_refused() -> None:
    """byol has no covariance-operator prediction: a ValueError naming the supported losses."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    with pytest.raises(ValueError, match="supports simple, triplet and infonce"):
        theorem_check(net, schema.BYOLLoss(), batches(cfg, lay, edges, gen(9)), cov, (0,), (1,))


def test_predictions_apply_the_dense_operator_blocks_to_the_weights() -> None:
    """The level-row prediction is -2 c sum_m OP[node, m] vec(W_m) and the own-block prediction
    -2 c OP[node, node] vec(W_node), here from the dense operator blocks (c = 2 / D, as for batch)."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    c = 2 / net.widths[0]
    full, own = predictions(net, cov, NODES, c, 0.0)
    for node, p, q in zip(NODES, full, own, strict=True):
        lvl, i = cov.locate[node]
        w = net.level_weights()[lvl].detach().to(F64)  # (N_l, W, F)
        vec = torch.stack([wm.T.reshape(-1) for wm in w])  # column-stacked vec(W_m), (N_l, P)
        torch.testing.assert_close(p, -2 * c * torch.einsum("nab,nb->a", cov.operator_row(node), vec))
        torch.testing.assert_close(q, -2 * c * cov.operator(node) @ vec[i])


def test_the_check_states_its_rule_in_its_attributes() -> None:
    """An exact case (simple loss, per-sample distances, no bias, norm or batch norm) records the
    loss, reduction, factor, beta, output width, exactness, the note, the analytic weights and the
    prediction's formula."""
    cfg, lay, edges, net = setup()
    cov = measure(cfg, lay, edges, net, n=4096)
    res = theorem_check(net, cfg.loss, batches(cfg, lay, edges, gen(11)), cov, (0,), (1,))
    assert res.attrs == {
        "loss": "simple",
        "reduction": "sample",
        "factor": 1.0,
        "beta": 0.0,
        "out_dim": net.widths[0],
        "exact": True,
        "note": "exact in expectation",
        "weights": "analytic",
        "prediction": "p = -2 c sum_m (OP[node, m] - beta V[node, m]) vec(W_m) over the node's level",
    }
