"""The Spec IR: what the user wrote, as frozen attrs nodes. Spans are kept and ignored by ==."""

from __future__ import annotations

from attrs import field, frozen


@frozen
class Span:
    """A region of a source file, 1-based line and column; end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int


def _span() -> Span | None:
    return field(default=None, eq=False, repr=False, kw_only=True)  # type: ignore[no-any-return]


# ---- values -------------------------------------------------------------------------------


@frozen
class Int:
    """An integer literal."""

    value: int
    span: Span | None = _span()


@frozen
class Float:
    """A float literal; `text` keeps how it was written (1e-4 stays 1e-4) and is not compared."""

    value: float
    text: str = field(default="", eq=False)
    span: Span | None = _span()


@frozen
class Str:
    """A string literal (double quoted)."""

    value: str
    span: Span | None = _span()


@frozen
class Bool:
    """`true` or `false`."""

    value: bool
    span: Span | None = _span()


@frozen
class Ident:
    """A bare name used as a value: `auto`, `l2`, `independent`."""

    name: str
    span: Span | None = _span()


@frozen
class List:
    """`[a, b, c]`."""

    items: tuple[Value, ...]
    span: Span | None = _span()


@frozen
class Range:
    """`a..b`, inclusive at both ends, integers only."""

    start: int
    stop: int
    span: Span | None = _span()


@frozen
class Arg:
    """One named argument of a call: `low = 0.8`."""

    name: str
    value: Value
    span: Span | None = _span()


@frozen
class Call:
    """A named-argument call: `uniform(low = 0.8, high = 1.0)`."""

    name: str
    args: tuple[Arg, ...]
    span: Span | None = _span()

    def arg(self, name: str) -> Arg | None:
        """Return the argument called `name`, or None."""
        return next((a for a in self.args if a.name == name), None)


Value = Int | Float | Str | Bool | Ident | List | Range | Call


# ---- statements ---------------------------------------------------------------------------


@frozen
class Field:
    """`name = value` in a block, or `a.b.c = value` in a sweep or override."""

    path: tuple[str, ...]
    value: Value
    span: Span | None = _span()

    @property
    def name(self) -> str:
        """The dotted path as written."""
        return ".".join(self.path)


@frozen
class Flag:
    """A bare name on its own line in a block: `latent_correlation` (switches a thing on)."""

    name: str
    span: Span | None = _span()


@frozen
class Block:
    """`name [kind] { items }`."""

    name: str
    kind: str | None
    items: tuple[Item, ...]
    span: Span | None = _span()
    kind_span: Span | None = field(default=None, eq=False, repr=False, kw_only=True)


Item = Field | Flag | Block


@frozen
class Zip:
    """`zip { a = [..]  b = [..] }` inside a sweep: lists advanced together."""

    fields: tuple[Field, ...]
    span: Span | None = _span()


@frozen
class Experiment:
    """`experiment name { items }`."""

    name: str
    items: tuple[Item, ...]
    span: Span | None = _span()
    file: str = field(default="", eq=False)


@frozen
class Sweep:
    """`sweep experiment { path = values ... }`: a grid, zips advance together."""

    target: str
    axes: tuple[Field | Zip, ...]
    span: Span | None = _span()


@frozen
class Include:
    """`include "path.ssl" [{ overrides }]`."""

    path: str
    overrides: tuple[Field, ...]
    span: Span | None = _span()


Statement = Include | Experiment | Sweep


@frozen
class Comment:
    """A `# ...` comment and where it starts; used by the formatter only."""

    line: int
    col: int
    text: str


@frozen
class SpecFile:
    """One parsed file: its statements in order, plus its comments (ignored by ==)."""

    path: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(default=(), eq=False, repr=False)
    source: str = field(default="", eq=False, repr=False)
