"""runtime.measure: accumulators over chunks == one shot == the per-sample float64 references."""

from __future__ import annotations

import itertools

import pytest
import ref_measure as ref
import torch

from runtime.layout import Layout
from runtime.measure import (
    MAX_CLASSES,
    CovarianceOperator,
    LatentCorrelation,
    class_index,
    n_classes,
    tree_fan_in,
)
from runtime.network import TreeNet
from sslspec.spec import schema
from sslspec.spec.fields import Tree, uniform_tree

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chunks(n: int, sizes: tuple[int, ...] = (7, 64, 1, 100)) -> list[slice]:
    """Uneven slices covering 0..n."""
    out, start = [], 0
    for k in itertools.cycle(sizes):
        if start >= n:
            return out
        out.append(slice(start, min(n, start + k)))
        start += k
    return out


def split_levels(x: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """(B, n_latent, ...) -> per level (B, N_l, ...)."""
    return list(torch.split(x, list(sizes), dim=1))


# ---- classes ------------------------------------------------------------------------------------


def test_class_index_share0_is_root_value() -> None:
    """For share = 0 the class is the root's value and there are `states` classes."""
    lay = Layout.from_shape([[2, 2], [2, 2]], states=3)
    z = [torch.randint(0, 3, (50, n), generator=gen()) for n in lay.sizes]
    assert torch.equal(class_index(z, 0, 3), z[0][:, 0])
    assert n_classes(lay, 0, 3) == 3


def test_class_index_share1_is_a_bijection() -> None:
    """For share = 1 every joint value of (root, level 1) maps to a distinct class in 0..S^3-1."""
    lay = Layout.from_shape([[2, 2], [2, 2]], states=2)
    combos = torch.tensor(list(itertools.product(range(2), repeat=3)))  # (8, 3): root, two children
    z = [combos[:, :1], combos[:, 1:], torch.zeros(8, 4, dtype=torch.long)]
    cls = class_index(z, 1, 2)
    assert n_classes(lay, 1, 2) == 8
    assert sorted(cls.tolist()) == list(range(8))
    assert torch.equal(cls, combos[:, 0] * 4 + combos[:, 1] * 2 + combos[:, 2])


def test_n_classes_rejects_share_beyond_latents() -> None:
    """share must name a latent level."""
    with pytest.raises(ValueError, match="share"):
        n_classes(Layout.from_shape([[2, 2], [2, 2]]), 3, 2)


def test_n_classes_boundary_is_max_classes() -> None:
    """The class count may reach MAX_CLASSES (2 ** 12 joint values) but not exceed it (2 ** 13)."""
    assert n_classes(Layout.from_shape([2] * 11), 1, 2) == MAX_CLASSES == 4096
    with pytest.raises(ValueError, match="8192 classes; at most 4096"):
        n_classes(Layout.from_shape([2] * 12), 1, 2)


# ---- latent correlation -------------------------------------------------------------------------


def correlated_data(n: int, states: int, sizes: tuple[int, ...], width: int):
    """Latents and pre-activations with planted correlation, one constant unit per node."""
    g = gen(1)
    z = torch.randint(0, states, (n, sum(sizes)), generator=g)
    h = torch.randn(n, sum(sizes), width, generator=g, dtype=F64) + 3.0
    h[:, :, 0] += 0.7 * (z == 1)
    h[:, :, 1] = 5.0  # constant unit
    return z, h


@pytest.mark.parametrize("states", [2, 3])
def test_correlation_chunks_equal_reference(states: int) -> None:
    """Accumulating over uneven chunks equals one shot and the per-entry Pearson reference."""
    lay = Layout.from_shape([[2, 2], [2, 2]], states=states)
    z, h = correlated_data(400, states, lay.sizes, 4)
    shot, streamed = LatentCorrelation(lay, 4), LatentCorrelation(lay, 4)
    shot.update(split_levels(z, lay.sizes), split_levels(h, lay.sizes))
    for sl in chunks(400):
        streamed.update(split_levels(z[sl], lay.sizes), split_levels(h[sl], lay.sizes))
    a, b, want = shot.result(), streamed.result(), ref.correlation(z, h, states)
    torch.testing.assert_close(a["corr"], want, rtol=0, atol=1e-12)
    torch.testing.assert_close(b["corr"], want, rtol=0, atol=1e-12)
    assert int(b["count"]) == 400


def test_correlation_summaries() -> None:
    """best = max |corr| over states and units, level_mean its mean per level; binary state 0 negates 1."""
    lay = Layout.from_shape([[2, 2], [2, 2]])
    z, h = correlated_data(300, 2, lay.sizes, 3)
    acc = LatentCorrelation(lay, 3)
    acc.update(split_levels(z, lay.sizes), split_levels(h, lay.sizes))
    res = acc.result()
    torch.testing.assert_close(res["corr"][:, 0], -res["corr"][:, 1], rtol=0, atol=1e-12)
    assert torch.all(res["corr"][:, :, 1] == 0), "a constant unit must give 0, not NaN"
    torch.testing.assert_close(res["best"], res["corr"].abs().amax(dim=(1, 2)))
    want = torch.stack([res["best"][0], res["best"][1:3].mean(), res["best"][3:].mean()])
    torch.testing.assert_close(res["level_mean"], want)
    assert res["best"].min() > 0.2  # the planted correlation is found


# ---- covariance operator ------------------------------------------------------------------------


def operator_data(n: int, sizes: tuple[int, ...], fans: tuple[int, ...], w: int, d: int, n_cls: int):
    """Classes (n,), inputs per level (n, N_l, F_l), Jacobians (n, N_l, D, W) with per-class mean shifts."""
    g = gen(2)
    cls = torch.randint(0, n_cls, (n,), generator=g)
    f, j = [], []
    for k, fan in zip(sizes, fans, strict=True):
        f.append(
            torch.rand(n, k, fan, generator=g, dtype=F64) + 0.3 * torch.randn(n_cls, k, fan, generator=g)[cls]
        )
        j.append(
            torch.randn(n, k, d, w, generator=g, dtype=F64) + torch.randn(n_cls, k, d, w, generator=g)[cls]
        )
    return cls, f, j


def block(m: torch.Tensor, row: int, col: int, p: int) -> torch.Tensor:
    return m[row * p : (row + 1) * p, col * p : (col + 1) * p]


@pytest.mark.parametrize("n_cls", [2, 12])  # few and many classes; chunks arrive unsorted
def test_operator_chunks_equal_reference(n_cls: int) -> None:
    """Operator, block rows, within-class rows and the official norm equal the per-sample reference,
    streamed over uneven chunks or in one shot."""
    sizes, fans, width, out_dim = (1, 3), (4, 3), 3, 2
    cls, f, j = operator_data(150, sizes, fans, width, out_dim, n_cls)
    fan_in = [torch.full((k,), fan) for k, fan in zip(sizes, fans, strict=True)]
    shot = CovarianceOperator(fan_in, n_cls, official=True, within=(0, 2))
    streamed = CovarianceOperator(fan_in, n_cls, official=True, within=(0, 2))
    shot.update(cls, f, j)
    for sl in chunks(150):
        streamed.update(cls[sl], [x[sl] for x in f], [x[sl] for x in j])
    res = streamed.result()
    close = dict(rtol=1e-10, atol=1e-12)
    for lvl, first in ((0, 0), (1, 1)):
        paper, within, official = ref.level_operators(cls, f[lvl], j[lvl], n_cls)
        p = fans[lvl] * width
        for i in range(sizes[lvl]):
            node = first + i
            torch.testing.assert_close(shot.operator(node), block(paper, i, i, p), **close)
            torch.testing.assert_close(streamed.operator(node), block(paper, i, i, p), **close)
            row = torch.stack([block(paper, i, m, p) for m in range(sizes[lvl])])
            torch.testing.assert_close(streamed.operator_row(node), row, **close)
            torch.testing.assert_close(res["conn"][node], torch.linalg.matrix_norm(official[i]), **close)
            torch.testing.assert_close(
                res["fro"][node], torch.linalg.matrix_norm(block(paper, i, i, p)), **close
            )
            torch.testing.assert_close(res["trace"][node], block(paper, i, i, p).trace(), **close)
            if node in (0, 2):
                want = torch.stack([block(within, i, m, p) for m in range(sizes[lvl])])
                torch.testing.assert_close(streamed.within_row(node), want, **close)
    assert torch.equal(res["count"], torch.bincount(cls, minlength=n_cls).to(F64))


def test_batch_constant_jacobian_equals_its_materialized_copy() -> None:
    """A Jacobian the same for every sample (stride 0 along the batch, as the root's identity) gives
    the same class sums, bit for bit, as the same numbers materialized per sample; float32 inputs
    give sums equal to the float64 reference (products exact, float64 sums)."""
    cls, f, _ = operator_data(300, (2,), (4,), 3, 3, 2)
    f32 = [f[0].float()]
    eye = torch.eye(3).expand(300, 2, 3, 3)  # (B, N, D, W), stride 0 along B and N
    sums = []
    for jac in (eye, eye.contiguous()):
        acc = CovarianceOperator([torch.tensor([4, 4])], 2)
        acc.update(cls, f32, [jac])
        sums.append(acc.sums[0])
    assert torch.equal(sums[0], sums[1])
    paper, _, _ = ref.level_operators(cls, f32[0].to(F64), eye.to(F64), 2)
    acc = CovarianceOperator([torch.tensor([4, 4])], 2)
    acc.update(cls, f32, [eye])
    torch.testing.assert_close(acc.operator(0), block(paper, 0, 0, 12), rtol=1e-12, atol=1e-15)


def test_within_row_needs_the_node_listed() -> None:
    """Asking for the within-class term of a node not accumulated is an error, not a silent zero."""
    cls, f, j = operator_data(20, (1,), (2,), 2, 2, 2)
    acc = CovarianceOperator([torch.tensor([2])], 2)
    acc.update(cls, f, j)
    with pytest.raises(ValueError, match="within"):
        acc.within_row(0)


def test_official_norm_differs_from_paper_norm() -> None:
    """The official 'conn' contracts over the node's units, not the output: another matrix, another norm."""
    cls, f, j = operator_data(200, (1,), (4,), 3, 5, 3)
    acc = CovarianceOperator([torch.tensor([4])], 3, official=True)
    acc.update(cls, f, j)
    res = acc.result()
    paper, _, official = ref.level_operators(cls, f[0], j[0], 3)
    assert official[0].shape == (4 * 5, 4 * 5) and paper.shape == (4 * 3, 4 * 3)  # (F D)^2 vs (F W)^2
    torch.testing.assert_close(res["conn"][0], torch.linalg.matrix_norm(official[0]), rtol=1e-10, atol=0)
    assert abs(float(res["conn"][0] - res["fro"][0])) > 0.05 * float(res["fro"][0])


def test_eigen_sorted_and_consistent_with_full_matrix() -> None:
    """Eigenvalues descend; each pair satisfies OP v = lambda v with unit v; all of them sum to the trace."""
    sizes, fans = (1, 2), (4, 3)
    cls, f, j = operator_data(300, sizes, fans, 3, 4, 5)
    fan_in = [torch.full((k,), fan) for k, fan in zip(sizes, fans, strict=True)]
    acc = CovarianceOperator(fan_in, 5, top=12, full=True)
    acc.update(cls, f, j)
    res = acc.result()
    for node in range(3):
        p = int(res["size"][node])
        vals, vecs, op = res["eigvals"][node, :p], res["eigvecs"][node, :p, :p], res["full"][node, :p, :p]
        assert torch.all(vals[:-1] >= vals[1:])
        torch.testing.assert_close(op, acc.operator(node))
        torch.testing.assert_close(op @ vecs, vecs * vals, rtol=0, atol=1e-10)
        torch.testing.assert_close(vecs.T @ vecs, torch.eye(p, dtype=F64), rtol=0, atol=1e-10)
        torch.testing.assert_close(vals.sum(), res["trace"][node])
        assert torch.all(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)) > 0)  # sign convention
    assert res["size"].tolist() == [12, 9, 9]
    assert torch.isnan(res["eigvals"][1:, 9:]).all() and torch.isnan(res["eigvecs"][1:, 9:]).all()


