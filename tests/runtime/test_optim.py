"""runtime.optim: step takes the same update as torch's own optimizer.step(), the optimizers take
the spec's settings, and the lr schedule of a run (or of a second optimizer following it) gives
each step's lr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from runtime import optim
from sslspec.spec import schema
from sslspec.spec.lower import lower
from sslspec.spec.schedule import describe

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.ssl"


@pytest.mark.parametrize(
    "cfg",
    [schema.SGD(lr=0.1), schema.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), schema.Adam(lr=0.01)],
    ids=["sgd", "sgd_momentum", "adam"],
)
def test_step_equals_torch_step(cfg: schema.Optimizer) -> None:
    """Three steps through runtime.optim.step leave bit-identical parameters and optimizer state
    to three steps of opt.step() (the reference)."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(4, 5, generator=gen) for _ in range(3)]
    runs = []
    for take_step in (optim.step, lambda o: o.step()):
        p = torch.nn.Parameter(start.clone())
        opt = optim.build_optimizer(cfg, [p])
        for g in grads:
            p.grad = g.clone()
            take_step(opt)
        runs.append((p.detach().clone(), opt.state_dict()["state"]))
    (p1, s1), (p2, s2) = runs
    assert torch.equal(p1, p2)
    assert s1.keys() == s2.keys()
    for i, state in s2.items():
        assert s1[i].keys() == state.keys()
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(s1[i][key]), torch.as_tensor(value)), key


def test_an_optimizer_method_without_torchs_wrapper_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_optimizer skips a torch.optim method that has no dynamo wrapper (no `__wrapped__`) and
    the optimizer it builds still works."""

    def zero_grad(self: torch.optim.Optimizer, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", zero_grad)
    p = torch.nn.Parameter(torch.ones(3))
    opt = optim.build_optimizer(schema.SGD(lr=0.5), [p])
    p.grad = torch.ones(3)
    optim.step(opt)
    opt.zero_grad()
    assert p.grad is None and torch.equal(p.detach(), torch.full((3,), 0.5))


def config(*sets: str) -> schema.Config:
    """The quickstart's first run's config (50 steps per epoch, 10 epochs, SGD lr 0.1) with `sets`."""
    return lower(QUICKSTART, list(sets)).runs[0].config


def test_lr_schedule_is_none_only_for_a_constant_lr() -> None:
    """A constant lr has no schedule; a constant lr after a warm-up has one, which warms up over its
    steps and then holds lr, over the run's 500 steps of 50 per epoch."""
    assert optim.lr_schedule(config()) is None
    sched = optim.lr_schedule(config("optimizer.schedule=constant(warmup_steps = 4)"))
    assert sched is not None and (sched.base, sched.total, sched.per_epoch) == (0.1, 500, 50)
    assert [sched.lr(t) for t in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rel=1e-15)
    by_epochs = optim.lr_schedule(config("optimizer.schedule=constant(warmup_epochs = 1)"))
    assert by_epochs is not None and by_epochs.lr(0) == pytest.approx(0.1 / 50) and by_epochs.lr(50) == 0.1


def test_a_second_optimizer_follows_the_schedule_scaled_to_its_lr() -> None:
    """lr_schedule with base 0.02 under a run's cosine from 0.1 to 0.01 gives 0.2 x the run's lr at
    every step (its final lr 0.002), and `apply` sets that lr on every parameter group."""
    cfg = config("optimizer.schedule=cosine(warmup_steps = 10, final_lr = 0.01)")
    main, second = optim.lr_schedule(cfg), optim.lr_schedule(cfg, base=0.02)
    assert main is not None and second is not None and second.base == 0.02
    for t in (0, 5, 9, 10, 200, 499, 500):
        assert second.lr(t) == pytest.approx(0.2 * main.lr(t), rel=1e-12), t
    assert second.lr(500) == pytest.approx(0.002, rel=1e-12)
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    groups: list[dict[str, Any]] = [{"params": [a]}, {"params": [b], "lr": 0.7}]
    opt = torch.optim.SGD(groups, lr=0.1)
    main.apply(opt, 200)
    assert [g["lr"] for g in opt.param_groups] == [main.lr(200)] * 2
    assert isinstance(opt.param_groups[0]["lr"], float)


def test_adam_takes_the_specs_betas_and_weight_decay() -> None:
    """build_optimizer makes torch.optim.Adam (L2 decay in the gradient, not AdamW) with the block's
    lr, betas and weight decay, and SGD with its lr, momentum and weight decay."""
    adam = optim.build_optimizer(
        schema.Adam(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), [torch.nn.Parameter(torch.ones(1))]
    )
    assert type(adam) is torch.optim.Adam
    assert {k: adam.defaults[k] for k in ("lr", "betas", "weight_decay")} == {
        "lr": 0.01,
        "betas": (0.8, 0.95),
        "weight_decay": 0.1,
    }
    sgd = optim.build_optimizer(
        schema.SGD(lr=0.2, momentum=0.5, weight_decay=0.3), [torch.nn.Parameter(torch.ones(1))]
    )
    assert type(sgd) is torch.optim.SGD
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "weight_decay")} == {
        "lr": 0.2,
        "momentum": 0.5,
        "weight_decay": 0.3,
    }


def test_building_an_optimizer_caches_each_wrapped_method_on_itself() -> None:
    """After build_optimizer, each torch.optim method under torch's dynamo wrapper holds itself as
    the wrapper's cached function, so no call imports torch._dynamo (test_startup.py checks the
    import in a fresh process)."""
    optim.build_optimizer(schema.SGD(lr=0.1), [torch.nn.Parameter(torch.ones(1))])
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        fn = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if fn is not None:
            assert getattr(fn, "__dynamo_disable", None) is fn, name


class GradModeProbe(torch.optim.Optimizer):
    """An optimizer whose step records whether grad mode was on (and changes nothing)."""

    def __init__(self, params: list[torch.nn.Parameter], differentiable: bool) -> None:
        super().__init__(params, {"differentiable": differentiable})
        self.grad_enabled: list[bool] = []

    def step(self, closure: object = None) -> None:  # type: ignore[override]
        self.grad_enabled.append(torch.is_grad_enabled())


def test_a_differentiable_optimizer_or_one_with_hooks_takes_torchs_own_step() -> None:
    """optim.step runs a plain optimizer's step under no_grad (the fast path), but a differentiable
    one, or one with a step hook, through opt.step() as it is (grad mode left on)."""
    seen = []
    for differentiable, hook in ((False, False), (True, False), (False, True)):
        opt = GradModeProbe([torch.nn.Parameter(torch.ones(1))], differentiable)
        if hook:
            opt.register_step_pre_hook(lambda *_: None)
        with torch.enable_grad():
            optim.step(opt)
        seen.append(opt.grad_enabled)
    assert seen == [[False], [True], [True]]


def test_a_runs_schedule_counts_whole_steps() -> None:
    """lr_schedule's run length and steps per epoch are integers, so the store's description of a
    schedule counts whole steps."""
    sched = optim.lr_schedule(config("optimizer.schedule=cosine(warmup_epochs = 1, final_lr = 0.01)"))
    assert sched is not None and type(sched.total) is int and type(sched.per_epoch) is int
    words = describe(sched.schedule, sched.base, sched.total, sched.per_epoch)
    assert words == "cosine from 0.1 to 0.01 over 450 steps after a linear warm-up of 50 steps"
