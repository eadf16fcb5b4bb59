"""Parse: .ssl text -> Spec IR (sslspec.lang.ir). The grammar is `grammar.lark`, loaded once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from sslspec.errors import Diagnostic, SyntaxFault, did_you_mean, either
from sslspec.lang import ir

KEYWORDS = ("include", "experiment", "sweep")
# Deepest nesting of (), [] and {} together. Every later stage walks values and blocks
# recursively; without a bound, a deep enough text ends in a RecursionError instead of a message.
MAX_NESTING = 64
INT_BITS = 64  # integers are stored as int64; a longer literal is refused where it is written

# What each terminal is called in messages; every terminal of the grammar is named here.
TERMINAL_NAMES = {
    "INCLUDE": "'include'",
    "EXPERIMENT": "'experiment'",
    "SWEEP": "'sweep'",
    "ZIP": "'zip'",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "NAME": "a name",
    "FLOAT": "a number",
    "INT": "an integer",
    "STRING": "a string",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "DOTDOT": "'..'",
    "DOT": "'.'",
    "_NL": "a new line",
    "$END": "the end of the file",
}


class _TooDeep(Exception):
    """Raised by the post-lexer at the bracket that nests deeper than MAX_NESTING."""

    def __init__(self, token: Token) -> None:
        super().__init__(str(token))
        self.token = token


class _Layout:
    """Post-lexer: drops newlines inside () and [], bounds the nesting of (), [] and {} and
    records every comment it sees."""

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.comments: list[ir.Comment] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.comments = []  # one parse at a time: the parser is single-threaded by design
        depth = 0  # inside () and []
        nesting = 0  # inside (), [] and {}
        for tok in stream:
            if tok.type == "_NL":
                self._collect(tok)
                if depth > 0:
                    continue
            elif tok.type in ("LPAR", "LSQB", "LBRACE"):
                depth += tok.type != "LBRACE"
                nesting += 1
                if nesting > MAX_NESTING:
                    raise _TooDeep(tok)
            elif tok.type in ("RPAR", "RSQB", "RBRACE"):
                depth = max(0, depth - (tok.type != "RBRACE"))
                nesting = max(0, nesting - 1)
            yield tok

    def _collect(self, tok: Token) -> None:
        line, col = tok.line or 1, tok.column or 1
        for i, raw in enumerate(str(tok).split("\n")):
            stripped = raw.lstrip(" \t\r")
            if stripped.startswith("#"):
                start = col + len(raw) - len(stripped) if i == 0 else len(raw) - len(stripped) + 1
                self.comments.append(ir.Comment(line + i, start, stripped.rstrip("\r")))


_LAYOUT = _Layout()


@cache
def _parser() -> Lark:
    grammar = files("sslspec.lang").joinpath("grammar.lark").read_text()
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        strict=True,
        postlex=_LAYOUT,
        cache=True,
        start=["start", "set_value"],
        maybe_placeholders=False,
    )


def _span(file: str, meta: Any) -> ir.Span:
    return ir.Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


# Aliases: inside _ToIR the name `list` is the transformer method for the `list` rule.
_Tokens = list[Token]
_Children = list[Any]


class _ToIR(Transformer[Token, Any]):
    """Lark tree -> ir nodes, attaching a span to every node."""

    def __init__(self, file: str, text: str) -> None:
        super().__init__()
        self.file = file
        self.text = text

    def _s(self, x: Any) -> ir.Span:
        return _span(self.file, x)

    def _tok(self, t: Token) -> ir.Span:
        return ir.Span(self.file, t.line or 1, t.column or 1, t.end_line or 1, t.end_column or 1)

    def _unquote(self, tok: Token) -> str:
        """A STRING token's value. Escapes are JSON's, the ones the formatter writes."""
        try:
            value: str = json.loads(str(tok), strict=False)
        except json.JSONDecodeError as exc:
            line = tok.line or 1
            col = (tok.column or 1) + str(tok).rfind("\\", 0, exc.pos + 1)  # at the backslash
            msg = 'bad escape in string; use \\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX'
            span = ir.Span(self.file, line, col, line, col + 2)
            raise SyntaxFault([Diagnostic(msg, span, self.text)]) from None
        return value

    def _int(self, tok: Token) -> int:
        """An INT token's value; SyntaxFault when it does not fit in a signed 64-bit integer."""
        text = str(tok)
        digits = text.lstrip("+-").lstrip("0")
        value = int(text) if len(digits) <= 20 else None  # int() itself refuses over 4300 digits
        if value is None or not -(2 ** (INT_BITS - 1)) <= value < 2 ** (INT_BITS - 1):
            shown = text if len(text) <= 24 else f"{text[:20]}... ({len(digits)} digits)"
            msg = f"integer {shown} is out of range (integers must fit in {INT_BITS} bits)"
            raise SyntaxFault([Diagnostic(msg, self._tok(tok), self.text)])
        return value

    # values
    def int(self, c: _Tokens) -> ir.Int:
        return ir.Int(self._int(c[0]), span=self._tok(c[0]))

    def float(self, c: _Tokens) -> ir.Float:
        return ir.Float(float(c[0]), str(c[0]), span=self._tok(c[0]))

    def string(self, c: _Tokens) -> ir.Str:
        return ir.Str(self._unquote(c[0]), span=self._tok(c[0]))

    def true(self, c: _Tokens) -> ir.Bool:
        return ir.Bool(True, span=self._tok(c[0]))

    def false(self, c: _Tokens) -> ir.Bool:
        return ir.Bool(False, span=self._tok(c[0]))

    def ident(self, c: _Tokens) -> ir.Ident:
        return ir.Ident(str(c[0]), span=self._tok(c[0]))

    @v_args(meta=True)
    def list(self, meta: Any, c: _Children) -> ir.List:
        return ir.List(tuple(x for x in c if not isinstance(x, Token)), span=self._s(meta))

    @v_args(meta=True)
    def range(self, meta: Any, c: _Tokens) -> ir.Range:
        return ir.Range(self._int(c[0]), self._int(c[2]), span=self._s(meta))

    @v_args(meta=True)
    def call(self, meta: Any, c: _Children) -> ir.Call:
        args = tuple(x for x in c if isinstance(x, ir.Arg))
        return ir.Call(str(c[0]), args, span=self._s(meta))

    @v_args(meta=True)
    def arg(self, meta: Any, c: _Children) -> ir.Arg:
        return ir.Arg(str(c[0]), c[2], span=self._s(meta))

    def set_value(self, c: _Children) -> ir.Value:
        return c[0]  # type: ignore[no-any-return]

    # items
    @v_args(meta=True)
    def field(self, meta: Any, c: _Children) -> ir.Field:
        return ir.Field((str(c[0]),), c[2], span=self._s(meta))

    @v_args(meta=True)
    def flag(self, meta: Any, c: _Tokens) -> ir.Flag:
        return ir.Flag(str(c[0]), span=self._s(meta))

    def body(self, c: _Children) -> tuple[Any, ...]:
        return tuple(x for x in c if not isinstance(x, Token))

    override_body = sweep_body = body

    @v_args(meta=True)
    def block(self, meta: Any, c: _Children) -> ir.Block:
        kind = str(c[1]) if len(c) == 3 else None
        kind_span = self._tok(c[1]) if len(c) == 3 else None
        return ir.Block(str(c[0]), kind, c[-1], span=self._s(meta), kind_span=kind_span)

    @v_args(meta=True)
    def path(self, meta: Any, c: _Tokens) -> tuple[tuple[str, ...], ir.Span]:
        return tuple(str(t) for t in c if t.type == "NAME"), self._s(meta)

    @v_args(meta=True)
    def assign(self, meta: Any, c: _Children) -> ir.Field:
        return ir.Field(c[0][0], c[2], span=self._s(meta))

    @v_args(meta=True)
    def zip(self, meta: Any, c: _Children) -> ir.Zip:
        return ir.Zip(c[1], span=self._s(meta))

    # statements
    @v_args(meta=True)
    def include(self, meta: Any, c: _Children) -> ir.Include:
        overrides = c[2] if len(c) > 2 else ()
        return ir.Include(self._unquote(c[1]), overrides, span=self._s(meta))

    @v_args(meta=True)
    def experiment(self, meta: Any, c: _Children) -> ir.Experiment:
        return ir.Experiment(str(c[1]), c[2], span=self._s(meta), file=self.file)

    @v_args(meta=True)
    def sweep(self, meta: Any, c: _Children) -> ir.Sweep:
        return ir.Sweep(str(c[1]), c[2], span=self._s(meta))

    def start(self, c: _Children) -> tuple[ir.Statement, ...]:
        return tuple(x for x in c if not isinstance(x, Token))


