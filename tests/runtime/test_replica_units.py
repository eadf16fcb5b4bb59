"""Replica batching, unit by unit: the per-replica losses, ReplicaSGD and the state `sync` hands
back, each against the unbatched code, with replicas whose scalars differ (the end-to-end tests,
test_replicas.py, give their replicas one temperature, beta, margin and momentum)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import attrs
import pytest
import torch
from inprocess import sslspec_in_process
from test_run import REFERENCE

from runtime.context import RunContext
from runtime.losses import loss_value
from runtime.replicas import ReplicaSGD, ReplicaTrainer, loss_scalars, replica_losses
from runtime.train import Trainer
from sslspec.spec import schema
from sslspec.spec.lower import lower
from sslspec.spec.plan import Run

LOSSES = {
    "simple": [schema.SimpleLoss(beta=b) for b in (0.0, 0.5, -0.25)],
    "triplet": [schema.TripletLoss(temperature=t, margin=m) for t, m in ((1.0, 0.0), (0.3, 0.1), (2.0, 0.5))],
    "infonce": [schema.InfoNCELoss(temperature=t, negatives=2) for t in (0.1, 0.5, 1.0)],
}


@pytest.mark.parametrize("reduction", ["batch", "sample"])
@pytest.mark.parametrize("kind", list(LOSSES))
def test_replica_losses_are_each_replicas_own_loss(kind: str, reduction: str) -> None:
    """replica_losses over three replicas with their own beta, temperature or margin gives, per
    replica, runtime.losses' loss of that replica's outputs with its own settings (float64)."""
    cfgs = [attrs.evolve(c, reduction=reduction) for c in LOSSES[kind]]
    gen = torch.Generator().manual_seed(5)
    h = 1 if kind == "simple" else 2
    z = torch.randn(3, 2 + h, 6, 4, generator=gen, dtype=torch.float64)  # (R, V, B, D)
    got = replica_losses(cfgs[0], loss_scalars(cfgs, z), z)
    assert got.shape == (3,)
    for r, cfg in enumerate(cfgs):
        want = loss_value(cfg, z[r, 0], z[r, 1], z[r, 2:])
        torch.testing.assert_close(got[r], want, rtol=1e-12, atol=1e-14, msg=f"{kind} {reduction} {r}")


SETTINGS = [(0.1, 0.9, 0.0), (0.1, 0.9, 0.0), (0.05, 0.0, 0.01), (0.2, 0.5, 0.1)]  # lr, momentum, decay


def test_replica_sgd_steps_each_replica_as_torch_sgd() -> None:
    """Four replicas (two sharing a setting, one without momentum, two with weight decay) stepped
    three times, at a new lr per span on the third step, end where torch.optim.SGD takes each
    replica's own parameter, bit for bit; their momentum buffers are torch's, and `momentum(r)`
    says which replicas have one."""
    gen = torch.Generator().manual_seed(7)
    start = torch.randn(4, 3, 5, generator=gen)
    grads = [torch.randn(4, 3, 5, generator=gen) for _ in range(3)]
    cfgs = [schema.SGD(lr=lr, momentum=m, weight_decay=wd) for lr, m, wd in SETTINGS]
    stacked = torch.nn.Parameter(start.clone())
    opt = ReplicaSGD([stacked], cfgs, [None])
    assert [(a, b) for a, b, _ in opt.spans] == [(0, 2), (2, 3), (3, 4)]
    later = [0.3, 0.02, 0.15]  # each span's lr at the third step
    for i, g in enumerate(grads):
        stacked.grad = g.clone()
        opt.step(later if i == 2 else None)
    assert [opt.momentum(r) for r in range(4)] == [True, True, False, True]
    span_of = [0, 0, 1, 2]
    for r, cfg in enumerate(cfgs):
        p = torch.nn.Parameter(start[r].clone())
        alone = torch.optim.SGD([p], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for i, g in enumerate(grads):
            if i == 2:
                alone.param_groups[0]["lr"] = later[span_of[r]]
            p.grad = g[r].clone()
            alone.step()
        assert torch.equal(stacked.detach()[r], p.detach()), r
        buf = opt.bufs[0]
        if cfg.momentum:
            assert buf is not None and torch.equal(buf[r], alone.state[p]["momentum_buffer"]), r


def mixed_momentum(tmp_path: Path) -> list[Run]:
    """Three small reference runs, seeds 1-3, with momentum 0.9, none and 0.9."""
    spec = tmp_path / "v.ssl"
    spec.write_text(REFERENCE.read_text())
    sets = ["network.width=4", "train.batch=16", "train.samples=64", "data.depth=3"]
    return [
        lower(spec, [*sets, f"seed={s}", f"optimizer.momentum={m}"]).runs[0]
        for s, m in ((1, 0.9), (2, 0.0), (3, 0.9))
    ]


def test_sync_hands_each_replica_its_unbatched_optimizer_state(tmp_path: Path) -> None:
    """A group mixing momentum 0.9 and none, trained an epoch batched and synced, leaves in every
    replica's own optimizer the state its unbatched run has (a buffer only with momentum, equal
    bit for bit), and the epoch's losses are float64, as the unbatched Trainer's."""
    runs = mixed_momentum(tmp_path)
    cpu = torch.device("cpu")
    with sslspec_in_process():
        trainer = ReplicaTrainer([RunContext.build(r, cpu) for r in runs])
        losses = trainer.epoch()
        trainer.sync()
        for r, run in enumerate(runs):
            alone = Trainer(RunContext.build(run, cpu))
            own = alone.epoch()
            assert losses.dtype == own.dtype == torch.float64 and torch.equal(own, losses[r]), r
            want, got = alone.opt.state_dict()["state"], trainer.ctxs[r].opt.state_dict()["state"]
            assert got.keys() == want.keys(), r
            for i, state in want.items():
                assert got[i].keys() == state.keys(), (r, i)
                for key, value in state.items():
                    assert torch.equal(torch.as_tensor(got[i][key]), torch.as_tensor(value)), (r, i, key)


def test_a_group_built_from_trained_contexts_continues_their_momentum(tmp_path: Path) -> None:
    """A group formed from contexts that already trained an epoch alone (as after a resume: momentum
    buffers in their optimizers, one replica without momentum) trains the next epoch as each run's
    own second epoch, losses and parameters bit for bit."""
    runs = mixed_momentum(tmp_path)
    cpu = torch.device("cpu")
    with sslspec_in_process():
        ctxs = [RunContext.build(r, cpu) for r in runs]
        for c in ctxs:
            Trainer(c).epoch()
        trainer = ReplicaTrainer(ctxs)
        second = trainer.epoch()
        trainer.sync()
        for r, run in enumerate(runs):
            alone = Trainer(RunContext.build(run, cpu))
            alone.epoch()
            assert torch.equal(alone.epoch(), second[r]), r
            for p, q in zip(alone.net.parameters(), ctxs[r].net.parameters(), strict=True):
                assert torch.equal(p, q), r


def test_a_group_says_why_its_steps_stay_eager(tmp_path: Path) -> None:
    """A group on the CPU is eager for its device; on CUDA (judged without a GPU: only the device's
    type is read) it is captured without an lr schedule and stays eager with one, saying why."""
    spec = tmp_path / "v.ssl"
    spec.write_text(REFERENCE.read_text())
    sets = ["network.width=4", "train.batch=16", "train.samples=64", "data.depth=3"]
    cosine = "optimizer.schedule=cosine(warmup_steps = 2)"
    reason = "an lr schedule (a captured step would replay the lr it was captured with)"
    for extra, why in (([], ""), ([cosine], reason)):
        runs = [lower(spec, [*sets, *extra, f"seed={s}"]).runs[0] for s in (1, 2)]
        with sslspec_in_process():
            trainer = ReplicaTrainer([RunContext.build(r, torch.device("cpu")) for r in runs])
        assert trainer.why_eager() == "device cpu"
        trainer.ctxs[0] = dataclasses.replace(trainer.ctxs[0], device=torch.device("cuda"))
        assert trainer.why_eager() == why
