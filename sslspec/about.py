"""What `sslspec version --verbose` reports: this package, its source commit, Python, torch and
CUDA, and the array libraries, the same names a run records in its provenance.

torch is asked in a child process: the front end never imports it, and a broken or missing torch
install is exactly when this report is wanted.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import sslspec

_TORCH_PROBE = (
    "import json, torch\n"
    "cuda = torch.cuda.is_available()\n"
    "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': cuda,"
    " 'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}))\n"
)


def report(verbose: bool) -> dict[str, object]:
    """`{"sslspec": version}`, and with `verbose` the git commit, Python, torch/CUDA, numpy, xarray
    and zarr (a package that is not installed reads `None`)."""
    out: dict[str, object] = {"sslspec": sslspec.__version__}
    if not verbose:
        return out
    out["git_commit"] = _commit(Path(sslspec.__file__).resolve().parent.parent)
    out["python"] = f"{platform.python_version()} ({sys.executable})"
    out.update(_torch())
    for name in ("numpy", "xarray", "zarr"):
        out[name] = _installed(name)
    return out


def lines(info: dict[str, object]) -> str:
    """The report as `name: value` lines."""
    return "".join(f"{k}: {_shown(v)}\n" for k, v in info.items())


def _shown(v: object) -> str:
    if v is None:
        return "not installed"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    return str(v).lower() if isinstance(v, bool) else str(v)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit(source: Path) -> str:
    """The commit of the checkout sslspec runs from (`+dirty` with local changes), or why none."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    if not (source / ".git").exists():
        return "none (not run from a git checkout)"
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown (git failed)"
    return commit + ("+dirty" if dirty else "")


def _torch() -> dict[str, object]:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _TORCH_PROBE], capture_output=True, text=True, check=True, timeout=120
        )
        found: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        why = exc.stderr.strip().splitlines()[-1] if isinstance(exc, subprocess.CalledProcessError) else exc
        version = _installed("torch")
        return {"torch": f"{version or 'not installed'} (cannot import: {why})"}
    if found.get("cuda") is None:
        found["cuda"] = "none (a CPU build of torch)"
    return found
