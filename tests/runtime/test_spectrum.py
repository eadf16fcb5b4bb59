"""runtime.spectrum and the operator's low-rank route: every quantity equals the dense float64 computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ref_measure as ref
import torch
import zarr
from test_measure import block, operator_data

from runtime import connections
from runtime.layout import Layout
from runtime.measure import CovarianceOperator
from runtime.network import TreeNet
from runtime.spectrum import class_contrasts, spectrum, uses_gram
from runtime.theorem import predictions
from sslspec.spec import schema

F64 = torch.float64
TIGHT = 1e-12  # relative to the largest eigenvalue: float64 precision with room for P-sized sums


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_eigen_match(vals: torch.Tensor, vecs: torch.Tensor, op: torch.Tensor) -> None:
    """vals (k,), vecs (P, k) against the dense op (P, P): the same top eigenvalues as eigh, orthonormal
    columns with op v = lambda v, and for every eigenvalue cluster wholly inside the top k the same
    eigenspace as eigh's (so: equal up to sign, and up to rotation within a repeated eigenvalue)."""
    k = vals.shape[0]
    ref_vals, ref_vecs = torch.linalg.eigh(op)
    ref_vals, ref_vecs = ref_vals.flip(0), ref_vecs.flip(1)
    scale = float(ref_vals[0].abs()) or 1.0
    torch.testing.assert_close(vals, ref_vals[:k], rtol=0, atol=TIGHT * scale)
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(k, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(op @ vecs, vecs * vals, rtol=0, atol=TIGHT * scale)
    start = 0
    while start < k:  # clusters of equal eigenvalues (gaps above noise), ending inside the top k
        end = start + 1
        while end < len(ref_vals) and ref_vals[end - 1] - ref_vals[end] <= 1e-9 * scale:
            end += 1
        if end <= k and ref_vals[start] > 1e-9 * scale:
            mine, theirs = vecs[:, start:end], ref_vecs[:, start:end]
            torch.testing.assert_close(mine @ mine.T, theirs @ theirs.T, rtol=0, atol=1e-9)
        start = end


def factor_with_classes(n: int, p: int, classes: int, d: int, seed: int) -> torch.Tensor:
    """(n, p, classes * d) like the operator's factor: p-weighted class deltas summing to zero,
    so the rank is (classes - 1) * d, below the column count."""
    g = gen(seed)
    w = torch.rand(classes, generator=g, dtype=F64) + 0.5
    w = w / w.sum()
    delta = torch.randn(classes, n, p, d, generator=g, dtype=F64)
    delta = delta - torch.einsum("c,cnpd->npd", w, delta)  # sum_c w_c delta_c = 0
    return (delta * w.sqrt()[:, None, None, None]).permute(1, 2, 0, 3).reshape(n, p, classes * d)


@pytest.mark.parametrize("classes", [1, 2, 5, 12])  # 12: beyond _FEW_CLASSES, applied as a reflection
def test_class_contrasts_keep_the_operator_with_one_class_fewer(classes: int) -> None:
    """Class deviations x_c = sqrt(p_c) (m_c - sum_j p_j m_j): their contrasts, and those of the raw
    class sums scaled by sqrt(p_c) / n_c, give C - 1 rows (one zero row for one class) whose sum
    of outer products is the same operator, to float64 precision."""
    g = gen(classes)
    n = torch.randint(1, 50, (classes,), generator=g).to(F64)
    p = n / n.sum()
    means = torch.randn(classes, 7, 3, generator=g, dtype=F64)
    x = p.sqrt()[:, None, None] * (means - torch.einsum("c,cij->ij", p, means))  # (C, 7, 3)
    want = x.reshape(classes, -1).T @ x.reshape(classes, -1)
    for y in (
        class_contrasts(x, p.sqrt()),
        class_contrasts(means * n[:, None, None], p.sqrt(), p.sqrt() / n),
    ):
        assert y.shape == (max(classes - 1, 1), 7, 3)
        flat = y.reshape(len(y), -1)
        torch.testing.assert_close(flat.T @ flat, want, rtol=0, atol=1e-13)
        assert classes > 1 or not y.any()


@pytest.mark.parametrize("route", [None, "gram", "dense"])
@pytest.mark.parametrize(("p", "classes", "d", "top"), [(30, 2, 4, 6), (30, 3, 4, 12), (8, 3, 4, 8)])
def test_spectrum_equals_dense_on_both_routes(
    p: int, classes: int, d: int, top: int, route: str | None
) -> None:
    """Eigenpairs (also past the rank: null-space columns), trace and Frobenius norm equal eigh of A A^T,
    on the route chosen (Gram when C D < P, else dense) or forced, nodes padded or not."""
    a = factor_with_classes(3, p, classes, d, seed=p + classes)
    size = torch.tensor([p, p, p - 4])
    a[2, p - 4 :] = 0  # a padded node: its real block is the leading p - 4 rows
    out = spectrum(a, size, top, route)
    assert uses_gram(p, classes * d) == (classes * d < p)
    for n in range(3):
        s = int(size[n])
        op = (a[n] @ a[n].T)[:s, :s]
        k = min(top, s)
        assert_eigen_match(out["eigvals"][n, :k], out["eigvecs"][n, :s, :k], op)
        assert torch.isnan(out["eigvecs"][n, s:]).all() and torch.isnan(out["eigvals"][n, k:]).all()
        torch.testing.assert_close(out["trace"][n], op.trace(), rtol=1e-13, atol=0)
        torch.testing.assert_close(out["fro"][n], torch.linalg.matrix_norm(op), rtol=1e-13, atol=0)


def test_spectrum_gram_route_keeps_repeated_eigenvalues() -> None:
    """A = B (x) I_W (the root's structure): each eigenvalue comes W times; the Gram route returns
    an orthonormal basis of each W-fold eigenspace, the same spaces as eigh's."""
    b = torch.randn(6, 2, generator=gen(1), dtype=F64)  # (F, C): rank 2
    a = torch.kron(b, torch.eye(4, dtype=F64))[None]  # (1, 24, 8)
    out = spectrum(a, torch.tensor([24]), 12)
    torch.testing.assert_close(out["eigvals"][0, :4], out["eigvals"][0, :1].expand(4), rtol=1e-12, atol=0)
    assert_eigen_match(out["eigvals"][0], out["eigvecs"][0], a[0] @ a[0].T)


@pytest.mark.parametrize(("n_cls", "block_numbers"), [(2, 1 << 20), (2, 40), (9, 40), (40, 1 << 20)])
def test_operator_routes_equal_the_per_sample_reference(
    n_cls: int, block_numbers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accumulator's spectrum, trace, norms, official norm and block-row products equal the dense
    per-sample reference, in one block or many (class sums grouped by class), with unseen classes."""
    monkeypatch.setattr(connections, "_BLOCK_NUMBERS", block_numbers)
    sizes, fans, width, out_dim = (1, 3), (4, 3), 3, 2
    cls, f, j = operator_data(150, sizes, fans, width, out_dim, n_cls)
    fan_in = [torch.full((k,), fan) for k, fan in zip(sizes, fans, strict=True)]
    acc = CovarianceOperator(fan_in, n_cls, top=6, official=True)
    acc.update(cls, f, j)
    res = acc.result()
    for lvl, first in ((0, 0), (1, 1)):
        paper, _, official = ref.level_operators(cls, f[lvl], j[lvl], n_cls)
        p = fans[lvl] * width
        vecs = torch.randn(sizes[lvl], p, generator=gen(lvl), dtype=F64)
        for i in range(sizes[lvl]):
            node, own = first + i, block(paper, i, i, p)
            assert_eigen_match(res["eigvals"][node], res["eigvecs"][node, :p], own)
            torch.testing.assert_close(res["trace"][node], own.trace(), rtol=1e-12, atol=0)
            torch.testing.assert_close(res["fro"][node], torch.linalg.matrix_norm(own), rtol=1e-12, atol=0)
            torch.testing.assert_close(
                res["conn"][node], torch.linalg.matrix_norm(official[i]), rtol=1e-12, atol=0
            )
            want = torch.stack([block(paper, i, m, p) @ vecs[m] for m in range(sizes[lvl])])
            torch.testing.assert_close(acc.row_products(node, vecs), want, rtol=1e-12, atol=1e-14)
    seen = int((res["count"] > 0).sum())
    assert acc.reduced_factor(0).shape[-1] == (seen - 1) * out_dim  # one class's columns fewer
    full, reduced = acc.level_factor(0), acc.reduced_factor(0)
    assert full.shape[-1] == seen * out_dim  # the class-mean deviations: the same operator
    torch.testing.assert_close(reduced @ reduced.mT, full @ full.mT, rtol=0, atol=1e-13)
    assert uses_gram(4 * width, (seen - 1) * out_dim) == (n_cls == 2)  # both routes are covered


def test_theorem_prediction_equals_dense_block_row() -> None:
    """The prediction -2 c sum_m (OP[n, m] - beta V[n, m]) vec(W_m) from A (A^T vec W) equals the
    dense block-row product (reference operator and within-class term), own block included."""
    lay = Layout.from_shape(((2, 3), (1,), (2, 2, 1)))
    net = TreeNet(lay, schema.TreeReLU(width=3, bias=False, normalize="none"), gen(7), F64)
    x = torch.randint(0, 2, (60, lay.n_leaves), generator=gen(8)).to(F64)
    cls = torch.randint(0, 2, (60,), generator=gen(9))
    fwd = net(x)
    jac = net.jacobians(fwd)
    nodes = (0, 1, 5)
    acc = CovarianceOperator.for_tree(lay, 3, 2, within=nodes)
    acc.update(cls, fwd.inputs, jac)
    full, own = predictions(net, acc, nodes, factor=0.5, beta=0.3)
    for k, node in enumerate(nodes):
        lvl, i = acc.locate[node]
        paper, within, _ = ref.level_operators(cls, fwd.inputs[lvl].detach(), jac[lvl].detach(), 2)
        w = net.level_weights()[lvl].detach()
        vec = w.transpose(1, 2).reshape(w.shape[0], -1)  # (N_l, P)
        p = vec.shape[1]
        rows = [block(paper, i, m, p) - 0.3 * block(within, i, m, p) for m in range(len(vec))]
        want = -2 * 0.5 * sum(r @ v for r, v in zip(rows, vec, strict=True))
        torch.testing.assert_close(full[k], want, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(own[k], -2 * 0.5 * rows[i] @ vec[i], rtol=1e-12, atol=1e-14)


WIDE = """\
experiment wide {
  seed = 1
  device = cpu
  data hltm {
    depth     = 3
    branching = 3
  }
  network tree_relu { width = 100 }
  loss infonce { temperature = 0.1 }
  optimizer sgd { lr = 0.1 }
  train {
    batch   = 32
    samples = 64
    epochs  = 1
  }
  measure {
    samples = 64
    covariance_operator {
      top      = 8
      official = true
    }
    theorem_check {
      batches = [1, 2]
      nodes   = [0, 1, 4]
    }
  }
}
"""


def test_width_100_operator_spectrum_and_theorem_check_run(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """At width 100 (P = 30,000: dense matrices of 21 GiB a level) a shortened run records the spectrum,
    trace, norms and theorem check of every node: finite, descending, top eigenvalues below the trace;
    the official norm says it is derived from the class means."""
    result = sslspec_cli("run", write_spec(WIDE), "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    (path,) = tmp_path.glob("wide/*/v0001.zarr")
    z = zarr.open(str(path), mode="r")
    vals, trace = np.asarray(z["op_eigval"][...]), np.asarray(z["op_trace"][...])
    assert vals.shape == (2, 13, 8) and z["op_eigvec"].shape == (2, 13, 30000, 8)
    assert np.isfinite(vals).all() and np.isfinite(trace).all() and np.isfinite(z["op_fro"][...]).all()
    assert (np.diff(vals, axis=-1) <= 1e-6 * vals[..., :1]).all() and (vals[..., 0] > 0).all()
    assert (vals.sum(-1) <= trace * (1 + 1e-5)).all()
    assert np.isfinite(z["tc_rel_error"][...]).all() and np.isfinite(z["tc_cosine"][...]).all()
    assert np.isfinite(z["conn_official_fro"][...]).all()
    assert "derived from the class-mean connections" in z["conn_official_fro"].attrs["computed"]
