"""Syntax highlighting: the Pygments lexer for .ssl is found by alias and file name through its
entry point, lexes every spec with no error token, and the docs mark their spec blocks `ssl`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pygments import lex
from pygments.lexers import find_lexer_class_by_name, get_lexer_for_filename
from pygments.token import Error, Token

from sslspec.errors import SpecError
from sslspec.lang.highlight import SslLexer
from sslspec.lang.syntax import parse

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").rglob("*.ssl")) + sorted((ROOT / "tests").rglob("*.ssl"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _errors(text: str) -> list[tuple[int, str]]:
    """(line, text) of every Error token the lexer produces."""
    found, line = [], 1
    for kind, value in lex(text, SslLexer()):
        if kind in Error:
            found.append((line, value))
        line += value.count("\n")
    return found


def test_the_entry_point_registers_the_lexer() -> None:
    """Pygments finds the lexer by the alias `ssl` and by a `.ssl` file name (the installed entry point)."""
    assert find_lexer_class_by_name("ssl") is SslLexer
    assert isinstance(get_lexer_for_filename("specs/hltm_simclr.ssl"), SslLexer)


def test_every_spec_lexes_without_error_tokens() -> None:
    """Every .ssl file in specs/ (and the tests' spec fixtures that parse) lexes with no Error token."""
    assert len(SPECS) > 9
    bad = {}
    for path in SPECS:
        text = path.read_text()
        if path.is_relative_to(ROOT / "tests"):
            try:
                parse(text, str(path))
            except SpecError:
                continue  # a syntax-error fixture: it is meant not to lex cleanly
        if _errors(text):
            bad[str(path.relative_to(ROOT))] = _errors(text)
    assert bad == {}


def test_text_outside_the_grammar_is_an_error_token() -> None:
    """An unterminated string or a stray character gives Error tokens (the check above can fail)."""
    assert _errors('experiment e {\n  results = "unterminated\n}\n') == [(2, '"')]
    assert _errors("experiment e { seed = 1 @ }\n") == [(1, "@")]


def test_tokens_follow_the_grammar() -> None:
    """Keywords, block names, kinds, field paths, calls, ranges and comments get their token types."""
    text = (
        "sweep e {\n  data.polarity.low = [0.7, 1e-1]\n  seed = 1..5 # five\n}\n"
        "experiment e { loss infonce { }; data hltm { polarity = uniform(low = 0.5) } }\n"
    )
    tokens = [(kind, value) for kind, value in lex(text, SslLexer()) if kind not in Token.Text]
    assert tokens[:2] == [(Token.Keyword.Declaration, "sweep"), (Token.Name.Class, "e")]
    assert (Token.Name.Attribute, "polarity") in tokens and (Token.Number.Float, "1e-1") in tokens
    assert [(Token.Number.Integer, "1"), (Token.Operator, ".."), (Token.Number.Integer, "5")] == [
        t for t in tokens if t[1] in ("1", "..", "5")
    ]
    assert (Token.Comment.Single, "# five") in tokens
    assert (Token.Name.Tag, "loss") in tokens and (Token.Name.Class, "infonce") in tokens
    assert (Token.Name.Function, "uniform") in tokens and (Token.Name.Attribute, "low") in tokens


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_mark_spec_blocks_ssl(doc: Path) -> None:
    """In the README and docs/*.md a block is marked `ssl` exactly when it is a spec, and lexes cleanly."""
    for match in FENCE.finditer(doc.read_text()):
        lang, body = match.groups()
        try:
            parse(body, doc.name)
            is_spec = True
        except SpecError:
            is_spec = False
        assert (lang == "ssl") == is_spec, f"{doc.name}: block {body.splitlines()[0]!r} is marked {lang!r}"
        if is_spec:
            assert _errors(body) == []
