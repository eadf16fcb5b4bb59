"""Fixtures for report tests: an in-process `sslspec` CLI that puts torch's process state back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from inprocess import sslspec_in_process


@pytest.fixture(scope="module")
def sslspec_cli() -> Iterator[Callable[..., Result]]:
    """A function (*args) running `sslspec ARGS` in this process, torch state put back after."""
    with sslspec_in_process() as run:
        yield run
