"""The driver lease: one cluster driver per results root, taken with create-if-absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sslspec.errors import SpecError
from sslspec.store.lease import LEASE, acquire, driver_lease, release
from sslspec.store.location import of


@pytest.mark.parametrize("root", ["local", "memory://lease-test/root"])
def test_a_held_lease_refuses_a_second_driver_and_is_gone_after(tmp_path: Path, root: str) -> None:
    """While held (a directory or a URL root), acquiring again is a SpecError naming the holder's
    pid and the file to remove; after the holder ends the lease is gone and can be taken again."""
    place = of(str(tmp_path / "out") if root == "local" else root)
    with (
        driver_lease([place]),
        pytest.raises(SpecError, match=r"in use by another sslspec driver \(pid \d+ on .*remove .*\.driver"),
    ):
        acquire(place)
    assert not (place / LEASE).exists()
    acquire(place)
    release(place)
    assert not (place / LEASE).exists()


def test_a_lease_of_a_dead_driver_on_this_host_is_taken_over(tmp_path: Path) -> None:
    """A lease left by a process of this host that no longer runs is stale: the next driver takes it."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )

    (tmp_path / LEASE).write_text(
        json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "started": "x"})
    )
    acquire(tmp_path)
    assert json.loads((tmp_path / LEASE).read_text())["pid"] == os.getpid()
    release(tmp_path)


def test_a_lease_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    """A lease of another host is refused whatever its pid (its liveness cannot be checked here)."""
    (tmp_path / LEASE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    with pytest.raises(SpecError, match="pid 1 on elsewhere"):
        acquire(tmp_path)
    assert (tmp_path / LEASE).exists()


def test_a_local_run_refuses_a_root_a_live_cluster_driver_holds(tmp_path: Path) -> None:
    """`sslspec run` without Ray takes per-run flocks that a cluster driver's workers do not: while a
    live driver holds the root's lease a local run exits 2 naming it and writes nothing; a stale
    lease (its pid gone) does not stop it."""
    from inprocess import sslspec_in_process

    spec = Path(__file__).resolve().parents[2] / "specs" / "quickstart.ssl"
    out = tmp_path / "out"
    sets = ["--set", "train.samples=128", "--set", "train.epochs=1", "--set", "measure.samples=256"]
    with driver_lease([of(str(out))]), sslspec_in_process() as cli:
        held = cli("run", spec, "--out", out, "-j", "1", *sets)
        assert held.exit_code == 2 and "in use by another sslspec driver" in held.output
        assert sorted(p.name for p in out.iterdir()) == [LEASE]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (out / LEASE).write_text(
        json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "started": "x"})
    )
    with sslspec_in_process() as cli:
        free = cli("run", spec, "--out", out, "-j", "1", *sets)
    assert free.exit_code == 0, free.output
