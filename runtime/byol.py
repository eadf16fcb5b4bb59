"""BYOL as an objective (runtime.objective's interface): `loss byol` (sslspec.spec.schema.BYOLLoss).

Two views x1, x2 of each example (no negatives). The online network f gives z_v = f(x_v), its
output as the `network` block defines it (any network of runtime.networks: a LevelNet on the
HLTM, or an image network's projection head); the predictor q (runtime.predictor; none when
`predictor = false`) gives p_v = q(z_v); the target network f_t gives t_v = f_t(x_v) under no_grad
(the stop-gradient). With `distance = cosine` the loss is, averaged over the batch,

    (2 - 2 cos(p_1, t_2)) + (2 - 2 cos(p_2, t_1)),

which is ||p~ - t~||^2 on l2-normalized vectors, symmetrized over the views; `mse` is the same
sum of ||p - t||^2 on the vectors as they are.

The target is a second network like the online one: its own random draw from the init stream
(`target = independent`, the official code's choice) or a copy of the online network (`copy`).
After each optimizer step its parameters move to m theta_t + (1 - m) theta (`momentum` m; m = 0
makes it the online network, exactly); its batch-norm buffers are its own (not averaged), updated
by its own forwards in training mode. The predictor is optimized by the run's optimizer or by a
second one of the same kind and settings with its own learning rate (`predictor.optimizer = own`),
stepped after the run's. A checkpoint holds the target (parameters and buffers) and the predictor;
the own optimizer's state is the run context's `objective_opt`. Training is eager on every
device for now (`graphable = False`; the store's `training` attribute says so and why): the steps
are plain tensor ops that a CUDA graph should capture, but that was never tried on a GPU.

Draw order from the init stream, after the online network: the predictor's weights, then the
target's (independent only), so that the predictor starts the same whichever the target.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
import torch
from torch import Tensor
from torch.nn import functional as F

from runtime.networks import Network
from runtime.optim import build_optimizer
from runtime.predictor import Predictor
from runtime.stateless import Parts
from sslspec.spec import schema
from sslspec.spec.schema import Config


def distance(kind: str, p: Tensor, t: Tensor) -> Tensor:
    """p, t (B, D) -> the batch mean of 2 - 2 cos(p, t) (`cosine`) or of ||p - t||^2 (`mse`)."""
    if kind == "cosine":
        return (2 - 2 * (F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).sum(-1)).mean()
    return (p - t).square().sum(-1).mean()


class BYOL:
    """BYOL's online predictor, EMA target and loss (see the module docstring)."""

    negatives = 0
    graphable = False  # not yet tried under CUDA graph capture (no GPU was available to this work)

    def __init__(self, cfg: Config, net: torch.nn.Module, parts: Parts) -> None:
        loss = cfg.loss
        assert isinstance(loss, schema.BYOLLoss), loss
        self.cfg, self.online = loss, net
        assert isinstance(net, Network), net
        dim = net.out_dim  # output units
        pred = loss.predictor
        self.predictor = Predictor(dim, pred, parts.init, parts.dtype).to(parts.device) if pred else None
        self.target = copy.deepcopy(net) if loss.target == "copy" else parts.network()
        self.target.requires_grad_(False)
        self.target.train()
        self._online_params: list[Tensor] = list(net.parameters())
        self._target_params: list[Tensor] = list(self.target.parameters())
        self._own: torch.optim.Optimizer | None = None
        if pred is not None and pred.optimizer == "own" and self.predictor is not None:
            lr = pred.lr if pred.lr is not None else cfg.optimizer.lr
            self._own = build_optimizer(attrs.evolve(cfg.optimizer, lr=lr), self.predictor.parameters())
        self.attrs: dict[str, Any] = {
            "objective": "byol",
            "form": "2 - 2 cos, symmetrized" if loss.distance == "cosine" else "||p - t||^2, symmetrized",
            "target_init": loss.target,
            "ema_momentum": loss.momentum,
            "predictor": pred.layers if pred is not None else "none",
        }

    def loss(self, z: Tensor, inputs: Tensor) -> Tensor:
        """z (V = 2, B, D) the online outputs of the two views, inputs (2, B, ...) their inputs ->
        the symmetrized loss."""
        v, b, d = z.shape
        p = z if self.predictor is None else self.predictor(z.reshape(v * b, d), views=v).view(v, b, d)
        with torch.no_grad():
            t = self.target(inputs.reshape(v * b, *inputs.shape[2:]), views=v).out.view(v, b, d)
        kind = self.cfg.distance
        return distance(kind, p[0], t[1]) + distance(kind, p[1], t[0])

    def parameters(self) -> list[torch.nn.Parameter]:
        """The predictor's parameters when the run's optimizer steps them."""
        if self.predictor is None or self._own is not None:
            return []
        return list(self.predictor.parameters())

    def optimizer(self) -> torch.optim.Optimizer | None:
        return self._own

    @torch.no_grad()
    def after_step(self) -> None:
        """The EMA: theta_t <- m theta_t + (1 - m) theta, parameters only."""
        m = self.cfg.momentum
        torch._foreach_mul_(self._target_params, m)
        torch._foreach_add_(self._target_params, self._online_params, alpha=1 - m)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"target": self.target.state_dict()}
        if self.predictor is not None:
            state["predictor"] = self.predictor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        if self.predictor is not None:
            self.predictor.load_state_dict(state["predictor"])
