"""Stage 3, lower: spec -> Plan (sweeps expanded, defaults explicit, seeds derived, hashed).

The golden plan `golden/hltm_simclr.json` is the canonical JSON of specs/hltm_simclr.ssl, stored
indented for review; regenerate with `pytest --update-golden`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslspec.errors import CheckError, SpecError
from sslspec.lang import ir
from sslspec.lang.fmt import fmt_value
from sslspec.lang.syntax import parse
from sslspec.spec import schema
from sslspec.spec.fields import ChoiceT, uniform_tree
from sslspec.spec.lower import lower
from sslspec.spec.plan import STREAMS, Plan, Seeds, canonical_json, config_from_data, config_to_data

ROOT = Path(__file__).resolve().parents[2]
SIMCLR = ROOT / "specs" / "hltm_simclr.ssl"
TABLE = ROOT / "specs" / "hltm_table.ssl"
GOLDEN = Path(__file__).resolve().parent / "golden"
SSLSPEC = Path(sys.executable).parent / "sslspec"

MINIMAL = """experiment a {
  data hltm { depth = 3 }
  network tree_relu { width = 4 }
  loss simple { beta = 0 }
  optimizer sgd { lr = 0.1 }
}
"""


def _plan(text: str, tmp_path: Path, sets: tuple[str, ...] = (), name: str = "spec.ssl") -> Plan:
    path = tmp_path / name
    path.write_text(text)
    return lower(path, sets)


def _hash(sets: tuple[str, ...] = ()) -> str:
    (run,) = lower(SIMCLR, sets).runs
    return run.hash


# ---- the reference specs ------------------------------------------------------------------


def test_table_lowers_to_45_distinct_runs_over_three_axes() -> None:
    """hltm_table.ssl is 3 widths x 3 polarities x 5 seeds = 45 runs with distinct ids, width outermost."""
    plan = lower(TABLE)
    assert len(plan.runs) == 45
    assert len({r.id for r in plan.runs}) == 45
    assert len({r.hash for r in plan.runs}) == 45
    assert plan.axes == (("hltm_simclr", ("network.width", "data.polarity.low", "seed")),)
    assert [r.index for r in plan.runs] == list(range(45))
    assert plan.runs[0].swept == (("network.width", 2), ("data.polarity.low", 0.7), ("seed", 1))
    assert plan.runs[44].swept == (("network.width", 10), ("data.polarity.low", 0.9), ("seed", 5))
    grid = {(r.config.network.width, r.config.data.polarity.low, r.config.seed) for r in plan.runs}  # type: ignore[union-attr]
    assert grid == {(w, p, s) for w in (2, 5, 10) for p in (0.7, 0.8, 0.9) for s in range(1, 6)}
    assert {r.config.data.polarity.high for r in plan.runs} == {1.0}  # type: ignore[union-attr]


def test_simclr_plan_matches_golden_canonical_json(
    monkeypatch: pytest.MonkeyPatch, golden: Callable[[Path, str], None]
) -> None:
    """specs/hltm_simclr.ssl lowers to exactly the golden plan, compared in canonical form."""
    monkeypatch.chdir(ROOT)
    canonical = lower("specs/hltm_simclr.ssl").to_json()
    path = GOLDEN / "hltm_simclr.json"
    golden(path, json.dumps(json.loads(canonical), indent=2, sort_keys=True) + "\n")
    stored = json.loads(path.read_text())
    assert canonical == json.dumps(stored, sort_keys=True, separators=(",", ":"), allow_nan=False)


def test_a_plan_stored_without_a_results_root_reads_back_with_the_default() -> None:
    """A stored plan keeps its own results root; one written before plans recorded it (no
    "results" key) reads back with the default root, "results"."""
    data = config_to_data(lower(TABLE).runs[0].config)
    assert config_from_data({**data, "results": "elsewhere/out"}).results == "elsewhere/out"
    older = {k: v for k, v in data.items() if k != "results"}
    assert config_from_data(older).results == "results" == schema.TOP_DEFAULTS["results"]


def test_canonical_json_refuses_numbers_json_cannot_spell() -> None:
    """NaN and infinities have no JSON spelling: the text hashes are taken over refuses them
    (a ValueError) rather than write Python's non-standard NaN / Infinity."""
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="JSON compliant"):
            canonical_json({"lr": bad})
    assert canonical_json({"b": 0.1, "a": [1, 2.5]}) == '{"a":[1,2.5],"b":0.1}'


