"""The theorem check on an encoder's head layers: the exact per-batch identity and the prediction."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from test_operator import tiny_encoder

from runtime.images.operator import Connections, layers_of
from runtime.images.theorem import head_theorem_check
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
