"""runtime.network: the batched networks against a per-node reference, autograd and nn.Linear."""

from __future__ import annotations

import math

import pytest
import torch
from ref_network import RefMLP, RefTree

from runtime.layout import Layout
from runtime.network import MLP, NETWORKS, TreeNet, build_network
from runtime.optim import build_optimizer
from sslspec.spec import schema
from sslspec.spec.fields import Tree, uniform_tree
from sslspec.spec.lower import lower

F64 = torch.float64
BINARY: Tree = uniform_tree(5, 2)
RAGGED: Tree = ((2, 3), (1,), (2, 2, 1))  # fan-ins 3, 2, 1, 3 and leaves 1..3: padding everywhere


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tree_cfg(**kw) -> schema.TreeReLU:
    slope = kw.pop("slope", None)
    if slope is not None:
        kw["activation"] = schema.Activation("leaky_relu", slope)
    return schema.TreeReLU(**{"width": 3, **kw})


def leaves(shape: Tree, batch: int = 6, seed: int = 1) -> torch.Tensor:
    n = Layout.from_shape(shape).n_leaves
    return torch.randint(0, 2, (batch, n), generator=gen(seed)).to(F64)


def tree_pair(shape: Tree, cfg: schema.TreeReLU, seed: int = 0) -> tuple[TreeNet, RefTree]:
    net = TreeNet(Layout.from_shape(shape), cfg, gen(seed), dtype=F64)
    ref = RefTree(shape, cfg.width, cfg.bias, cfg.activation.slope, cfg.normalize).load_from(net)
    return net, ref


def perturb_bias(net: torch.nn.Module, seed: int = 5) -> None:
    """Shift biases so that some units of every level are off: the gates then matter."""
    with torch.no_grad():
        for b in net.level_biases():
            if b is not None:
                b.add_(0.3 * torch.randn(b.shape, generator=gen(seed), dtype=b.dtype) - 0.1)


CASES = {
    "binary": (BINARY, {}),
    "ragged": (RAGGED, {}),
    "no_bias": (BINARY, {"bias": False}),
    "leaky": (RAGGED, {"slope": 0.2}),
    "no_norm": (BINARY, {"normalize": "none"}),
    "ragged_no_norm_leaky": (RAGGED, {"normalize": "none", "slope": 0.05, "width": 4}),
}


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference(case: str) -> None:
    """Every node's input, pre-activation, raw and out equal the per-node reference in float64."""
    shape, kw = CASES[case]
    net, ref = tree_pair(shape, tree_cfg(**kw))
    perturb_bias(net)
    ref.load_from(net)
    x = leaves(shape)
    fwd = net(x)
    raw, out, pres, f_ins = ref(x)
    torch.testing.assert_close(fwd.raw, raw, rtol=0, atol=1e-12)
    torch.testing.assert_close(fwd.out, out, rtol=0, atol=1e-12)
    offsets = Layout.from_shape(shape).offsets
    for i, lvl in enumerate(ref.levels):
        n, f = i - offsets[lvl], f_ins[0][i].numel()
        torch.testing.assert_close(fwd.pre[lvl][:, n], torch.stack([p[i] for p in pres]), rtol=0, atol=1e-12)
        torch.testing.assert_close(
            fwd.inputs[lvl][:, n, :f], torch.stack([g[i] for g in f_ins]), rtol=0, atol=1e-12
        )
        assert (fwd.inputs[lvl][:, n, f:] == 0).all()


def test_forward_is_per_example() -> None:
    """An example's output does not depend on the rest of the batch (no batch norm)."""
    net = TreeNet(Layout.from_shape(RAGGED), tree_cfg(), gen(), dtype=F64)
    x = leaves(RAGGED, batch=5)
    torch.testing.assert_close(net(x).out[2:3], net(x[2:3]).out, rtol=0, atol=1e-14)


