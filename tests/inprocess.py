"""Running the `sslspec` CLI inside the test process, with torch's process-wide state put back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from click.testing import Result


@contextmanager
def sslspec_in_process() -> Iterator[Callable[..., Result]]:
    """Yield a function (*args) running `sslspec ARGS` here (stderr kept apart from stdout).

    `sslspec run` sets process-wide torch state (one intra-op thread, deterministic algorithms);
    it is put back afterwards so that later tests run as they would alone."""
    from click.testing import CliRunner

    from sslspec.cli import app

    with torch_state_kept():
        yield lambda *args: CliRunner().invoke(app, [str(a) for a in args])


@contextmanager
def torch_state_kept() -> Iterator[None]:
    """Put torch's process-wide state (threads, determinism flags) back as it was on leaving."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fill = torch._C._get_deterministic_fill_uninitialized_memory()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch._C._set_deterministic_fill_uninitialized_memory(fill)
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
