"""The front end's boundary: `sslspec/` never needs torch; one function, `sslspec.api._run_plans`
(what `sslspec run` and `sslspec.run` both go through), reaches the runtime."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sslspec"
SPECS = sorted((ROOT / "specs").rglob("*.ssl"))
BIN = Path(sys.executable).parent
BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # `import torch` now raises ImportError\n"


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """Every module imported in a file, with the names of the functions it is imported inside."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, scope) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), scope))
        elif isinstance(node, ast.Call) and _call_name(node) in ("import_module", "__import__"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((arg.value, scope))
        inner = [*scope, node.name] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else scope
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, [])
    return found


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _top(module: str) -> str:
    return module.lstrip(".").split(".")[0]


def test_the_import_walker_sees_nested_and_dynamic_imports() -> None:
    """The AST walk used below finds imports at module level, inside functions and via import_module."""
    tree = ast.parse(
        "import torch.nn\nfrom runtime import run\ndef f():\n    from runtime.run import execute\n"
        "    importlib.import_module('torch')\n"
    )
    assert _imports(tree) == [("torch.nn", []), ("runtime", []), ("runtime.run", ["f"]), ("torch", ["f"])]


def test_sslspec_never_imports_torch_and_reaches_runtime_only_inside_one_function() -> None:
    """No sslspec/*.py imports torch anywhere; runtime is imported only in api.py's `_run_plans`."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "api.py" in files
    offenders = []
    runtime_in_run = 0
    for path in files:
        for module, scope in _imports(ast.parse(path.read_text(), str(path))):
            if _top(module) == "torch":
                offenders.append(f"{path.name}: imports {module}")
            elif _top(module) == "runtime":
                if path == PACKAGE / "api.py" and scope == ["_run_plans"]:
                    runtime_in_run += 1
                else:
                    offenders.append(f"{path.name}: imports {module} in {scope or 'the module'}")
    assert offenders == []
    assert runtime_in_run >= 1  # the lazy import is where the API says it is


def _env_without_torch(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import torch (a sitecustomize on PYTHONPATH blocks it)."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_front_end_imports_with_torch_unimportable() -> None:
    """The front end (`sslspec`, lower, cli, fmt) imports with torch unimportable and loads no runtime."""
    code = BLOCK_TORCH + (
        "import sslspec, sslspec.spec.lower, sslspec.cli, sslspec.lang.fmt, sslspec.api\n"
        "assert 'runtime' not in sys.modules, 'the runtime was imported'\n"
        "try:\n    import torch\nexcept ImportError:\n    print('blocked')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "blocked\n"


def test_import_sslspec_loads_its_api_only_on_first_use() -> None:
    """`import sslspec` loads neither the parser nor the API; `sslspec.plan` then loads the API, not
    torch, and the parser is loaded only when something is parsed."""
    code = BLOCK_TORCH + (
        "import sslspec\n"
        "print(sorted(m for m in ('lark', 'attrs', 'sslspec.api', 'xarray') if m in sys.modules))\n"
        "sslspec.plan\n"
        "print('sslspec.api' in sys.modules, 'lark' in sys.modules)\n"
        "sslspec.check(text='experiment e { data hltm {} }')\n"
        "print('lark' in sys.modules)\n"  # and torch, blocked above, was not needed
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\nTrue False\nTrue\n"


def test_check_and_plan_work_on_every_spec_with_torch_blocked(tmp_path: Path) -> None:
    """`sslspec check` and `sslspec plan` succeed on every spec under specs/ with torch unimportable."""
    assert SPECS, "no specs found"
    env = _env_without_torch(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, timeout=60)
    assert probe.returncode != 0  # the block is in force for the commands below
    sslspec = str(BIN / "sslspec")
    check = subprocess.run(
        [sslspec, "check", *map(str, SPECS)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.count("ok  ") == len(SPECS)
    for spec in SPECS:
        plan = subprocess.run(
            [sslspec, "plan", str(spec)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert plan.returncode == 0, f"{spec}: {plan.stderr}"
        assert "Traceback" not in plan.stderr