def test_non_uniform_tree_pads_with_nan() -> None:
    """A node with fewer children keeps its real block, and NaN beyond it in every output."""
    lay = Layout.from_shape([[2, 2], [3]])  # level 1: 2 and 1 children; level 2: 2, 2, 3 leaves
    width, out_dim = 2, 2
    fan_in = tree_fan_in(lay, width)
    assert [x.tolist() for x in fan_in] == [[4], [4, 2], [2, 2, 3]]
    cls, f, j = operator_data(120, lay.sizes, (4, 4, 3), width, out_dim, 2)
    real = [
        torch.arange(x.shape[2])[None, None, :] < m[None, :, None] for x, m in zip(f, fan_in, strict=True)
    ]
    f = [x * r for x, r in zip(f, real, strict=True)]  # zero-padded as the network feeds them
    acc = CovarianceOperator.for_tree(lay, width, 2, top=4, full=True)
    acc.update(cls, f, j)
    res = acc.result()
    assert res["size"].tolist() == [8, 8, 4, 4, 4, 6]
    node = 2  # level 1, one child: P = 4 of the level's 8
    paper, _, _ = ref.level_operators(cls, f[1][:, 1:, :2], j[1][:, 1:], 2)
    torch.testing.assert_close(res["full"][node, :4, :4], paper, rtol=1e-10, atol=1e-12)
    assert torch.isnan(res["full"][node, 4:]).all() and torch.isnan(res["full"][node, :, 4:]).all()
    assert torch.isnan(res["eigvecs"][node, 4:]).all() and not torch.isnan(res["eigvecs"][node, :4]).any()
    top = torch.linalg.eigvalsh(paper).flip(0)
    torch.testing.assert_close(res["eigvals"][node], top, rtol=1e-8, atol=1e-12)
    assert not torch.isnan(res["eigvals"][3]).any()  # level 2, 2 of 3 leaves: P = 4, top 4 all real


