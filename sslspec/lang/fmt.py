"""Format: a SpecFile -> its canonical text, keeping every comment.

Canonical layout: two-space indent, one item per line, `=` aligned within a run of
consecutive fields, trailing comments aligned within such a run, one blank line kept where
the source had one or more, one blank line between top-level statements. A block with a
single field or flag and no comments inside fits on one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sslspec.lang import ir
from sslspec.lang.syntax import parse


def fmt_value(v: ir.Value) -> str:
    """The canonical text of one value."""
    if isinstance(v, ir.Bool):
        return "true" if v.value else "false"
    if isinstance(v, ir.Int):
        return str(v.value)
    if isinstance(v, ir.Float):
        return v.text or repr(v.value)
    if isinstance(v, ir.Str):
        return json.dumps(v.value)
    if isinstance(v, ir.Ident):
        return v.name
    if isinstance(v, ir.List):
        return "[" + ", ".join(fmt_value(x) for x in v.items) + "]"
    if isinstance(v, ir.Range):
        return f"{v.start}..{v.stop}"
    return f"{v.name}(" + ", ".join(f"{a.name} = {fmt_value(a.value)}" for a in v.args) + ")"


class _Printer:
    def __init__(self, comments: Sequence[ir.Comment], source: str = "") -> None:
        self.comments = sorted(comments, key=lambda c: (c.line, c.col))
        self.next = 0
        self.out: list[str] = []
        # Empty source lines; without the source, a line with no comment between items counts.
        self.blank = (
            {i + 1 for i, text in enumerate(source.split("\n")) if not text.strip()} if source else None
        )

    # comments -----------------------------------------------------------------------------
    def leading(self, before_line: int, indent: str, item_line: int | None = None) -> bool:
        """Emit comments that start before `before_line`, keeping the blank lines between them;
        True if any were emitted. With `item_line` (the first line of the item they lead),
        comments inside the item's value follow without blank lines, and a blank line between
        the last comment above the item and the item is kept."""
        limit = before_line if item_line is None else item_line
        emitted = False
        prev_line: int | None = None
        while self.next < len(self.comments) and self.comments[self.next].line < before_line:
            c = self.comments[self.next]
            if (
                prev_line is not None
                and prev_line < limit
                and self._blank_between(prev_line, min(c.line, limit))
            ):
                self._blank()
            self.out.append(indent + c.text)
            prev_line = c.line
            self.next += 1
            emitted = True
        if (
            prev_line is not None
            and item_line is not None
            and prev_line < item_line
            and self._blank_between(prev_line, item_line)
        ):
            self._blank()
        return emitted

    def _blank(self) -> None:
        if self.out and self.out[-1] != "":
            self.out.append("")

    def trailing(self, line: int) -> str | None:
        if self.next < len(self.comments) and self.comments[self.next].line == line:
            c = self.comments[self.next]
            self.next += 1
            return c.text
        return None

    # items --------------------------------------------------------------------------------
    def items(self, items: Sequence[ir.Item | ir.Zip], indent: str) -> None:
        run: list[tuple[str, str, str | None]] = []  # (lhs, rhs, trailing) of aligned fields
        prev_end: int | None = None
        for item in items:
            span = item.span
            line = span.line if span else 0
            # A field's value prints on one line, so comments inside a multi-line value go above it.
            lead_to = span.end_line if isinstance(item, ir.Field) and span else line
            has_leading = self.next < len(self.comments) and self.comments[self.next].line < lead_to
            first = min(line, self.comments[self.next].line) if has_leading else line
            gap = prev_end is not None and span is not None and self._blank_between(prev_end, first)
            if isinstance(item, ir.Field | ir.Flag) and not gap and not has_leading:
                pass
            else:
                self.flush(run, indent)
                run = []
            if gap:
                self._blank()
            self.leading(lead_to, indent, line)
            if isinstance(item, ir.Field):
                run.append((item.name, fmt_value(item.value), self.trailing(span.end_line if span else -1)))
            elif isinstance(item, ir.Flag):
                run.append((item.name, "", self.trailing(line)))
            else:
                self.flush(run, indent)
                run = []
                self.block(item, indent)
            prev_end = span.end_line if span else prev_end
        self.flush(run, indent)

    def _blank_between(self, prev_end: int, line: int) -> bool:
        """Whether the source had an empty line strictly between lines `prev_end` and `line`."""
        if self.blank is not None:
            return any(n in self.blank for n in range(prev_end + 1, line))
        used = {c.line for c in self.comments}
        return any(n not in used for n in range(prev_end + 1, line))

    def flush(self, run: list[tuple[str, str, str | None]], indent: str) -> None:
        if not run:
            return
        width = max(len(lhs) for lhs, rhs, _ in run if rhs) if any(rhs for _, rhs, _ in run) else 0
        lines = [lhs if not rhs else f"{lhs.ljust(width)} = {rhs}" for lhs, rhs, _ in run]
        col = (
            max(len(text) for text, (_, _, c) in zip(lines, run, strict=True) if c)
            if any(c for _, _, c in run)
            else 0
        )
        for text, (_, _, c) in zip(lines, run, strict=True):
            self.out.append(indent + (f"{text.ljust(col)} {c}" if c else text))

    def block(self, item: ir.Block | ir.Zip, indent: str) -> None:
        items: Sequence[ir.Item | ir.Zip]
        if isinstance(item, ir.Zip):
            head, items = "zip", item.fields
        else:
            head = f"{item.name} {item.kind}" if item.kind else item.name
            items = item.items
        span = item.span
        start, end = (span.line, span.end_line) if span else (0, 0)
        comments_inside = any(start <= c.line <= end for c in self.comments[self.next :]) and not (
            self._only_trailing_on(start, end)
        )
        if not items and not comments_inside:
            self._line(indent + head + " {}", end)
            return
        one = items[0] if len(items) == 1 else None
        if isinstance(one, ir.Field | ir.Flag) and not comments_inside:
            inner = one.name if isinstance(one, ir.Flag) else f"{one.name} = {fmt_value(one.value)}"
            self._line(indent + f"{head} {{ {inner} }}", end)
            return
        self._line(indent + head + " {", start)
        self.items(items, indent + "  ")
        self.leading(end, indent + "  ")
        self._line(indent + "}", end)

    def _only_trailing_on(self, start: int, end: int) -> bool:
        inside = [c for c in self.comments[self.next :] if start <= c.line <= end]
        return len(inside) == 1 and inside[0].line == end

    def _line(self, text: str, line: int) -> None:
        c = self.trailing(line)
        self.out.append(f"{text} {c}" if c else text)


def format_file(spec: ir.SpecFile) -> str:
    """The canonical text of a parsed file (comments included)."""
    p = _Printer(spec.comments, spec.source)
    for i, st in enumerate(spec.statements):
        line = st.span.line if st.span else 0
        if i and p.out and p.out[-1] != "":
            p.out.append("")
        p.leading(line, "", line)
        if isinstance(st, ir.Include):
            head = f"include {json.dumps(st.path)}"
            if st.overrides:
                p._line(head + " {", line)
                p.items(st.overrides, "  ")
                p.leading(st.span.end_line if st.span else 0, "  ")
                p._line("}", st.span.end_line if st.span else 0)
            else:
                p._line(head, line)
        elif isinstance(st, ir.Experiment):
            p.block(ir.Block("experiment", st.name, st.items, span=st.span), "")
        else:
            p.block(ir.Block("sweep", st.target, st.axes, span=st.span), "")  # type: ignore[arg-type]
    if p.next < len(p.comments):
        if p.out and p.out[-1] != "":
            p.out.append("")
        p.leading(10**9, "")
    return "\n".join(p.out).rstrip("\n") + "\n"


def fmt(text: str, path: str = "<string>") -> str:
    """Parse and format a text; raise SyntaxFault if it does not parse."""
    return format_file(parse(text, path))
