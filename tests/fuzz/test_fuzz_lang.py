"""Fuzzing the language: `check`, `fmt` and `plan` on generated and damaged texts and `--set`s.

For every text (valid, mutated at the character or token level, or random): the three commands
raise nothing but SpecError, and every diagnostic points at a line and column inside the text it
names. For valid texts: fmt is idempotent, parse(fmt(x)) == parse(x), and the plan (every run hash)
is unchanged by fmt. The number of examples comes from the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from texts import any_text, settings, specs

from sslspec.cli import app
from sslspec.errors import Diagnostic, SpecError
from sslspec.lang.fmt import fmt
from sslspec.lang.syntax import parse
from sslspec.spec.lower import check, lower

FILE = "fuzz.ssl"
# Texts the fuzzer found that broke an invariant once; kept as explicit examples.
FOUND = [
    "experiment e {\n  data hltm { tree = " + "[" * 600 + "2" + "]" * 600 + " }\n}\n",  # RecursionError
    "experiment e {\n  x = " + "[" * 3000 + "]" * 3000 + "\n}\n",
    "experiment e {\n  a { " * 400 + "}\n" * 400 + "}\n",
    "experiment e {\n  seed = " + "9" * 5000 + "\n}\n",  # int() refuses over 4300 digits
    "experiment e {\n  x = 1.." + "9" * 5000 + "\n}\n",
    "experiment e { data hltm {}; network tree_relu {}; loss simple {}; optimizer sgd {} }\n"
    "sweep e { seed = 0..100000000 }\n",  # expanded a hundred million runs
    "experiment e {\u2028 seed = 1 }\n",  # a line break to str.splitlines, not to the lexer
    "experiment e {\r seed = 1 }\n",
]


def _inside(d: Diagnostic) -> None:
    """A diagnostic has a span, with its source, and the span's start lies inside that source."""
    assert d.span is not None and d.source is not None, d
    lines = d.source.split("\n")
    assert 1 <= d.span.line <= len(lines), (d, len(lines))
    assert 1 <= d.span.col <= len(lines[d.span.line - 1]) + 1, (d, lines[d.span.line - 1])
    assert d.render().startswith(f"{d.span.file}:{d.span.line}:{d.span.col}: error: ")


def _outcome(text: str, sets: Sequence[str] = ()) -> tuple[str, ...]:
    """The plan's run hashes, or ('error', messages...) — checking each diagnostic's position."""
    try:
        plan = lower(FILE, sets, text)
    except SpecError as exc:
        for d in exc.diagnostics:
            _inside(d)
        return ("error", *sorted(d.message for d in exc.diagnostics))
    return tuple(r.hash for r in plan.runs)


_DIR = Path(tempfile.mkdtemp(prefix="sslspec-fuzz-"))


def _cli(text: str, *args: str) -> None:
    """`sslspec ARGS file` on the text exits 0 or 2 (never an exception) and prints no traceback."""
    path = _DIR / FILE
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    result = CliRunner().invoke(app, [*args[:1], str(path), *args[1:]])
    assert result.exit_code in (0, 2) and not isinstance(result.exception, Exception), result.exception
    assert "Traceback" not in result.output


def _errors_inside(text: str) -> None:
    """check, fmt and plan of `text` raise only SpecError, every diagnostic inside the text."""
    for d in check(FILE, (), text):
        _inside(d)
    try:
        fmt(text, FILE)
    except SpecError as exc:
        for d in exc.diagnostics:
            _inside(d)
    _outcome(text)


@given(any_text)
@example("")
@example("\n\n")
def test_check_fmt_and_plan_raise_only_spec_errors_at_positions_inside_the_text(text: str) -> None:
    """Any text: check/fmt/plan raise only SpecError, each diagnostic at a line:col inside the text."""
    _errors_inside(text)


@pytest.mark.parametrize("text", FOUND, ids=range(len(FOUND)))
def test_texts_that_once_broke_an_invariant(text: str) -> None:
    """Regression cases the fuzzer found: deep nesting, huge integers and ranges, odd line breaks."""
    _errors_inside(text)
    _cli(text, "plan")


@given(any_text)
def test_cli_check_fmt_and_plan_exit_0_or_2(text: str) -> None:
    """The CLI's check, fmt and plan (rich table and --json) on any text exit 0 or 2, no traceback."""
    _cli(text, "check")
    _cli(text, "fmt")
    _cli(text, "plan")
    _cli(text, "plan", "--json")


@given(specs())
def test_fmt_is_idempotent_keeps_the_meaning_and_the_plan(text: str) -> None:
    """A valid text: fmt(fmt(x)) == fmt(x), parse(fmt(x)) == parse(x), same run hashes (or errors)."""
    once = fmt(text, FILE)
    assert fmt(once, FILE) == once
    assert parse(once, FILE) == parse(text, FILE)
    assert _outcome(once) == _outcome(text)


@given(specs(), settings)
def test_set_raises_only_spec_errors_and_commutes_with_fmt(text: str, sets: list[str]) -> None:
    """`--set path=value` with random paths and values: only SpecError, at positions inside the
    text or the --set; and fmt does not change the plan they give."""
    assert _outcome(fmt(text, FILE), sets) == _outcome(text, sets)
    for d in check(FILE, sets, text):
        _inside(d)
