"""Field types: how a written value becomes a plan value, and the messages when it cannot.

Each type turns an ir value node into a plain Python value (or raises `Bad`) and turns a plan
value back into text for the formatter and messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import attrs
from attrs import frozen

from sslspec.errors import did_you_mean, either
from sslspec.lang import ir


class Bad(Exception):
    """A value that does not fit its field; `span` narrows the position when known."""

    def __init__(self, message: str, span: ir.Span | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span


def describe(node: ir.Value) -> str:
    """Name what a value node is, for "must be an integer (got a string)"."""
    return {
        ir.Int: "an integer",
        ir.Float: "a number",
        ir.Str: "a string",
        ir.Bool: "a boolean",
        ir.Ident: f"the name '{getattr(node, 'name', '')}'",
        ir.List: "a list",
        ir.Range: "a range",
        ir.Call: f"a call to '{getattr(node, 'name', '')}'",
    }[type(node)]


def _bounds(x: float, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str | None:
    if ge is not None and not x >= ge:
        return f"must be >= {ge:g}"
    if gt is not None and not x > gt:
        return f"must be > {gt:g}"
    if le is not None and not x <= le:
        return f"must be <= {le:g}"
    if lt is not None and not x < lt:
        return f"must be < {lt:g}"
    return None


def _shown(x: float) -> str:
    return repr(x) if isinstance(x, float) else str(x)


@frozen
class IntT:
    """An integer with optional bounds."""

    ge: int | None = None
    le: int | None = None
    label: str = "an integer"
    one_of: tuple[int, ...] = ()  # when given, the only values allowed (a ResNet's depth)

    def coerce(self, node: ir.Value) -> int:
        if not isinstance(node, ir.Int):
            raise Bad(f"must be {self.label} (got {describe(node)})")
        problem = _bounds(node.value, self.ge, None, self.le, None)
        if problem:
            raise Bad(f"{problem} (got {node.value})")
        if self.one_of and node.value not in self.one_of:
            raise Bad(f"must be {either([str(v) for v in self.one_of])} (got {node.value})")
        return node.value


@frozen
class FloatT:
    """A real number with optional bounds; integer literals are accepted and made floats."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def coerce(self, node: ir.Value) -> float:
        if not isinstance(node, ir.Int | ir.Float):
            raise Bad(f"must be a number (got {describe(node)})")
        x = float(node.value)
        if not math.isfinite(x):
            raise Bad(f"must be finite (got {x})")
        problem = _bounds(x, self.ge, self.gt, self.le, self.lt)
        if problem:
            raise Bad(f"{problem} (got {_shown(node.value)})")
        return x


@frozen
class BoolT:
    """`true` or `false`."""

    def coerce(self, node: ir.Value) -> bool:
        if not isinstance(node, ir.Bool):
            raise Bad(f"must be true or false (got {describe(node)})")
        return node.value


@frozen
class ChoiceT:
    """One of a fixed set of bare names."""

    options: tuple[str, ...]

    def coerce(self, node: ir.Value) -> str:
        name = node.name if isinstance(node, ir.Ident) else node.value if isinstance(node, ir.Str) else None
        if not isinstance(name, str):
            raise Bad(f"must be one of {self.listing()} (got {describe(node)})")
        if name not in self.options:
            raise Bad(f"must be one of {self.listing()} (got '{name}'){did_you_mean(name, self.options)}")
        return name

    def listing(self) -> str:
        return either(self.options)


@frozen
class ListT:
    """A list whose items all have one type."""

    item: Any
    min_len: int = 0
    max_len: int | None = None

    def coerce(self, node: ir.Value) -> tuple[Any, ...]:
        if not isinstance(node, ir.List):
            raise Bad(f"must be a list (got {describe(node)})")
        n = len(node.items)
        if n < self.min_len or (self.max_len is not None and n > self.max_len):
            want = str(self.min_len) if self.max_len == self.min_len else f"at least {self.min_len}"
            raise Bad(f"must have {want} items (got {n})")
        out = []
        for i, item in enumerate(node.items):
            try:
                out.append(self.item.coerce(item))
            except Bad as bad:
                raise Bad(f"item {i}: {bad.message}", bad.span or item.span) from None
        return tuple(out)


@frozen
class DeviceT:
    """`auto`, `cpu`, `cuda` or a string "cuda:N"."""

    def coerce(self, node: ir.Value) -> str:
        name = node.name if isinstance(node, ir.Ident) else node.value if isinstance(node, ir.Str) else None
        if name is None or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
            got = f"'{name}'" if name is not None else describe(node)
            raise Bad(f'must be auto, cpu, cuda or "cuda:N" (got {got})')
        return name


@frozen
class LayerT:
    """A layer of an image network, as a bare name or a string: conv<k> (the k-th conv of the trunk
    in module order) or head<k> (the k-th Linear layer of the projection head), k from 0."""

    def coerce(self, node: ir.Value) -> str:
        name = node.name if isinstance(node, ir.Ident) else node.value if isinstance(node, ir.Str) else None
        if not isinstance(name, str):
            raise Bad(f"must be a layer such as conv0 or head1 (got {describe(node)})")
        if name[:4] not in ("conv", "head") or not name[4:].isdigit():
            raise Bad(f"must be a layer such as conv0 or head1 (got '{name}')")
        return name


