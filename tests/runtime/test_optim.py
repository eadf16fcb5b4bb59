"""runtime.optim.step takes the same update as torch's own optimizer.step()."""

from __future__ import annotations

import pytest
import torch

from runtime import optim
from sslspec.spec import schema


@pytest.mark.parametrize(
    "cfg",
    [schema.SGD(lr=0.1), schema.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), schema.Adam(lr=0.01)],
    ids=["sgd", "sgd_momentum", "adam"],
)
def test_step_equals_torch_step(cfg: schema.Optimizer) -> None:
    """Three steps through runtime.optim.step leave bit-identical parameters and optimizer state
    to three steps of opt.step() (the reference)."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(4, 5, generator=gen) for _ in range(3)]
    runs = []
    for take_step in (optim.step, lambda o: o.step()):
        p = torch.nn.Parameter(start.clone())
        opt = optim.build_optimizer(cfg, [p])
        for g in grads:
            p.grad = g.clone()
            take_step(opt)
        runs.append((p.detach().clone(), opt.state_dict()["state"]))
    (p1, s1), (p2, s2) = runs
    assert torch.equal(p1, p2)
    assert s1.keys() == s2.keys()
    for i, state in s2.items():
        assert s1[i].keys() == state.keys()
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(s1[i][key]), torch.as_tensor(value)), key
