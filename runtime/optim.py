"""Optimizers: the `optimizer` block of a spec -> a torch.optim optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from sslspec.spec import schema


def sgd(cfg: schema.SGD, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Plain SGD (the official setting is lr 0.1, no momentum, no weight decay)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def adam(cfg: schema.Adam, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam, not AdamW)."""
    beta1, beta2 = cfg.betas
    return torch.optim.Adam(params, lr=cfg.lr, betas=(beta1, beta2), weight_decay=cfg.weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": sgd, "adam": adam}


def build_optimizer(cfg_opt: schema.Optimizer, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of `cfg_opt` over `params`."""
    kind = schema.kind_of(cfg_opt)
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg_opt!r}")
    return OPTIMIZERS[kind](cfg_opt, params)
