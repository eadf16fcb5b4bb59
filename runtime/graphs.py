"""A training step captured once as a CUDA graph and replayed: the loop Trainer and ReplicaTrainer share.

On CUDA a step of the small HLTM networks is a few hundred kernel launches of microseconds each,
so the step is bound by launching them, whatever the number of replicas. `StepGraph.run` takes
WARMUP ordinary eager steps on a side stream (the allocator, momentum buffers and lazy state get
made there), captures one step as a CUDA graph and replays it for the rest of the epoch and every
later one: one launch per step. A replay runs the captured step's kernels on the same tensors
(parameters, gradients and momentum buffers are updated in place), and every generator the step
draws from is registered with the graph, so each replay advances its state as an eager step
would and draws the numbers the eager step would draw. Steps whose scalars change between steps
(an lr schedule) are never captured; the caller says so through `capture`. A capture that fails (an
op that cannot be captured) leaves training eager, says why once on stderr and keeps the reason
for the store's provenance.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

WARMUP = 3  # eager steps before a CUDA graph is captured
Step = Callable[[], Tensor]  # one training step's tensor work; its loss
# Why a trainer with an lr schedule is never captured (its reason for staying eager).
SCHEDULED = "an lr schedule (a captured step would replay the lr it was captured with)"


class StepGraph:
    """One captured training step of a trainer on `device`, drawing from `generators`."""

    def __init__(self, device: torch.device, generators: Sequence[torch.Generator]) -> None:
        self.device = device
        self.generators = list(generators)
        self.graph: Any = None
        self.loss: Tensor | None = None  # the captured step's loss: rewritten by every replay
        self.error = ""  # why a capture failed ('' when none did)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def mode(self, why_eager: str) -> str:
        """How the steps ran, for the store's provenance: 'cuda graph', or 'eager (why)' given the
        trainer's reason for not capturing (`why_eager`, '' when it could)."""
        if self.graph is not None:
            return "cuda graph"
        return f"eager ({self.error or why_eager or f'epochs of at most {WARMUP} steps are not captured'})"

    def run(
        self,
        losses: Tensor,
        eager: Step,
        body: Step,
        count: Callable[[], None],
        capture: bool,
        reset: Callable[[], None] = lambda: None,
    ) -> None:
        """Fill `losses` (steps, ...) with one step's loss per row, on the device, no sync per step.

        `eager` is one whole step, counted; `body` its tensor work alone, no counting, what gets
        captured; `count` counts a replayed step; `reset` sets every gradient to None just before
        the capture, so that the captured backward allocates them from the graph's own memory
        instead of adding into tensors made outside it. With `capture` and more than WARMUP steps,
        the first capture happens in this call; the warm-up steps are ordinary training steps and
        count towards the rows."""
        steps, done = losses.shape[0], 0
        if self.graph is None and capture and not self.error and steps > WARMUP:
            done = self._capture(losses, eager, body, reset)
        if self.graph is not None:
            assert self.loss is not None
            for i in range(done, steps):
                self.graph.replay()
                count()
                losses[i] = self.loss
            return
        for i in range(done, steps):
            losses[i] = eager()

    def _capture(self, losses: Tensor, eager: Step, body: Step, reset: Callable[[], None]) -> int:
        """Run WARMUP eager steps on a side stream, then capture one step; return the steps done."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for i in range(WARMUP):
                losses[i] = eager()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            if self.generators and not hasattr(graph, "register_generator_state"):
                raise RuntimeError("this torch cannot register generators with a graph")
            for gen in self.generators:
                graph.register_generator_state(gen)
            reset()
            with torch.cuda.graph(graph):
                self.loss = body()
        except Exception as exc:  # an op that cannot be captured: stay eager, and say so once
            print(
                f"sslspec: CUDA graph capture failed ({type(exc).__name__}: {exc}); training eagerly",
                file=sys.stderr,
            )
            self.loss, self.error = None, f"capture failed: {type(exc).__name__}: {str(exc)[:200]}"
            reset()
            return WARMUP
        self.graph = graph
        return WARMUP