def test_padding_weights_stay_zero_after_sgd_step() -> None:
    """On a non-uniform tree the padded weights are zero, get zero gradient and stay zero under SGD."""
    net = TreeNet(Layout.from_shape(RAGGED), tree_cfg(), gen(), dtype=F64)
    opt = build_optimizer(schema.SGD(lr=0.5, momentum=0.9, weight_decay=0.1), net.parameters())
    pads = [net.get_buffer(f"wmask{lvl}").expand(w.shape) == 0 for lvl, w in enumerate(net.weights)]
    assert sum(int(p.sum()) for p in pads) > 0
    for step in range(2):
        opt.zero_grad()
        fwd = net(leaves(RAGGED, seed=step))
        fwd.out.square().sum().backward()
        for w, pad in zip(net.weights, pads, strict=True):
            assert (w.grad[pad] == 0).all() and (w.grad[~pad] != 0).any()
        opt.step()
    for w, pad in zip(net.weights, pads, strict=True):
        assert (w[pad] == 0).all()


@pytest.mark.parametrize("case", CASES)
def test_jacobians_match_autograd(case: str) -> None:
    """jacobians(fwd)[l][:, n, d, :] equals autograd's d raw_d / d pre_l for every level (float64)."""
    shape, kw = CASES[case]
    net = TreeNet(Layout.from_shape(shape), tree_cfg(**kw), gen(), dtype=F64)
    perturb_bias(net)
    assert_jacobians(net, leaves(shape))


def assert_jacobians(net: torch.nn.Module, x: torch.Tensor) -> None:
    fwd = net(x)
    jac = net.jacobians(fwd)
    assert len(jac) == len(fwd.pre)
    for d in range(fwd.raw.shape[1]):
        grads = torch.autograd.grad(fwd.raw[:, d].sum(), fwd.pre, retain_graph=True)
        for lvl, g in enumerate(grads):
            assert jac[lvl].shape == (*fwd.pre[lvl].shape[:2], fwd.raw.shape[1], fwd.pre[lvl].shape[2])
            torch.testing.assert_close(jac[lvl][:, :, d, :], g, rtol=0, atol=1e-12)
    gates_off = sum(int((p <= 0).sum()) for p in fwd.pre[1:])
    assert gates_off > 0  # the check exercised closed gates


def test_jacobians_linearize_bias_free_net() -> None:
    """Without biases raw = sum_n J_{l,n} pre_{l,n} at every level (positive homogeneity)."""
    net = TreeNet(
        Layout.from_shape(RAGGED), tree_cfg(bias=False, slope=0.1, normalize="none"), gen(), dtype=F64
    )
    fwd = net(leaves(RAGGED))
    for lvl, j in enumerate(net.jacobians(fwd)):
        torch.testing.assert_close(torch.einsum("bndw,bnw->bd", j, fwd.pre[lvl]), fwd.raw, rtol=0, atol=1e-12)


def trained_bn_net(shape: Tree, **kw) -> TreeNet:
    """A batch-norm tree whose running statistics and affine parameters are not the defaults."""
    net = TreeNet(Layout.from_shape(shape), tree_cfg(batch_norm=True, **kw), gen(), dtype=F64)
    with torch.no_grad():
        for k in range(3):
            net(leaves(shape, batch=16, seed=10 + k))
        for bn in net.norms[1:]:
            bn.weight.uniform_(0.5, 1.5, generator=gen(3))
            bn.bias.uniform_(-0.5, 0.5, generator=gen(4))
    return net.eval()


def test_batch_norm_training_normalizes_each_unit() -> None:
    """In training mode every non-root unit's pre-activation has batch mean 0 and variance v / (v + eps)."""
    net = TreeNet(Layout.from_shape(BINARY), tree_cfg(batch_norm=True), gen(), dtype=F64)
    x = torch.rand(64, 32, generator=gen(2), dtype=F64)
    fwd = net(x)
    for lvl in range(1, 5):
        p = fwd.pre[lvl]
        before = torch.einsum("bnf,nwf->bnw", fwd.inputs[lvl], net.weights[lvl]) + net.biases[lvl]
        v = before.var(0, unbiased=False)
        assert (v > 1e-3).any()
        torch.testing.assert_close(p.mean(0), torch.zeros_like(p[0]), rtol=0, atol=1e-12)
        torch.testing.assert_close(p.var(0, unbiased=False), v / (v + 1e-5), rtol=0, atol=1e-12)
    assert net.norms[1].running_mean.abs().sum() > 0


