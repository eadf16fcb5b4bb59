"""Batch normalization with each batch statistic's part in the gradient chosen: the BYOL ablation
of loss-operators.md section 4 (`bn_mean`, `bn_std` of the network and of BYOL's predictor).

For one view's batch of a channel with batch mean mu and biased variance s^2:

- `normal`: y = (x - mu) / sqrt(s^2 + eps), both statistics in the autograd graph (BatchNorm1d);
- `detach`: the statistic is computed from the batch but carries no gradient, so an example's
  gradient no longer flows through the other examples of its batch by that statistic;
- `omit`: the statistic is not applied at all (no centring, or no scaling).

The affine scale and shift, when on, follow. Eval mode uses the running statistics the same way
(a detached statistic is the plain one there: nothing is differentiated).
"""

from __future__ import annotations

import torch
from torch import Tensor

PLAIN = "normal"


def is_plain(mean: str, std: str) -> bool:
    """Whether both statistics are applied normally (plain batch norm)."""
    return mean == PLAIN and std == PLAIN


def normalized(x: Tensor, mean: Tensor, var: Tensor, eps: float, mean_part: str, std_part: str) -> Tensor:
    """x normalized by `mean` and `var` (broadcast against it) with each statistic's part as named
    (normal, detach, omit; see the module docstring); no affine step."""
    if mean_part != "omit":
        x = x - (mean.detach() if mean_part == "detach" else mean)
    if std_part == "omit":
        return x
    return x * torch.rsqrt((var.detach() if std_part == "detach" else var) + eps)


def per_view(x: Tensor, views: int, eps: float, mean_part: str, std_part: str) -> Tensor:
    """(V B, C) rows stacked view-major -> (V B, C), each channel normalized over each view's B rows
    by that view's batch statistics (as V separate forwards would), without the affine step."""
    vb, c = x.shape
    if vb % views:
        raise ValueError(f"a batch of {vb} rows does not split into {views} views")
    rows = x.view(views, vb // views, c)  # (V, B, C)
    var, mean = torch.var_mean(rows, dim=1, keepdim=True, correction=0)  # (V, 1, C)
    return normalized(rows, mean, var, eps, mean_part, std_part).view(vb, c)
