"""The state half of the objective interface (runtime.objective): `Parts`, what an objective
builds state of its own from, and `Stateless`, the methods of an objective that has none (the
contrastive family and the two-view image losses share it; BYOL, with a predictor and an EMA
target, implements them itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Parts:
    """What an objective builds parameters of its own from: `init`, the run's init stream (on the
    CPU) after the network's weights were drawn from it, the run's device and dtype, and `network`,
    which builds another network like the run's, its weights drawn next from `init`, on the device."""

    init: torch.Generator
    device: torch.device
    dtype: torch.dtype
    network: Callable[[], torch.nn.Module]


class Stateless:
    """The state half of the interface for an objective that has none: no parameters or optimizer
    of its own, nothing to do after a step, an empty checkpoint entry (refusing a non-empty one)."""

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def optimizer(self) -> torch.optim.Optimizer | None:
        return None

    def after_step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state to restore (got {sorted(state)})")
