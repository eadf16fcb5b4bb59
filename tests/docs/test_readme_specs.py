"""The README's spec text parses: a new user copies it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslspec.lang.syntax import parse

README = Path(__file__).resolve().parents[2] / "README.md"


def _code_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line of the fence, language, body) of each fenced code block of a Markdown text."""
    out, body, lang, start = [], None, "", 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            if body is None:
                body, lang, start = [], line[3:].strip(), number
            else:
                out.append((start, lang, "\n".join(body)))
                body = None
        elif body is not None:
            body.append(line)
    return out


SPEC_BLOCKS = [(n, lang, b) for n, lang, b in _code_blocks(README.read_text()) if lang in ("ssl", "")]


def test_the_readme_has_whole_specs_and_fragments() -> None:
    """Both kinds of spec text are found (so the test below cannot pass on nothing)."""
    langs = [lang for _, lang, _ in SPEC_BLOCKS]
    assert langs.count("ssl") >= 2 and langs.count("") >= 2, langs


@pytest.mark.parametrize(("line", "lang", "body"), SPEC_BLOCKS, ids=[str(n) for n, _, _ in SPEC_BLOCKS])
def test_readme_spec_text_parses(line: int, lang: str, body: str) -> None:
    """A ```ssl block parses as a file; an unlabelled block of spec fragments (blocks and items, one
    alternative a line) parses inside an experiment: items end at a newline or `;`, never `,`."""
    parse(body if lang == "ssl" else "experiment e {\n" + body + "\n}\n", f"README.md:{line}")
