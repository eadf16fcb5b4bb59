"""Replica batching: runs that share every shape train as one batched model, each replica its own
run (same id, samples, store and checkpoint), with the arrays of its unbatched run.

Tolerance: on the CPU (one thread) a batched replica's arrays equal its unbatched run's bit for
bit, so these tests compare with tolerance 0. The forward pass, the loss and the gradients come
out identical because every batched op computes each replica's slice with the same kernel, sizes
and reduction order as the unbatched op (one bmm per level over R N matrices instead of N; the
loss reduced over each replica's (B, D) block), and the update is torch's own SGD step on each
span of replicas sharing (lr, momentum, weight decay).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import sslspec_in_process
from test_pinned import CASES, PINS, digests, short_plan
from test_pinned import REFERENCE as PINNED_REFERENCE
from test_resume import identical
from test_run import REFERENCE, SSLSPEC, TINY, stores

from runtime.context import RunContext
from runtime.executor import LocalExecutor
from runtime.group import plan_groups
from runtime.pool import spread
from runtime.replicas import ReplicaTrainer, group_key
from runtime.run import execute_all, make_jobs
from runtime.train import Trainer
from sslspec.faults import ENV
from sslspec.spec.lower import lower
from sslspec.store.layout import version_attrs

SWEEP = TINY + (
    "sweep hltm_simclr {\n  seed = 1..2\n  data.polarity.low = [0.7, 0.9]\n  optimizer.lr = [0.05, 0.2]\n}\n"
)


def run_all(spec: Path, out: Path, replicas: int, sets: list[str] | None = None) -> int:
    """Run every run of `spec` in this process with groups of at most `replicas`."""
    with sslspec_in_process():
        return execute_all([(lower(spec, sets or []), str(out))], "cpu", executor=LocalExecutor(replicas))


def by_run(out: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in stores(out)}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The 8-run sweep over seed, polarity and lr, run batched (one group of 8) and unbatched."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = tmp / "sweep.ssl"
    spec.write_text(SWEEP)
    assert run_all(spec, tmp / "batched", 8) == 0
    assert run_all(spec, tmp / "unbatched", 1) == 0
    return spec, tmp / "batched", tmp / "unbatched"


def test_batched_replicas_equal_their_unbatched_runs(sweep: tuple[Path, Path, Path]) -> None:
    """Each run of a sweep over seed, polarity and lr, trained as one group of 8, has its own
    store under its own run id with every array equal (tolerance 0 on the CPU) to its unbatched
    run's, and records its group and size in its attrs, not in its hash, and how its steps ran
    (`training`) as its unbatched run does."""
    spec, batched, unbatched = sweep
    plan = lower(spec)
    a, b = by_run(batched), by_run(unbatched)
    assert sorted(a) == sorted(b) == sorted(r.id for r in plan.runs)
    groups = set()
    for run in plan.runs:
        identical(a[run.id], b[run.id])
        at, alone = version_attrs(a[run.id]), version_attrs(b[run.id])
        assert at["run_hash"] == alone["run_hash"] == run.hash and at["status"] == "complete"
        assert at["replica_group"]["size"] == 8 and "replica_group" not in alone
        assert at["training"] == alone["training"] == "eager (device cpu)"
        groups.add(at["replica_group"]["group"])
    assert len(groups) == 1


def test_a_batched_group_reruns_and_regroups_bit_identically(
    sweep: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Running the sweep again in groups of 3 (8 runs: 3 + 3 + 2) gives the same arrays bit for
    bit as the group of 8: a replica's arrays do not depend on its group."""
    spec, batched, _ = sweep
    assert run_all(spec, tmp_path / "again", 3) == 0
    again, first = by_run(tmp_path / "again"), by_run(batched)
    sizes = sorted(version_attrs(p)["replica_group"]["size"] for p in again.values())
    assert sizes == [2, 2, 3, 3, 3, 3, 3, 3]
    for run_id, path in again.items():
        identical(path, first[run_id])


