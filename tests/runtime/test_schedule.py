"""Learning-rate schedules at run time: every optimizer step takes the schedule's lr for its index,
a killed run resumes the schedule exactly, a batched replica follows it as alone, BYOL's own
predictor optimizer follows it scaled, the store records it, and the CUDA-graph path says why it
stays eager."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from inprocess import sslspec_in_process
from test_resume import identical
from test_run import REFERENCE, SSLSPEC, TINY, stores

from runtime import optim
from runtime.context import RunContext
from runtime.replicas import ReplicaTrainer, group_key
from runtime.train import Trainer
from sslspec.faults import ENV
from sslspec.spec.lower import lower
from sslspec.spec.plan import Run
from sslspec.spec.schedule import ConstantLR, CosineLR, lr_at
from sslspec.store.layout import version_attrs

CPU = torch.device("cpu")
# TINY has 20 steps per epoch and 5 epochs: a 30-step warm-up ends inside epoch 2, and the cosine
# changes the lr at every step after it.
COSINE = "optimizer.schedule=cosine(warmup_steps = 30, final_lr = 0.001)"


def reference_lr(lr: float, step: int, total: int, warmup: int, final: float) -> float:
    """The schedule as the language reference states it, written out independently."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return final + (lr - final) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_lr_at_follows_the_documented_curve() -> None:
    """lr_at gives lr / W at step 0, lr at the warm-up's last step, then the cosine down to
    final_lr after the last step; a constant schedule without warm-up gives lr itself."""
    cosine = CosineLR(warmup_steps=10, final_lr=0.01)
    got = [lr_at(cosine, 0.3, t, 100, 7) for t in range(101)]
    want = [reference_lr(0.3, t, 100, 10, 0.01) for t in range(101)]
    assert np.allclose(got, want, rtol=1e-13, atol=0)
    assert got[0] == pytest.approx(0.03) and got[9] == 0.3 and got[10] == 0.3
    assert got[100] == pytest.approx(0.01) and bool(np.all(np.diff(got[10:]) < 0))
    assert lr_at(CosineLR(warmup_epochs=2), 1.0, 13, 100, 7) == pytest.approx(1.0)  # W = 14 steps
    assert lr_at(ConstantLR(), 0.123, 57, 100, 20) == 0.123


def lower_run(where: Path, *sets: str, text: str = TINY) -> Run:
    """The first run of `text` (TINY) with `sets`, its spec written in the folder `where`."""
    spec = where / "schedule.ssl"
    spec.write_text(text)
    return lower(spec, list(sets)).runs[0]


def test_every_step_takes_the_scheduled_lr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two epochs of a Trainer call the optimizer 40 times, step t at the reference lr of t, and
    leave the context's step count at 40."""
    run = lower_run(tmp_path, COSINE)
    ctx = RunContext.build(run, CPU)
    seen: list[float] = []
    plain_step = optim.step
    monkeypatch.setattr(optim, "step", lambda opt: (seen.append(opt.param_groups[0]["lr"]), plain_step(opt)))
    trainer = Trainer(ctx)
    trainer.epoch()
    trainer.epoch()
    lr = run.config.optimizer.lr
    assert seen == pytest.approx([reference_lr(lr, t, 100, 30, 0.001) for t in range(40)], rel=1e-13)
    assert ctx.steps == 40 and ctx.state()["steps"] == 40


def test_the_cuda_graph_path_stays_eager_with_a_schedule_and_says_why(tmp_path: Path) -> None:
    """On CUDA a run with an lr schedule is not captured (a replayed step would keep one lr), and
    `training` says so; a constant lr leaves the capture allowed (judged without a GPU: only the
    device's type is read)."""
    for sets, why in (((COSINE,), "an lr schedule"), ((), "")):
        ctx = RunContext.build(lower_run(tmp_path, "optimizer.momentum=0.9", *sets), CPU)
        trainer = Trainer(dataclasses.replace(ctx, device=torch.device("cuda")))
        assert trainer._why_eager().startswith(why) and bool(trainer._why_eager()) == bool(why)
    assert trainer._why_eager() == "" and Trainer(ctx).mode() == "eager (device cpu)"


