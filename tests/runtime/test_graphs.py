"""The capture-and-replay loop of runtime.graphs, driven on the CPU through a stand-in for CUDA.

A real CUDA graph needs a GPU (benchmarks/gpu_check.py and gpu_replicas_check.py check it there).
What these tests check is the loop around it, which is the same code on any device: the warm-up
steps, counting, where each step's loss lands, which generators are registered, that gradients
are dropped before the capture, and the fall back to eager steps when a capture fails. The stand-in
behaves as a capture does: capturing runs nothing (the step's effects are undone), and each replay
runs the captured step once more, writing its loss into the tensor the capture returned. With it,
the steps of both trainers must equal their eager steps bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_run import TINY

from runtime.context import RunContext
from runtime.replicas import ReplicaTrainer
from runtime.train import Trainer
from sslspec.spec.lower import lower

CPU = torch.device("cpu")


class Capture(Exception):
    """The stand-in's refusal to capture (what an op that cannot be captured raises)."""


def fake_cuda(
    monkeypatch: pytest.MonkeyPatch, trainer: Any, step: Callable[[], torch.Tensor], fail: bool
) -> Any:
    """Put a CPU stand-in for torch.cuda's streams and graphs in place for `trainer`, whose captured
    step is `step`; return its record (the generators registered, the gradients at capture)."""
    graphs = trainer.graph if isinstance(trainer, ReplicaTrainer) else trainer._graph
    state = replica_state(trainer) if isinstance(trainer, ReplicaTrainer) else single_state(trainer)
    seen: dict[str, Any] = {"generators": [], "grads_at_capture": None}

    class Graph:
        def register_generator_state(self, gen: torch.Generator) -> None:
            seen["generators"].append(gen)

        def replay(self) -> None:
            # The captured backward wrote gradients it had allocated itself (they were None at
            # capture), so each replay overwrites them: the stand-in drops them first.
            trainer._drop_grads()
            graphs.loss.copy_(step())  # into the loss tensor the capture returned

    @contextlib.contextmanager
    def graph(g: Any) -> Iterator[None]:
        if fail:
            raise Capture("this op cannot be captured")
        seen["grads_at_capture"] = state()[2]()
        save, restore, _ = state()
        kept = save()
        yield  # the trainer runs its step here, as torch.cuda.graph records it
        restore(kept)  # a real capture runs nothing: undo the step's effects

    class Stream:
        def __init__(self, *args: Any) -> None:
            pass

        def wait_stream(self, other: Any) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    return seen


def runs(tmp_path: Path, n: int) -> list[Any]:
    """n runs of the tiny reference (seeds 1..n, momentum, so a step changes buffers too)."""
    spec = tmp_path / "g.ssl"
    spec.write_text(TINY)
    return [lower(spec, [f"seed={s}", "optimizer.momentum=0.9"]).runs[0] for s in range(1, n + 1)]


def replica_state(trainer: ReplicaTrainer) -> Callable[[], Any]:
    def save() -> Any:
        return (
            [p.detach().clone() for p in trainer.opt.params],
            [None if b is None else b.clone() for b in trainer.opt.bufs],
            [c.gens["data"].get_state() for c in trainer.ctxs],
        )

    def restore(kept: Any) -> None:
        params, bufs, gens = kept
        with torch.no_grad():
            for p, q in zip(trainer.opt.params, params, strict=True):
                p.copy_(q)
            for b, q in zip(trainer.opt.bufs, bufs, strict=True):
                if b is not None:
                    b.copy_(q)
        for c, g in zip(trainer.ctxs, gens, strict=True):
            c.gens["data"].set_state(g)

    grads = lambda: [p.grad for p in trainer.opt.params]
    return lambda: (save, restore, grads)