def test_batch_norm_statistics_are_per_view() -> None:
    """Shifting one view's inputs moves no other view's normalized pre-activations (training mode)."""
    net = TreeNet(Layout.from_shape(BINARY), tree_cfg(batch_norm=True), gen(), dtype=F64)
    x = torch.rand(3, 32, 32, generator=gen(2), dtype=F64)  # (V, B, n)
    shifted = x.clone()
    shifted[2] = 3 * shifted[2] + 1
    a, b = net(x.flatten(0, 1), views=3), net(shifted.flatten(0, 1), views=3)
    for lvl in range(1, 5):
        pa, pb = a.pre[lvl].reshape(3, 32, -1), b.pre[lvl].reshape(3, 32, -1)  # (V, B, N W)
        torch.testing.assert_close(pa[:2], pb[:2], rtol=0, atol=1e-12)
        assert (pa[2] - pb[2]).abs().max() > 1e-3  # the shifted view itself did change
    joint = net(shifted.flatten(0, 1))  # one batch of 96: the shift does move the other views
    assert (joint.pre[1].reshape(3, 32, -1)[0] - a.pre[1].reshape(3, 32, -1)[0]).abs().max() > 1e-3


def test_batch_norm_per_view_equals_sequential_forwards() -> None:
    """One forward of V stacked views gives the outputs and running statistics of V forwards in view
    order (each a plain BatchNorm1d forward of one batch)."""
    layout, x = Layout.from_shape(RAGGED), leaves(RAGGED, batch=3 * 8, seed=4)
    batched = TreeNet(layout, tree_cfg(batch_norm=True), gen(), dtype=F64)
    one_by_one = TreeNet(layout, tree_cfg(batch_norm=True), gen(), dtype=F64)
    for step in range(2):
        out = batched(x + step, views=3).out
        seq = torch.cat([one_by_one(v + step).out for v in x.view(3, 8, -1)])
        torch.testing.assert_close(out, seq, rtol=0, atol=1e-12)
    for a, b in zip(batched.norms[1:], one_by_one.norms[1:], strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=1e-12)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 6


def test_batch_norm_views_must_divide_the_batch() -> None:
    """A batch that does not split into the given number of views is refused."""
    net = TreeNet(Layout.from_shape(BINARY), tree_cfg(batch_norm=True), gen(), dtype=F64)
    with pytest.raises(ValueError, match="does not split into 3 views"):
        net(leaves(BINARY, batch=8), views=3)


def test_batch_norm_eval_matches_reference() -> None:
    """In eval mode batch norm is the per-unit affine map of the running statistics, as in the reference."""
    net = trained_bn_net(RAGGED)
    ref = RefTree(RAGGED, 3).load_from(net)
    x = leaves(RAGGED)
    raw, out, _, _ = ref(x)
    torch.testing.assert_close(net(x).out, out, rtol=0, atol=1e-12)
    torch.testing.assert_close(net(x).raw, raw, rtol=0, atol=1e-12)


def test_jacobians_match_autograd_with_batch_norm_eval() -> None:
    """With batch norm in eval mode the Jacobians still equal autograd's."""
    assert_jacobians(trained_bn_net(RAGGED, slope=0.1), leaves(RAGGED))


def test_jacobians_refuse_batch_norm_training_mode() -> None:
    """jacobians() with batch norm in training mode raises instead of mixing batch and running stats."""
    net = TreeNet(Layout.from_shape(BINARY), tree_cfg(batch_norm=True), gen())
    with pytest.raises(ValueError, match="eval mode"):
        net.jacobians(net(leaves(BINARY).float()))