# ---- the connection identity ----------------------------------------------------------------------


def test_reference_tree_connection_identity() -> None:
    """Bias-free ReLU tree: the root output is the sum over a level of K^T vec(W) (K from Jacobians)."""
    lay = Layout.from_shape([[2, 2], [2, 2]])
    net = ref.RefTree(lay, 3, gen(3))
    x = torch.randint(0, 2, (6, lay.n_leaves), generator=gen(4)).to(F64)
    inputs, pre = net.forward(x)
    jac = net.jacobians(x)
    for lvl, n in enumerate(lay.sizes):
        for b in range(6):
            terms = [
                ref.connection(inputs[lvl][b, i], jac[lvl][b, i]).T @ net.weights[lvl][i].T.reshape(-1)
                for i in range(n)
            ]  # K^T vec(W), vec column-stacked: i major, o minor
            torch.testing.assert_close(sum(terms), pre[0][b, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [uniform_tree(3, 2), ((2, 3), (1,), (2, 2, 1))])
def test_network_connection_identity(shape: Tree) -> None:
    """TreeNet, bias-free: the sum over a level of K^T vec(W), K from net.jacobians, is the raw output."""
    lay = Layout.from_shape(shape)
    cfg = schema.TreeReLU(
        width=3, bias=False, normalize="none", activation=schema.Activation("leaky_relu", 0.1)
    )
    net = TreeNet(lay, cfg, gen(5), F64)
    x = torch.randint(0, 2, (5, lay.n_leaves), generator=gen(6)).to(F64)
    fwd = net(x)
    jac, weights = net.jacobians(fwd), net.level_weights()
    for lvl, n in enumerate(lay.sizes):
        for b in range(5):
            terms = [
                ref.connection(fwd.inputs[lvl][b, i], jac[lvl][b, i]).T @ weights[lvl][i].T.reshape(-1)
                for i in range(n)
            ]
            torch.testing.assert_close(sum(terms), fwd.raw[b], rtol=1e-12, atol=1e-12)


def test_operator_from_network_equals_reference() -> None:
    """On TreeNet's inputs and Jacobians (ragged tree) the accumulator equals the per-sample reference."""
    lay = Layout.from_shape(((2, 3), (1,), (2, 2, 1)))
    net = TreeNet(lay, schema.TreeReLU(width=3), gen(7), F64)
    x = torch.randint(0, 2, (40, lay.n_leaves), generator=gen(8)).to(F64)
    cls = torch.randint(0, 2, (40,), generator=gen(9))
    fwd = net(x)
    jac = net.jacobians(fwd)
    acc = CovarianceOperator.for_tree(lay, 3, 2, full=True)
    acc.update(cls, fwd.inputs, jac)
    res = acc.result()
    real = [int(p) for p in res["size"]]
    for node, (lvl, i) in enumerate((lvl, i) for lvl, n in enumerate(lay.sizes) for i in range(n)):
        p = real[node]
        paper, _, _ = ref.level_operators(
            cls, fwd.inputs[lvl][:, i : i + 1, : p // 3], jac[lvl][:, i : i + 1], 2
        )
        torch.testing.assert_close(res["full"][node, :p, :p], paper, rtol=1e-10, atol=1e-12)


def test_root_operator_is_input_covariance_times_identity() -> None:
    """At the root J = I, so OP_root = Cov_x(E[f_in | class]) (x) I_W: each eigenvalue comes W times."""
    lay = Layout.from_shape(uniform_tree(3, 2))
    net = TreeNet(lay, schema.TreeReLU(width=3, bias=False, normalize="none"), gen(10), F64)
    x = torch.randint(0, 2, (300, lay.n_leaves), generator=gen(11)).to(F64)
    cls = torch.randint(0, 3, (300,), generator=gen(12))
    fwd = net(x)
    acc = CovarianceOperator.for_tree(lay, 3, 3, full=True)
    acc.update(cls, fwd.inputs, net.jacobians(fwd))
    f = fwd.inputs[0][:, 0].detach()  # (B, F)
    p = torch.bincount(cls).to(F64) / len(cls)
    means = torch.stack([f[cls == c].mean(0) for c in range(3)]) - f.mean(0)  # (C, F)
    cov_f = torch.einsum("c,ci,cj->ij", p, means, means)
    torch.testing.assert_close(
        acc.operator(0), torch.kron(cov_f, torch.eye(3, dtype=F64)), rtol=1e-10, atol=1e-14
    )
    vals = acc.result()["eigvals"][0, :6]
    torch.testing.assert_close(vals[:3], vals[:1].expand(3), rtol=1e-8, atol=0)


def test_best_is_the_largest_magnitude_with_three_states_and_an_anti_correlated_unit() -> None:
    """With 3 states the indicators do not negate each other: a unit anti-correlated with one state
    makes `best` the magnitude of that negative correlation, above every positive one."""
    lay = Layout.from_shape([[2, 2], [2, 2]], states=3)
    g = gen(13)
    z = torch.randint(0, 3, (600, lay.n_latent), generator=g)
    h = 0.3 * torch.randn(600, lay.n_latent, 2, generator=g, dtype=F64)
    h[:, :, 0] -= (z == 2).to(F64)  # unit 0: low exactly when the latent is in state 2
    h[:, :, 1] += 0.2 * (z == 0).to(F64)  # unit 1: weakly high in state 0
    acc = LatentCorrelation(lay, 2)
    acc.update(split_levels(z, lay.sizes), split_levels(h, lay.sizes))
    res = acc.result()
    anti = [abs(ref.pearson((z[:, n] == 2).to(F64), h[:, n, 0])) for n in range(lay.n_latent)]
    want = torch.tensor(anti, dtype=F64)
    torch.testing.assert_close(res["best"], want, rtol=0, atol=1e-12)
    assert torch.all(res["best"] > res["corr"].flatten(1).amax(dim=1) + 0.2)  # the negative one wins
    level = torch.stack([want[0], want[1:3].mean(), want[3:].mean()])
    torch.testing.assert_close(res["level_mean"], level, rtol=0, atol=1e-12)
