"""Shared fixtures for runtime tests: specs written to tmp_path and an in-process `sslspec` CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from inprocess import sslspec_in_process


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """A function (text, name) that writes a spec under tmp_path and returns its path."""

    def write(text: str, name: str = "spec.ssl") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def sslspec_cli() -> Iterator[Callable[..., Result]]:
    """A function (*args) running `sslspec ARGS` in this process, torch state put back after."""
    with sslspec_in_process() as run:
        yield run
