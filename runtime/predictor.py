"""BYOL's predictor: a small head on the online network's output (sslspec.spec.schema.Predictor).

`mlp`: D -> width -> D, batch norm (optional) and a ReLU after the hidden layer; `linear`: one
D -> D layer, batch norm (optional) on its output. Batch norm normalizes each view on its own
(runtime.batchnorm.per_view; the network does the same, runtime.network's BN_VIEWS) with the batch
statistics only: the predictor runs only in training, so it keeps no running statistics.

Initialization is nn.Linear's default per layer (weights kaiming_uniform_(a=sqrt(5)), bias uniform
in +-1/sqrt(fan_in)), drawn from the given generator, layer by layer, weight then bias; batch
norm's scale starts at 1 and its shift at 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from runtime import batchnorm
from sslspec.spec import schema

EPS_BN = 1e-5  # BatchNorm1d's default


class Predictor(nn.Module):
    """The predictor of `cfg` on outputs of `dim` units, initialized from `gen` (on its device)."""

    def __init__(self, dim: int, cfg: schema.Predictor, gen: torch.Generator, dtype: torch.dtype) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = cfg.width if cfg.layers == "mlp" else dim
        sizes = [(dim, hidden), (hidden, dim)] if cfg.layers == "mlp" else [(dim, dim)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in sizes:
            w = torch.empty(fan_out, fan_in, device=gen.device)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
            self.weights.append(nn.Parameter(w.to(dtype)))
            if cfg.bias:
                bound = 1 / math.sqrt(fan_in)
                b = torch.empty(fan_out, device=gen.device).uniform_(-bound, bound, generator=gen)
                self.biases.append(nn.Parameter(b.to(dtype)))
        affine = cfg.batch_norm and cfg.bn_affine
        self.gamma = nn.Parameter(torch.ones(hidden, dtype=dtype)) if affine else None
        self.beta = nn.Parameter(torch.zeros(hidden, dtype=dtype)) if affine else None

    def _layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weights[i], self.biases[i] if self.cfg.bias else None)

    def forward(self, z: torch.Tensor, views: int = 1) -> torch.Tensor:
        """z (V B, D) outputs of V views stacked view-major -> (V B, D) predictions."""
        h = self._layer(0, z)  # (V B, hidden)
        if self.cfg.batch_norm:
            h = batchnorm.per_view(h, views, EPS_BN, self.cfg.bn_mean, self.cfg.bn_std)
            if self.gamma is not None and self.beta is not None:
                h = h * self.gamma + self.beta
        if self.cfg.layers == "linear":
            return h
        return self._layer(1, torch.relu(h))
