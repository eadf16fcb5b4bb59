"""Fixtures for report tests: an in-process `sslspec` CLI that puts torch's process state back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import torch
from click.testing import CliRunner, Result

from sslspec.cli import app


@pytest.fixture(scope="module")
def sslspec_cli() -> Iterator[Callable[..., Result]]:
    """A function (*args) running `sslspec ARGS` in this process; torch threads/determinism restored."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args])
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
