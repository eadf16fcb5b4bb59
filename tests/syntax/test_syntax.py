"""Stage 1, parse: .ssl text -> Spec IR, and the messages for text that does not parse.

Golden cases live in `errors/NAME.ssl` with the rendered message in `errors/NAME.err`
(regenerate with `pytest --update-golden`). Each case also states by hand, in its first lines,
where the error must be (`# expect: LINE:COL`) and optionally a phrase it must say
(`# says: ...`); those claims are not touched by regeneration.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sslspec.errors import SyntaxFault
from sslspec.lang import ir
from sslspec.lang.syntax import TERMINAL_NAMES, _parser, parse, parse_value

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.ssl"))
SSLSPEC = Path(sys.executable).parent / "sslspec"

REQUIRED_CASES = {
    "unclosed_block",
    "truncated_mid_value",
    "missing_value",
    "stray_character",
    "misspelled_keyword",
    "missing_equal",
    "unclosed_list",
    "bad_number_trailing_dot",
    "unterminated_string",
    "text_after_value",
}


def _claims(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    expect = [(int(a), int(b)) for a, b in re.findall(r"^# expect: (\d+):(\d+)$", text, re.M)]
    says = re.findall(r"^# says: (.*)$", text, re.M)
    return expect, says


def _blocks(items: tuple[ir.Item, ...]) -> dict[str, ir.Block]:
    return {i.name: i for i in items if isinstance(i, ir.Block)}


# ---- the reference specs ------------------------------------------------------------------


def test_simclr_spec_parses_into_one_experiment_with_its_blocks() -> None:
    """specs/hltm_simclr.ssl parses to one experiment with the seven blocks and kinds as written."""
    spec = parse((SPECS / "hltm_simclr.ssl").read_text(), "hltm_simclr.ssl")
    (exp,) = spec.statements
    assert isinstance(exp, ir.Experiment) and exp.name == "hltm_simclr"
    blocks = _blocks(exp.items)
    kinds = {n: b.kind for n, b in blocks.items()}
    assert kinds == {
        "data": "hltm",
        "augment": None,
        "network": "tree_relu",
        "loss": "infonce",
        "optimizer": "sgd",
        "train": None,
        "measure": None,
    }
    polarity = next(i for i in blocks["data"].items if isinstance(i, ir.Field) and i.name == "polarity")
    assert polarity.value == ir.Call("uniform", (ir.Arg("low", ir.Float(0.8)), ir.Arg("high", ir.Float(1.0))))
    measure = blocks["measure"].items
    assert [type(i).__name__ for i in measure] == ["Field", "Flag", "Block", "Flag"]
    assert spec.comments[0].text.startswith("# Hierarchical latent tree model")


def test_table_spec_parses_into_an_include_and_a_three_axis_sweep() -> None:
    """specs/hltm_table.ssl is an include of hltm_simclr.ssl and a sweep with three axes, seeds a range."""
    spec = parse((SPECS / "hltm_table.ssl").read_text(), "hltm_table.ssl")
    inc, sweep = spec.statements
    assert inc == ir.Include("hltm_simclr.ssl", ())
    assert isinstance(sweep, ir.Sweep) and sweep.target == "hltm_simclr"
    assert [a.path for a in sweep.axes if isinstance(a, ir.Field)] == [
        ("network", "width"),
        ("data", "polarity", "low"),
        ("seed",),
    ]
    assert sweep.axes[2] == ir.Field(("seed",), ir.Range(1, 5))


def test_spans_point_at_the_text_and_are_ignored_by_equality() -> None:
    """A node's span gives its 1-based line and column; re-spaced text parses to an equal IR."""
    a = parse("experiment e {\n  seed = 7\n}\n", "a.ssl")
    b = parse("\n\nexperiment   e {  seed=7  }", "b.ssl")
    assert a.statements == b.statements
    field = a.statements[0].items[0]  # type: ignore[union-attr]
    assert field.span == ir.Span("a.ssl", 2, 3, 2, 11)
    assert field.value.span == ir.Span("a.ssl", 2, 10, 2, 11)