def test_plan_config_reads_back_from_its_json() -> None:
    """config_from_data inverts config_to_data for every run of the table (the runtime's path)."""
    for run in lower(TABLE).runs:
        assert config_from_data(json.loads(json.dumps(config_to_data(run.config)))) == run.config


def test_every_default_is_explicit_in_the_plan(tmp_path: Path) -> None:
    """A spec without augment/train/measure gets them with defaults; measure.samples is train.samples;
    only fields added after results existed (schema.fld's `added`) are left out at their default."""
    (run,) = _plan(MINIMAL, tmp_path).runs
    data = config_to_data(run.config)
    assert data["augment"] == {"share": 0, "flip": 0.0, "negative": "independent"}
    assert data["train"] == {"batch": 128, "samples": 64000, "epochs": 50}
    assert data["measure"]["samples"] == 64000
    assert data["measure"]["loss"] == {"every": 1}
    assert data["data"]["branching"] == 2
    assert data["data"]["tree"] == [[2, 2], [2, 2]]  # depth 3: root, 2 latents, 4 latents, 8 leaves
    assert data["data"]["polarity"] == {"kind": "uniform", "low": 0.7, "high": 1.0}
    assert data["network"]["activation"] == {"name": "relu", "slope": 0.0}
    assert "linear_probe" not in data["measure"] and "knn" not in data["measure"]
    for block, kinds_required in schema.BLOCKS.items():
        kinds = kinds_required[0]
        cls = kinds[data[block].get("kind")]
        assert set(data[block]) - {"kind"} == {
            a.name for a in attrs.fields(cls) if not a.metadata.get("added")
        }
    # The only nulls left are measurements that are switched off.
    nulls = [p for p, v in _leaves(data) if v is None]
    assert nulls == [
        "measure.covariance_operator",
        "measure.latent_correlation",
        "measure.theorem_check",
        "measure.weights",
    ]


def test_measure_samples_follows_train_samples_unless_given(tmp_path: Path) -> None:
    """measure.samples defaults to the (possibly overridden) train.samples, and keeps an explicit value."""
    (run,) = _plan(MINIMAL, tmp_path, ("train.samples=1280",)).runs
    assert run.config.measure.samples == 1280
    (run,) = _plan(MINIMAL, tmp_path, ("train.samples=1280", "measure.samples=640")).runs
    assert run.config.measure.samples == 640


# ---- seeds --------------------------------------------------------------------------------


def test_seeds_are_four_distinct_deterministic_streams() -> None:
    """Seeds.derive gives one 63-bit seed per stream (tree, init, data, measure), distinct and repeatable."""
    seeds = Seeds.derive(1)
    values = [getattr(seeds, s) for s in STREAMS]
    assert STREAMS == ("tree", "init", "data", "measure")
    assert len(set(values)) == 4
    assert all(0 <= v < 2**63 for v in values)
    assert Seeds.derive(1) == seeds
    assert set(values).isdisjoint(attrs.asdict(Seeds.derive(2)).values())


def test_seeds_depend_only_on_the_run_seed() -> None:
    """Across the table, two runs have equal seeds exactly when their `seed` is equal."""
    runs = lower(TABLE).runs
    for a in runs:
        for b in runs:
            assert (a.seeds == b.seeds) == (a.config.seed == b.config.seed)
    assert all(r.seeds == Seeds.derive(r.config.seed) for r in runs)


# ---- the hash -----------------------------------------------------------------------------


def _leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        for k, v in sorted(data.items()):
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, data


def _float_text(x: float, rnd: random.Random) -> str:
    forms = [repr(x), f"{x:e}", f"{x:.6f}" if abs(x) >= 1e-3 else repr(x)]
    return rnd.choice(forms)


def _value_text(v: ir.Value, rnd: random.Random) -> str:
    if isinstance(v, ir.Float):
        return _float_text(v.value, rnd)
    if isinstance(v, ir.Call):
        sep = rnd.choice([", ", ",", ",\n  ", " ,  "])
        args = sep.join(f"{a.name}{rnd.choice(['=', ' = '])}{_value_text(a.value, rnd)}" for a in v.args)
        return f"{v.name}({args})"
    return fmt_value(v)


