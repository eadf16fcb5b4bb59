"""runtime.checkpoint and the store's versions, without training: what `sslspec run` decides for
each state a run's versions can be in, and that a checkpoint puts back exactly what it saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime import checkpoint
from runtime.checkpoint import Action, decide
from runtime.store import RunStore, claim_version, versions
from sslspec.spec.lower import lower

SPEC = """experiment a {
  data hltm { depth = 2 }
  network tree_relu { width = 2 }
  loss simple { beta = 0 }
  optimizer sgd { lr = 0.1; momentum = 0.5 }
  train { batch = 4; samples = 8; epochs = 3 }
}
"""
RUN = lower("a.ssl", text=SPEC).runs[0]


def version(root: Path, status: str, run_hash: str = RUN.hash) -> Path:
    """Claim the run's next version and give it a status and a hash (no arrays)."""
    path = claim_version(root, RUN.experiment, RUN.id)
    RunStore(path, {"status": status, "run_hash": run_hash})
    return path


def state(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict[str, torch.Generator]]:
    """A small module after one SGD-with-momentum step (so the optimizer has state), and generators."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    gens = {
        "data": torch.Generator().manual_seed(seed + 1),
        "measure": torch.Generator().manual_seed(seed + 2),
    }
    return net, opt, gens


def save(path: Path, epoch: int, run_hash: str = RUN.hash) -> None:
    net, opt, gens = state()
    checkpoint.save(path, run_hash, epoch, net, opt, gens, wall=12.5)


def test_claimed_versions_are_numbered_in_order_and_never_reused(tmp_path: Path) -> None:
    """v0001, v0002, ... in order; a version removed from the middle is not claimed again."""
    a, b, c = (claim_version(tmp_path, "e", "r") for _ in range(3))
    assert [p.name for p in (a, b, c)] == ["v0001.zarr", "v0002.zarr", "v0003.zarr"]
    b.rmdir()
    assert claim_version(tmp_path, "e", "r").name == "v0004.zarr"
    assert [p.name for p in versions(tmp_path / "e" / "r")] == ["v0001.zarr", "v0003.zarr", "v0004.zarr"]


def test_checkpoint_restores_every_state_it_saved(tmp_path: Path) -> None:
    """load -> restore into fresh objects gives the same weights, momentum, generator streams, epoch
    and wall time."""
    path = version(tmp_path, "running")
    net, opt, gens = state()
    checkpoint.save(path, RUN.hash, 2, net, opt, gens, wall=12.5)
    want = {name: g.clone_state().get_state() for name, g in gens.items()}
    fresh_net, fresh_opt, fresh_gens = state(seed=7)
    loaded = checkpoint.load(path, RUN.hash)
    assert loaded is not None and loaded["epoch"] == 2 and loaded["wall"] == 12.5
    checkpoint.restore(loaded, fresh_net, fresh_opt, fresh_gens)
    for a, b in zip(net.parameters(), fresh_net.parameters(), strict=True):
        assert torch.equal(a, b)
    for p, q in zip(net.parameters(), fresh_net.parameters(), strict=True):
        assert torch.equal(opt.state[p]["momentum_buffer"], fresh_opt.state[q]["momentum_buffer"])
    for name, g in fresh_gens.items():
        assert torch.equal(g.get_state(), want[name])
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=gens[name]))


def test_checkpoint_of_another_run_or_torn_is_not_loaded(tmp_path: Path) -> None:
    """A checkpoint with another run hash, or a file that is not one, loads as None; removing it works."""
    path = version(tmp_path, "running")
    save(path, 1, run_hash="other")
    assert checkpoint.load(path, RUN.hash) is None
    checkpoint.checkpoint_path(path).write_bytes(b"not a checkpoint")
    assert checkpoint.load(path, RUN.hash) is None
    checkpoint.remove(path)
    assert not checkpoint.checkpoint_path(path).exists()
    checkpoint.remove(path)  # nothing there: not an error


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
    ],
)
def test_decide(tmp_path: Path, states: list[tuple[str, int | None]], force: bool, want: tuple) -> None:
    """Each combination of version states gives the documented action, version and epoch."""
    paths = []
    for status, epoch in states:
        other = status.endswith("*")
        path = version(tmp_path, status.rstrip("*"), run_hash="x" if other and epoch is None else RUN.hash)
        if epoch is not None:
            save(path, epoch, run_hash="x" if other else RUN.hash)
        paths.append(path)
    action = decide(tmp_path, RUN, force)
    kind, index, epoch = want
    assert (action.kind, action.path, action.epoch) == (kind, paths[index - 1] if index else None, epoch)
    assert (action.state is not None) == (kind == "resume")


def test_describe_says_what_a_dry_run_would_do(tmp_path: Path) -> None:
    """--dry-run lines name the run, the version and the epoch it would resume after."""
    path = tmp_path / "v0001.zarr"
    assert Action("run").describe(RUN) == f"would run: {RUN.id}"
    assert Action("up to date", path).describe(RUN) == f"up to date: {RUN.id} ({path})"
    resume = Action("resume", path, 2).describe(RUN)
    assert resume == f"would resume: {RUN.id} ({path}, after epoch 2 of 3)"
