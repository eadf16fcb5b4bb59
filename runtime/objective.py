"""Objectives: a batch's network outputs -> the loss, with whatever state the objective owns.

The trainer pushes the V views of a batch (x, its positive view, then `negatives` negatives:
V = 2 + H) through the network in one forward pass (`views = V`: batch norm normalizes each view
on its own, runtime.network) and hands the objective the outputs,
(V, B, D), with the inputs they came from, (V, B, n). The objective returns the scalar loss and
owns anything else training needs:

- `parameters()`: trainable parameters of its own, optimized with the network's (a predictor);
- `optimizer()`: its own optimizer, stepped after the network's, or None;
- `after_step()`: what follows each optimizer step (an EMA update of a target network);
- `state_dict()` / `load_state_dict()`: what a checkpoint must hold to resume bit-identically;
- `graphable`: whether a step can be captured as one CUDA graph (runtime.train).

The first implementation is the contrastive family (`Contrastive`: simple, triplet, InfoNCE on
distances; no state of its own). The second is BYOL (runtime.byol): no negatives
(`negatives` = 0), a predictor on the online outputs (its `parameters`, or its own optimizer), a
target network built as a copy or independently and updated by EMA in `after_step` (batch-norm
buffers not averaged), its outputs on `inputs` under no_grad, and target and predictor in
`state_dict`. A builder gets the config, the run's network and `Parts` (runtime.stateless: the
init stream and a maker of another network) to build parameters of its own from.

`OBJECTIVES` maps a `loss` kind to its builder (a plain dict; a test may add a toy kind to it,
with its schema class in sslspec.spec.schema.BLOCKS and its entry in sslspec.spec.kinds.SUPPORT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from runtime.byol import BYOL
from runtime.images.objectives import TwoViews
from runtime.losses import loss_value
from runtime.stateless import Parts, Stateless
from sslspec.spec import schema
from sslspec.spec.schema import Config


class Objective(Protocol):
    """What training minimizes (see the module docstring)."""

    negatives: int  # H: negative views per example the data source must draw
    graphable: bool
    attrs: dict[str, Any]  # recorded with the stored loss (e.g. its reduction)

    def loss(self, z: Tensor, inputs: Tensor) -> Tensor:
        """z (V, B, D) the network's outputs of the V views, inputs (V, B, n) -> the scalar loss."""
        ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def optimizer(self) -> torch.optim.Optimizer | None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Contrastive(Stateless):
    """The contrastive family on distances between outputs (runtime.losses): views are x, x_pos
    and H negatives; `beta` is the simple loss's extra positive weight (0 for the others), which
    the theorem check's prediction needs."""

    graphable = True

    def __init__(self, cfg: Config, net: torch.nn.Module, parts: Parts) -> None:
        loss = cfg.loss
        assert isinstance(loss, schema.SimpleLoss | schema.TripletLoss | schema.InfoNCELoss), loss
        self.cfg = loss
        self.negatives = loss.negatives if isinstance(loss, schema.InfoNCELoss) else 1
        self.beta = loss.beta if isinstance(loss, schema.SimpleLoss) else 0.0
        self.attrs: dict[str, Any] = {"reduction": loss.reduction}

    def loss(self, z: Tensor, inputs: Tensor) -> Tensor:
        return loss_value(self.cfg, z[0], z[1], z[2:])


# loss kind -> (config, the run's network, what to build its own parameters from) -> its objective
ObjectiveBuilder = Callable[[Config, torch.nn.Module, Parts], Objective]
OBJECTIVES: dict[str, ObjectiveBuilder] = {
    "simple": Contrastive,
    "triplet": Contrastive,
    "infonce": Contrastive,
    "byol": BYOL,
    "nt_xent": TwoViews,
    "exact_cov": TwoViews,
}


def build_objective(cfg: Config, net: torch.nn.Module, parts: Parts) -> Objective:
    """The objective of `cfg.loss` (its kind was accepted by the checker, so it is here)."""
    kind = schema.kind_of(cfg.loss)
    if kind not in OBJECTIVES:
        raise ValueError(f"no objective for loss kind {kind!r}")
    return OBJECTIVES[kind](cfg, net, parts)
