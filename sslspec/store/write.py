"""The store writer: one zarr group per run execution, arrays pre-sized and written epoch by epoch.

A new version directory per execution (see sslspec.store.layout), claimed with an atomic mkdir,
never overwritten. The root may be an fsspec URL (a `Location`): there a version is claimed by
creating its group with mode "w-", which refuses an existing one but is a check then a write, not
atomic, and there is no run lock; so only local roots guarantee that concurrent processes never
write the same version or duplicate a complete run. Arrays are declared from the variable table
(sslspec.store.variables) with NaN fill and chunked one epoch per chunk; the root attribute
`epochs_done` is raised after each epoch's writes and `status` is set to complete only after the
last one, so a killed run reads as running with the unwritten epochs NaN.

Every chunk is zstd-compressed and then checksummed (crc32c over the compressed bytes), so any
changed byte of a stored chunk is detected when it is read (sslspec.store.integrity). Every write
goes through a `Files` (sslspec.store.files), the seam where tests inject write errors.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync

from sslspec.store.files import Files
from sslspec.store.layout import LOCK, SCHEMA_VERSION, run_dir, version_number, version_path
from sslspec.store.location import Location, Place
from sslspec.store.variables import VARIABLES, Entry, resolve_dims, wanted

# zstd's own frame checksum covers only the decompressed content and measured slower here
# (benchmarks/checksum_speed.py); a crc32c of the compressed bytes catches any flipped byte.
COMPRESSORS = (ZstdCodec(level=0, checksum=False), Crc32cCodec())


def claim_version(root: Place, experiment: str, run_id: str, files: Files | None = None) -> Place:
    """Create and return the next free version directory of a run (atomic: mkdir fails if taken;
    on a URL root, creating the group with mode "w-" fails if taken)."""
    files = files or Files()
    directory = run_dir(root, experiment, run_id)
    files.mkdir(directory, parents=True, exist_ok=True)
    n = 1 + max((version_number(p) for p in directory.iterdir()), default=0)
    while True:
        path = version_path(directory, n)
        try:
            if isinstance(path, Location):
                zarr.open_group(files.zarr_store(path), mode="w-", zarr_format=3)
            else:
                files.mkdir(path)
            return path
        except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
            n += 1


class RunLock:
    """An exclusive claim on one run while a process decides about it and writes a version of it.

    An flock on `OUT/<experiment>/<run id>/.lock` (which holds the owner's pid and host while
    held): the kernel drops it when the owner dies, so a killed run never leaves a stale claim,
    and two processes can never both hold it. The file itself stays (removing it would race with
    a process waiting on it).

    A run under a URL root has no lock: acquiring always succeeds and nothing is written."""

    NAME = LOCK

    def __init__(self, directory: Place) -> None:
        self.local = not isinstance(directory, Location)
        self.path = Path(str(directory)) / self.NAME
        self.fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        """Take the lock; without `wait`, return False at once when another process holds it."""
        if not self.local:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {host()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def held_elsewhere(self) -> bool:
        """Whether a live process holds the lock now (reads only; creates nothing)."""
        if not self.local:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken just now
        return False


def jsonable(value: Any) -> Any:
    """Plain-Python form of attribute values (numpy scalars and arrays, tuples, paths)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path | Location):
        return str(value)
    return value