def _scramble(items: tuple[ir.Item, ...], rnd: random.Random, indent: str) -> list[str]:
    """The items in a random order with random spacing, blank lines and comments; same meaning."""
    lines: list[str] = []
    shuffled = list(items)
    rnd.shuffle(shuffled)
    for item in shuffled:
        if rnd.random() < 0.3:
            lines.append(indent + "# a comment line, " + rnd.choice(["x = 1", "}", "{", "# nested"]))
        if rnd.random() < 0.2:
            lines.append("")
        pad = rnd.choice(["", " ", "   ", "\t"])
        if isinstance(item, ir.Field):
            text = f"{item.name}{pad}={rnd.choice([' ', '  ', ''])}{_value_text(item.value, rnd)}"
        elif isinstance(item, ir.Flag):
            text = rnd.choice([item.name, f"{item.name} {{}}", f"{item.name} = true"])
        else:
            head = f"{item.name} {item.kind}" if item.kind else item.name
            inner = _scramble(item.items, rnd, indent + rnd.choice(["  ", "    ", "\t"]))
            lines += [f"{indent}{head}{pad} {{", *inner, f"{indent}}}"]
            continue
        if rnd.random() < 0.3:
            text += f"{pad} # trailing {rnd.randint(0, 9)}"
        lines.append(indent + text)
    return lines


SIMCLR_IR = parse(SIMCLR.read_text(), str(SIMCLR)).statements[0]


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_hash_is_invariant_under_layout_comments_and_field_order(rnd: random.Random) -> None:
    """Reordering the items of every block, re-spacing, re-spelling numbers and commenting keep the hash."""
    assert isinstance(SIMCLR_IR, ir.Experiment)
    body = _scramble(SIMCLR_IR.items, rnd, "  ")
    text = "# scrambled\nexperiment hltm_simclr {\n" + "\n".join(body) + "\n}\n"
    (run,) = lower(SIMCLR, text=text).runs
    assert run.hash == BASE_HASH


BASE_HASH = _hash()

# Paths whose change needs a companion setting to stay valid, applied to both sides.
COMPANIONS = {
    "data.states": ("data.sign=positive",),
    "network.activation.slope": ("network.activation=leaky_relu",),
}
# Paths that are not set by their own name (an activation is chosen by its call).
SETTERS = {"network.activation.name": ("network.activation=leaky_relu",)}


def _owner_type(cfg: Any, path: list[str]) -> Any:
    obj = cfg
    for name in path[:-1]:
        obj = getattr(obj, name)
    field = next((a for a in attrs.fields(type(obj)) if a.name == path[-1]), None)
    return field.metadata.get("type") if field is not None else None


def _changes(path: str, value: Any, type_: Any) -> list[tuple[str, ...]]:
    if path in SETTERS:
        return [SETTERS[path]]
    if isinstance(value, bool):
        candidates: list[Any] = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value * 2, value - 1]
    elif isinstance(value, float):
        candidates = [value * 0.95 if value else 0.5, value / 2, 0.25]
    else:
        assert isinstance(type_, ChoiceT), path
        candidates = [o for o in type_.options if o != value]
    return [(f"{path}={str(c).lower() if isinstance(c, bool) else c}",) for c in candidates if c != value]


def test_changing_any_single_value_changes_the_hash() -> None:
    """For every scalar of the reference config, some valid new value gives a different run hash."""
    cfg = lower(SIMCLR).runs[0].config
    # device and results are execution settings; tree is derived from depth/branching
    skip = {"device", "results", "data.tree"}
    checked = []
    for path, value in _leaves(config_to_data(cfg)):
        if path in skip or path.endswith(".kind") or not isinstance(value, bool | int | float | str):
            continue
        companion = COMPANIONS.get(path, ())
        base = _hash(companion)
        outcomes = []
        for change in _changes(path, value, _owner_type(cfg, path.split("."))):
            try:
                outcomes.append(_hash((*companion, *change)))
            except SpecError:
                continue
        assert outcomes, f"no valid change of {path} found"
        assert all(h != base for h in outcomes), path
        checked.append(path)
    assert len(checked) >= 25
    assert set(checked) >= {
        "seed",
        "data.polarity.low",
        "loss.temperature",
        "measure.covariance_operator.top",
    }


def test_switching_a_measurement_off_changes_the_hash_and_device_does_not() -> None:
    """`measure.weights=false` changes the hash; `device` (an execution setting) leaves it alone."""
    assert _hash(("measure.weights=false",)) != BASE_HASH
    assert _hash(("device=cpu",)) == BASE_HASH


