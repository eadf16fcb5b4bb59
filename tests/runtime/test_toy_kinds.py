"""A data source and an objective added from a test, without editing the trainer, the recorder or
the checker: a toy Gaussian data kind (no latents, no tree) and a toy objective with a predictor
of its own, each registered for the test's duration in the plain dicts the kinds live in (the
schema's BLOCKS, sslspec.spec.kinds.SUPPORT, runtime.source.DATA_SOURCES and
runtime.objective.OBJECTIVES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from attrs import frozen
from torch import Tensor

from runtime import objective, source
from runtime.layout import Layout
from runtime.sampler import Edges
from runtime.stateless import Parts
from sslspec.spec import kinds, schema
from sslspec.spec.fields import FloatT, IntT
from sslspec.spec.schema import Config, fld


@frozen
class ToyData(schema.DataBlock):
    """Gaussian inputs; the positive view adds noise, negatives are independent draws."""

    dim: int = fld(6, IntT(ge=1), "input size")
    noise: float = fld(0.1, FloatT(ge=0), "std of the positive view's noise")


@frozen
class ToyLoss:
    """Predictor output against the positive view, minus `spread` times the output variance."""

    spread: float = fld(0.5, FloatT(ge=0))


class Views:
    def __init__(self, x: Tensor, pos: Tensor, neg: Tensor) -> None:
        self.x, self.pos, self.neg = x, pos, neg

    def inputs(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return self.x.to(dtype), self.pos.to(dtype), self.neg.to(dtype)


class Plain:
    def __init__(self, x: Tensor) -> None:
        self.x = x

    def inputs(self, dtype: torch.dtype) -> Tensor:
        return self.x.to(dtype)


class ToySource:
    """Draws on the device from the given generator; its position is the number of batches drawn."""

    def __init__(self, cfg: Config, tree_seed: int, device: torch.device) -> None:
        assert isinstance(cfg.data, ToyData)
        self.cfg, self.device = cfg.data, device
        self.layout: Layout | None = None
        self.edges: Edges | None = None
        self.input_dim = cfg.data.dim
        self.drawn = 0

    def views(self, batch: int, negatives: int, gen: torch.Generator) -> Views:
        self.drawn += 1
        z = torch.randn(2 + negatives, batch, self.input_dim, generator=gen, device=self.device)
        return Views(z[0], z[0] + self.cfg.noise * z[1], z[2:])

    def measure_batch(self, n: int, gen: torch.Generator) -> Plain:
        return Plain(torch.randn(n, self.input_dim, generator=gen, device=self.device))

    def latents(self, batch: Any) -> list[Tensor]:
        raise AssertionError("the checker refuses measurements that need latents")

    def classes(self, batch: Any) -> Tensor:
        raise AssertionError("the checker refuses measurements that need latents")

    def n_classes(self) -> int:
        raise AssertionError("the checker refuses measurements that need latents")

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drawn = int(state["drawn"])


class ToyObjective:
    """No negatives; a linear predictor of its own (trained with the network, starting at the
    identity, so no random draw), a step counter."""

    negatives = 0
    graphable = False

    def __init__(self, cfg: Config, net: torch.nn.Module, parts: Parts) -> None:
        assert isinstance(cfg.loss, ToyLoss)
        self.spread = cfg.loss.spread
        d = cfg.network.widths[-1] if isinstance(cfg.network, schema.MLP) else 1
        self.weight = torch.nn.Parameter(torch.eye(d))
        self.bias = torch.nn.Parameter(torch.zeros(d))
        self.steps = 0
        self.attrs: dict[str, Any] = {"objective": "toy"}

    def loss(self, z: Tensor, inputs: Tensor) -> Tensor:
        assert z.shape[0] == 2 and inputs.shape[:2] == z.shape[:2]  # x and its positive view
        fit = (z[0] @ self.weight.T + self.bias - z[1].detach()).square().mean()
        return fit - self.spread * z[0].var(0).mean()

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.weight, self.bias]

    def optimizer(self) -> torch.optim.Optimizer | None:
        return None

    def after_step(self) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight.detach().clone(),
            "bias": self.bias.detach().clone(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.weight.copy_(state["weight"])
            self.bias.copy_(state["bias"])
        self.steps = int(state["steps"])


@pytest.fixture
def toy_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """`data toy` and `loss toy_align` registered in the front end and the runtime for one test."""
    monkeypatch.setitem(schema.BLOCKS["data"][0], "toy", ToyData)
    monkeypatch.setitem(schema.BLOCKS["loss"][0], "toy_align", ToyLoss)
    monkeypatch.setitem(kinds.SUPPORT["data"], "toy", kinds.Support())
    monkeypatch.setitem(kinds.SUPPORT["loss"], "toy_align", kinds.Support())
    monkeypatch.setitem(source.DATA_SOURCES, "toy", ToySource)
    monkeypatch.setitem(objective.OBJECTIVES, "toy_align", ToyObjective)


TOY = """\
experiment toy {
  seed = 3
  data toy { dim = 6 }
  network mlp { widths = [8, 4] }
  loss toy_align { spread = 0.5 }
  optimizer sgd { lr = 0.05 }
  train {
    batch   = 16
    samples = 64
    epochs  = 3
  }
  measure { weights }
}
"""


def test_toy_kinds_run_end_to_end(toy_kinds, sslspec_cli, write_spec, tmp_path: Path) -> None:
    """The toy spec passes check and runs to a complete store with finite losses and weights, and
    a rerun with --force gives the same arrays bit for bit."""
    spec = write_spec(TOY)
    assert sslspec_cli("check", spec).exit_code == 0
    for _ in range(2):
        result = sslspec_cli("run", spec, "--out", tmp_path / "out", "--force")
        assert result.exit_code == 0, result.stderr + repr(result.exception)
    first, second = (xr.open_zarr(p, consolidated=False) for p in sorted((tmp_path / "out").rglob("v*.zarr")))
    assert first.attrs["status"] == "complete" and first.attrs["epochs_done"] == 3
    assert first["loss"].attrs["objective"] == "toy"
    assert np.isfinite(first["loss"].values).all() and first.sizes["step"] == 3 * 4
    assert np.isfinite(first["weight_norm"].values).all() and first["weight_norm"].dims == ("epoch", "layer")
    for name in first.variables:
        assert np.array_equal(first[name].values, second[name].values, equal_nan=True), name


def test_toy_run_resumes_its_objective_and_source_state(toy_kinds, tmp_path: Path) -> None:
    """A toy run's checkpointed state holds the objective's predictor and step count and the
    source's position, and restoring it into a fresh context gives the same state back."""
    from runtime.context import RunContext
    from runtime.train import Trainer
    from sslspec.spec.lower import lower

    run = lower(tmp_path / "toy.ssl", text=TOY).runs[0]
    ctx = RunContext.build(run, torch.device("cpu"))
    Trainer(ctx).epoch()
    state = ctx.state()
    assert state["objective"]["steps"] == 4 and state["source"] == {"drawn": 4}
    fresh = RunContext.build(run, torch.device("cpu"))
    fresh.restore(state)
    assert fresh.source.state_dict() == {"drawn": 4}
    assert torch.equal(fresh.objective.state_dict()["weight"], state["objective"]["weight"])
    assert torch.equal(Trainer(fresh).step(), Trainer(ctx).step())


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("  measure { weights }", "  measure { latent_correlation }"),
            "12:13",
            "measurement 'latent_correlation' needs a data source with latent variables",
        ),
        (
            ("network mlp { widths = [8, 4] }", "network tree_relu { }"),
            "4:11",
            "network kind 'tree_relu' needs a data source with a latent tree",
        ),
    ],
)
def test_toy_data_refuses_what_it_cannot_provide(
    toy_kinds, sslspec_cli, write_spec, change: tuple[str, str], where: str, message: str
) -> None:
    """With the toy data (no latents, no tree), check refuses a latent measurement and a tree
    network at their positions, exit 2."""
    spec = write_spec(TOY.replace(*change))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{spec}:{where}: error: {message}"), result.stderr