class RunStore:
    """Writes one run's arrays; every variable has named dims, `units` and `long_name` (from the
    variable table)."""

    def __init__(self, path: Place, attrs: dict[str, Any], files: Files | None = None) -> None:
        self.path, self.files = path, files or Files()
        self.group = zarr.open_group(self.files.zarr_store(path), mode="w", zarr_format=3)
        self.group.attrs.update(jsonable({"schema_version": SCHEMA_VERSION, **attrs}))
        self.arrays: dict[str, Any] = {}

    def coord(self, entry: Entry, values: Any, names: dict[str, Any]) -> None:
        """A 1-d coordinate of the table, written at once; `names` fill its long name's fields."""
        values = np.asarray(values, dtype=entry.dtype)
        arr = self.group.create_array(
            entry.name,
            shape=values.shape,
            dtype=values.dtype,
            dimension_names=list(entry.dims),
            attributes={"units": entry.units, "long_name": entry.long_name.format(**names)},
            fill_value=_fill(values.dtype),
            compressors=COMPRESSORS,
        )
        arr[...] = values
        self.arrays[entry.name] = arr

    def variable(
        self,
        entry: Entry,
        dims: tuple[str, ...],
        shape: tuple[int, ...],
        lead_chunk: int,
        names: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """A NaN-filled variable of the table with resolved `dims` and `shape`, chunked `lead_chunk`
        along its first dim; `names` fill its long name's fields, `extra` adds attributes."""
        chunks = (max(1, min(lead_chunk, shape[0])), *shape[1:]) if shape else ()
        long_name = entry.long_name.format(**names)
        attrs = jsonable({"units": entry.units, "long_name": long_name, **entry.attrs, **(extra or {})})
        self.arrays[entry.name] = self.group.create_array(
            entry.name,
            shape=shape,
            chunks=chunks if shape else "auto",
            dtype=entry.dtype,
            fill_value=_fill(np.dtype(entry.dtype)),
            dimension_names=list(dims),
            attributes=attrs,
            compressors=COMPRESSORS,
        )

    @classmethod
    def reopen(cls, path: Place, files: Files | None = None) -> RunStore:
        """An existing store opened for writing, as it is (for a resumed run)."""
        self = cls.__new__(cls)
        self.path, self.files = path, files or Files()
        self.group = zarr.open_group(self.files.zarr_store(path), mode="r+", zarr_format=3)
        self.arrays = dict(self.group.arrays())
        return self

    def write(self, name: str, index: Any, value: Any) -> None:
        """Write `value` at `index` of variable `name` (e.g. one epoch's row)."""
        self.arrays[name][index] = np.asarray(value)

    def write_many(self, items: Sequence[tuple[str, Any, Any]]) -> None:
        """`write(name, index, value)` for each item, in order, in one round trip to zarr's event
        loop (each synchronous write waits for its own: a measured epoch writes about ten rows)."""

        async def in_order() -> None:
            for name, index, value in items:
                await self.arrays[name].async_array.setitem(index, np.asarray(value))

        sync(in_order())

    def update_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(jsonable(attrs))


def _fill(dtype: np.dtype[Any]) -> Any:
    return float("nan") if np.issubdtype(dtype, np.floating) else 0


def dumps(data: Any) -> str:
    """Compact JSON for large structured attributes (the plan)."""
    return json.dumps(jsonable(data), sort_keys=True, separators=(",", ":"))


def host() -> str:
    return os.uname().nodename


def lacking(path: Place, measure: Any, files: Files | None = None) -> str:
    """Why the store at `path` cannot be continued by this version of sslspec for a run measuring
    `measure` ("" when it can): it lacks variables this version writes although it has their
    dimensions (another version of sslspec wrote it), or it cannot be opened at all."""
    try:
        group = zarr.open_group((files or Files()).zarr_store(path), mode="r", zarr_format=3)
        have = {name: tuple(getattr(a.metadata, "dimension_names", None) or ()) for name, a in group.arrays()}
    except Exception as exc:  # any unreadable store is one not to continue
        return f"{path}: its arrays cannot be read ({type(exc).__name__}: {exc})"
    dims = {d for ds in have.values() for d in ds}
    net = "layer" if "layer" in dims else "node"
    missing = [
        e.name
        for e in VARIABLES
        if wanted(e, measure) and e.name not in have and set(resolve_dims(e.dims, net)) <= dims
    ]
    if not missing:
        return ""
    return f"{path} lacks {', '.join(missing)} (another version of sslspec wrote it; it is left as it is)"
