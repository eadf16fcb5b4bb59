"""Device choice and the one place that sets PyTorch's determinism flags."""

from __future__ import annotations

import os

import torch

from sslspec.errors import CheckError, Diagnostic


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present else CPU; `cuda[:n]` without CUDA is a user error (exit 2)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CheckError(
                [
                    Diagnostic(
                        f"device '{name}' asked for, but this machine has no CUDA device "
                        "(use --device cpu or auto)"
                    )
                ]
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise CheckError(
                [
                    Diagnostic(
                        f"device '{name}' asked for, but this machine has "
                        f"{torch.cuda.device_count()} CUDA device(s)"
                    )
                ]
            )
        return torch.device("cuda", index)
    if name != "cpu":
        raise CheckError([Diagnostic(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")])
    return torch.device("cpu")


CPU_THREADS = 1


def set_determinism() -> None:
    """Make every op deterministic (bit-identical reruns on one device and version).

    On the CPU torch gets one intra-op thread: the ops of this workload are small, one thread is
    as fast as two on an idle 2-core machine and many times faster on a busy one (spinning
    OpenMP workers), and results then do not depend on the machine's core count."""
    torch.set_num_threads(CPU_THREADS)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # torch.use_deterministic_algorithms(True) also imports torch._inductor to set its config
    # flag: ~1.8 s of every run's start-up on a 2-core machine, for a compiler sslspec never uses.
    # The C++ switch below is the whole of what eager ops (CPU and CUDA) read.
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    # In deterministic mode torch also NaN-fills every new tensor's memory (torch.empty and every
    # op's output), a guard against reading memory nothing wrote: 5-10% of the CPU time of the
    # measurement pass and of training here, for no change in what any op computes. The runtime
    # writes every buffer before reading it; the pinned arrays (tests/runtime/test_pinned.py) and
    # the bit-identical reruns (tests/runtime/test_run.py) hold without the guard.
    torch._C._set_deterministic_fill_uninitialized_memory(False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def device_name(device: torch.device) -> str:
    """A human name for the device: the GPU model, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n != 1 else ''})"
