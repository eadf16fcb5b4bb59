"""runtime.measurements.measure_pass: what each accumulator is fed (plain samples for the latent
correlation and the dead units, views' flipped leaves for the covariance operator), and
runtime.activity.DeadUnits."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from runtime.activity import DeadUnits
from runtime.context import RunContext
from runtime.measurements import BLOCK, FORWARD, measure_pass
from runtime.sampler import Sample
from sslspec.spec.lower import lower

SPEC = """
experiment flips {
  seed = 3
  device = cpu
  data hltm { depth = 3 }
  augment { flip = FLIP }
  network tree_relu { width = 3 }
  loss simple { }
  optimizer sgd { lr = 0.1 }
  train {
    batch = 8
    samples = 64
    epochs = 1
  }
  measure {
    samples = 300
    latent_correlation
    covariance_operator
  }
}
"""


def context(flip: float) -> RunContext:
    run = lower("flips.ssl", text=SPEC.replace("FLIP", str(flip))).runs[0]
    return RunContext.build(run, torch.device("cpu"))


class Recording:
    """Stands in for an accumulator: keeps what `update` was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def update(self, *args: Any) -> None:
        self.calls.append(args)


def plain_samples(ctx: RunContext, flip: float) -> tuple[list[Sample], torch.Tensor]:
    """The measure batches a pass of `ctx` draws (chunks of up to 4096), replayed from a copy of
    its measure generator (with the flips' draws skipped), and the generator's state after them."""
    g = torch.Generator().manual_seed(0)
    g.set_state(ctx.gens["measure"].get_state())
    batch = ctx.source.measure_batch(300, g)
    assert isinstance(batch, Sample)
    if flip:
        torch.rand(300, batch.leaves.shape[1], generator=g)
    return [batch], g.get_state()


def operator_feed(op: Recording) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes (B,) and leaf-level inputs (B, n_leaves) the operator was fed, over all its calls."""
    cls = torch.cat([c[0] for c in op.calls])
    bottom = torch.cat([c[1][-1].reshape(len(c[0]), -1) for c in op.calls])  # parents take leaves in order
    return cls, bottom


def test_operator_sees_flipped_leaves_and_correlation_plain_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """augment.flip = 1 flips every leaf: the operator's leaf-level inputs are 1 - the plain leaves,
    which the latent correlation saw, and the classes (the root) are the plain samples' own; both
    get the samples grouped by class (a stable sort): the correlation in blocks of FORWARD with a
    forward each, the operator in parts of BLOCK of each."""
    monkeypatch.setitem(FORWARD, "cpu", 128)
    monkeypatch.setitem(BLOCK, "cpu", 100)
    ctx = context(1.0)
    (plain,), after = plain_samples(ctx, 1.0)
    corr, op = Recording(), Recording()
    assert measure_pass(ctx, corr, op) == 300  # type: ignore[arg-type]
    cls, bottom = operator_feed(op)
    order = torch.argsort(plain.latents[0][:, 0], stable=True)
    torch.testing.assert_close(bottom, 1 - plain.leaves[order].to(bottom.dtype), rtol=0, atol=0)
    assert torch.equal(cls, plain.latents[0][order, 0])
    x = plain.inputs(ctx.dtype)[order]
    blocks = [slice(0, 128), slice(128, 256), slice(256, 300)]
    assert [len(c[0]) for c in op.calls] == [100, 28, 100, 28, 44]
    for (latents, pre), rows in zip(corr.calls, blocks, strict=True):
        torch.testing.assert_close(pre, ctx.net(x[rows]).pre, rtol=0, atol=0)
        assert all(torch.equal(z, want[order][rows]) for z, want in zip(latents, plain.latents, strict=True))
    assert torch.equal(ctx.gens["measure"].get_state(), after)


def test_without_the_operator_the_correlation_sees_the_samples_in_order() -> None:
    """No operator: the latent correlation gets the plain samples in their drawn order (no sort)."""
    ctx = context(0.0)
    (plain,), _ = plain_samples(ctx, 0.0)
    corr = Recording()
    measure_pass(ctx, corr, None)  # type: ignore[arg-type]
    latents = [torch.cat([c[0][lvl] for c in corr.calls]) for lvl in range(len(plain.latents))]
    assert all(torch.equal(z, want) for z, want in zip(latents, plain.latents, strict=True))


def test_without_flips_the_operator_sees_the_plain_samples_and_no_extra_draw() -> None:
    """augment.flip = 0: the operator gets the plain leaves and the pass draws nothing beyond its samples."""
    ctx = context(0.0)
    (plain,), after = plain_samples(ctx, 0.0)
    corr, op = Recording(), Recording()
    measure_pass(ctx, corr, op)  # type: ignore[arg-type]
    _, bottom = operator_feed(op)
    order = torch.argsort(plain.latents[0][:, 0], stable=True)
    torch.testing.assert_close(bottom, plain.leaves[order].to(bottom.dtype), rtol=0, atol=0)
    assert torch.equal(ctx.gens["measure"].get_state(), after)


def test_dead_units_counts_units_never_positive() -> None:
    """A unit positive on no sample of any chunk counts as dead; one positive once does not."""
    dead = DeadUnits()
    level0 = torch.tensor([[[1.0, -1.0]], [[-2.0, 0.0]]])  # (B=2, N=1, W=2): unit 1 never > 0
    level1 = -torch.ones(2, 2, 2)  # (B, N=2, W=2): all dead so far
    dead.update([level0, level1])
    level1_later = -torch.ones(3, 2, 2)
    level1_later[1, 1, 0] = 0.5  # node 2's unit 0 wakes up in the second chunk
    dead.update([-torch.ones(3, 1, 2), level1_later])
    assert dead.result().tolist() == [0.5, 1.0, 0.5]


def test_dead_units_before_any_sample_is_empty() -> None:
    """With no chunk seen there is nothing to report (an empty result, not zeros)."""
    assert DeadUnits().result().numel() == 0