def test_explicit_tree_hashes_like_the_equivalent_depth_and_branching(tmp_path: Path) -> None:
    """`tree = [...]` for the complete binary tree of depth 5 gives the same run as depth 5, branching 2."""
    tree_text = json.dumps(uniform_tree(5, 2))  # [[[[2, 2], [2, 2]], ...]]
    text = SIMCLR.read_text()
    text = text.replace("depth     = 5", f"tree = {tree_text}").replace("branching = 2", "")
    (run,) = _plan(text, tmp_path).runs
    assert run.config.data.tree == uniform_tree(5, 2)
    assert run.hash == BASE_HASH
    (four,) = _plan(MINIMAL.replace("depth = 3", "tree = 4"), tmp_path).runs
    (flat,) = _plan(MINIMAL.replace("depth = 3", "depth = 1\n branching = 4"), tmp_path).runs
    assert four.hash == flat.hash


def test_irregular_tree_has_no_branching(tmp_path: Path) -> None:
    """An explicit tree with unequal child counts lowers with branching None and its depth."""
    (run,) = _plan(MINIMAL.replace("depth = 3", "tree = [[2, 3], [4]]"), tmp_path).runs
    assert (run.config.data.depth, run.config.data.branching) == (3, None)


# ---- --set --------------------------------------------------------------------------------


def test_set_overrides_a_value_and_a_kind() -> None:
    """--set replaces a written value, a call argument, and a block's kind."""
    (run,) = lower(SIMCLR, ("network.width=7", "data.polarity.high=0.9", "optimizer.kind=adam")).runs
    assert run.config.network.width == 7  # type: ignore[union-attr]
    assert run.config.data.polarity == schema.Uniform(0.8, 0.9)
    assert isinstance(run.config.optimizer, schema.Adam) and run.config.optimizer.lr == 0.1


def test_set_kind_drops_fields_the_new_kind_lacks() -> None:
    """`--set loss.kind=simple` on an infonce spec drops temperature and negatives, keeps reduction."""
    (run,) = lower(SIMCLR, ("loss.kind=simple",)).runs
    assert run.config.loss == schema.SimpleLoss(beta=0.0, reduction="batch")


def test_set_through_a_bare_call_name() -> None:
    """`--set network.activation=leaky_relu --set network.activation.slope=0.3` sets the slope."""
    (run,) = lower(SIMCLR, ("network.activation=leaky_relu", "network.activation.slope=0.3")).runs
    assert run.config.network.activation == schema.Activation("leaky_relu", 0.3)


def test_set_with_a_bad_path_or_value_points_into_the_setting() -> None:
    """A bad --set is reported as `--set:N:col` (N the setting's place), with the setting as source line."""
    with pytest.raises(CheckError) as info:
        lower(SIMCLR, ("seed=2", "network.widht=3", "network.width=x"))
    assert info.value.render() == (
        "--set:2:1: error: 'network tree_relu' has no field 'widht'; did you mean 'width'?\n"
        "  network.widht=3\n"
        "  ^^^^^^^^^^^^^^^\n"
        "--set:3:15: error: 'width' must be an integer (got the name 'x')\n"
        "  network.width=x\n"
        "                ^"
    )
    with pytest.raises(SpecError) as syn:
        lower(SIMCLR, ("network.width = @",))
    (d,) = syn.value.diagnostics
    assert d.span is not None and (d.span.file, d.span.line, d.span.col) == ("--set", 1, 17)
    with pytest.raises(SpecError) as shape:
        lower(SIMCLR, ("seed=1", "network.width 3"))
    assert shape.value.render().startswith("--set:2:1: error: a setting must look like path=value")


def test_set_on_a_block_name_says_it_is_a_block() -> None:
    """`--set loss=1` names the block and what to write instead, not "no field 'loss'; did you mean"."""
    with pytest.raises(CheckError) as info:
        lower(SIMCLR, ("loss=1",))
    first = info.value.render().splitlines()[0]
    assert first == (
        "--set:1:1: error: 'loss' is a block, not a field: set its kind (loss.kind = ...) "
        "or one of its fields (loss.FIELD = ...)"
    )


