"""The Python API: check, plan and run a spec given as a path or as text, as the CLI would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from inprocess import sslspec_in_process, torch_state_kept

import sslspec
from sslspec.cli import app

ROOT = Path(__file__).resolve().parents[2]

# A 3-node tree, 2 epochs of 2 steps: a run takes well under a second.
BASE = """\
experiment tiny {
  data hltm { depth = 1; branching = 2 }
  network tree_relu { width = 2 }
  loss infonce { }
  optimizer sgd { lr = 0.05 }
  train { batch = 8; samples = 16; epochs = 2 }
  measure { samples = 64; latent_correlation }
}
"""
SWEEP = 'include "base.ssl"\nsweep tiny {\n  network.width = [2, 3]\n  seed = 1..2\n}\n'
BAD = "experiment e {\n  seed = -1\n  data hltm { depth = 0 }\n}\n"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A directory holding base.ssl, the tiny experiment that SWEEP includes."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "base.ssl").write_text(BASE)
    return tmp_path / "specs"


@pytest.fixture
def kept() -> Iterator[None]:
    """Torch's process-wide state put back after a test that runs something."""
    with torch_state_kept():
        yield


def test_check_returns_diagnostics_with_file_line_column_and_message() -> None:
    """check() on bad text returns every problem with its place, and raises nothing."""
    found = sslspec.check(text=BAD)
    places = [(d.file, d.line, d.column) for d in found]
    assert ("<text>", 2, 10) in places  # seed = -1
    assert ("<text>", 3, 23) in places  # depth = 0
    assert any("'seed' must be >= 0 (got -1)" in d.message for d in found)
    assert sslspec.check(text=BASE) == []


def test_check_of_a_missing_file_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    """A spec path that does not exist comes back as one diagnostic naming it."""
    [d] = sslspec.check(tmp_path / "nope.ssl")
    assert "cannot read" in d.message and "nope.ssl" in d.message


def test_spec_error_message_is_the_cli_message(tmp_path: Path) -> None:
    """plan() raises one SpecError whose message is what `sslspec plan` prints before its count line."""
    spec = tmp_path / "bad.ssl"
    spec.write_text(BAD)
    with pytest.raises(sslspec.SpecError) as caught:
        sslspec.plan(spec)
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 2
    n = len(caught.value.diagnostics)
    assert n == 5  # seed, depth, and the three missing blocks
    assert result.stderr == f"{caught.value}\n{n} errors\n"


def test_text_includes_resolve_relative_to_base(base: Path) -> None:
    """Spec text with base= reads its includes from base; its diagnostics name base/<text>."""
    p = sslspec.plan(text=SWEEP, base=base)
    assert [r.swept for r in p.runs][:2] == [
        (("network.width", 2), ("seed", 1)),
        (("network.width", 2), ("seed", 2)),
    ]
    assert {r.config.train.samples for r in p.runs} == {16}
    [d] = sslspec.check(text='include "missing.ssl"\n', base=base)
    assert d.file == str(base / "<text>") and d.line == 1
    assert sslspec.check(text=SWEEP)[0].message.startswith("cannot include 'base.ssl'")  # cwd is not base


def test_plan_matches_the_cli_plan(base: Path) -> None:
    """plan() gives the runs, ids and swept values `sslspec plan --json` prints, --set included."""
    p = sslspec.plan(base / "base.ssl", sets=["seed=7"])
    result = CliRunner().invoke(app, ["plan", str(base / "base.ssl"), "--set", "seed=7", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(p.to_json())
    assert p.runs[0].config.seed == 7 and len(p.runs[0].id) == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give a spec path or text"),
        ({"spec": "a.ssl", "text": "x"}, "give a spec path or text"),
        ({"spec": "a.ssl", "base": "."}, "base= applies to text"),
    ],
)
def test_spec_or_text_exactly_one(kwargs: dict[str, str], message: str) -> None:
    """A path and text together, neither, or base= with a path are refused with a TypeError."""
    with pytest.raises(TypeError, match=message):
        sslspec.plan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", [sslspec.check, sslspec.plan, sslspec.run, sslspec.load_sweep])
