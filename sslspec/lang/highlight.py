"""Syntax highlighting for .ssl: a Pygments lexer, registered as the `pygments.lexers` entry point
`ssl` (see pyproject.toml), so that Markdown, Sphinx, MkDocs and Jupyter colour ```ssl blocks.

The tokens follow sslspec/lang/grammar.lark: keywords, comments, strings, numbers and ranges,
`..` and `=`; a name before `{` opens a block (its kind, when written, after it), a name before
`=` or `.` is a field path, a name before `(` a call. Anything the grammar cannot lex is an
Error token, so a test can lex every spec and find none.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class SslLexer(RegexLexer):  # type: ignore[misc]  # pygments ships no type hints
    """Lexer for sslspec experiment specs (.ssl)."""

    name = "sslspec"
    aliases: ClassVar[list[str]] = ["ssl", "sslspec"]
    filenames: ClassVar[list[str]] = ["*.ssl"]
    mimetypes: ClassVar[list[str]] = ["text/x-sslspec"]
    url = "https://arxiv.org/abs/2010.00578"

    tokens: ClassVar[dict[str, list[tuple[object, ...]]]] = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (
                r"(experiment|sweep)(\s+)(" + _NAME + ")",
                bygroups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (words(("include", "zip"), suffix=r"\b"), Keyword),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (r'"([^"\\\n]|\\.)*"', String.Double),
            (r"([-+]?\d+)(\.\.)([-+]?\d+)", bygroups(Number.Integer, Operator, Number.Integer)),
            (r"[-+]?(\d+\.\d+([eE][-+]?\d+)?|\d+[eE][-+]?\d+)", Number.Float),
            (r"[-+]?\d+", Number.Integer),
            (
                "(" + _NAME + r")([ \t]+)(" + _NAME + r")(?=[ \t]*\{)",
                bygroups(Name.Tag, Whitespace, Name.Class),
            ),
            (_NAME + r"(?=[ \t]*\{)", Name.Tag),
            (_NAME + r"(?=[ \t]*\()", Name.Function),
            (_NAME + r"(?=[ \t]*(=|\.[A-Za-z_]))", Name.Attribute),
            (_NAME, Name),
            (r"=", Operator),
            (r"[{}()\[\],;.]", Punctuation),
        ]
    }