def test_set_errors_exit_2_through_the_cli() -> None:
    """`check --set` with a bad path and a bad value exits 2, shows both at --set:N:col, no traceback."""
    proc = subprocess.run(
        [str(SSLSPEC), "check", str(SIMCLR), "--set", "network.widht=3", "--set", "network.width=x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("--set:1:1: error: ")
    assert lines[3].startswith("--set:2:15: error: 'width' must be an integer")
    assert lines[-1] == "2 errors"


def test_set_on_a_swept_path_removes_that_axis() -> None:
    """--set seed=3 on the table fixes the seed: 9 runs, seed no longer an axis, every run seed 3."""
    plan = lower(TABLE, ("seed=3",))
    assert len(plan.runs) == 9
    assert plan.axes == (("hltm_simclr", ("network.width", "data.polarity.low")),)
    assert {r.config.seed for r in plan.runs} == {3}
    assert all("seed" not in dict(r.swept) for r in plan.runs)
    assert len(lower(TABLE, ("data.polarity.low=0.75",)).runs) == 15


# ---- sweeps, zip, include -----------------------------------------------------------------


def test_zip_pairs_lists_and_multiplies_with_other_axes(tmp_path: Path) -> None:
    """`zip { width = [2, 5]; seed = [1, 2] }` with 3 lrs gives 2 x 3 runs, widths paired with seeds."""
    sweep = (
        "sweep a {\n  zip {\n    network.width = [2, 5]\n    seed = [1, 2]\n  }\n"
        "  optimizer.lr = [0.1, 0.2, 0.3]\n}\n"
    )
    plan = _plan(MINIMAL + sweep, tmp_path)
    assert len(plan.runs) == 6
    pairs = {(r.config.network.width, r.config.seed) for r in plan.runs}  # type: ignore[union-attr]
    assert pairs == {(2, 1), (5, 2)}
    assert plan.axes == (("a", ("network.width", "seed", "optimizer.lr")),)


def test_zip_rejects_lists_of_unequal_length(tmp_path: Path) -> None:
    """A zip of a 2-list and a 3-list is an error at the zip, naming both lengths."""
    sweep = "sweep a {\n  zip {\n    network.width = [2, 5]\n    seed = [1, 2, 3]\n  }\n}\n"
    with pytest.raises(CheckError) as info:
        _plan(MINIMAL + sweep, tmp_path)
    (d,) = info.value.diagnostics
    assert d.message == "zip needs lists of one length (got network.width: 2, seed: 3)"
    assert d.span is not None and (d.span.line, d.span.col) == (8, 3)


def test_sweep_repeating_a_value_is_an_error(tmp_path: Path) -> None:
    """A sweep whose values repeat gives the same run twice, which is reported at the sweep."""
    with pytest.raises(CheckError) as info:
        _plan(MINIMAL + "sweep a {\n  seed = [1, 1]\n}\n", tmp_path)
    assert "gives the same run twice" in info.value.render()


def test_include_with_override_block(tmp_path: Path) -> None:
    """`include "base.ssl" { ... }` applies the overrides (values, call arguments) to the included runs."""
    (tmp_path / "base.ssl").write_text(SIMCLR.read_text())
    text = (
        'include "base.ssl" {\n  network.width = 3\n  data.polarity.low = 0.9\n  loss.temperature = 0.2\n}\n'
    )
    (run,) = _plan(text, tmp_path, name="top.ssl").runs
    assert run.config.network.width == 3  # type: ignore[union-attr]
    assert run.config.data.polarity == schema.Uniform(0.9, 1.0)
    assert run.config.loss.temperature == 0.2  # type: ignore[union-attr]
    assert run.hash != BASE_HASH


def test_include_override_with_a_bad_field_points_at_the_override(tmp_path: Path) -> None:
    """An override naming no field is reported in the including file, at the override."""
    (tmp_path / "base.ssl").write_text(SIMCLR.read_text())
    with pytest.raises(CheckError) as info:
        _plan('include "base.ssl" {\n  network.widht = 3\n}\n', tmp_path, name="top.ssl")
    (d,) = info.value.diagnostics
    assert d.span is not None and (Path(d.span.file).name, d.span.line, d.span.col) == ("top.ssl", 2, 3)


def test_results_root_is_in_the_plan_but_not_in_the_hash() -> None:
    """`results = "..."` reaches the plan's config and leaves the run hash unchanged."""
    (run,) = lower(SIMCLR, ['results="elsewhere/out"']).runs
    assert run.config.results == "elsewhere/out"
    assert run.hash == BASE_HASH
    assert config_to_data(run.config)["results"] == "elsewhere/out"