def test_sets_given_as_one_string_is_a_type_error(call: Callable[..., object], tmp_path: Path) -> None:
    """sets="path=value" (a string, not a list) is a TypeError saying so, where each character was
    taken as a setting ("a setting must look like path=value" at a '--set' of one letter)."""
    with pytest.raises(TypeError, match=r"sets= takes a list of 'path=value' strings, .*sets=\['seed=2'\]"):
        if call is sslspec.load_sweep:
            spec = tmp_path / "e.ssl"
            spec.write_text("experiment e {}\n")
            call(spec, root=tmp_path, sets="seed=2")
        else:
            out = {"out": tmp_path} if call is sslspec.run else {}
            call(text="experiment e {}\n", sets="seed=2", **out)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jobs": 0}, "jobs=0: must be a whole number >= 1"),
        ({"executor": "dask"}, "'dask': use 'local' or 'ray'"),
        ({"executor": "ray", "jobs": 2}, "jobs= applies to executor='local'"),
        ({"address": "auto"}, "address= and gpus= apply to executor='ray'"),
        ({"executor": "ray", "gpus": -1.0}, "gpus=-1.0: must be >= 0"),
    ],
)
def test_wrong_workers_and_executors_are_refused_before_anything_runs(
    base: Path, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    """Unknown executors, jobs < 1 and options of the other executor raise ValueError; nothing is
    written."""
    with pytest.raises(ValueError, match=message):
        sslspec.run(base / "base.ssl", out=tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_jobs_reach_the_local_worker_pool(base: Path, tmp_path: Path, kept: None) -> None:
    """run(jobs=2) over a 2-run sweep runs both runs in worker processes (the same executor as
    `sslspec run -j 2`) and returns both complete."""
    spec = tmp_path / "two.ssl"
    spec.write_text(f'include "{base / "base.ssl"}"\nsweep tiny {{ seed = 1..2 }}\n')
    ds = sslspec.run(spec, out=tmp_path / "out", jobs=2)
    assert list(ds.status.values.ravel()) == ["complete", "complete"]


def test_run_with_a_spec_error_raises_before_anything_runs(tmp_path: Path) -> None:
    """run() of a bad spec raises SpecError and creates no results root."""
    with pytest.raises(sslspec.SpecError, match="must be >= 1"):
        sslspec.run(text=BAD, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_of_several_experiments_asks_which(tmp_path: Path, kept: None) -> None:
    """run() of a spec with two experiments needs experiment=, which must name one; it runs only that one."""
    two = BASE + BASE.replace("experiment tiny", "experiment other")
    with pytest.raises(sslspec.SpecError, match="holds experiments other, tiny; pick one with experiment="):
        sslspec.run(text=two, out=tmp_path / "out")
    with pytest.raises(sslspec.SpecError, match="has no experiment 'tin'; did you mean 'tiny'"):
        sslspec.run(text=two, out=tmp_path / "out", experiment="tin")
    assert not (tmp_path / "out").exists()
    ds = sslspec.run(text=two, out=tmp_path / "out", experiment="other", device="cpu")
    assert ds.status.item() == "complete"
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == ["other"]


def test_run_returns_the_sweep_dataset_and_shares_the_cli_code_path(
    base: Path, tmp_path: Path, kept: None
) -> None:
    """run(text=...) returns load_sweep's Dataset; `sslspec run` on the same spec then finds every run
    up to date (same ids, same root), and each store records the text it was run from."""
    out = tmp_path / "results"
    ds = sslspec.run(text=SWEEP, base=base, out=out, device="cpu")
    assert dict(ds.sizes)["width"] == 2 and dict(ds.sizes)["seed"] == 2
    assert (ds.status == "complete").all()
    assert ds.level_corr.sel(level=0).isel(epoch=-1).notnull().all()
    again = sslspec.load_sweep(sslspec.plan(text=SWEEP, base=base), root=out)
    assert again.level_corr.equals(ds.level_corr)
    (base / "sweep.ssl").write_text(SWEEP)
    with sslspec_in_process() as cli:
        result = cli("run", base / "sweep.ssl", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("up to date") == 4
    assert "\x1b" not in result.stderr  # not a terminal: plain lines
    store = next(out.glob("tiny/*/v0001.zarr"))
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert attrs["spec_text"] == SWEEP
    assert attrs["spec_path"] == str(base / "<text>")
    assert list(attrs["spec_includes"].values()) == [BASE]


# Simple loss on an unnormalized output is unbounded below: lr = 1e6 sends the first run to NaN.
DIVERGES = """\
include "base.ssl" {
  data.depth        = 3
  network.width     = 4
  network.normalize = none
  loss.kind         = simple
  train.batch       = 32
  train.samples     = 320
}
sweep tiny {
  optimizer.lr = [1e6, 0.001]
}
"""


def test_a_failed_run_is_in_the_dataset_not_an_exception(base: Path, tmp_path: Path, kept: None) -> None:
    """run() of a sweep with a diverging run returns the Dataset, that run `failed` with NaN values."""
    ds = sslspec.run(text=DIVERGES, base=base, out=tmp_path / "results", device="cpu")
    assert list(ds.status.values) == ["failed", "complete"]
    assert ds.level_corr.isel(lr=0).isnull().all() and ds.level_corr.isel(lr=1).notnull().all()
