"""runtime.losses and runtime.optim: formulas by hand, the official form, and whole SGD steps."""

from __future__ import annotations

import math

import pytest
import torch
from ref_network import RefTree, official_nce, ref_loss

from runtime.layout import Layout
from runtime.losses import LOSSES, loss_value
from runtime.network import TreeNet
from runtime.optim import OPTIMIZERS, build_optimizer
from sslspec.spec import schema

F64 = torch.float64

# B = 2 examples, D = 3 dims, H = 2 negatives. Squared distances per example:
# positive (1, 5), negative 0 (1, 4), negative 1 (2, 1).
Z = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=F64)
ZP = torch.tensor([[1.0, 1, 0], [0, 0, 2]], dtype=F64)
ZN = torch.tensor([[[0.0, 0, 0], [0, 3, 0]], [[2.0, 0, 1], [1, 1, 0]]], dtype=F64)
# batch: mean over the 6 entries -> pos 1, neg (5/6, 1/2); sample: halves -> pos (.5, 2.5), negs below
B_POS, B_NEG = 1.0, (5 / 6, 0.5)
S_POS, S_NEG = (0.5, 2.5), ((0.5, 2.0), (1.0, 0.5))  # S_NEG[k][b]


def softplus(v: float) -> float:
    return math.log(1 + math.exp(v))


HAND = {
    ("simple", "batch"): 1.5 * B_POS - (B_NEG[0] + B_NEG[1]) / 2,
    ("simple", "sample"): sum(1.5 * S_POS[b] - (S_NEG[0][b] + S_NEG[1][b]) / 2 for b in range(2)) / 2,
    ("triplet", "batch"): sum(0.5 * softplus((B_POS - n + 0.2) / 0.5) for n in B_NEG) / 2,
    ("triplet", "sample"): sum(
        0.5 * softplus((S_POS[b] - S_NEG[k][b] + 0.2) / 0.5) for b in range(2) for k in range(2)
    )
    / 4,
    ("infonce", "batch"): -math.exp(-B_POS / 0.5)
    / (math.exp(-B_POS / 0.5) + sum(math.exp(-n / 0.5) for n in B_NEG)),
    ("infonce", "sample"): sum(
        -0.5
        * math.log(
            math.exp(-S_POS[b] / 0.5)
            / (math.exp(-S_POS[b] / 0.5) + sum(math.exp(-S_NEG[k][b] / 0.5) for k in range(2)))
        )
        for b in range(2)
    )
    / 2,
}


def loss_cfg(kind: str, reduction: str, negatives: int = 2) -> schema.Loss:
    if kind == "simple":
        return schema.SimpleLoss(beta=0.5, reduction=reduction)
    if kind == "triplet":
        return schema.TripletLoss(temperature=0.5, margin=0.2, reduction=reduction)
    return schema.InfoNCELoss(temperature=0.5, negatives=negatives, reduction=reduction)


@pytest.mark.parametrize(("kind", "reduction"), HAND)
def test_hand_computed_values(kind: str, reduction: str) -> None:
    """Each loss and reduction gives the value worked out by hand on a 2-example, 2-negative case."""
    got = loss_value(loss_cfg(kind, reduction), Z, ZP, ZN)
    assert got.shape == ()
    assert got.item() == pytest.approx(HAND[kind, reduction], rel=1e-14, abs=1e-15)
    ref = ref_loss(kind, reduction, Z, ZP, ZN, tau=0.5, beta=0.5 if kind == "simple" else 0.0, margin=0.2)
    assert ref.item() == pytest.approx(HAND[kind, reduction], rel=1e-14, abs=1e-15)


def test_hand_values_are_distinct() -> None:
    """The hand example separates the two reductions for every loss (so a swap would be caught)."""
    for kind in LOSSES:
        assert abs(HAND[kind, "batch"] - HAND[kind, "sample"]) > 0.05


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_batch_infonce_one_negative_is_official_nce(dtype: torch.dtype) -> None:
    """Batch reduction, H = 1: -e^{-pos/tau} / (e^{-pos/tau} + e^{-neg/tau}) on MSE distances (official)."""
    g = torch.Generator().manual_seed(0)
    z, zp, zn = (
        torch.nn.functional.normalize(torch.randn(s, generator=g, dtype=dtype), dim=-1)
        for s in ((128, 10), (128, 10), (1, 128, 10))
    )
    for tau in (0.1, 0.01):
        got = loss_value(schema.InfoNCELoss(temperature=tau, negatives=1, reduction="batch"), z, zp, zn)
        pos = torch.nn.functional.mse_loss(z, zp).item()
        neg = torch.nn.functional.mse_loss(z, zn[0]).item()
        tol = 1e-6 if dtype == torch.float32 else 1e-14
        assert got.dtype == dtype and got.item() == pytest.approx(official_nce(pos, neg, tau), rel=tol)


def test_batch_simple_one_negative_is_official_subtract() -> None:
    """reduction = batch, beta = 0, H = 1: the official `subtract` loss MSE(z, z_pos) - MSE(z, z_neg)."""
    got = loss_value(schema.SimpleLoss(reduction="batch"), Z, ZP, ZN[:1])
    mse = torch.nn.functional.mse_loss
    torch.testing.assert_close(got, mse(Z, ZP) - mse(Z, ZN[0]), rtol=0, atol=0)


