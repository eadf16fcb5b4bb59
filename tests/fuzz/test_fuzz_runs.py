"""Fuzzing the newest constructs end to end: a generated image experiment (image_specs.py: the
`augment images` steps, `convnet` / `resnet`, `nt_xent` / `exact_cov` / `byol` with its predictor,
learning-rate schedules, the probe, k-NN, the per-layer operator, the theorem check), with random
`--set` overrides of the same fields. Whatever `check` accepts runs to a complete store on a CPU;
whatever it refuses is exit 2 with every diagnostic at a line and column inside the text or the
`--set` it names, and `run` refuses it the same way before writing anything; and `fmt` keeps
both the experiment and the verdict.

Runs are the slow part (a few seconds each on a busy 2-core machine), so the run test takes a
fortieth of the profile's examples (4 under `ci`, 50 under `slow`; about 30 s of CPU time
under `ci`) and is marked slow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import xarray as xr
from hypothesis import example, given
from hypothesis import settings as hsettings
from image_specs import image_specs, overrides
from inprocess import sslspec_in_process
from test_fuzz_lang import _inside

from sslspec.api import check
from sslspec.lang.fmt import fmt
from sslspec.lang.syntax import parse

FILE = "fuzz.ssl"
RUNS = max(4, hsettings.default.max_examples // 40)
_DIR = Path(tempfile.mkdtemp(prefix="sslspec-fuzz-runs-"))


def _write(text: str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_DIR))
    (folder / FILE).write_text(text)
    return folder / FILE


def _set_args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _accepted(text: str, sets: list[str]) -> bool:
    return not check(text=text, sets=sets)


@pytest.mark.slow
@hsettings(max_examples=RUNS)
@given(image_specs().flatmap(lambda t: overrides.map(lambda s: (t, s))).filter(lambda ts: _accepted(*ts)))
@example(  # found by this test: a head without batch norm broke the theorem check's Jacobian
    (
        "experiment fz {\n  data digits { size = 8 }\n"
        "  network convnet { channels = [2]; projector = [3, 2]; batch_norm = false }\n"
        "  loss nt_xent {}\n  optimizer sgd {}\n  train { batch = 4; samples = 4; epochs = 1 }\n"
        "  measure { theorem_check { nodes = [0]; batches = [1] } }\n}\n",
        [],
    )
)
def test_what_check_accepts_runs_to_a_complete_store(case: tuple[str, list[str]]) -> None:
    """An image experiment that passes `check` (with its --set overrides) runs: exit 0 and one
    complete version whose losses are finite."""
    text, sets = case
    spec = _write(text)
    with sslspec_in_process() as sslspec:
        assert sslspec("check", spec, *_set_args(sets)).exit_code == 0
        result = sslspec("run", spec, *_set_args(sets), "--out", spec.parent / "out", "-j", "1")
    assert result.exit_code == 0, (text, sets, result.stderr, result.exception)
    (store,) = sorted((spec.parent / "out").rglob("v*.zarr"))
    ds = xr.open_zarr(store, consolidated=False)
    assert ds.attrs["status"] == "complete", ds.attrs.get("error")


@given(image_specs(), overrides)
@example(
    "experiment fz {\n  data digits { size = 8 }\n  augment images { blur { kernel = 17 } }\n"
    "  network convnet { channels = [2]; projector = [2] }\n  loss nt_xent {}\n  optimizer sgd {}\n"
    "  train { batch = 2; samples = 2; epochs = 1 }\n}\n",
    [],
)
def test_what_check_refuses_is_exit_2_at_positions_and_run_refuses_it_too(text: str, sets: list[str]) -> None:
    """A refused experiment: every diagnostic lies inside the text or the --set it names; the CLI's
    check and run both exit 2 with no traceback, and run writes nothing."""
    problems = check(text=text, sets=sets)
    if not problems:
        return
    for d in problems:
        _inside(d)
    spec = _write(text)
    with sslspec_in_process() as sslspec:
        checked = sslspec("check", spec, *_set_args(sets))
        ran = sslspec("run", spec, *_set_args(sets), "--out", spec.parent / "out")
    for result in (checked, ran):
        assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert not (spec.parent / "out").exists()


@given(image_specs())
def test_fmt_keeps_an_image_experiment_and_its_verdict(text: str) -> None:
    """fmt of a generated image experiment is idempotent, parses to the same IR, and check gives
    the same verdict (the same messages) before and after."""
    once = fmt(text, FILE)
    assert fmt(once, FILE) == once and parse(once, FILE) == parse(text, FILE)
    before = sorted(d.message for d in check(text=text))
    assert sorted(d.message for d in check(text=once)) == before
