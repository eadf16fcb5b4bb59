"""The collapse measurement (`measure { collapse }`): how spread the network's output is.

Over the measured samples, z = raw / ||raw|| is the l2-normalized output (normalized here whatever
the network's own `normalize`, so that the scale is known). Recorded:

- `std`, (D,): each output dimension's standard deviation over the samples (population form). A
  healthy D-dimensional output spread over the sphere has about 1/sqrt(D) in each; a collapsed
  one (every sample mapped to one point) has 0.
- `std_mean`: their mean over the D dimensions.
- `eff_rank`: the effective rank of z's covariance C, exp(-sum_i p_i log p_i) with
  p_i = lambda_i / sum_j lambda_j its eigenvalues normalized (Roy and Vetterli 2007): D for an
  isotropic spread, 1 when all variance lies on one direction. It is scale-free, so it measures
  dimensional collapse; when `std` is already ~0 it describes only what is left (0 when C is 0).

Chunks are combined exactly (Chan et al.'s pairwise update of mean and centred second moment in
float64), so the values do not depend on the chunk size beyond rounding, and a collapsed output's
tiny spread is not lost to cancellation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


class OutputSpread:
    """Accumulates the normalized output's mean and centred second moment over chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None  # (D,) float64
        self.m2: torch.Tensor | None = None  # (D, D) float64: sum of (z - mean)(z - mean)^T

    def update(self, raw: torch.Tensor) -> None:
        """raw (B, D) the network's output before any normalization."""
        z = F.normalize(raw.detach().to(torch.float64), dim=1)
        b = z.shape[0]
        mean_b = z.mean(0)
        centred = z - mean_b
        m2_b = centred.T @ centred
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = b, mean_b, m2_b
            return
        n = self.n + b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (b / n)
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (self.n * b / n)
        self.n = n

    def result(self) -> dict[str, torch.Tensor]:
        """{"std": (D,), "std_mean": (), "eff_rank": ()} (see the module docstring)."""
        assert self.m2 is not None, "no samples"
        cov = self.m2 / self.n
        std = cov.diagonal().clamp(min=0).sqrt()
        return {"std": std, "std_mean": std.mean(), "eff_rank": effective_rank(cov)}


def effective_rank(cov: torch.Tensor) -> torch.Tensor:
    """(D, D) symmetric PSD -> exp of the entropy of its normalized eigenvalues (0 for a zero matrix)."""
    eig: torch.Tensor = torch.linalg.eigvalsh(cov).clamp(min=0)
    total = eig.sum()
    if total <= 0:
        return total.new_zeros(())
    p = eig / total
    entropy: torch.Tensor = -torch.special.xlogy(p, p).sum()
    return entropy.exp()