def test_losses_stay_finite_far_from_zero() -> None:
    """Large distances at a small temperature give finite losses and gradients (no exp overflow)."""
    z = torch.tensor([[0.0, 0.0]], requires_grad=True)
    zp, zn = torch.tensor([[30.0, 0.0]]), torch.tensor([[[0.0, 40.0]], [[0.0, 0.1]]])
    for kind in LOSSES:
        for reduction in ("batch", "sample"):
            loss = loss_value(loss_cfg(kind, reduction), z, zp, zn)
            (grad,) = torch.autograd.grad(loss, z)
            assert torch.isfinite(loss) and torch.isfinite(grad).all(), (kind, reduction)


def test_infonce_rejects_wrong_number_of_negatives() -> None:
    """infonce with negatives = 2 refuses a z_neg holding 1 negative."""
    with pytest.raises(ValueError, match="negatives = 2"):
        loss_value(loss_cfg("infonce", "sample"), Z, ZP, ZN[:1])


STEP_CASES = [(k, r, h) for k in LOSSES for r in ("batch", "sample") for h in (1, 2)]


@pytest.mark.parametrize(("kind", "reduction", "negatives"), STEP_CASES)
def test_sgd_step_matches_reference(kind: str, reduction: str, negatives: int) -> None:
    """One SGD step of TreeNet + loss_value moves every weight as autograd does on the per-node reference."""
    shape, lr = ((2, 3), (1,), (2, 2, 1)), 0.7
    cfg_net = schema.TreeReLU(width=3, activation=schema.Activation("leaky_relu", 0.1))
    net = TreeNet(Layout.from_shape(shape), cfg_net, torch.Generator().manual_seed(0), dtype=F64)
    ref = RefTree(shape, 3, slope=0.1).load_from(net)
    g = torch.Generator().manual_seed(1)
    x, xp = (torch.randint(0, 2, (4, 11), generator=g).to(F64) for _ in range(2))
    xn = torch.randint(0, 2, (negatives, 4, 11), generator=g).to(F64)
    cfg_loss = loss_cfg(kind, reduction, negatives)

    out = net(torch.cat([x, xp, xn.flatten(0, 1)])).out  # one pass over all views, as a runner does
    loss = loss_value(cfg_loss, out[:4], out[4:8], out[8:].unflatten(0, (negatives, 4)))
    opt = build_optimizer(schema.SGD(lr=lr), net.parameters())
    opt.zero_grad()
    loss.backward()
    opt.step()

    zn = torch.stack([ref(xn[k])[1] for k in range(negatives)])
    ref_value = ref_loss(
        kind, reduction, ref(x)[1], ref(xp)[1], zn, tau=0.5, beta=0.5 if kind == "simple" else 0.0, margin=0.2
    )
    torch.testing.assert_close(loss, ref_value, rtol=0, atol=1e-13)
    grads = torch.autograd.grad(ref_value, list(ref.parameters()))
    stepped = RefTree(shape, 3, slope=0.1).load_from(net)
    moved = 0.0
    for p, q, dp in zip(ref.parameters(), stepped.parameters(), grads, strict=True):
        torch.testing.assert_close(q, p - lr * dp, rtol=0, atol=1e-13)
        moved += float((q - p).detach().abs().sum())
    assert moved > 1e-3


def test_build_optimizer_passes_settings() -> None:
    """build_optimizer makes torch SGD / Adam with the config's lr, momentum, betas and weight decay."""
    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(schema.SGD(lr=0.3, momentum=0.5, weight_decay=0.01), p)
    adam = build_optimizer(schema.Adam(lr=0.02, betas=(0.8, 0.9), weight_decay=0.1), p)
    assert type(sgd) is torch.optim.SGD and type(adam) is torch.optim.Adam
    assert {k: sgd.param_groups[0][k] for k in ("lr", "momentum", "weight_decay")} == {
        "lr": 0.3,
        "momentum": 0.5,
        "weight_decay": 0.01,
    }
    assert {k: adam.param_groups[0][k] for k in ("lr", "betas", "weight_decay")} == {
        "lr": 0.02,
        "betas": (0.8, 0.9),
        "weight_decay": 0.1,
    }
    assert set(OPTIMIZERS) == {"sgd", "adam"}


def test_adam_first_step_moves_by_lr_times_sign() -> None:
    """Adam's first step moves each weight by lr * g / (|g| + eps), i.e. about lr against the gradient."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=F64))
    opt = build_optimizer(schema.Adam(lr=0.01), [w])
    (w * torch.tensor([2.0, -0.5, 0.001], dtype=F64)).sum().backward()
    opt.step()
    g = torch.tensor([2.0, -0.5, 0.001], dtype=F64)
    torch.testing.assert_close(
        w.detach(), torch.tensor([1.0, -2.0, 3.0], dtype=F64) - 0.01 * g / (g.abs() + 1e-8)
    )


def test_loss_value_refuses_a_loss_without_a_function() -> None:
    """loss_value raises ValueError for a loss kind it has no function for (byol, which the
    checker refuses before anything runs)."""
    with pytest.raises(ValueError, match="no contrastive loss 'byol'"):
        loss_value(schema.BYOLLoss(), Z, ZP, ZN)
