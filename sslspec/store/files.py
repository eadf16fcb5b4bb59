"""The file-system seam of the store writer: every byte the runtime writes under a results root
(version directories, zarr chunks and metadata, checkpoints, index lines) goes through a `Files`.

`Files()` writes to the local disk or, for a URL root (a `Location`), through fsspec. A test
passes a subclass instead (to `runtime.run.execute`) to inject faults, e.g. an OSError(ENOSPC) at
the n-th chunk written, without a real full disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sslspec import faults
from sslspec.store.location import Location, Place


class Files:
    """Writes under a results root: directories, zarr stores, whole files (atomically), appends."""

    def zarr_store(self, path: Place, read_only: bool = False) -> Any:
        """The zarr v3 store (zarr.abc.store.Store) of a version directory."""
        from zarr.storage import FsspecStore, LocalStore

        if isinstance(path, Location):
            return FsspecStore.from_url(str(path), read_only=read_only)
        return LocalStore(str(path), read_only=read_only)

    def mkdir(self, path: Place, parents: bool = False, exist_ok: bool = False) -> None:
        """Make a directory (FileExistsError when it exists and not `exist_ok`: a claim)."""
        path.mkdir(parents=parents, exist_ok=exist_ok)

    def write_atomic(self, path: Place, data: bytes) -> None:
        """Replace `path` with `data` so that a reader sees the old file or the whole new one."""
        if isinstance(path, Path):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_bytes(data)
                faults.moment("checkpoint")  # checkpoints are the files written whole
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            part = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            part.write_bytes(data)
            faults.moment("checkpoint")
            part.replace(path)

    def append(self, path: Path, line: bytes) -> None:
        """Append one line with one O_APPEND write (lines of concurrent writers never interleave)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if faults.reached("index append"):  # a crash in the middle of the line
                os.write(fd, line[: len(line) // 2])
                faults.die("index append")
            if os.write(fd, line) != len(line):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)

    def remove(self, path: Place) -> None:
        path.unlink(missing_ok=True)
