"""Pinned arrays: every shipped spec (and a few variants the specs do not reach), shortened, gives
on the CPU exactly the arrays recorded in `pinned.json` (sha256 of each array's bytes, with its
dtype and shape). The values were recorded before the runtime was reshaped into data sources,
objectives and executors, so a refactor that changes any number fails here.
Regenerate with `pytest tests/runtime/test_pinned.py --update-golden` only for an intended change,
and say why in the commit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import zarr
from inprocess import sslspec_in_process
from test_run import needs_a_copy  # CIFAR-10 / STL-10 specs: run shortened on generated files instead

from runtime.run import execute
from sslspec.spec.lower import lower
from sslspec.spec.plan import Plan, Run

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PINS = Path(__file__).with_name("pinned.json")
REFERENCE = SPECS / "hltm_simclr.ssl"

SHORT = [
    "device=cpu",
    "train.batch=16",
    "train.samples=64",
    "train.epochs=2",
    "measure.samples=256",
    "measure.every=1",
]
SHORT_CHECK = ["measure.theorem_check.batches=[1, 3]"]  # only where the spec has a theorem check

# Code paths no shipped spec reaches, each on a small tree (the reference with these settings).
VARIANTS: dict[str, list[str]] = {
    "mlp": ["network.kind=mlp", "network.widths=[16, 8]", "data.depth=3"],
    "batch_norm": ["network.batch_norm=true", "data.depth=3"],
    "leaky_ragged": ["data.tree=[[2, 3], [4]]", "network.activation=leaky_relu(slope = 0.1)"],
    "three_states": ["data.states=3", "data.sign=positive", "data.depth=3"],
    "batch_negatives": [
        "augment.negative=batch",
        "loss.negatives=4",
        "loss.reduction=sample",
        "data.depth=3",
    ],
    "flips_noise_share": ["augment.flip=0.1", "data.leaf_noise=0.05", "augment.share=1", "data.depth=3"],
    "adam_triplet": ["optimizer.kind=adam", "optimizer.lr=0.01", "loss.kind=triplet", "data.depth=3"],
    "cosine_warmup": [
        "optimizer.momentum=0.9",
        "optimizer.schedule=cosine(warmup_steps = 3, final_lr = 0.01)",
        "data.depth=3",
    ],
    "simple_beta_check": [
        "loss.kind=simple",
        "loss.beta=0.5",
        "network.normalize=none",
        "data.depth=3",
        "measure.covariance_operator.full=true",
        "measure.covariance_operator.official=true",
        "measure.theorem_check.nodes=[0, 1, 4]",
        "measure.theorem_check.batches=[1, 2]",
    ],
    "mlp_check": [
        "network.kind=mlp",
        "network.widths=[8, 4]",
        "data.depth=3",
        "measure.theorem_check.nodes=[0, 1]",
        "measure.theorem_check.batches=[2]",
    ],
}


def covering(plan: Plan) -> tuple[Run, ...]:
    """A few runs of the plan such that every value of every swept path is run at least once
    (greedily, in plan order): the sweep's variety without all of its repeats."""
    wanted = {(p, json.dumps(v)) for run in plan.runs for p, v in run.swept}
    picked: list[Run] = []
    for run in plan.runs:
        new = {(p, json.dumps(v)) for p, v in run.swept} & wanted
        if new or not picked:
            picked.append(run)
            wanted -= new
    return tuple(picked)


def cases() -> Iterator[tuple[str, Path | None, list[str]]]:
    for spec in sorted(SPECS.rglob("*.ssl")):
        if not needs_a_copy(spec):
            yield str(spec.relative_to(SPECS)), spec, []
    for name, sets in VARIANTS.items():
        # `tree` excludes depth and branching: the ragged variant starts from a spec without them
        yield f"variant/{name}", None if name == "leaky_ragged" else REFERENCE, sets


CASES = {name: (spec, sets) for name, spec, sets in cases()}


def short_plan(spec: Path, sets: list[str]) -> Plan:
    plan = lower(spec, [*SHORT, *sets])
    if any(r.config.measure.theorem_check is not None for r in plan.runs) and not any(
        s.startswith("measure.theorem_check.batches") for s in sets
    ):
        plan = lower(spec, [*SHORT, *SHORT_CHECK, *sets])
    return attrs.evolve(plan, runs=covering(plan))


def digests(out: Path) -> dict[str, Any]:
    """experiment/run id/array -> [dtype, shape, sha256 of the C-order bytes] for every store under out."""
    found: dict[str, Any] = {}
    for store in sorted(out.rglob("v*.zarr")):
        group = zarr.open_group(str(store), mode="r")
        run = store.parent.relative_to(out).as_posix()
        for name, array in sorted(group.arrays()):
            values = np.ascontiguousarray(array[...])
            digest = hashlib.sha256(values.tobytes()).hexdigest()
            found[f"{run}/{name}"] = [str(values.dtype), list(values.shape), digest]
    return found


@pytest.fixture(scope="module")
def pins(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The recorded digests; rewritten at the end of the module under --update-golden."""
    update = bool(request.config.getoption("--update-golden"))
    recorded = json.loads(PINS.read_text()) if PINS.exists() else {}
    yield recorded
    if update:
        PINS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("case", list(CASES))
def test_arrays_are_pinned(case: str, pins: dict[str, Any], request: pytest.FixtureRequest, tmp_path) -> None:
    """Every array of every run of the shortened spec is bit-identical to its recorded digest."""
    spec, sets = CASES[case]
    if spec is None:
        spec = tmp_path / "ragged.ssl"
        text = REFERENCE.read_text().replace("    depth     = 5", "").replace("    branching = 2", "")
        spec.write_text(text)
    plan = short_plan(spec, sets)
    with sslspec_in_process():
        assert execute(plan, str(tmp_path / "out"), device="cpu") == 0
    found = digests(tmp_path / "out")
    assert len({k.rsplit("/", 1)[0] for k in found}) == len(plan.runs)
    if request.config.getoption("--update-golden"):
        pins[case] = found
        return
    assert case in pins, f"no pins for {case}; run with --update-golden on the reference code"
    expected = pins[case]
    assert sorted(found) == sorted(expected)
    changed = [k for k in expected if found[k] != expected[k]]
    assert not changed, f"{len(changed)} array(s) differ from the pins, first: {changed[:5]}"