def test_values_of_every_kind_parse() -> None:
    """Each value form (int, float, string, bool, name, list, range, call) becomes its IR node."""
    cases = {
        "-3": ir.Int(-3),
        "1e-4": ir.Float(1e-4),
        "+2.5": ir.Float(2.5),
        '"a\\"b\\n"': ir.Str('a"b\n'),
        "true": ir.Bool(True),
        "l2": ir.Ident("l2"),
        "[1, [2], ]": ir.List((ir.Int(1), ir.List((ir.Int(2),)))),
        "1..5": ir.Range(1, 5),
        "f(a = 1)": ir.Call("f", (ir.Arg("a", ir.Int(1)),)),
    }
    assert {text: parse_value(text) for text in cases} == cases
    assert parse_value("1e-4").text == "1e-4"  # type: ignore[union-attr]


def test_newlines_inside_brackets_are_dropped_and_comments_kept() -> None:
    """A list may span lines (with comments inside); the comment is recorded with its position."""
    spec = parse("experiment e {\n  x = [1,\n    2, # two\n  ]\n}\n")
    assert spec.statements[0].items[0].value == ir.List((ir.Int(1), ir.Int(2)))  # type: ignore[union-attr]
    assert spec.comments == (ir.Comment(3, 8, "# two"),)


# ---- the grammar --------------------------------------------------------------------------


def test_no_terminal_is_anonymous_and_each_has_a_message_name() -> None:
    """Every terminal of the grammar is named (no __ANON) and named in messages (TERMINAL_NAMES)."""
    names = [t.name for t in _parser().terminals]
    assert not [n for n in names if n.startswith("__")]
    assert {n for n in names if n != "WS"} <= set(TERMINAL_NAMES)


# ---- golden parse errors -------------------------------------------------------------------


def test_every_required_error_case_exists() -> None:
    """The golden folder holds each parse-error case the language promises a message for."""
    assert set(CASES) >= REQUIRED_CASES


def _render(name: str) -> str:
    path = ERRORS / f"{name}.ssl"
    with pytest.raises(SyntaxFault) as info:
        parse(path.read_text(), f"{name}.ssl")
    return info.value.render() + "\n"


@pytest.mark.parametrize("name", CASES)
def test_parse_error_matches_golden(name: str, golden: Callable[[Path, str], None]) -> None:
    """The rendered parse error (file:line:col, source line, caret) equals errors/NAME.err."""
    golden(ERRORS / f"{name}.err", _render(name))


@pytest.mark.parametrize("name", CASES)
def test_parse_error_is_where_the_case_says(name: str) -> None:
    """The single diagnostic sits at the case's `# expect: LINE:COL` and says its `# says:` phrase."""
    text = (ERRORS / f"{name}.ssl").read_text()
    expect, says = _claims(text)
    with pytest.raises(SyntaxFault) as info:
        parse(text, f"{name}.ssl")
    spans = [d.span for d in info.value.diagnostics]
    assert [(s.line, s.col) for s in spans if s] == expect
    rendered = info.value.render()
    assert rendered.startswith(f"{name}.ssl:{expect[0][0]}:{expect[0][1]}: error: ")
    for phrase in says:
        assert phrase in rendered


def test_parse_errors_exit_2_through_the_cli_without_a_traceback(tmp_path: Path) -> None:
    """`sslspec check` on every bad file exits 2 and prints exactly the golden messages, no traceback."""
    files = [f"{name}.ssl" for name in CASES]
    proc = subprocess.run(
        [str(SSLSPEC), "check", *files], cwd=ERRORS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    expected = "".join((ERRORS / f"{name}.err").read_text() for name in CASES)
    assert proc.stderr == expected + f"{len(CASES)} errors\n"


def test_one_parse_error_through_the_cli_starts_with_its_position() -> None:
    """A single bad file's stderr opens with `file:line:col: error:` for the position of the fault."""
    path = ERRORS / "stray_character.ssl"
    proc = subprocess.run([str(SSLSPEC), "check", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{path}:4:10: error: unexpected character '@'\n")
