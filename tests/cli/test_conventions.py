"""CLI conventions: -h/--help on every command, --version, version --verbose, ls/show --json with
the documented schema, the default root named, plain output when piped or NO_COLOR, completion."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import sslspec
from sslspec.cli import app
from sslspec.store.listing import LS_SCHEMA, SHOW_SCHEMA
from tests.store.conftest import write_store

ROOT = Path(__file__).resolve().parents[2]
SSLSPEC = str(Path(sys.executable).parent / "sslspec")
COMMANDS = ["check", "fmt", "ls", "plan", "report", "run", "show", "verify", "version"]
DOCS = (ROOT / "docs" / "cli.md").read_text()


def test_the_command_list_is_known() -> None:
    """The commands are exactly those this file checks (a new one must be added here and to docs/cli.md)."""
    assert isinstance(app, click.Group)
    assert sorted(app.commands) == COMMANDS
    for name in COMMANDS:
        assert f"sslspec {name}" in DOCS


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_every_command_takes_h_and_help(command: list[str]) -> None:
    """`-h` and `--help` print the same usage text for the group and every command, exit 0."""
    long = CliRunner().invoke(app, [*command, "--help"], prog_name="sslspec")
    short = CliRunner().invoke(app, [*command, "-h"], prog_name="sslspec")
    assert long.exit_code == 0 and short.exit_code == 0, short.output
    assert short.output == long.output
    assert long.output.startswith(f"Usage: sslspec {' '.join(command)}".rstrip())


def test_version_option_and_command() -> None:
    """`sslspec --version` and `sslspec version` print the package version."""
    assert (
        CliRunner().invoke(app, ["--version"], prog_name="sslspec").output
        == f"sslspec {sslspec.__version__}\n"
    )
    assert CliRunner().invoke(app, ["version"]).output == f"sslspec: {sslspec.__version__}\n"


def test_version_verbose_names_commit_torch_cuda_and_array_libraries() -> None:
    """`version --verbose --json` names the git commit of this checkout, torch, CUDA, numpy, xarray, zarr."""
    import numpy
    import torch

    result = CliRunner().invoke(app, ["version", "--verbose", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    assert str(info["git_commit"]).removesuffix("+dirty") == head.strip()
    assert info["torch"] == torch.__version__
    assert info["cuda"] == (torch.version.cuda or "none (a CPU build of torch)")
    assert info["numpy"] == numpy.__version__
    assert {"sslspec", "python", "cuda_available", "gpus", "xarray", "zarr"} <= set(info)
    text = CliRunner().invoke(app, ["version", "-v"]).output
    assert f"torch: {torch.__version__}\n" in text


def test_version_verbose_works_when_torch_cannot_be_imported(tmp_path: Path) -> None:
    """With torch unimportable, `version --verbose` still exits 0 and says why torch is missing."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [SSLSPEC, "version", "--verbose"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^torch: \S+ \(cannot import: .*\)$", proc.stdout, re.M), proc.stdout
    assert "numpy: " in proc.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check", "specs/hltm_simclr.ssl"], 0),
        (["check", "tests/check/errors/unknown_field.ssl"], 2),
        (["check", "no/such.ssl"], 2),
        (["fmt", "--check", "tests/check/errors/several_errors.ssl"], 1),
        (["plan", "--no-such-option", "specs/hltm_simclr.ssl"], 2),
        (["ls", "no/such/root"], 2),
        (["show", "abc", "--root", "no/such/root"], 2),
    ],
)
def test_exit_codes_are_as_documented(args: list[str], code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """0 ok, 2 bad input (spec error, missing root, bad option), 1 for fmt --check with changes."""
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


def _keys(document: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON object as docs/cli.md writes it (`runs[].status`)."""
    found: set[str] = set()
    if isinstance(document, dict):
        for k, v in document.items():
            found.add(prefix + k)
            if isinstance(v, list) and v and isinstance(v[0], dict) and k in ("runs", "versions"):
                found |= _keys(v[0], f"{prefix}{k}[].")
    return found


def _documented(schema: str) -> set[str]:
    section = DOCS[DOCS.index(f"(schema `{schema}`)") :]
    section = section[: section.find("\n### ", 1) if "\n### " in section[1:] else len(section)]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def test_ls_json_has_the_documented_schema(tmp_path: Path) -> None:
    """`ls --json` prints schema, root and one object per run with exactly the keys docs/cli.md lists."""
    write_store(tmp_path, "e", "r1", version=1, swept={"seed": 3})
    write_store(tmp_path, "e", "r1", version=2, status="running", swept={"seed": 3})
    write_store(tmp_path, "e", "r2", value=0.25)
    result = CliRunner().invoke(app, ["ls", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == LS_SCHEMA and doc["root"] == str(tmp_path)
    assert _keys(doc) == _documented(LS_SCHEMA)
    r1, r2 = doc["runs"]
    assert (r1["run_id"], r1["status"], r1["version"], r1["versions"], r1["swept"]) == (
        "r1",
        "running",
        2,
        2,
        {"seed": 3},
    )
    assert (r2["root_corr"], r2["loss"], r2["path"]) == (0.25, 0.25, "e/r2/v0001.zarr")


def test_show_json_has_the_documented_schema(tmp_path: Path) -> None:
    """`show --json` prints the version shown, every version's status and the root attrs, plan parsed."""
    write_store(tmp_path, "e", "abc123", version=1)
    write_store(tmp_path, "e", "abc123", version=2, status="failed", error="boom")
    result = CliRunner().invoke(app, ["show", "abc", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == SHOW_SCHEMA
    assert _keys(doc) == _documented(SHOW_SCHEMA)
    assert (doc["version"], doc["status"], doc["attrs"]["error"]) == (2, "failed", "boom")
    assert [(v["version"], v["status"]) for v in doc["versions"]] == [(1, "complete"), (2, "failed")]
    assert doc["attrs"]["plan"]["config"]["train"] == {"epochs": 2}
    older = json.loads(
        CliRunner().invoke(app, ["show", "abc", "--root", str(tmp_path), "--version", "1", "--json"]).stdout
    )
    assert (older["version"], older["status"]) == (1, "complete")


def test_ls_without_root_says_which_root_it_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sslspec ls` with no ROOT lists ./results and says so on stderr; stdout is the table alone."""
    write_store(tmp_path / "results", "e", "r1")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ls"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "listing results (the default results root; pass ROOT for another)\n"
    assert result.stdout.splitlines()[1].split()[:2] == ["e", "r1"]
    assert json.loads(CliRunner().invoke(app, ["ls", "--json"]).stdout)["root"] == "results"


def _on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """What `sslspec ARGS` writes when its stdout and stderr are a terminal (a pseudo-terminal)."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [SSLSPEC, *args], stdout=sub, stderr=sub, cwd=ROOT, env={**os.environ, "COLUMNS": "200", **env}
    )
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    return out


def test_styles_only_on_a_terminal_and_never_with_no_color() -> None:
    """`sslspec plan` styles its table on a terminal, but not with NO_COLOR and not when piped."""
    args = ["plan", "specs/hltm_table.ssl"]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    styled = _on_a_terminal(args, {"TERM": "xterm-256color"})
    assert b"\x1b[" in styled  # the check below would pass vacuously without this
    plain = _on_a_terminal(args, {"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert b"\x1b" not in plain and b"45 runs" in plain
    piped = subprocess.run([SSLSPEC, *args], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert piped.returncode == 0 and b"\x1b" not in piped.stdout + piped.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_and_the_documented_lines(shell: str) -> None:
    """click's completion script for each shell is produced, and docs/cli.md shows the line that loads it."""
    env = {**os.environ, "_SSLSPEC_COMPLETE": f"{shell}_source"}
    script = subprocess.run([SSLSPEC], env=env, capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_SSLSPEC_COMPLETE" in script.stdout
    assert f"_SSLSPEC_COMPLETE={shell}_source sslspec" in DOCS


def test_bash_completion_completes_command_names() -> None:
    """A bash completion request for `sslspec r` offers report and run."""
    env = {**os.environ, "_SSLSPEC_COMPLETE": "bash_complete", "COMP_WORDS": "sslspec r", "COMP_CWORD": "1"}
    result = subprocess.run([SSLSPEC], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["plain,report", "plain,run"]
