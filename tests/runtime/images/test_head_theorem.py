"""The theorem check on an encoder's head layers: the exact per-batch identity and the prediction."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from test_operator import tiny_encoder

from runtime.images.operator import Connections, layers_of
from runtime.images.theorem import head_theorem_check, prediction_rule
from sslspec.spec import schema
from sslspec.spec.images import ExactCovLoss, NTXentLoss

F64 = torch.float64


class Population:
    """A finite image distribution: `n` base images, each seen through one of `a` fixed augmentations
    (additive patterns), image and augmentation uniform and independent: every expectation of the
    check is an exact finite sum, so the operator over all (a, n) views is the population's own."""

    def __init__(self, n: int = 5, a: int = 3, side: int = 6, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.base = torch.randn(n, 3, side, side, generator=gen, dtype=F64)
        self.patterns = 0.7 * torch.randn(a, 3, side, side, generator=gen, dtype=F64)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def all_views(self) -> torch.Tensor:
        """(A, N, 3, S, S) every augmentation of every image."""
        return self.patterns[:, None] + self.base[None]

    def _view(self, idx: torch.Tensor) -> torch.Tensor:
        aug = torch.randint(len(self.patterns), idx.shape, generator=self.gen)
        return self.base[idx] + self.patterns[aug]

    def draw(self, batch: int, negatives: int) -> Sequence[torch.Tensor]:
        idx = torch.randint(len(self.base), (batch,), generator=self.gen)
        neg = torch.randint(len(self.base), (negatives, batch), generator=self.gen)
        return self._view(idx), self._view(idx), self._view(neg)


LOSSES: dict[str, schema.Loss] = {
    "simple": schema.SimpleLoss(reduction="sample", beta=0.3),
    "infonce": schema.InfoNCELoss(reduction="sample", negatives=2, temperature=2.0),
    "triplet": schema.TripletLoss(reduction="batch"),
    "nt_xent": NTXentLoss(temperature=0.5),
    "exact_cov": ExactCovLoss(temperature=0.5, beta=0.2),
}


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_chain_rule_form_is_the_gradient_per_batch(kind: str) -> None:
    """For every loss and both head layers the chain-rule form built from K = J^T (x) h equals
    autograd's gradient to float precision (the exact identity, batch by batch); the residue that
    the normalization explains is 0 for the losses on the raw output and not for nt_xent and
    exact_cov, which normalize."""
    enc = tiny_encoder(head=(5, 4))
    pop = Population()
    cfg = LOSSES[kind]
    h = (
        cfg.negatives
        if isinstance(cfg, schema.InfoNCELoss)
        else 0
        if isinstance(cfg, NTXentLoss | ExactCovLoss)
        else 1
    )
    conns = [Connections(enc, layers_of(enc)[name], pop.all_views()) for name in ("head0", "head1")]
    res = head_theorem_check(enc, cfg, lambda: pop.draw(6, h), conns, batches=(1, 3))
    assert float(res.batch_rel_error.max()) < 1e-12
    normalized = isinstance(cfg, NTXentLoss | ExactCovLoss)
    assert (
        (float(res.residue_normalization.min()) > 1e-3)
        if normalized
        else float(res.residue_normalization.max()) < 1e-12
    )


def test_prediction_converges_on_the_last_head_layer() -> None:
    """Simple loss, head's last layer, the population operator: ||g - p|| / ||g|| falls with M (about
    like 1/sqrt(M): 0.40, 0.11, 0.047 at M = 1, 8, 128) to under 0.1 (the identity is exact in
    expectation there), while the lower layer, whose biases and batch-norm shift break the identity,
    stays more than twice as far off (0.14)."""
    enc = tiny_encoder(head=(5, 4))
    pop = Population()
    conns = [
        Connections(enc, layers_of(enc)[name], pop.all_views(), unbiased=False) for name in ("head0", "head1")
    ]
    draw = lambda: pop.draw(64, 1)
    res = head_theorem_check(enc, LOSSES["simple"], draw, conns, batches=(1, 8, 128), identity=False)
    last = res.rel_error[1]
    assert float(last[2]) < 0.1 and float(last[2]) < float(last[0]) / 4, last
    assert float(res.cosine[1, 2]) > 0.99
    assert float(res.rel_error[0, 2]) > 2 * float(last[2])
    assert res.attrs["exact"] is False and "head0" in res.attrs["note"]


@pytest.mark.parametrize("last", [True, False])
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_prediction_rule_says_which_checks_are_exact_and_why_not(kind: str, last: bool) -> None:
    """Only the simple loss on the head's last layer is exact in expectation (analytic weights);
    the note names each reason the others are not: pair weights varying with the pair (every loss
    but simple), normalized projections (nt_xent, exact_cov), a layer below the last."""
    layer = layers_of(tiny_encoder(head=(5, 4)))["head1" if last else "head0"]
    rule = prediction_rule(LOSSES[kind], layer, last)
    simple, normalized = kind == "simple", kind in ("nt_xent", "exact_cov")
    assert rule["loss"] == kind and rule["weights"] == ("analytic" if simple else "batch_scalar")
    assert rule["exact"] is (simple and last)
    reasons = [
        (not simple, "the pair weights' covariance with the pairs' connections is left out"),
        (normalized, "the loss l2-normalizes the projections; the operator is for the raw output"),
        (not last, "biases and batch norm above the layer add a term"),
    ]
    assert rule["note"] == ("; ".join(text for applies, text in reasons if applies) or "exact in expectation")


def test_the_check_needs_a_layer_and_m_of_at_least_one_and_states_its_weights() -> None:
    """No layer, no M or an M below 1 is refused; a single M runs, and the attributes name the loss,
    the mean batch scalars and the rule."""
    enc = tiny_encoder(head=(5, 4))
    pop = Population()
    conns = [Connections(enc, layers_of(enc)["head1"], pop.all_views())]
    draw = lambda: pop.draw(6, 1)
    for bad_conns, batches in (([], (1, 2)), (conns, ()), (conns, (0, 4)), (conns, (0,))):
        with pytest.raises(ValueError, match="need at least one layer and values of M >= 1"):
            head_theorem_check(enc, LOSSES["simple"], draw, bad_conns, batches=batches)
    res = head_theorem_check(enc, LOSSES["simple"], draw, conns, batches=(2,), identity=False)
    assert res.rel_error.shape == (1, 1)
    neg, total = res.attrs["mean_negative_weight"], res.attrs["mean_total_weight"]
    assert res.attrs["loss"] == "simple" and res.attrs["weights"] == "analytic" and res.attrs["exact"] is True
    # simple, beta = 0.3, one negative, `sample` reduction (a batch mean): each of the B negative
    # pairs weighs -1 / B and each positive pair 1.3 / B, so c = 1 and s = 1.3 - 1 in every batch
    assert (neg, total) == pytest.approx((1.0, 0.3), rel=1e-12)
    assert res.attrs["note"] == "head1: exact in expectation"
