"""`sslspec run` refuses, with exit 2 and before anything runs, a spec with no experiment and a
results root it cannot write: a regular file, a read-only file system, a full disk, no permission.

Tests run as root here, where permission bits stop nothing; so the read-only and full file systems
are real tmpfs mounts made inside a private mount namespace (`unshare -m`), and the permission case
runs the command as the user `nobody` (`setpriv`). Each is skipped where that cannot be set up."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_run import ROOT, SSLSPEC

QUICKSTART = ROOT / "specs" / "quickstart.ssl"


def test_spec_without_experiment_is_refused_by_run(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """`run` on a file declaring no experiment says so at file:1:1 and exits 2; `check` says 0 runs."""
    spec = write_spec("# only a comment: a library to include\n", "empty.ssl")
    result = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"{spec}:1:1: error: declares no experiment, so there is nothing to run (`sslspec check` accepts it)"
    )
    assert not (tmp_path / "out").exists()
    checked = sslspec_cli("check", spec)
    assert checked.exit_code == 0 and checked.stdout == f"ok  {spec}  (0 runs)\n"


@pytest.mark.parametrize("dry_run", [False, True])
def test_out_that_is_a_regular_file_is_refused(dry_run: bool, sslspec_cli, tmp_path: Path) -> None:
    """--out naming a regular file, or a path under one, exits 2 naming it; the file is untouched."""
    plain = tmp_path / "some_file"
    plain.write_text("not a directory\n")
    flags = ["--dry-run"] if dry_run else []
    result = sslspec_cli("run", QUICKSTART, "--out", plain, *flags)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: results root {plain} cannot be written: is not a directory")
    under = sslspec_cli("run", QUICKSTART, "--out", plain / "a" / "b", *flags)
    assert under.exit_code == 2
    assert f"lies under {plain}, which is not a directory" in under.stderr
    assert plain.read_text() == "not a directory\n" and sorted(tmp_path.iterdir()) == [plain]


def _in_namespace(script: str, where: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace (mounts vanish with it); skip if not allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)


def test_read_only_file_system_is_refused(tmp_path: Path) -> None:
    """A results root on a read-only mount exits 2 saying so, before torch is even imported."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = _in_namespace(
        f"mount -t tmpfs -o ro,size=64k tmpfs {mnt} && exec {SSLSPEC} run {QUICKSTART} --out {mnt}/results",
        mnt,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: results root {mnt}/results cannot be written: it is on a read-only file system; "
        "nothing was run\n1 error\n"
    )


def test_full_disk_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """A results root on a full file system exits 2 saying so, and the directories it tried are gone."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = _in_namespace(
        f"mount -t tmpfs -o size=64k tmpfs {mnt} && (dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null; true)"
        f" && {SSLSPEC} run {QUICKSTART} --out {mnt}/a/results; echo rc=$?; ls -A {mnt}",
        mnt,
    )
    assert done.stderr == (
        f"error: results root {mnt}/a/results cannot be written: the disk is full; nothing was run\n1 error\n"
    )
    assert done.stdout == "rc=2\nfill\n"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory other users can enter (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        yield Path(d)


def test_root_without_write_permission_is_refused(shared_tmp: Path) -> None:
    """A results root under a directory the user may not write exits 2 with 'permission denied'."""
    locked = shared_tmp / "locked"
    locked.mkdir(mode=0o555)
    command = [str(SSLSPEC), "run", str(QUICKSTART), "--out", str(locked / "results")]
    if os.geteuid() == 0:  # root ignores permission bits: run it as `nobody`
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv(1)")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        # `nobody` must be able to start this checkout's sslspec at all: a clone under a private
        # directory (mktemp -d is 0700) cannot be entered, which is not the refusal under test.
        probe = subprocess.run([*command[:4], str(SSLSPEC), "--version"], capture_output=True, cwd=shared_tmp)
        if probe.returncode != 0:
            pytest.skip(f"user nobody cannot run {SSLSPEC} from this checkout's location")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=shared_tmp)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: results root {locked}/results cannot be written: permission denied; nothing was run\n"
        "1 error\n"
    )
    assert list(locked.iterdir()) == []
