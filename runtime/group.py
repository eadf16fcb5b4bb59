"""A replica-batched group of jobs: run several runs that share every shape as one batched model.

`plan_groups` cuts the driver's jobs into units: runs with the same `runtime.replicas.group_key`
form groups of at most `replicas` (fewer when more workers are to share them), every other run is
a unit of its own. `run_group` runs one unit whose runs' locks the caller holds and yields each
run's outcome as it ends. Per run it decides as `runtime.job.run_job` does: an up-to-date run is
skipped; a run that cannot batch, or whose checkpoint was written by an unbatched execution,
runs unbatched (run_job); every other run (a new version, or one resumed from a batched
checkpoint) trains batched, even alone, with the runs resuming after the same epoch in one group.
On the CPU the batched arrays are the unbatched ones bit for bit (runtime.replicas), so the path
taken never changes a number there; the rule keeps a resume on the path its run started on.

Each replica is its run: its own context (tree, initialization, generators from its seeds), its
own store, written by the same Recorder, and its own checkpoint after every epoch, which holds
its own state in the unbatched format plus `replicas` (the group it ran in, and its size). The
store's attrs record the group too (`replica_group`); neither is part of the run's hash.
Measurements run per replica, unbatched, on the replica's own network after `sync()`.
A replica whose loss or measurement is not finite, or whose store cannot be written, fails alone:
it is marked failed in its own store and the group goes on without it.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from runtime import checkpoint
from runtime.checkpoint import Action, decide
from runtime.context import RunContext
from runtime.job import (
    Emit,
    EpochDone,
    Job,
    Outcome,
    Started,
    _failed,
    _measure,
    _note_resume,
    _quietly,
    provenance,
    run_job,
)
from runtime.layout import Layout
from runtime.measurements import NetNodes
from runtime.record import Recorder, measure_epochs
from runtime.replicas import ReplicaTrainer, batchable, group_key
from sslspec import faults
from sslspec.spec import schema
from sslspec.store.layout import Status
from sslspec.store.location import Place
from sslspec.store.write import claim_version

MARK = "replicas"  # the checkpoint entry of a batched execution


def plan_groups(jobs: Sequence[Job], replicas: int, workers: int = 1) -> list[list[int]]:
    """Job indices in units (see the module docstring), in the order of their first job. With
    `replicas` 1 every job is its own unit. A key's runs are split into groups of at most
    `replicas`, and into at least as many groups as there are `workers` (when it has as many runs)."""
    if replicas <= 1:
        return [[i] for i in range(len(jobs))]
    buckets: dict[str, list[int]] = defaultdict(list)
    units: list[list[int]] = []
    for i, job in enumerate(jobs):
        key = group_key(job.run, job.device)
        if key is None:
            units.append([i])
        else:
            if key not in buckets:
                units.append(buckets[key])  # filled in place; cut below
            buckets[key].append(i)
    out: list[list[int]] = []
    for unit in units:
        n = max(math.ceil(len(unit) / replicas), min(workers, len(unit)))
        size = math.ceil(len(unit) / n)
        out += [unit[k : k + size] for k in range(0, len(unit), size)]
    return out


# The largest group by default, per device type: on the CPU the gain per run-sample peaked at 16
# and fell at 64 (benchmarks/replicas.py: activations outgrow the cache); a GPU is launch-bound
# far beyond (a guess: untested here).
MAX_REPLICAS = {"cpu": 16, "cuda": 256}
MEMORY_SHARE = 0.25  # of the free memory a group's training step may take


def auto_replicas(jobs: Sequence[Job]) -> int:
    """The default largest group for `jobs`: MAX_REPLICAS of their device, fewer when a step of
    that many replicas of their largest network would take more than MEMORY_SHARE of the free
    memory (the GPU's, or the machine's for the CPU)."""
    cuda = [job.device for job in jobs if job.device.startswith("cuda")]
    free = _free_bytes(torch.device(cuda[0]) if cuda else None)
    need = max((step_bytes(job.run.config) for job in jobs if batchable(job.run.config)), default=1)
    fit = int(free * MEMORY_SHARE // max(need, 1))
    return max(1, min(MAX_REPLICAS["cuda" if cuda else "cpu"], fit))


def step_bytes(cfg: schema.Config) -> int:
    """A generous estimate of one replica's memory in a training step of a batchable `cfg`:
    parameters, gradients, momentum and the stacked copies (4 values per weight), and per view
    and example every unit's input, pre-activation, activation and their gradients (8 each)."""
    assert isinstance(cfg.data, schema.HLTM) and cfg.data.tree is not None, cfg.data
    layout = Layout.from_shape(cfg.data.tree, cfg.data.states)
    nodes = NetNodes.of(cfg, layout, layout.n_leaves)
    params = sum(w * f for w, f in zip(nodes.widths, nodes.fan_in, strict=True))
    views = 2 + getattr(cfg.loss, "negatives", 1)
    return 4 * (4 * params + 8 * views * cfg.train.batch * (sum(nodes.widths) + layout.n_leaves))