VARIANTS = {
    "sample_reduction_momentum_decay": ["loss.reduction=sample", "optimizer.momentum=0.9"],
    "triplet_margin": ["loss.kind=triplet", "loss.margin=0.1", "optimizer.weight_decay=0.01"],
    "simple_beta": ["loss.kind=simple", "loss.beta=0.5", "network.normalize=none"],
    "mlp": ["network.kind=mlp", "network.widths=[8, 4]"],
    "batch_negatives": ["augment.negative=batch", "loss.negatives=4", "augment.flip=0.1"],
    "leaky_no_bias": ["network.activation=leaky_relu(slope = 0.1)", "network.bias=false"],
    "ragged": ["data.tree=[[2, 3], [4]]"],
    "flips_noise_share": ["augment.flip=0.1", "data.leaf_noise=0.05", "augment.share=1"],
    "three_states": ["data.states=3", "data.sign=positive"],  # views drawn replica by replica
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_batched_code_path_matches_the_unbatched_trainer(variant: str, tmp_path: Path) -> None:
    """For each loss, reduction, optimizer setting, network shape and way of drawing the views
    that batches, three replicas (seeds 1-3, lr 0.05 / 0.1 / 0.1) trained 2 epochs give the
    unbatched Trainer's per-step losses and parameters, bit for bit."""
    spec = tmp_path / "v.ssl"
    text = REFERENCE.read_text()
    if variant == "ragged":  # `tree` excludes depth and branching
        text = text.replace("    depth     = 5", "").replace("    branching = 2", "")
    spec.write_text(text)
    sets = ["network.width=4", "train.batch=16", "train.samples=64", *VARIANTS[variant]]
    sets += [] if variant == "ragged" else ["data.depth=3"]
    pairs = ((1, 0.05), (2, 0.1), (3, 0.1))
    runs = [lower(spec, [*sets, f"seed={s}", f"optimizer.lr={lr}"]).runs[0] for s, lr in pairs]
    assert len({group_key(r, "cpu") for r in runs}) == 1 and group_key(runs[0], "cpu") is not None
    cpu = torch.device("cpu")
    with sslspec_in_process():
        trainer = ReplicaTrainer([RunContext.build(r, cpu) for r in runs])
        losses = torch.cat([trainer.epoch(), trainer.epoch()], dim=1)
        trainer.sync()
        for r, run in enumerate(runs):
            alone = Trainer(RunContext.build(run, cpu))
            assert torch.equal(torch.cat([alone.epoch(), alone.epoch()]), losses[r]), (variant, r)
            for p, q in zip(alone.net.parameters(), trainer.ctxs[r].net.parameters(), strict=True):
                assert torch.equal(p, q), (variant, r)


def test_nan_in_one_replica_leaves_the_others_complete(tmp_path: Path) -> None:
    """In a group of three where one replica's lr makes its loss infinite, that run is marked
    failed in its own store (naming the loss) and the other two complete with their unbatched
    arrays."""
    spec = tmp_path / "nan.ssl"
    spec.write_text(TINY + "sweep hltm_simclr {\n  optimizer.lr = [0.05, 1000, 0.1]\n}\n")
    sets = ["loss.kind=simple", "loss.beta=-1", "network.normalize=none"]
    assert run_all(spec, tmp_path / "batched", 3, sets) == 1
    assert run_all(spec, tmp_path / "alone", 1, sets) == 1
    plan = lower(spec, sets)
    batched, alone = by_run(tmp_path / "batched"), by_run(tmp_path / "alone")
    status = {r.config.optimizer.lr: version_attrs(batched[r.id])["status"] for r in plan.runs}
    assert status == {0.05: "complete", 1000: "failed", 0.1: "complete"}
    for run in plan.runs:
        at = version_attrs(batched[run.id])
        assert at["replica_group"]["size"] == 3
        if at["status"] == "complete":
            identical(batched[run.id], alone[run.id])
        else:
            assert at["error"].startswith("FloatingPointError: training loss became"), at["error"]


def test_kill_and_resume_of_a_batched_group_is_bit_identical(tmp_path: Path) -> None:
    """`sslspec run` of a group of three, SIGKILLed while writing the second replica's checkpoint
    after epoch 2 (replica 1 has it, replicas 2 and 3 only epoch 1's), then run again: every run
    resumes its own version (in two groups, by the epoch it resumes after) and ends complete and
    bit-identical to an uninterrupted batched run."""
    spec = tmp_path / "kill.ssl"
    spec.write_text(TINY + "sweep hltm_simclr {\n  seed = 1..3\n}\n")
    base = [str(SSLSPEC), "run", str(spec), "--device", "cpu", "-j", "1", "--replicas", "3"]
    whole = subprocess.run([*base, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    env = {**os.environ, ENV: "checkpoint:5"}  # epoch 1: visits 1-3; epoch 2: replica 1 = 4, replica 2 = 5
    killed = subprocess.run([*base, "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert killed.returncode == -signal.SIGKILL and "killed at checkpoint #5" in killed.stderr, killed.stderr
    done = {version_attrs(p)["epochs_done"] for p in stores(tmp_path / "out")}
    assert done == {1, 2}, done
    again = subprocess.run([*base, "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    resumed, first = by_run(tmp_path / "out"), by_run(tmp_path / "whole")
    assert len(stores(tmp_path / "out")) == 3
    for run_id, path in resumed.items():
        at = version_attrs(path)
        assert at["status"] == "complete" and at["resumed"], at
        identical(path, first[run_id])


def test_two_workers_run_the_groups_of_a_sweep_with_every_run_exactly_once(tmp_path: Path) -> None:
    """`-j 2 --replicas 4` on a 4-run sweep: two groups of two (one per worker), each run once
    with one complete version, each equal to its unbatched run; a second call finds all up to date."""
    spec = tmp_path / "j2.ssl"
    spec.write_text(TINY + "sweep hltm_simclr {\n  seed = 1..4\n}\n")
    base = [str(SSLSPEC), "run", str(spec), "--device", "cpu", "--out", str(tmp_path / "out")]
    done = subprocess.run([*base, "-j", "2", "--replicas", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = stores(tmp_path / "out")
    plan = lower(spec)
    assert sorted(p.parent.name for p in found) == sorted(r.id for r in plan.runs)
    assert [version_attrs(p)["replica_group"]["size"] for p in found] == [2, 2, 2, 2]
    assert len({version_attrs(p)["replica_group"]["group"] for p in found}) == 2
    assert sum(line.startswith("run ") and "complete" in line for line in done.stderr.splitlines()) == 4
    assert run_all(spec, tmp_path / "alone", 1) == 0
    alone = by_run(tmp_path / "alone")
    for p in found:
        identical(p, alone[p.parent.name])
    again = subprocess.run([*base, "-j", "2", "--replicas", "4"], capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.count("up to date") == 4, again.stderr


def test_groups_form_from_shapes_only(tmp_path: Path) -> None:
    """plan_groups puts runs together only when their shapes agree (width splits them, seed and lr
    do not), cuts a shape's runs into groups of at most `replicas` and into one per worker, and
    leaves runs that cannot batch (Adam, batch norm) alone."""
    spec = tmp_path / "g.ssl"
    spec.write_text(TINY + "sweep hltm_simclr {\n  network.width = [3, 4]\n  seed = 1..3\n}\n")

    def units(sets: list[str], replicas: int, workers: int = 1) -> list[list[int]]:
        return plan_groups(make_jobs([(lower(spec, sets), str(tmp_path))], "cpu", False), replicas, workers)

    assert units([], 1) == [[i] for i in range(6)]
    assert units([], 8) == [[0, 1, 2], [3, 4, 5]]  # runs 0-2 have width 3, runs 3-5 width 4
    assert units([], 2) == [[0, 1], [2], [3, 4], [5]]
    assert units([], 8, workers=2) == [[0, 1], [2], [3, 4], [5]]
    assert units(["optimizer.kind=adam", "optimizer.lr=0.01"], 8) == [[i] for i in range(6)]
    assert units(["network.batch_norm=true"], 8) == [[i] for i in range(6)]


def test_workers_sharing_one_gpu_do_not_cut_groups_smaller() -> None:
    """On the CPU a key's runs are cut into one group per worker; on CUDA into one per GPU, since
    a replayed batched step costs the card about the same whatever the group's size."""
    assert spread(8, 0) == 8 and spread(1, 0) == 1
    assert spread(8, 1) == 1 and spread(8, 2) == 2 and spread(2, 4) == 2


def test_the_progress_display_shows_a_group_as_one_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs of one group share one bar, "group ID of 2 runs", which either run's epoch moves
    and which goes with the group's last run; a run outside any group keeps a bar of its own."""
    from runtime.progress import Progress

    class Run:
        def __init__(self, run_id: str) -> None:
            self.id = run_id

    group = {"group": "abc123", "size": 2}
    progress = Progress(3)
    progress.live = True  # a bar even though the tests' stderr is no terminal
    with progress:
        assert progress.bar is not None
        progress.start_run(Run("r0"), 5, 0, group)
        progress.start_run(Run("r1"), 5, 1, group)
        progress.start_run(Run("r2"), 5, 2)
        bars = {t.description: t for t in progress.bar.tasks}
        assert len(bars) == 2 and any(d.startswith("group abc123 of 2 runs") for d in bars), bars
        progress.epoch(3, 1000.0, 0.5, 1)
        (shared,) = [t for d, t in bars.items() if d.startswith("group")]
        assert shared.completed == 3
        progress.end_run("run 1 r0 complete", 0)
        assert len(progress.bar.tasks) == 2
        progress.end_run("run 2 r1 complete", 1)
        assert [t.description for t in progress.bar.tasks] == ["run 3/3 r2 epoch"]
    assert "run 2 r1 complete" in capsys.readouterr().err


UNBATCHABLE = ("batch_norm", "adam", "images/", "8_byol")  # pinned cases with runs that cannot batch (BYOL)


@pytest.mark.parametrize("case", [c for c in CASES if not any(u in c for u in UNBATCHABLE)])
def test_batched_shipped_specs_give_the_pinned_arrays(case: str, tmp_path: Path) -> None:
    """Every shipped spec and pinned variant that batches, shortened as tests/runtime/test_pinned.py
    does and run in replica groups (of up to 16; every run trains batched), gives exactly the
    arrays pinned for it unbatched."""
    spec, sets = CASES[case]
    if spec is None:
        spec = tmp_path / "ragged.ssl"
        text = PINNED_REFERENCE.read_text().replace("    depth     = 5", "").replace("    branching = 2", "")
        spec.write_text(text)
    plan = short_plan(spec, sets)
    with sslspec_in_process():
        assert execute_all([(plan, str(tmp_path / "out"))], "cpu", executor=LocalExecutor(16)) == 0
    assert all("replica_group" in version_attrs(p) for p in stores(tmp_path / "out"))
    found, pinned = digests(tmp_path / "out"), json.loads(PINS.read_text())[case]
    assert sorted(found) == sorted(pinned)
    changed = [k for k in pinned if found[k] != pinned[k]]
    assert not changed, f"{len(changed)} array(s) differ from the pins, first: {changed[:5]}"