def test_a_killed_run_continues_the_schedule_exactly(tmp_path: Path) -> None:
    """`sslspec run` of a run whose lr changes within epochs, killed during epoch 3 (after the
    checkpoint of epoch 2), then run again: it resumes and its store equals an uninterrupted
    run's bit for bit, lr included."""
    spec = tmp_path / "cosine.ssl"
    spec.write_text(TINY.replace("}\n", f"  {COSINE.replace('=', ' = ', 1)}\n}}\n", 1))
    base = [str(SSLSPEC), "run", str(spec), "--device", "cpu", "-j", "1"]
    whole = subprocess.run([*base, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    env = {**os.environ, ENV: "mid-epoch:3"}
    killed = subprocess.run([*base, "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert version_attrs(stores(tmp_path / "out")[0])["epochs_done"] == 2
    again = subprocess.run([*base, "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    (resumed,), (first,) = stores(tmp_path / "out"), stores(tmp_path / "whole")
    assert version_attrs(resumed)["resumed"]
    identical(resumed, first)


def test_the_store_records_the_lr_of_each_loss_window(tmp_path: Path) -> None:
    """A scheduled run's store holds `learning_rate` on the loss's steps, each the mean of the reference lr
    over its window of 5 steps, with the schedule in words; a constant-lr run's store has none."""
    spec = tmp_path / "s.ssl"
    spec.write_text(TINY)
    with sslspec_in_process() as cli:
        assert cli("run", spec, "--out", tmp_path / "on", "--set", COSINE).exit_code == 0
        assert cli("run", spec, "--out", tmp_path / "off").exit_code == 0
    ds = xr.open_zarr(stores(tmp_path / "on")[0], consolidated=False)
    lr = lower_run(tmp_path, COSINE).config.optimizer.lr
    each = np.array([reference_lr(lr, t, 100, 30, 0.001) for t in range(100)])
    assert np.allclose(ds["learning_rate"].values, each.reshape(-1, 5).mean(1), rtol=1e-12, atol=0)
    assert ds["learning_rate"].dims == ("step",) and "cosine from" in ds["learning_rate"].attrs["schedule"]
    assert "learning_rate" not in xr.open_zarr(stores(tmp_path / "off")[0], consolidated=False).variables


def test_a_batched_replica_with_cosine_and_warmup_equals_its_unbatched_run(tmp_path: Path) -> None:
    """Four replicas in one group, three with a cosine schedule and a 6-step warm-up (lr 0.05 /
    0.1 / 0.1) and one with a constant lr after a 3-step warm-up (lr 0.1: the same lr, another
    schedule), trained 2 epochs of 4 steps, give the unbatched Trainer's losses and parameters bit
    for bit (runtime.replicas' tolerance on the CPU: 0)."""
    text = REFERENCE.read_text()
    sets = ["network.width=4", "train.batch=16", "train.samples=64", "data.depth=3", "optimizer.momentum=0.9"]
    cosine, warm = "cosine(warmup_steps = 6, final_lr = 0.01)", "constant(warmup_steps = 3)"
    runs = [
        lower_run(
            tmp_path, *sets, f"seed={s}", f"optimizer.lr={lr}", f"optimizer.schedule={sched}", text=text
        )
        for s, lr, sched in ((1, 0.05, cosine), (2, 0.1, cosine), (3, 0.1, cosine), (4, 0.1, warm))
    ]
    assert len({group_key(r, "cpu") for r in runs}) == 1 and group_key(runs[0], "cpu") is not None
    with sslspec_in_process():
        trainer = ReplicaTrainer([RunContext.build(r, CPU) for r in runs])
        losses = torch.cat([trainer.epoch(), trainer.epoch()], dim=1)
        trainer.sync()
        for r, run in enumerate(runs):
            alone = Trainer(RunContext.build(run, CPU))
            assert torch.equal(torch.cat([alone.epoch(), alone.epoch()]), losses[r]), r
            for p, q in zip(alone.net.parameters(), trainer.ctxs[r].net.parameters(), strict=True):
                assert torch.equal(p, q), r
            assert trainer.ctxs[r].steps == alone.ctx.steps == 8


def test_byol_own_predictor_optimizer_follows_the_schedule_scaled(tmp_path: Path) -> None:
    """With `predictor.optimizer = own` at lr 0.02 and the run's SGD at 0.1 with a cosine schedule,
    after k steps the own optimizer's lr is the run's scaled by 0.2 (its final lr likewise)."""
    run = lower_run(
        tmp_path,
        "loss.kind=byol",
        "loss.predictor.optimizer=own",
        "loss.predictor.lr=0.02",
        "optimizer.lr=0.1",
        "optimizer.schedule=cosine(warmup_steps = 4, final_lr = 0.01)",
    )
    trainer = Trainer(RunContext.build(run, CPU))
    own = trainer.ctx.objective.optimizer()
    assert own is not None
    for k in range(1, 25):
        trainer.run_steps(1)
        main_lr, own_lr = trainer.opt.param_groups[0]["lr"], own.param_groups[0]["lr"]
        assert main_lr == pytest.approx(reference_lr(0.1, k - 1, 100, 4, 0.01), rel=1e-13)
        assert own_lr == pytest.approx(0.2 * main_lr, rel=1e-12), k
