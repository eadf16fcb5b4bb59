"""Before a run: the results root is, or can be made, a directory this process can write.

`sslspec run` calls `writable_root` for every results root before anything runs, so a root that
is a regular file, lies under one, sits on a read-only file system, is not writable for this user
or is on a full disk is one clear error (exit 2) instead of a traceback from deep inside the first
store write. The check writes (and removes) a small probe file, since only a write tells a full
disk or a read-only mount from a writable one; `ready_root` is the part of it that writes nothing,
for `--dry-run`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from sslspec.errors import Diagnostic, SpecError
from sslspec.store.location import Location, Place

PROBE_BYTES = 4096  # one block: on a full file system even the first block of a file fails


def ready_root(root: Place) -> None:
    """Raise SpecError when a local `root` or the nearest of its parents that exists is not a
    directory (nothing is created or written)."""
    if isinstance(root, Location):
        return
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == root else f"lies under {existing}, which is"
        raise _refused(root, f"{what} not a directory")


def writable_root(root: Place) -> None:
    """Make `root` (and its parents) if missing and write and remove a probe file in it; raise
    SpecError naming the root and the reason when that fails."""
    ready_root(root)
    probe = root / f".sslspec-probe-{os.getpid()}"
    missing = _missing(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if isinstance(probe, Path):
            _probe_local(probe)
        else:
            probe.write_bytes(b"\0" * PROBE_BYTES)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        for made in missing:  # leave no empty directories behind a refusal
            with contextlib.suppress(OSError):
                made.rmdir()
        raise _refused(root, _reason(exc)) from None
    except Exception as exc:  # an fsspec back end's own errors (credentials, missing bucket)
        raise _refused(root, f"{type(exc).__name__}: {exc}") from None


def _missing(root: Place) -> list[Path]:
    """The local directories from `root` up that do not exist yet, deepest first."""
    out: list[Path] = []
    here = root
    while isinstance(here, Path) and not here.exists() and here != here.parent:
        out.append(here)
        here = here.parent
    return out


def _probe_local(probe: Path) -> None:
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)  # a full disk may only say so when the block is allocated
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _reason(exc: OSError) -> str:
    known = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a part of the path is not a directory",
    }
    return known.get(exc.errno or 0) or (exc.strerror or str(exc))


def _refused(root: Place, reason: str) -> SpecError:
    return SpecError([Diagnostic(f"results root {root} cannot be written: {reason}; nothing was run")])