def parse(text: str, path: str = "<string>") -> ir.SpecFile:
    """Parse a whole .ssl text into a SpecFile; raise SyntaxFault with position on bad input."""
    src = text if text.endswith("\n") else text + "\n"
    try:
        tree = _parser().parse(src, start="start")
        comments = tuple(_LAYOUT.comments)
        statements = _ToIR(path, text).transform(tree)
    except UnexpectedInput as exc:
        raise SyntaxFault([_syntax_diagnostic(exc, text, path)]) from None
    except _TooDeep as exc:
        raise SyntaxFault([_too_deep(exc.token, text, path)]) from None
    except VisitError as exc:  # the transformer raises SyntaxFault for a bad string escape
        raise exc.orig_exc from None
    return ir.SpecFile(path, statements, comments, text)


def parse_value(text: str, where: str = "<--set>") -> ir.Value:
    """Parse one value as written after `=` (for `--set path=value`)."""
    try:
        return _ToIR(where, text).transform(_parser().parse(text, start="set_value"))  # type: ignore[no-any-return]
    except UnexpectedInput as exc:
        raise SyntaxFault([_syntax_diagnostic(exc, text, where)]) from None
    except _TooDeep as exc:
        raise SyntaxFault([_too_deep(exc.token, text, where)]) from None
    except VisitError as exc:
        raise exc.orig_exc from None