def _free_bytes(device: torch.device | None) -> int:
    if device is not None:
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def batched_state(action: Action) -> bool:
    """Whether a resume's checkpoint was written by a batched execution."""
    return action.state is not None and MARK in action.state


def run_group(
    jobs: Sequence[Job], emits: Sequence[Emit], batched: bool = True
) -> Iterator[tuple[int, Outcome]]:
    """Run the jobs of one unit (the caller holds their locks); yield (position, outcome) as each
    ends. With `batched` False (replica batching off) each job runs alone, unbatched."""
    if not batched:
        for k, job in enumerate(jobs):
            yield k, run_job(job, emits[k])
        return
    by_start: dict[int, list[tuple[int, Action]]] = defaultdict(list)
    for k, job in enumerate(jobs):
        if not batchable(job.run.config):  # a unit of its own: the unbatched job
            yield k, run_job(job, emits[k])
            continue
        action = decide(job.out, job.run, job.force)
        if action.kind == "up to date":
            yield k, Outcome("up to date", action.path, f"up to date: {job.run.id} ({action.path})")
        elif action.kind == "resume" and not batched_state(action):
            yield k, run_job(job, emits[k])  # an unbatched checkpoint continues unbatched
        else:
            by_start[action.epoch if action.kind == "resume" else 0].append((k, action))
    for first, members in sorted(by_start.items()):
        yield from _Group([(k, jobs[k], a, emits[k]) for k, a in members], first).run()


@dataclass
class _Replica:
    """One run of a batched group: its job, context, store and where it stands."""

    k: int  # position in the unit
    job: Job
    emit: Emit
    ctx: RunContext
    started: float
    path: Place | None = None
    rec: Recorder | None = None