def single_state(trainer: Trainer) -> Callable[[], Any]:
    params = list(trainer.net.parameters())

    def save() -> Any:
        bufs = [trainer.opt.state[p].get("momentum_buffer") for p in params]
        return (
            [p.detach().clone() for p in params],
            [None if b is None else b.clone() for b in bufs],
            (trainer.gen.get_state()),
        )

    def restore(kept: Any) -> None:
        values, bufs, gen = kept
        with torch.no_grad():
            for p, v, b in zip(params, values, bufs, strict=True):
                p.copy_(v)
                if b is not None:
                    trainer.opt.state[p]["momentum_buffer"].copy_(b)
        trainer.gen.set_state(gen)

    grads = lambda: [p.grad for p in params]
    return lambda: (save, restore, grads)


def test_a_replayed_replica_group_equals_its_eager_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Three replicas over two epochs: captured after 3 warm-up steps and replayed, the group's
    losses, parameters and step counts equal the eager group's bit for bit; every replica's data
    generator is registered, gradients are None at capture, and the stores would say 'cuda graph'."""
    group = runs(tmp_path, 3)
    eager = ReplicaTrainer([RunContext.build(r, CPU) for r in group])
    want = torch.cat([eager.epoch(), eager.epoch()], dim=1)
    graphed = ReplicaTrainer([RunContext.build(r, CPU) for r in group])
    monkeypatch.setattr(graphed, "why_eager", lambda: "")
    seen = fake_cuda(monkeypatch, graphed, graphed._step, fail=False)
    got = torch.cat([graphed.epoch(), graphed.epoch()], dim=1)
    assert torch.equal(got, want)
    for p, q in zip(graphed.opt.params, eager.opt.params, strict=True):
        assert torch.equal(p, q)
    assert [c.steps for c in graphed.ctxs] == [c.steps for c in eager.ctxs] == [40] * 3
    assert seen["generators"] == [c.gens["data"] for c in graphed.ctxs]
    assert seen["grads_at_capture"] == [None] * len(graphed.opt.params)
    assert graphed.mode() == "cuda graph"


def test_a_replayed_run_equals_its_eager_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The unbatched Trainer through the same loop: two epochs captured and replayed equal the
    eager epochs bit for bit (losses, parameters, step count), with its data generator registered
    and its gradients dropped before the capture."""
    run = runs(tmp_path, 1)[0]
    eager = Trainer(RunContext.build(run, CPU))
    want = torch.cat([eager.epoch(), eager.epoch()])
    graphed = Trainer(RunContext.build(run, CPU))
    monkeypatch.setattr(graphed, "_why_eager", lambda: "")
    seen = fake_cuda(monkeypatch, graphed, graphed._captured, fail=False)
    assert torch.equal(torch.cat([graphed.epoch(), graphed.epoch()]), want)
    for p, q in zip(graphed.net.parameters(), eager.net.parameters(), strict=True):
        assert torch.equal(p, q)
    assert graphed.ctx.steps == eager.ctx.steps == 40
    assert seen["generators"] == [graphed.gen] and all(g is None for g in seen["grads_at_capture"])
    assert graphed.mode() == "cuda graph"


def test_a_failed_capture_trains_eagerly_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the capture raises, the group goes on with eager steps, equal to the eager group's bit
    for bit, says so once on stderr, records why in its mode, and never tries again."""
    group = runs(tmp_path, 2)
    eager = ReplicaTrainer([RunContext.build(r, CPU) for r in group])
    want = torch.cat([eager.epoch(), eager.epoch()], dim=1)
    graphed = ReplicaTrainer([RunContext.build(r, CPU) for r in group])
    monkeypatch.setattr(graphed, "why_eager", lambda: "")
    fake_cuda(monkeypatch, graphed, graphed._step, fail=True)
    assert torch.equal(torch.cat([graphed.epoch(), graphed.epoch()], dim=1), want)
    assert (
        capsys.readouterr().err.count("CUDA graph capture failed (Capture: this op cannot be captured)") == 1
    )
    assert graphed.mode() == "eager (capture failed: Capture: this op cannot be captured)"
