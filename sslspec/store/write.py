"""The store writer: one zarr group per run execution, arrays pre-sized and written epoch by epoch.

Layout: `OUT/<experiment>/<run id>/v0001.zarr` (a new version directory per execution, claimed
with an atomic mkdir, never overwritten). OUT may be an fsspec URL (a `Location`): there a version
is claimed by creating its group with mode "w-", which refuses an existing one but is a check
then a write, not atomic, and there is no run lock; so only local roots guarantee that concurrent
processes never write the same version or duplicate a complete run. Arrays are created up front
with NaN fill and chunked one epoch per chunk; the root attribute `epochs_done` is raised after each epoch's
writes and `status` is set to `complete` only after the last one, so a killed run reads as
`running` with the unwritten epochs NaN.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from sslspec.store.location import Location, Place

SCHEMA_VERSION = 1
VERSION_PREFIX = "v"


def claim_version(root: Place, experiment: str, run_id: str) -> Place:
    """Create and return the next free version directory of a run (atomic: mkdir fails if taken;
    on a URL root, creating the group with mode "w-" fails if taken)."""
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    n = 1 + max((_version_number(p.name) for p in run_dir.iterdir()), default=0)
    while True:
        path = run_dir / f"{VERSION_PREFIX}{n:04d}.zarr"
        try:
            if isinstance(path, Location):
                zarr.open_group(str(path), mode="w-", zarr_format=3)
            else:
                path.mkdir()
            return path
        except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
            n += 1


def _version_number(name: str) -> int:
    stem = name.removesuffix(".zarr")
    return int(stem[1:]) if stem.startswith(VERSION_PREFIX) and stem[1:].isdigit() else 0


def run_dir(root: Place, experiment: str, run_id: str) -> Place:
    return root / experiment / run_id


def versions(directory: Place) -> list[Place]:
    """The version stores of one run directory, oldest first (none when it does not exist)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.name.endswith(".zarr") and _version_number(p.name)]
    return sorted(found, key=lambda p: _version_number(p.name))


def read_attrs(path: Place) -> dict[str, Any]:
    """The root attributes of a version store; {} when it has none yet or they cannot be read
    (a version claimed by a process killed before its first write)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return {}
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else {}


class RunLock:
    """An exclusive claim on one run while a process decides about it and writes a version of it.

    An flock on `OUT/<experiment>/<run id>/.lock` (which holds the owner's pid and host while
    held): the kernel drops it when the owner dies, so a killed run never leaves a stale claim,
    and two processes can never both hold it. The file itself stays (removing it would race with
    a process waiting on it).

    A run under a URL root has no lock: acquiring always succeeds and nothing is written."""

    NAME = ".lock"

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
    """Writes one run's arrays; every variable has named dims, `units` and `long_name`."""

    def __init__(self, path: Place, attrs: dict[str, Any]) -> None:
        self.path = path
        self.group = zarr.open_group(str(path), mode="w", zarr_format=3)
        self.group.attrs.update(jsonable({"schema_version": SCHEMA_VERSION, **attrs}))
        self.arrays: dict[str, Any] = {}

    def coord(self, name: str, values: Any, units: str, long_name: str, dim: str | None = None) -> None:
        """A 1-d coordinate written at once (an index coordinate when `dim` is None)."""
        values = np.asarray(values)
        arr = self.group.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            dimension_names=[dim or name],
            attributes={"units": units, "long_name": long_name},
            fill_value=_fill(values.dtype),
        )
        arr[...] = values
        self.arrays[name] = arr

    def variable(
        self,
        name: str,
        dims: tuple[str, ...],
        shape: tuple[int, ...],
        units: str,
        long_name: str,
        dtype: str = "float32",
        lead_chunk: int = 1,
        **extra: Any,
    ) -> None:
        """A NaN-filled array chunked `lead_chunk` along its first dim (one epoch per chunk)."""
        chunks = (max(1, min(lead_chunk, shape[0])), *shape[1:]) if shape else ()
        attrs = jsonable({"units": units, "long_name": long_name, **extra})
        self.arrays[name] = self.group.create_array(
            name,
            shape=shape,
            chunks=chunks or None,
            dtype=dtype,
            fill_value=_fill(np.dtype(dtype)),
            dimension_names=list(dims),
            attributes=attrs,
        )

    @classmethod
    def reopen(cls, path: Place) -> RunStore:
        """An existing store opened for writing, as it is (for a resumed run)."""
        self = cls.__new__(cls)
        self.path = path
        self.group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        self.arrays = dict(self.group.arrays())
        return self

    def write(self, name: str, index: Any, value: Any) -> None:
        """Write `value` at `index` of variable `name` (e.g. one epoch's row)."""
        self.arrays[name][index] = np.asarray(value)

    def update_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(jsonable(attrs))


def _fill(dtype: np.dtype[Any]) -> Any:
    return float("nan") if np.issubdtype(dtype, np.floating) else 0


def dumps(data: Any) -> str:
    """Compact JSON for large structured attributes (the plan)."""
    return json.dumps(jsonable(data), sort_keys=True, separators=(",", ":"))


def host() -> str:
    return os.uname().nodename
