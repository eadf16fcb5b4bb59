"""Start-up: the determinism switch is on without importing torch's compiler."""

from __future__ import annotations

import subprocess
import sys


def test_determinism_without_inductor() -> None:
    """set_determinism() turns deterministic algorithms on (what eager ops read) and leaves
    torch._inductor unimported: torch.use_deterministic_algorithms imports it (~1.8 s of start-up)."""
    code = (
        "import sys, torch\n"
        "from runtime.device import set_determinism\n"
        "set_determinism()\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert not torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert torch.get_num_threads() == 1\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._inductor')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
