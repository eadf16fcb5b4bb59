"""Checkpoints and the choice, per run, of running, resuming or skipping.

After each finished epoch a run writes `vNNNN.ckpt.pt` next to its store: the network's and the
optimizer's state, every generator that is still drawn from (data and measure; the tree and init
streams are used only at the start and are re-derived from their seeds), the epochs done, the wall
time so far and the run hash. A later `sslspec run` that finds the newest version of a run still
`running` (its process was killed: it holds no run lock) with a readable checkpoint continues that
version from the next epoch, which gives the same arrays bit for bit as an uninterrupted run.
Under a URL root the checkpoint is written with fsspec (a temp name, then a move).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runtime.store import read_attrs, run_dir, versions
from sslspec import faults
from sslspec.spec.plan import Run
from sslspec.store.location import Place

SUFFIX = ".ckpt.pt"


def checkpoint_path(version: Place) -> Place:
    """`.../v0003.zarr` -> `.../v0003.ckpt.pt`."""
    return version.with_name(version.name.removesuffix(".zarr") + SUFFIX)


def save(
    version: Place,
    run_hash: str,
    epoch: int,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    gens: dict[str, torch.Generator],
    wall: float,
) -> None:
    """Write the state after `epoch` finished epochs (a temp file, then an atomic rename)."""
    path = checkpoint_path(version)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    state = {
        "run_hash": run_hash,
        "epoch": epoch,
        "wall": wall,
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "generators": {name: g.get_state() for name, g in gens.items()},
    }
    if isinstance(tmp, Path):
        torch.save(state, tmp)
        faults.moment("checkpoint")
        os.replace(tmp, path)
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        tmp.write_bytes(buffer.getvalue())
        faults.moment("checkpoint")
        tmp.replace(path)  # type: ignore[arg-type]


def load(version: Place, run_hash: str) -> dict[str, Any] | None:
    """The checkpoint of a version, or None when it is missing, unreadable or of another run."""
    path = checkpoint_path(version)
    try:
        source = path if isinstance(path, Path) else io.BytesIO(path.read_bytes())
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: the run starts a clean version instead
        return None
    return state if isinstance(state, dict) and state.get("run_hash") == run_hash else None


def restore(
    state: dict[str, Any], net: torch.nn.Module, opt: torch.optim.Optimizer, gens: dict[str, torch.Generator]
) -> None:
    """Put a checkpoint's states back into a freshly built network, optimizer and generators."""
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    for name, g in gens.items():
        g.set_state(state["generators"][name])


def remove(version: Place) -> None:
    checkpoint_path(version).unlink(missing_ok=True)


@dataclass(frozen=True)
class Action:
    """What `sslspec run` does with one run: `run` a new version, `resume` `path` from `epoch`,
    or nothing because `path` is an `up to date` complete version."""

    kind: str
    path: Place | None = None
    epoch: int = 0
    state: dict[str, Any] | None = None

    def describe(self, run: Run) -> str:
        """One line for --dry-run."""
        if self.kind == "up to date":
            return f"up to date: {run.id} ({self.path})"
        if self.kind == "resume":
            of = run.config.train.epochs
            return f"would resume: {run.id} ({self.path}, after epoch {self.epoch} of {of})"
        return f"would run: {run.id}"


def decide(out: Place, run: Run, force: bool) -> Action:
    """Skip a run with a complete version (unless `force`); resume its newest version when that is
    `running` with a checkpoint; otherwise run a new version. Call it holding the run's lock (or
    for a dry run), so that a `running` version is a killed one."""
    found = [(v, read_attrs(v)) for v in versions(run_dir(out, run.experiment, run.id))]
    if force:
        return Action("run")
    for v, at in reversed(found):
        if at.get("status") == "complete" and at.get("run_hash") == run.hash:
            return Action("up to date", v)
    if found:
        v, at = found[-1]
        state = load(v, run.hash) if at.get("status") == "running" else None
        if state is not None:
            return Action("resume", v, int(state["epoch"]), state)
    return Action("run")
