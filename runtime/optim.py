"""Optimizers: the `optimizer` block of a spec -> a torch.optim optimizer."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.optim import optimizer as torch_optimizer

from sslspec.spec import schema
from sslspec.spec.schedule import Schedule, is_constant, lr_at, scaled


def sgd(cfg: schema.SGD, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Plain SGD (the official setting is lr 0.1, no momentum, no weight decay)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def adam(cfg: schema.Adam, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam, not AdamW)."""
    beta1, beta2 = cfg.betas
    return torch.optim.Adam(params, lr=cfg.lr, betas=(beta1, beta2), weight_decay=cfg.weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": sgd, "adam": adam}


def _without_dynamo_import() -> None:
    """Let torch.optim.Optimizer's methods run without importing torch._dynamo.

    torch wraps add_param_group, zero_grad, state_dict and load_state_dict in
    `torch._disable_dynamo`, which imports torch._dynamo (~2 s of start-up on a 2-core machine)
    at the first call only to exclude them from a compiled graph; sslspec never compiles. The
    wrapper calls the function it caches on the wrapped function, so caching the function itself
    there makes each call a plain one. Methods without that wrapper are left as they are."""
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        fn = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            fn.__dynamo_disable = fn


def build_optimizer(cfg_opt: schema.Optimizer, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of `cfg_opt` over `params`."""
    _without_dynamo_import()
    kind = schema.kind_of(cfg_opt)
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg_opt!r}")
    return OPTIMIZERS[kind](cfg_opt, params)


def step(opt: torch.optim.Optimizer) -> None:
    """`opt.step()`, the same update, without importing torch._dynamo.

    torch.optim's step wrapper imports torch._dynamo at every call (a no-op after the first, but
    the first costs ~2 s of start-up on a 2-core machine) to break compiled graphs around the
    step, and switches grad mode off; sslspec never compiles. So the step itself (the innermost
    function under torch's wrappers) runs under no_grad. A differentiable optimizer, or one with
    step hooks, takes the wrapped path."""
    hooks = torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks
    if (
        hooks
        or opt.defaults.get("differentiable")
        or opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
    ):
        opt.step()
        return
    with torch.no_grad():
        inspect.unwrap(type(opt).step)(opt)


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of each optimizer step of a run (sslspec.spec.schedule), for an
    optimizer whose base learning rate is `base`."""

    schedule: Schedule
    base: float
    total: int  # optimizer steps of the whole run
    per_epoch: int

    def lr(self, step: int) -> float:
        """The learning rate of step `step` (0-based, counted over the whole run)."""
        return lr_at(self.schedule, self.base, step, self.total, self.per_epoch)

    def apply(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Set every parameter group of `opt` to step `step`'s learning rate (a Python float, as
        torch.optim holds it, so the update is the one a constant lr of that value makes)."""
        lr = self.lr(step)
        for group in opt.param_groups:
            group["lr"] = lr


def lr_schedule(cfg: schema.Config, base: float | None = None) -> LRSchedule | None:
    """The schedule of `cfg`'s optimizer, or of a second optimizer with base learning rate `base`
    following it (BYOL's own predictor optimizer); None for a constant lr, which is never reset."""
    opt, train = cfg.optimizer, cfg.train
    if is_constant(opt.schedule):
        return None
    per_epoch = train.samples // train.batch
    schedule = opt.schedule if base is None else scaled(opt.schedule, opt.lr, base)
    return LRSchedule(schedule, opt.lr if base is None else base, train.epochs * per_epoch, per_epoch)