@pytest.mark.parametrize("shape", [BINARY, RAGGED], ids=["binary", "ragged"])
@pytest.mark.parametrize("bias", [True, False])
def test_init_equals_nn_linear_in_official_order(shape: Tree, bias: bool) -> None:
    """Weights are bit-identical to nn.Linear modules constructed bottom up from the same seed."""
    net = TreeNet(Layout.from_shape(shape), tree_cfg(width=10, bias=bias), gen(7))
    ref = RefTree(shape, 10, bias=bias, seed=7, dtype=torch.float32)
    copy = RefTree(shape, 10, bias=bias, dtype=torch.float32).load_from(net)
    for a, b in zip(ref.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_init_within_nn_linear_bounds() -> None:
    """Every weight and bias lies within +-1/sqrt(true fan-in) and the draws reach near the bound."""
    net = TreeNet(Layout.from_shape(RAGGED), tree_cfg(width=40), gen(1))
    ref = RefTree(RAGGED, 40).load_from(net)
    for lin in ref.nodes:
        bound = 1 / math.sqrt(lin.in_features)
        for p in (lin.weight, lin.bias):
            assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound


def test_init_is_deterministic_and_seeded() -> None:
    """The same seed gives bit-identical parameters, another seed different ones, global RNG untouched."""
    layout = Layout.from_shape(BINARY)
    state = torch.random.get_rng_state()
    a, b, c = (TreeNet(layout, tree_cfg(), gen(s)).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["weights.0"], c["weights.0"])


def test_float64_init_equals_float32_init() -> None:
    """A float64 network holds exactly the float32 network's initial values."""
    layout = Layout.from_shape(RAGGED)
    a, b = TreeNet(layout, tree_cfg(), gen(2)), TreeNet(layout, tree_cfg(), gen(2), dtype=F64)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert q.dtype == F64 and torch.equal(p.double(), q)


def test_node_weights_in_global_order_nan_padded() -> None:
    """node_weights() lists nodes breadth first, each (W, fan_in) block then NaN padding."""
    net = TreeNet(Layout.from_shape(RAGGED), tree_cfg(), gen())
    ref = RefTree(RAGGED, 3).load_from(net)
    nw = net.node_weights()
    assert nw.shape == (len(ref.nodes), 3, 9)
    for i, lin in enumerate(ref.nodes):
        torch.testing.assert_close(nw[i, :, : lin.in_features].double(), lin.weight, rtol=0, atol=0)
        assert nw[i, :, lin.in_features :].isnan().all()


def test_level_shapes() -> None:
    """level_weights / level_biases have shapes (N_l, W, F_l) and (N_l, W); no bias gives None."""
    net = TreeNet(Layout.from_shape(BINARY), tree_cfg(width=10), gen())
    assert [tuple(w.shape) for w in net.level_weights()] == [
        (1, 10, 20),
        (2, 10, 20),
        (4, 10, 20),
        (8, 10, 20),
        (16, 10, 2),
    ]
    assert [tuple(b.shape) for b in net.level_biases()] == [(n, 10) for n in (1, 2, 4, 8, 16)]
    assert sum(p.numel() for p in net.parameters()) == 3630  # 16 Linear(2, 10) + 15 Linear(20, 10)
    no_bias = TreeNet(Layout.from_shape(BINARY), tree_cfg(bias=False), gen())
    assert no_bias.level_biases() == [None] * 5


# ---- MLP --------------------------------------------------------------------------------------

MLP_CASES = {
    "relu_l2": {"widths": (7, 5, 4)},
    "leaky_none": {"widths": (6, 3), "activation": schema.Activation("leaky_relu", 0.1), "normalize": "none"},
    "one_layer_no_bias": {"widths": (4,), "bias": False},
}


def mlp_pair(case: str) -> tuple[MLP, RefMLP]:
    cfg = schema.MLP(**MLP_CASES[case])
    net = MLP(12, cfg, gen(), dtype=F64)
    perturb_bias(net)
    ref = RefMLP(12, cfg.widths, cfg.bias, cfg.activation.slope, cfg.normalize).load_from(net)
    return net, ref


@pytest.mark.parametrize("case", MLP_CASES)
def test_mlp_forward_matches_reference(case: str) -> None:
    """The MLP's raw, out and per-layer pre-activations equal a plain nn.Linear stack (level 0 = output)."""
    net, ref = mlp_pair(case)
    x = torch.rand(5, 12, generator=gen(1), dtype=F64) - 0.3
    fwd = net(x)
    raw, out, pres = ref(x)
    torch.testing.assert_close(fwd.raw, raw, rtol=0, atol=1e-12)
    torch.testing.assert_close(fwd.out, out, rtol=0, atol=1e-12)
    n = len(fwd.pre)
    for lvl in range(n):
        ref_pre = torch.stack([p[n - 1 - lvl] for p in pres])
        torch.testing.assert_close(fwd.pre[lvl][:, 0], ref_pre, rtol=0, atol=1e-12)
    torch.testing.assert_close(fwd.inputs[n - 1][:, 0], x, rtol=0, atol=0)


@pytest.mark.parametrize("case", ["relu_l2", "leaky_none"])
def test_mlp_jacobians_match_autograd(case: str) -> None:
    """The MLP's per-layer Jacobians equal autograd's."""
    net, _ = mlp_pair(case)
    assert_jacobians(net, torch.rand(5, 12, generator=gen(1), dtype=F64) - 0.3)


def test_mlp_init_equals_nn_linear() -> None:
    """The MLP's layers are bit-identical to nn.Linear layers built input first from the same seed."""
    net = MLP(12, schema.MLP(widths=(7, 5, 4)), gen(9))
    ref = RefMLP(12, (7, 5, 4), seed=9, dtype=torch.float32)
    copy = RefMLP(12, (7, 5, 4), dtype=torch.float32).load_from(net)
    for a, b in zip(ref.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert net.node_weights().shape == (3, 7, 12)


SPEC = """experiment e {{
  data hltm {{ depth = 3 }}
  network {net}
  loss simple {{ }}
  optimizer sgd {{ }}
}}"""


@pytest.mark.parametrize(
    ("net", "cls"), [("tree_relu { width = 4 }", TreeNet), ("mlp { widths = [5, 3] }", MLP)]
)
def test_build_network_dispatches_on_kind(net: str, cls: type) -> None:
    """build_network builds the network kind of the config for the data's tree."""
    cfg = lower("x.ssl", text=SPEC.format(net=net)).runs[0].config
    model = build_network(cfg, Layout.from_shape(cfg.data.tree), gen())
    assert type(model) is cls and set(NETWORKS) == {"tree_relu", "mlp"}
    assert model(torch.zeros(2, 8)).out.shape == (2, 4 if cls is TreeNet else 3)


def test_padding_is_masked_even_if_written() -> None:
    """Non-zero values written into padded weight slots change neither level_weights nor the output."""
    net = TreeNet(Layout.from_shape(RAGGED), tree_cfg(), gen(), dtype=F64)
    x = leaves(RAGGED)
    before = net(x).out
    with torch.no_grad():
        for lvl, w in enumerate(net.weights):
            w.add_(1.0 - net.get_buffer(f"wmask{lvl}"))
    for lvl, w in enumerate(net.level_weights()):
        assert (w[net.get_buffer(f"wmask{lvl}").expand(w.shape) == 0] == 0).all()
    torch.testing.assert_close(net(x).out, before, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [TreeNet, MLP])
def test_state_dict_holds_only_what_training_changes(cls: type) -> None:
    """A checkpoint saves parameters and batch-norm statistics only; the index and mask tensors
    derived from the tree are rebuilt, not stored (a checkpoint then loads into any fresh build)."""
    lay = Layout.from_shape(((2, 3), (1,), (2, 2, 1)))
    net = cls(lay if cls is TreeNet else lay.n_leaves, NET_CFG[cls], torch.Generator().manual_seed(0))
    stats = {"running_mean", "running_var", "num_batches_tracked"}
    params = {name for name, _ in net.named_parameters()}
    extra = {k for k in net.state_dict() if k not in params}
    assert extra and all(k.rsplit(".", 1)[-1] in stats for k in extra), extra


NET_CFG = {
    TreeNet: schema.TreeReLU(width=3, batch_norm=True),
    MLP: schema.MLP(widths=(4, 3), batch_norm=True),
}
