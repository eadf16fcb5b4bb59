"""The covariance operator of an encoder's layers on images: products, exact head route, spectra."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.func import functional_call, jacrev

from runtime.images.encoders import Encoder, build_encoder
from runtime.images.head import HeadProducts, head_connections, head_operator
from runtime.images.operator import Connections, Layer, layers_of
from runtime.images.spectra import converged_spectrum, dense_spectrum, randomized_spectrum

F64 = torch.float64


def tiny_encoder(seed: int = 0, head: tuple[int, ...] = (6, 4)) -> Encoder:
    """A float64 conv net (3 -> 3 -> 4 channels) with a two-layer head and non-trivial BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    enc = build_encoder("convnet", gen, head=head, channels=(3, 4)).to(F64)
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen, dtype=F64))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen, dtype=F64))
    return enc


def views(a: int, n: int, seed: int = 1, side: int = 6) -> torch.Tensor:
    return torch.randn(a, n, 3, side, side, generator=torch.Generator().manual_seed(seed), dtype=F64)


def brute_connections(enc: Encoder, layer: Layer, x: torch.Tensor) -> torch.Tensor:
    """K_an (A, N, P, D) by autograd per view: d f(x_an) / d vec(W), one view at a time."""
    w = enc.get_parameter(layer.param).detach()
    enc.eval()
    out = torch.empty(*x.shape[:2], layer.size, 4, dtype=F64)
    for a in range(x.shape[0]):
        for n in range(x.shape[1]):
            one = x[a, n][None]
            jac = jacrev(lambda w_, one=one: functional_call(enc, {layer.param: w_}, (one,))[0])(w)
            out[a, n] = jac.reshape(4, -1).T
    enc.train()
    return out


