"""The driver lease: at most one cluster driver (`sslspec run --executor ray`) per results root.

A Ray driver dispatches each job once and its workers write without flock (flock means nothing
on most network file systems, and an object store has no lock at all), so two drivers on one root
would run the same runs twice. A driver therefore holds `ROOT/.driver` while it runs: a small
JSON file (host, pid, start time) created with create-if-absent semantics and removed when the
driver ends, Ctrl-C included. A second driver that finds it is refused with a message naming the
holder.

The guarantee, precisely:
- on a local or network file system the file is created with O_CREAT|O_EXCL, which is atomic
  on local file systems and on NFSv3 and later: of two drivers starting together, exactly one
  gets the root;
- on an fsspec URL (s3://, gs://, memory://) it is an existence check followed by a write, so two
  drivers started within one round trip of each other can both get it; started further apart,
  the second is refused;
- a lease whose driver died without removing it (SIGKILL, a lost machine) stays: on the same host
  a lease whose pid no longer runs is taken over; elsewhere the message says to remove the file
  once that driver is known to be gone.
Local runs (`sslspec run` without `--executor ray`, any `-j`) share a root through per-run flock
locks, which a cluster driver's workers do not take: a local run therefore refuses a root whose
lease a live driver holds (`check_free`), and a cluster driver refuses a root that a local run is
using only through the version claims below.
Inside a root, versions are still claimed one by one (sslspec.store.write.claim_version), so even
two drivers never overwrite a version; they could only duplicate work.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sslspec.errors import Diagnostic, SpecError
from sslspec.store.location import Place

LEASE = ".driver"


def acquire(root: Place) -> None:
    """Take the lease of `root` (made if missing); SpecError naming the holder when it is taken."""
    path = root / LEASE
    mine = json.dumps(_me()).encode()
    for _ in range(2):  # a second try after removing a stale lease
        if _create(path, mine):
            return
        holder = _holder(path)
        if holder is None or not _stale(holder):
            break
        path.unlink(missing_ok=True)
    raise SpecError([Diagnostic(_refusal(root, path, holder))])


def release(root: Place) -> None:
    """Remove `root`'s lease if this process holds it."""
    path = root / LEASE
    holder = _holder(path)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == _host():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def driver_lease(roots: Sequence[Place]) -> Iterator[None]:
    """Hold the lease of every root in `roots` for the duration (all or none)."""
    taken: list[Place] = []
    try:
        for root in roots:
            acquire(root)
            taken.append(root)
        yield
    finally:
        for root in taken:
            with contextlib.suppress(OSError):
                release(root)


def check_free(roots: Sequence[Place]) -> None:
    """For a local run: SpecError when a live cluster driver holds the lease of one of `roots`
    (a stale lease of this host, or an unreadable one being written, is not in the way)."""
    for root in roots:
        path = root / LEASE
        if not path.exists():
            continue
        holder = _holder(path)
        if holder is not None and not _stale(holder):
            raise SpecError([Diagnostic(_refusal(root, path, holder))])


def _create(path: Place, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists; whether this call created it."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True
    if path.exists():
        return False
    path.write_bytes(data)
    return True


def _holder(path: Place) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale(holder: dict[str, Any]) -> bool:
    """A lease of this host whose process no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != _host() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _refusal(root: Place, path: Place, holder: dict[str, Any] | None) -> str:
    who = (
        f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
        if holder
        else "a driver whose lease cannot be read"
    )
    return (
        f"results root {root} is in use by another sslspec driver ({who}); two drivers on one root "
        f"would run the same runs twice. Wait for it to finish, or remove {path} if that driver is gone"
    )


def _me() -> dict[str, Any]:
    return {"host": _host(), "pid": os.getpid(), "started": datetime.now(UTC).isoformat(timespec="seconds")}


def _host() -> str:
    return os.uname().nodename
