"""Diagnostics: one root error type and the `file:line:col` rendering every message uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from attrs import frozen

from sslspec.lang.ir import Span


@frozen
class Diagnostic:
    """One user-facing problem: a message and where it is (span may be None for CLI input)."""

    message: str
    span: Span | None = None
    source: str | None = None  # the text the span points into, for the caret line

    @property
    def file(self) -> str | None:
        """The file the problem is in (None for command-line input without a place)."""
        return self.span.file if self.span else None

    @property
    def line(self) -> int | None:
        """Its 1-based line."""
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        """Its 1-based column."""
        return self.span.col if self.span else None

    def render(self) -> str:
        """Return `file:line:col: error: message` plus the source line and a caret."""
        if self.span is None:
            return f"error: {self.message}"
        s = self.span
        head = f"{s.file}:{s.line}:{s.col}: error: {self.message}"
        if not self.source:
            return head
        lines = self.source.split("\n")  # as the lexer counts lines (not str.splitlines)
        if not 1 <= s.line <= len(lines):
            return head
        text = lines[s.line - 1].removesuffix("\r").replace("\t", " ")
        width = s.end_col - s.col if s.end_line == s.line and s.end_col > s.col else 1
        width = max(1, min(width, len(text) - s.col + 1))
        return f"{head}\n  {text}\n  {' ' * (s.col - 1)}{'^' * width}"


class SpecError(Exception):
    """Root of every user-input error; carries all diagnostics found, rendered together. The CLI
    exits with `exit_code` (2: the input is wrong)."""

    exit_code = 2

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        """Return every diagnostic, one block each, separated by newlines."""
        return "\n".join(d.render() for d in self.diagnostics)


class SyntaxFault(SpecError):
    """The text does not follow the grammar."""


class CheckError(SpecError):
    """The text parses but its values or structure are wrong."""


class StoreError(SpecError):
    """A results store is missing, corrupt, foreign or of an unknown schema version."""


class DamagedStore(StoreError):
    """Stored data no longer matches its checksum (a disk or copy fault, not a user mistake: exit 1)."""

    exit_code = 1


def either(items: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c': a list of alternatives as messages write it."""
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """Return a "; did you mean 'x'?" suffix when a close option exists, else ''."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a batch scheduler's preemption) taken as a Ctrl-C: the runs in
    progress stop where they are and stay resumable."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise Terminated in the main thread."""
    raise Terminated
