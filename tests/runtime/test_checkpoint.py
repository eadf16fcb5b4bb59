"""runtime.checkpoint and the store's versions, without training: what `sslspec run` decides for
each state a run's versions can be in, and that a checkpoint puts back exactly what it saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime import checkpoint
from runtime.checkpoint import Action, decide
from runtime.context import RunContext
from runtime.train import Trainer
from sslspec.spec.lower import lower
from sslspec.store.layout import checkpoint_path, versions
from sslspec.store.write import RunStore, claim_version

SPEC = """experiment a {
  data hltm { depth = 2 }
  network tree_relu { width = 2 }
  loss simple { beta = 0 }
  optimizer sgd { lr = 0.1; momentum = 0.5 }
  train { batch = 4; samples = 8; epochs = 3 }
}
"""
RUN = lower("a.ssl", text=SPEC).runs[0]


def version(root: Path, status: str, run_hash: str = RUN.hash, done: int = 3) -> Path:
    """Claim the run's next version and give it a status, a hash and its epochs done (no arrays)."""
    path = claim_version(root, RUN.experiment, RUN.id)
    RunStore(path, {"status": status, "run_hash": run_hash, "epochs_done": done})
    return path


def trained() -> RunContext:
    """The run's context after one SGD-with-momentum step (so the optimizer has state) and a draw
    from the measure stream (so both generators have moved)."""
    ctx = RunContext.build(RUN, torch.device("cpu"))
    Trainer(ctx).step()
    torch.rand(2, generator=ctx.gens["measure"])
    return ctx


def save(path: Path, epoch: int, run_hash: str = RUN.hash) -> None:
    checkpoint.save(path, run_hash, epoch, trained().state(), wall=12.5)


def test_claimed_versions_are_numbered_in_order_and_never_reused(tmp_path: Path) -> None:
    """v0001, v0002, ... in order; a version removed from the middle is not claimed again."""
    a, b, c = (claim_version(tmp_path, "e", "r") for _ in range(3))
    assert [p.name for p in (a, b, c)] == ["v0001.zarr", "v0002.zarr", "v0003.zarr"]
    b.rmdir()
    assert claim_version(tmp_path, "e", "r").name == "v0004.zarr"
    assert [p.name for _, p in versions(tmp_path / "e" / "r")] == ["v0001.zarr", "v0003.zarr", "v0004.zarr"]


def test_checkpoint_restores_every_state_it_saved(tmp_path: Path) -> None:
    """load -> RunContext.restore into a fresh context gives the same weights, momentum, generator
    streams, epoch and wall time."""
    path = version(tmp_path, "running")
    ctx = trained()
    checkpoint.save(path, RUN.hash, 2, ctx.state(), wall=12.5)
    want = {name: g.clone_state().get_state() for name, g in ctx.gens.items()}
    fresh = RunContext.build(RUN, torch.device("cpu"))
    loaded, note = checkpoint.load(path, RUN.hash, 2)
    assert loaded is not None and note == "" and loaded["epoch"] == 2 and loaded["wall"] == 12.5
    fresh.restore(loaded)
    net, fresh_net, opt, fresh_opt = ctx.net, fresh.net, ctx.opt, fresh.opt
    for a, b in zip(net.parameters(), fresh_net.parameters(), strict=True):
        assert torch.equal(a, b)
    for p, q in zip(net.parameters(), fresh_net.parameters(), strict=True):
        assert torch.equal(opt.state[p]["momentum_buffer"], fresh_opt.state[q]["momentum_buffer"])
    for name, g in fresh.gens.items():
        assert torch.equal(g.get_state(), want[name])
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ctx.gens[name]))


def test_checkpoint_of_another_run_ahead_of_its_store_or_torn_is_not_loaded(tmp_path: Path) -> None:
    """A checkpoint of another run hash, one after more epochs than the store has done (the epoch
    count's boundary: equal is fine), or a file that is not one, loads as None with the reason."""
    path = version(tmp_path, "running")
    assert checkpoint.load(path, RUN.hash, 2) == (None, "")  # none there
    save(path, 1, run_hash="other")
    assert "checkpoint of another run" in checkpoint.load(path, RUN.hash, 2)[1]
    save(path, 2)
    assert checkpoint.load(path, RUN.hash, 2)[0] is not None
    assert checkpoint.load(path, RUN.hash, 1) == (
        None,
        f"{checkpoint_path(path)}: checkpoint after epoch 2, but its store has 1 done",
    )
    checkpoint_path(path).write_bytes(b"not a checkpoint")
    note = checkpoint.load(path, RUN.hash, 2)[1]
    head = f"{checkpoint_path(path)}: unreadable checkpoint (UnpicklingError: "
    assert note.startswith(head) and note.endswith(")")
    assert len(note) == len(head) + 120 + 1  # torch's long message cut to its first 120 characters
    checkpoint.remove(path)
    assert not checkpoint_path(path).exists()
    checkpoint.remove(path)  # nothing there: not an error


