"""The state half of the objective interface (runtime.objective) for objectives that have none:
the contrastive family and the two-view image losses share it; BYOL, with a predictor and an EMA
target, implements the methods itself."""

from __future__ import annotations

from typing import Any

import torch


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