def brute_operator(k: torch.Tensor, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """OP_A and V_hat (P, P) from K (A, N, P, D) by the definitions, outer product by outer product."""
    a, n = k.shape[:2]
    kbar_n = [k[:, i].mean(0) for i in range(n)]
    kbar = sum(kbar_n) / n
    between = sum((kn - kbar) @ (kn - kbar).T for kn in kbar_n)
    within = sum((k[j, i] - kbar_n[i]) @ (k[j, i] - kbar_n[i]).T for j in range(a) for i in range(n))
    if not unbiased:
        return between / n, within / (a * n)
    return between / (n - 1), within / (n * (a - 1))


def test_layers_are_named_in_module_order() -> None:
    """conv0.. are the trunk's convs and head0.. the head's Linear layers, with their weights' shapes."""
    layers = layers_of(tiny_encoder())
    assert list(layers) == ["conv0", "conv1", "head0", "head1"]
    assert layers["conv1"].shape == (4, 3, 3, 3) and layers["head1"].shape == (4, 6)
    assert layers["head0"].param == "head.0.weight" and layers["head1"].size == 24


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("name", ["conv0", "head0"])
def test_products_match_the_dense_definition(name: str, unbiased: bool) -> None:
    """OP_A v, V_hat v and the unbiased (OP_A - V_hat / A - beta V_hat) v by one jvp and one vjp, and
    the quadratic forms by jvps, equal the dense matrices built per view by autograd."""
    enc = tiny_encoder()
    layer = layers_of(enc)[name]
    x = views(3, 5)
    op, within = brute_operator(brute_connections(enc, layer, x), unbiased)
    conn = Connections(enc, layer, x, unbiased=unbiased)
    v = torch.randn(layer.size, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(conn.apply(v), op @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conn.apply(v, 0.0, 1.0), within @ v, rtol=1e-10, atol=1e-12)
    corrected = op - (0.5 + 1 / 3 if unbiased else 0.5) * within  # A = 3 views, beta = 0.5
    torch.testing.assert_close(conn.unbiased_apply(v, beta=0.5), corrected @ v, rtol=1e-10, atol=1e-12)
    forms = torch.stack([v @ op @ v, v @ within @ v])
    torch.testing.assert_close(conn.quadratic(v[:, None])[:, 0], forms, rtol=1e-10, atol=1e-12)
    assert enc.training  # the mode is put back


@pytest.mark.parametrize("head", [(6, 4), (5, 7, 4)])
def test_exact_head_operator_matches_per_view_autograd(head: tuple[int, ...]) -> None:
    """Each head layer's operator built from K = J^T (x) h equals the one from per-view autograd."""
    assert_head_operators_match_autograd(tiny_encoder(head=head), views(3, 4))


def assert_head_operators_match_autograd(enc: Any, x: torch.Tensor) -> None:
    """Every head (Linear) layer's operator and its within-view part, from K = J^T (x) h, equal the
    ones built from per-view autograd."""
    for layer in (lay for lay in layers_of(enc).values() if lay.linear):
        h, jac = head_connections(enc, layer, x)
        op, within = brute_operator(brute_connections(enc, layer, x))
        torch.testing.assert_close(head_operator(h, jac), op, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(head_operator(h, jac, within=True), within, rtol=1e-10, atol=1e-12)


def test_randomized_spectrum_matches_dense_on_a_conv_layer() -> None:
    """On conv1 (P = 108, rank up to 44) with 8 power passes the randomized top-4 eigenvalues are within
    1e-6 relative of the dense ones (4 passes: 2e-4, 2 passes: 3e-3 on the 4th), the leading Ritz
    vector within 1e-6 in cosine, and the Hutch++ traces of OP_A and
    V_hat within 3 of their standard errors (and 5%) of the exact traces."""
    enc = tiny_encoder()
    layer = layers_of(enc)["conv1"]
    x = views(2, 12)
    op, within = (t.detach() for t in brute_operator(brute_connections(enc, layer, x)))
    exact = dense_spectrum(op, top=4)
    conn = Connections(enc, layer, x)
    gen = torch.Generator().manual_seed(3)
    got = randomized_spectrum(conn.apply_block, conn.quadratic, layer.size, 4, probes=16, power=8, gen=gen)
    torch.testing.assert_close(got["eigvals"], exact["eigvals"], rtol=1e-6, atol=0)
    assert float((got["eigvecs"][:, 0] * exact["eigvecs"][:, 0]).sum()) > 1 - 1e-6
    for i, want in enumerate([exact["trace"], within.trace()]):
        err = abs(float(got["trace"][i] - want))
        assert err <= 3 * float(got["trace_stderr"][i]) and err <= 0.05 * float(want), i


def test_randomized_spectrum_is_exact_when_the_subspace_is_everything() -> None:
    """With P <= top + oversampling the Ritz values are the eigenvalues and the trace is exact."""
    enc = tiny_encoder(head=(2, 4))
    layer = layers_of(enc)["head1"]
    x = views(2, 5)
    op, _ = brute_operator(brute_connections(enc, layer, x))
    conn = Connections(enc, layer, x)
    got = randomized_spectrum(conn.apply_block, conn.quadratic, 8, 8, 4, 0, torch.Generator().manual_seed(0))
    exact = dense_spectrum(op, top=8)
    torch.testing.assert_close(got["eigvals"], exact["eigvals"], rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(got["trace"][0], exact["trace"], rtol=1e-12, atol=0)
    assert float(got["trace_stderr"][0]) == 0.0


def test_randomized_spectrum_is_deterministic() -> None:
    """The same generator seed gives bit-identical eigenvalues, vectors and traces."""
    enc = tiny_encoder()
    layer = layers_of(enc)["conv0"]
    conn = Connections(enc, layer, views(2, 6))
    run = lambda: randomized_spectrum(
        conn.apply_block, conn.quadratic, layer.size, 3, 4, 1, torch.Generator().manual_seed(7)
    )
    first, second = run(), run()
    for key in first:
        assert torch.equal(first[key].nan_to_num(), second[key].nan_to_num()), key


@pytest.mark.parametrize("unbiased", [True, False])
def test_head_products_and_traces_are_exact(unbiased: bool) -> None:
    """For each head layer, the products from K = J^T (x) h equal autograd's through the network,
    the closed-form traces of OP_A and V_hat equal the dense matrices' and the converged spectrum
    equals eigh's to 1e-9 relative."""
    enc = tiny_encoder(head=(5, 7, 4))
    x = views(3, 4)
    gen = torch.Generator().manual_seed(5)
    for layer in (lay for lay in layers_of(enc).values() if lay.linear):
        h, jac = head_connections(enc, layer, x)
        head = HeadProducts(layer, enc.get_parameter(layer.param), h, jac, unbiased=unbiased)
        conn = Connections(enc, layer, x, unbiased=unbiased)
        v = torch.randn(layer.size, 3, generator=gen, dtype=F64)
        torch.testing.assert_close(head.apply(v, 1.0, 0.7), conn.apply(v, 1.0, 0.7), rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(head.quadratic(v), conn.quadratic(v), rtol=1e-10, atol=1e-13)
        op, within = (
            head_operator(h, jac, unbiased=unbiased),
            head_operator(h, jac, unbiased=unbiased, within=True),
        )
        trace, trace_within = head.traces()
        torch.testing.assert_close(trace, op.trace(), rtol=1e-12, atol=0)
        torch.testing.assert_close(trace_within, within.trace(), rtol=1e-12, atol=0)
        got = converged_spectrum(head.apply_block, layer.size, 4, gen)
        torch.testing.assert_close(got["eigvals"], dense_spectrum(op, 4)["eigvals"], rtol=1e-9, atol=1e-15)


def test_connections_take_the_smallest_sample_their_divisors_allow() -> None:
    """2 views of 2 images (divisors N - 1 and N (A - 1)) give the dense definition's OP_A v, and 2 views
    of 1 image the population form's; 1 view, or 1 image for the unbiased form, is refused."""
    enc = tiny_encoder()
    layer = layers_of(enc)["head0"]
    v = torch.randn(layer.size, generator=torch.Generator().manual_seed(2), dtype=F64)
    for n, unbiased in ((2, True), (1, False)):
        x = views(2, n)
        op, _ = brute_operator(brute_connections(enc, layer, x), unbiased)
        conn = Connections(enc, layer, x, unbiased=unbiased)
        torch.testing.assert_close(conn.apply(v), op @ v, rtol=1e-10, atol=1e-12)
    for a, n, unbiased in ((1, 3, True), (1, 3, False), (3, 1, True)):
        with pytest.raises(ValueError, match=f"got {a} views of {n} images"):
            Connections(enc, layer, views(a, n), unbiased=unbiased)