@frozen
class PathT:
    """A non-empty string naming a directory or an fsspec-style URL."""

    def coerce(self, node: ir.Value) -> str:
        if not isinstance(node, ir.Str):
            raise Bad(f'must be a string such as "results" (got {describe(node)})')
        if not node.value.strip():
            raise Bad("must not be empty")
        return node.value


Tree = int | tuple["Tree", ...]


@frozen
class TreeT:
    """An explicit tree shape: a list is a latent node of those children, an integer k >= 1 is
    a latent node with k observed leaves. All leaves must sit at one depth."""

    def coerce(self, node: ir.Value) -> Tree:
        if not isinstance(node, ir.List | ir.Int):
            raise Bad(f"must be a nested list of integers (got {describe(node)})")
        shape = self._walk(node)
        depths = set(_leaf_depths(shape))
        if len(depths) > 1:
            raise Bad(f"all leaves must be at one depth (found depths {sorted(depths)})")
        return shape

    def _walk(self, node: ir.Value) -> Tree:
        if isinstance(node, ir.Int):
            if node.value < 1:
                raise Bad(f"a node must have >= 1 leaves (got {node.value})", node.span)
            return node.value
        if isinstance(node, ir.List):
            if not node.items:
                raise Bad("a latent node needs at least one child", node.span)
            return tuple(self._walk(child) for child in node.items)
        raise Bad(f"must be a nested list of integers (got {describe(node)})", node.span)


def _leaf_depths(shape: Tree, depth: int = 1) -> list[int]:
    if isinstance(shape, int):
        return [depth]
    return [d for child in shape for d in _leaf_depths(child, depth + 1)]


def uniform_tree(depth: int, branching: int) -> Tree:
    """The complete tree of `depth` edges root-to-leaf, in the nested form TreeT produces."""
    shape: Tree = branching
    for _ in range(depth - 1):
        shape = (shape,) * branching
    return shape


def tree_depth(shape: Tree) -> int:
    """Edges from the root to a leaf."""
    return 1 if isinstance(shape, int) else 1 + tree_depth(shape[0])


def tree_branching(shape: Tree) -> int | None:
    """The branching factor if every node has the same number of children, else None."""
    counts: set[int] = set()

    def walk(s: Tree) -> None:
        if isinstance(s, int):
            counts.add(s)
        else:
            counts.add(len(s))
            for c in s:
                walk(c)

    walk(shape)
    return counts.pop() if len(counts) == 1 else None


@frozen
class CallT:
    """A value that may be a plain scalar (`scalar` builds it) or one of named calls, each a
    Python class whose attrs fields are the call's arguments with their types."""

    calls: dict[str, type]
    scalar: Callable[[ir.Value], Any] | None = None
    bare: bool = False  # a bare name `relu` means the call with all defaults
    finish: Callable[[Any], Any] | None = None  # the built object -> the value (may raise Bad)

    def coerce(self, node: ir.Value) -> Any:
        if self.scalar is not None and isinstance(node, ir.Int | ir.Float):
            return self.scalar(node)
        if self.bare and isinstance(node, ir.Ident):
            node = ir.Call(node.name, (), span=node.span)
        if not isinstance(node, ir.Call):
            raise Bad(f"must be {self.listing()} (got {describe(node)})")
        if node.name not in self.calls:
            raise Bad(
                f"unknown '{node.name}'; must be {self.listing()}{did_you_mean(node.name, self.calls)}",
                node.span,
            )
        obj = build_call(self.calls[node.name], node)
        if self.finish is None:
            return obj
        try:
            return self.finish(obj)
        except Bad as bad:
            raise Bad(bad.message, bad.span or node.span) from None

    def listing(self) -> str:
        forms = [f"{n}(...)" for n in self.calls] if not self.bare else list(self.calls)
        if self.scalar is not None:
            forms.insert(0, "a number")
        return either(forms)


def build_call(cls: type, call: ir.Call) -> Any:
    """Build a call class from a Call node, checking argument names, types and duplicates."""
    fields = {a.name: a for a in attrs.fields(cls)}
    kwargs: dict[str, Any] = {}
    for arg in call.args:
        if arg.name not in fields:
            raise Bad(f"'{call.name}' has no argument '{arg.name}'{did_you_mean(arg.name, fields)}", arg.span)
        if arg.name in kwargs:
            raise Bad(f"argument '{arg.name}' given twice", arg.span)
        try:
            kwargs[arg.name] = fields[arg.name].metadata["type"].coerce(arg.value)
        except Bad as bad:
            raise Bad(f"'{call.name}.{arg.name}' {bad.message}", bad.span or arg.value.span) from None
    return cls(**kwargs)


def fld(default: Any, type_: Any, doc: str = "", *, added: bool = False) -> Any:
    """An attrs field carrying the language type and a one-line doc. `added`: a field added to a
    block after results existed; the Plan's canonical data leaves it out while it has its default,
    so the run hashes of specs that do not use it stay what they were."""
    return attrs.field(default=default, metadata={"type": type_, "doc": doc, "added": added})
