"""Stage 2, resolve and check: semantic errors, each at its exact line and column, all in one pass.

Golden cases live in `errors/NAME.ssl` with the rendered messages in `errors/NAME.err`
(regenerate with `pytest --update-golden`). Each case states by hand where its errors must be,
one `# expect: [FILE:]LINE:COL` per error in order, and phrases they must say (`# says: ...`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslspec.errors import CheckError, SpecError
from sslspec.spec.lower import lower

ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.ssl"))
SSLSPEC = Path(sys.executable).parent / "sslspec"

REQUIRED_CASES = {
    "unknown_field",
    "unknown_block_kind",
    "wrong_type",
    "temperature_not_positive",
    "depth_below_one",
    "branching_below_one",
    "width_below_one",
    "polarity_above_one",
    "polarity_negative",
    "uniform_low_above_high",
    "share_not_below_depth",
    "share_too_many_classes",
    "duplicate_field",
    "sweep_unknown_field",
    "sweep_zero_runs",
    "include_missing",
    "circular_include_a",
    "circular_include_b",
    "samples_not_multiple_of_batch",
    "states_with_random_sign",
    "several_errors",
    "theorem_check_node_past_tree",
    "theorem_check_epoch_past_training",
    "theorem_check_loss_without_operator",
    "negatives_not_below_batch",
}


def _errors(name: str, monkeypatch: pytest.MonkeyPatch) -> CheckError:
    monkeypatch.chdir(ERRORS)  # file names in messages are then as short as the includes write them
    with pytest.raises(CheckError) as info:
        lower(f"{name}.ssl")
    return info.value


def _stable(text: str) -> str:
    """Drop this checkout's absolute folder from messages (a missing include names its full path)."""
    return text.replace(f"{ERRORS}/", "")


def test_every_required_error_case_exists() -> None:
    """The golden folder holds each semantic-error case the checker promises a message for."""
    assert set(CASES) >= REQUIRED_CASES


@pytest.mark.parametrize("name", CASES)
def test_check_error_matches_golden(
    name: str, monkeypatch: pytest.MonkeyPatch, golden: Callable[[Path, str], None]
) -> None:
    """The rendered check errors (file:line:col, source line, caret) equal errors/NAME.err."""
    golden(ERRORS / f"{name}.err", _stable(_errors(name, monkeypatch).render()) + "\n")


@pytest.mark.parametrize("name", CASES)
def test_check_errors_are_where_the_case_says(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The diagnostics sit exactly at the case's `# expect:` positions, in order, saying each `# says:`."""
    text = (ERRORS / f"{name}.ssl").read_text()
    expect = [
        (file or f"{name}.ssl", int(line), int(col))
        for file, line, col in re.findall(r"^# expect: (?:(\S+\.ssl):)?(\d+):(\d+)$", text, re.M)
    ]
    says = re.findall(r"^# says: (.*)$", text, re.M)
    exc = _errors(name, monkeypatch)
    assert [(d.span.file, d.span.line, d.span.col) for d in exc.diagnostics if d.span] == expect
    assert len(exc.diagnostics) == len(expect)
    messages = [d.message for d in exc.diagnostics]
    for phrase in says:
        assert any(phrase in m for m in messages), f"no message says {phrase!r}: {messages}"


def test_several_errors_are_reported_together_in_source_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """One file with errors in fields, values, a sweep and a second experiment reports all, sorted."""
    exc = _errors("several_errors", monkeypatch)
    positions = [(d.span.line, d.span.col) for d in exc.diagnostics if d.span]
    assert len(positions) == 7
    assert positions == sorted(positions)
    assert len({d.message for d in exc.diagnostics}) == 7


def test_check_errors_exit_2_through_the_cli_without_a_traceback() -> None:
    """`sslspec check` on a file with several errors exits 2 and prints all of them, then the count."""
    proc = subprocess.run(
        [str(SSLSPEC), "check", "several_errors.ssl"], cwd=ERRORS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (ERRORS / "several_errors.err").read_text() + "7 errors\n"


def test_a_good_spec_checks_clean(tmp_path: Path) -> None:
    """The minimal experiment every case starts from has no errors (so each case fails for its one reason)."""
    spec = tmp_path / "ok.ssl"
    spec.write_text(
        "experiment a {\n  data hltm { depth = 3 }\n  network tree_relu { width = 4 }\n"
        "  loss simple { beta = 0 }\n  optimizer sgd { lr = 0.1 }\n}\n"
    )
    assert len(lower(spec).runs) == 1


def test_a_file_that_is_not_utf8_is_an_error_at_its_first_bad_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that are not UTF-8 are reported at their line and column, directly and through an include."""
    monkeypatch.chdir(tmp_path)
    Path("latin1.ssl").write_bytes(b'experiment a {\n  device = "caf\xe9"\n}\n')
    Path("top.ssl").write_text('include "latin1.ssl"\n')
    for name in ("latin1.ssl", "top.ssl"):
        with pytest.raises(CheckError if name == "top.ssl" else SpecError) as info:
            lower(name)
        (d,) = info.value.diagnostics
        assert d.span is not None and (d.span.file, d.span.line, d.span.col) == ("latin1.ssl", 2, 16)
        assert d.message == "not UTF-8 text (byte 0xe9); save the file as UTF-8"


SPEC = (Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl").read_text() + (
    "\nsweep hltm_simclr {\n  zip {\n    network.width = [2, 5]\n    seed = [1, 2]\n  }\n"
    "  data.polarity.low = [0.7, 0.8]\n}\n"
)
PIECES = [
    *"{}[]()=,.\n",
    "..", "-1", "0", "17", "1e-4", "1e999", '"x"', "true", "uniform(low = 0.2)", "constant(value = 2)",
    "[[2, 2], [3]]", "[70000]", "tree", "depth", "kind", "zip", "sweep", "relu", "leaky_relu(slope = 0.5)",
    "theorem_check", "nodes", "[]", "# c\n", "mlp", "byol", "5..1", "states", "sign", "999999999999999999999",
]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SPEC)), st.integers(0, 6), st.sampled_from(PIECES)), max_size=4))
def test_any_edit_of_a_spec_gives_a_plan_or_spec_errors_never_a_crash(
    edits: list[tuple[int, int, str]],
) -> None:
    """Deleting text and inserting tokens anywhere in a spec yields a plan or SpecErrors, nothing else."""
    text = SPEC
    for at, cut, piece in edits:
        at = min(at, len(text))
        text = text[:at] + f" {piece} " + text[at + cut :]
    try:
        lower("edited.ssl", text=text)
    except SpecError as exc:
        assert all(d.render() for d in exc.diagnostics)