def _too_deep(tok: Token, text: str, path: str) -> Diagnostic:
    line, col = tok.line or 1, tok.column or 1
    msg = f"nested too deeply (more than {MAX_NESTING} levels of (), [] and {{}})"
    return Diagnostic(msg, ir.Span(path, line, col, line, col + 1), text)


def _expected(names: set[str]) -> str:
    if "FLOAT" in names:  # "a number" covers "an integer"
        names = names - {"INT"}
    shown = sorted({TERMINAL_NAMES.get(n, n) for n in names if not n.startswith("__")})
    return f"; expected {either(shown)}" if shown else ""


def _syntax_diagnostic(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    lines = text.split("\n") if text else [""]
    line, col = getattr(exc, "line", -1), getattr(exc, "column", -1)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream if exc.pos_in_stream is not None else -1
        ch = text[pos] if 0 <= pos < len(text) else "?"
        msg = f"unexpected character {ch!r}"
        if ch == '"':
            msg = 'unterminated string; a string ends with " on the same line'
    elif (isinstance(exc, UnexpectedToken) and exc.token.type == "$END") or isinstance(exc, UnexpectedEOF):
        expected: set[str] = getattr(exc, "expected", set()) or getattr(exc, "accepts", set())
        msg = "unexpected end of file" + _expected(set(expected))
        line = len(lines) if lines[-1] != "" else max(1, len(lines) - 1)
        line = max(1, line)
        col = len(lines[line - 1]) + 1
    elif isinstance(exc, UnexpectedToken):
        msg = _unexpected_token(exc, text)
        if exc.token.type == "_NL":  # point at the end of the line the item was on, not the next one
            line = exc.token.line or line
            col = exc.token.column or col
    else:  # pragma: no cover - lark raises nothing else from parse
        msg = str(exc)
    line = max(1, line)
    col = max(1, col)
    return Diagnostic(msg, ir.Span(path, line, col, line, col + 1), text)


def _unexpected_token(exc: UnexpectedToken, text: str) -> str:
    """The message for a token the grammar does not allow where it stands."""
    tok = exc.token
    allowed = set(exc.accepts or exc.expected)
    if tok.type == "_NL":
        shown = "';'" if str(tok).startswith(";") else "end of line"
    else:
        shown = f"{str(tok).strip()!r}"
    msg = f"unexpected {shown}" + _expected(allowed)
    if tok.type == "NAME" and "NAME" not in allowed:
        msg += did_you_mean(str(tok), KEYWORDS)
    pos = tok.start_pos if tok.start_pos is not None else -1
    # `1.` and `.5` lex as an integer and a '.', which the grammar rejects here
    if tok.type == "DOT" and any(0 <= i < len(text) and text[i].isdigit() for i in (pos - 1, pos + 1)):
        msg += " (numbers need digits on both sides of '.')"
    return msg
