"""Shared fixtures for runtime tests: specs written to tmp_path and an in-process `sslspec` CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from sslspec.cli import app


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
    """A function (*args) running `sslspec ARGS` in this process (stderr kept apart from stdout).

    `sslspec run` sets process-wide torch state (one intra-op thread, deterministic algorithms);
    it is put back afterwards so that later tests run as they would alone."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args])
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