UNPICKLED: list[str] = []


def _unpickled() -> None:
    UNPICKLED.append("code ran")


class Payload:
    """An object whose unpickling calls a function: what a weights-only load refuses to build."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_unpickled, ())


def test_a_checkpoint_holding_arbitrary_objects_is_refused_without_running_them(tmp_path: Path) -> None:
    """A checkpoint file with every key of one but a pickled object inside is unreadable (loaded
    weights-only, whatever torch's default), and the object's code never runs."""
    path = version(tmp_path, "running")
    state = {"run_hash": RUN.hash, "epoch": 1, "net": {}, "opt": {}, "generators": {}, "x": Payload()}
    torch.save(state, checkpoint_path(path))
    loaded, note = checkpoint.load(path, RUN.hash, 2)
    assert loaded is None and note.startswith(
        f"{checkpoint_path(path)}: unreadable checkpoint (UnpicklingError"
    )
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("states", "force", "want"),
    [
        ([], False, ("run", None, 0)),
        ([("complete", None)], False, ("up to date", 1, 0)),
        ([("complete", None)], True, ("run", None, 0)),
        ([("complete", None), ("running", 2)], False, ("up to date", 1, 0)),  # a complete one wins
        ([("running", 2)], False, ("resume", 1, 2)),
        ([("running", 2), ("running", 1)], False, ("resume", 2, 1)),  # the newest version only
        ([("running", 2), ("running", None)], False, ("run", None, 0)),
        ([("running", None)], False, ("run", None, 0)),
        ([("failed", 2)], False, ("run", None, 0)),
        ([("complete*", None)], False, ("run", None, 0)),  # complete, but of another plan
        ([("running*", 2)], False, ("run", None, 0)),  # running with another run's checkpoint
        ([("running!", 2)], False, ("run", None, 0)),  # a checkpoint ahead of its store
    ],
    ids=[
        "nothing",
        "complete",
        "force",
        "complete_then_killed",
        "killed",
        "newest_killed",
        "newest_without_checkpoint",
        "no_checkpoint",
        "failed",
        "other_hash",
        "foreign_checkpoint",
        "checkpoint_ahead",
    ],
)
def test_decide(tmp_path: Path, states: list[tuple[str, int | None]], force: bool, want: tuple) -> None:
    """Each combination of version states gives the documented action, version and epoch."""
    paths = []
    for status, epoch in states:
        other, ahead = status.endswith("*"), status.endswith("!")
        run_hash = "x" if other and epoch is None else RUN.hash
        path = version(tmp_path, status.rstrip("*!"), run_hash=run_hash, done=1 if ahead else 3)
        if epoch is not None:
            save(path, epoch, run_hash="x" if other else RUN.hash)
        paths.append(path)
    action = decide(tmp_path, RUN, force)
    kind, index, epoch = want
    assert (action.kind, action.path, action.epoch) == (kind, paths[index - 1] if index else None, epoch)
    assert (action.state is not None) == (kind == "resume")
    # a note exactly when the newest version has a checkpoint that cannot be used
    refused = bool(states) and states[-1][0] in ("running*", "running!")
    assert bool(action.note) == refused, action.note


def test_describe_says_what_a_dry_run_would_do(tmp_path: Path) -> None:
    """--dry-run lines name the run, the version and the epoch it would resume after."""
    path = tmp_path / "v0001.zarr"
    assert Action("run").describe(RUN) == f"would run: {RUN.id}"
    assert Action("up to date", path).describe(RUN) == f"up to date: {RUN.id} ({path})"
    resume = Action("resume", path, 2).describe(RUN)
    assert resume == f"would resume: {RUN.id} ({path}, after epoch 2 of 3)"
