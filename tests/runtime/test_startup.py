"""Start-up: the determinism switch is on without importing torch's compiler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_determinism_without_inductor() -> None:
    """set_determinism() turns deterministic algorithms on (what eager ops read), without the
    NaN fill of new memory, and leaves torch._inductor unimported: torch.use_deterministic_algorithms
    imports it (~1.8 s of start-up)."""
    code = (
        "import sys, torch\n"
        "from runtime.device import set_determinism\n"
        "set_determinism()\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert not torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert torch.get_num_threads() == 1\n"
        "assert not torch._C._get_deterministic_fill_uninitialized_memory()\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._inductor')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_training_without_dynamo() -> None:
    """Building SGD and Adam and taking steps (runtime.optim) leaves torch._dynamo unimported:
    torch.optim's wrappers import it (~2 s of start-up) at their first call."""
    code = (
        "import sys, torch\n"
        "from runtime import optim\n"
        "from sslspec.spec import schema\n"
        "for cfg in (schema.SGD(lr=0.1, momentum=0.9), schema.Adam(lr=0.01)):\n"
        "    p = torch.nn.Parameter(torch.ones(3))\n"
        "    opt = optim.build_optimizer(cfg, [p])\n"
        "    opt.zero_grad(set_to_none=True)\n"
        "    (p * p).sum().backward()\n"
        "    optim.step(opt)\n"
        "    opt.load_state_dict(opt.state_dict())\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_run_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    """A whole `sslspec run` of a tiny reference run completes without importing xarray,
    matplotlib, torch._dynamo or torch._inductor (each costs start-up; none is needed to run)."""
    spec = Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"
    sets = ["train.samples=128", "train.epochs=1", "measure.samples=128"]
    argv = ["sslspec", "run", str(spec), "--device", "cpu", "--out", str(tmp_path / "out")]
    argv += [a for s in sets for a in ("-s", s)]
    code = (
        "import sys\n"
        "from sslspec.cli import main\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = ('xarray', 'matplotlib', 'torch._dynamo', 'torch._inductor')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "complete" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