class _Group:
    """The runs of one unit that start after the same epoch, trained as one ReplicaTrainer."""

    def __init__(self, members: list[tuple[int, Job, Action, Emit]], first: int) -> None:
        self.first = first
        runs = sorted(job.run.hash for _, job, _, _ in members)
        self.info = {
            "group": hashlib.sha256(" ".join(runs).encode()).hexdigest()[:12],
            "size": len(members),
        }
        self.members = members
        self.done: list[tuple[int, Outcome]] = []

    def run(self) -> Iterator[tuple[int, Outcome]]:
        started = (self._start(i, *member) for i, member in enumerate(self.members))
        self.live = [r for r in started if r is not None]
        yield from self._flush()
        try:
            yield from self._train()
        except Exception as exc:  # a failure of the batched step itself fails every replica left
            for r in self.live:
                self.done.append((r.k, _failed(r.job, r.path, r.rec, exc, time.perf_counter() - r.started)))
        yield from self._flush()

    def _train(self) -> Iterator[tuple[int, Outcome]]:
        """Epochs `first`.. of the live replicas, measuring and checkpointing each as run_job does."""
        live = self.live
        if not live:
            return
        cfg = live[0].ctx.cfg
        epochs = measure_epochs(cfg)
        trainer = ReplicaTrainer([r.ctx for r in live])
        for epoch in range(self.first, cfg.train.epochs + 1):
            if epoch in epochs:
                trainer.sync()
                measured = [self._guard(r, lambda r=r, e=epoch: self._measure(r, e)) for r in live]
                live = self.live = [r for r, ok in zip(live, measured, strict=True) if ok]
            if epoch == cfg.train.epochs or not live:
                break
            if len(live) < len(trainer.ctxs):  # a replica failed: the group goes on without it
                trainer = ReplicaTrainer([r.ctx for r in live])
            yield from self._flush()
            t0 = time.perf_counter()
            losses = trainer.epoch()  # (R, steps)
            rate = len(live) * cfg.train.samples / (time.perf_counter() - t0)
            trainer.sync()
            kept = []
            mode = trainer.mode() if epoch == self.first else None  # known after the first epoch
            for r, loss in zip(live, losses, strict=True):
                if self._guard(r, partial(self._epoch_done, r, epoch, loss, rate, mode)):
                    kept.append(r)
            live = self.live = kept
            if len(live) < len(trainer.ctxs) and live:
                trainer = ReplicaTrainer([r.ctx for r in live])
            yield from self._flush()
        self.live = []
        for r in live:
            self._finish(r)

    def _flush(self) -> Iterator[tuple[int, Outcome]]:
        done, self.done = self.done, []
        yield from done

    def _start(self, index: int, k: int, job: Job, action: Action, emit: Emit) -> _Replica | None:
        """Build replica `index`'s context and open its store (resumed or new, recording the group
        it trains in now); None when that failed."""
        started = time.perf_counter()
        r = _Replica(k, job, emit, RunContext.build(job.run, torch.device(job.device)), started)
        info = {**self.info, "index": index}

        def open_store() -> None:
            if action.kind == "resume" and action.path is not None and action.state:
                r.path = action.path
                r.ctx.restore({key: v for key, v in action.state.items() if key != MARK})
                r.started -= float(action.state["wall"])
                r.rec = Recorder.reopen(r.path, r.ctx, job.files)
                _note_resume(r.rec, self.first, job.origin.get("command", ""))
                r.rec.store.update_attrs(replica_group=info)
            else:
                r.path = claim_version(job.out, job.run.experiment, job.run.id, job.files)
                prov = {**provenance(job, r.ctx.device), "replica_group": info}
                r.rec = Recorder(r.path, job.spec, r.ctx, prov, job.files)
            emit(Started(job.run, r.path, job.run.config.train.epochs, self.first, action.note, self.info))

        return r if self._guard(r, open_store) else None

    def _guard(self, r: _Replica, step: Any) -> bool:
        """Run one step of a replica; on an exception fail that replica alone (False)."""
        try:
            step()
        except Exception as exc:
            self.done.append((r.k, _failed(r.job, r.path, r.rec, exc, time.perf_counter() - r.started)))
            return False
        return True

    def _measure(self, r: _Replica, epoch: int) -> None:
        assert r.rec is not None
        epochs = r.rec.epochs
        _measure(r.ctx, r.rec, epochs.index(epoch), epoch)

    def _epoch_done(
        self, r: _Replica, epoch: int, losses: torch.Tensor, rate: float, mode: str | None
    ) -> None:
        """What Trainer-based jobs do after an epoch, for one replica: its losses, how the steps
        ran (`mode`, after this process's first epoch), the finiteness check, its epochs_done and
        its checkpoint (with the group mark)."""
        assert r.rec is not None and r.path is not None
        r.rec.losses(epoch, losses)
        if mode is not None:
            r.rec.store.update_attrs(training=mode)
        faults.moment("mid-epoch")
        if not torch.isfinite(losses).all():
            bad = int((~torch.isfinite(losses)).nonzero()[0])
            raise FloatingPointError(
                f"training loss became {float(losses[bad])} at epoch {epoch + 1}, step {bad + 1}"
            )
        r.rec.epoch_done(epoch + 1)
        wall = time.perf_counter() - r.started
        state = {**r.ctx.state(), MARK: dict(self.info)}
        checkpoint.save(r.path, r.job.run.hash, epoch + 1, state, wall, r.job.files)
        r.emit(EpochDone(epoch + 1, rate, float(losses.mean())))

    def _finish(self, r: _Replica) -> None:
        assert r.rec is not None and r.path is not None
        rec, path = r.rec, r.path
        wall = time.perf_counter() - r.started
        try:
            rec.finish(Status.COMPLETE, wall)
        except Exception as exc:
            self.done.append((r.k, _failed(r.job, path, rec, exc, wall)))
            return
        _quietly(lambda: checkpoint.remove(path, r.job.files))
        self.done.append((r.k, Outcome(Status.COMPLETE, path, rec.summary(wall))))
