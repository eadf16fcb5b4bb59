"""The one place that decides how output looks: colour follows NO_COLOR, live displays need a
terminal (or Jupyter), and output that is piped or redirected is plain lines with no control
codes. Every rich Console of sslspec and the runtime comes from here."""

from __future__ import annotations

import os
from typing import IO

from rich.console import Console


def no_color() -> bool:
    """True when NO_COLOR is set to anything non-empty (https://no-color.org)."""
    return bool(os.environ.get("NO_COLOR"))


def console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """A rich Console writing to `file` (default stdout): styled only on a terminal, and never with
    NO_COLOR (no colour, and no bold or italic either, so nothing but text reaches the output)."""
    return Console(file=file, width=width, color_system=None if no_color() else "auto", no_color=no_color())
