"""The run context: everything one run needs, built once from its Plan entry.

`RunContext.build(run, device)` makes, in a fixed order that fixes every random draw: the data
source (its tree and edges from the `tree` seed, on the CPU), the network (initialized from the
`init` seed on the CPU, then moved), the objective (any parameters of its own drawn next from the
same `init` stream: BYOL's predictor and target), the optimizer over the network's and the
objective's parameters, and the `data` and `measure` generators on the device. Training,
measurement, the theorem check and checkpoints all take the context instead of long argument
lists; `state()` and `restore()` are what a checkpoint holds, the count of optimizer steps taken
included (the learning-rate schedule's position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from runtime.networks import Network, build
from runtime.objective import Objective, build_objective
from runtime.optim import build_optimizer
from runtime.source import DataSource, build_source
from runtime.stateless import Parts
from sslspec.spec.plan import Run
from sslspec.spec.schema import Config

DTYPE = torch.float32


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded with `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@dataclass
class RunContext:
    """One run's configuration, device, dtype, generators, data source, network and objective."""

    run: Run
    device: torch.device
    dtype: torch.dtype
    source: DataSource
    net: Network
    objective: Objective
    opt: torch.optim.Optimizer
    gens: dict[str, torch.Generator]  # the streams still drawn from after building: data, measure
    steps: int = 0  # optimizer steps taken: the index of the next one in the lr schedule

    @property
    def cfg(self) -> Config:
        return self.run.config

    @classmethod
    def build(cls, run: Run, device: torch.device, dtype: torch.dtype = DTYPE) -> RunContext:
        """A freshly initialized run on `device` (see the module docstring for the order)."""
        cfg, seeds, cpu = run.config, run.seeds, torch.device("cpu")
        source = build_source(cfg, seeds.tree, device)
        init = generator(seeds.init, cpu)

        def another() -> Network:  # drawn from `init` on the CPU, then moved
            return build(cfg, source.layout, init, dtype, device, source.input_dim)

        net = another()
        objective = build_objective(cfg, net, Parts(init, device, dtype, another))
        opt = build_optimizer(cfg.optimizer, [*net.parameters(), *objective.parameters()])
        gens = {"data": generator(seeds.data, device), "measure": generator(seeds.measure, device)}
        return cls(run, device, dtype, source, net, objective, opt, gens)

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds besides its bookkeeping: network, optimizers, generators, and
        the objective's and the data source's own state when they have any."""
        state: dict[str, Any] = {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "generators": {name: g.get_state() for name, g in self.gens.items()},
            "steps": self.steps,
        }
        own = self.objective.optimizer()
        parts = {
            "objective": self.objective.state_dict(),
            "objective_opt": own.state_dict() if own is not None else {},
            "source": self.source.state_dict(),
        }
        return {**state, **{k: v for k, v in parts.items() if v}}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back a `state()` into this freshly built context."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        for name, g in self.gens.items():
            g.set_state(state["generators"][name])
        train = self.cfg.train  # a checkpoint written before schedules: every epoch is whole
        self.steps = int(state.get("steps", state.get("epoch", 0) * (train.samples // train.batch)))
        self.objective.load_state_dict(state.get("objective", {}))
        own = self.objective.optimizer()
        if own is not None and "objective_opt" in state:
            own.load_state_dict(state["objective_opt"])
        self.source.load_state_dict(state.get("source", {}))
