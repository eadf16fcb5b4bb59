"""A `memory://` file system shared by every process of one Ray instance, for the Ray tests.

fsspec's own memory file system lives in one process, and Ray workers are other processes (Ray
2.60 has no local mode any more), so a `memory://` results root cannot be shared as it is. This
one keeps every file's bytes in one named Ray actor; `register()` makes it the `memory`
implementation of fsspec in the calling process. The Ray tests call it in the driver and, as
Ray's worker_process_setup_hook, in every worker, so the driver and the workers see one
in-memory tree: writes of a worker are reads of the driver, as on an object store.
"""

from __future__ import annotations

from typing import Any

import fsspec
import ray
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.spec import AbstractFileSystem

ACTOR = "sslspec-shared-memory"


@ray.remote(num_cpus=0)
class Tree:
    """Files (path -> bytes) and explicit directories."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {""}

    def cat(self, path: str) -> bytes | None:
        return self.files.get(path)

    def pipe(self, path: str, data: bytes) -> None:
        self.files[path] = data

    def rm(self, path: str) -> bool:
        return self.files.pop(path, None) is not None or _discard(self.dirs, path)

    def mkdir(self, path: str) -> None:
        parts = path.split("/")
        self.dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))

    def info(self, path: str) -> dict[str, Any] | None:
        if path in self.files:
            return {"name": path, "type": "file", "size": len(self.files[path])}
        if path in self.dirs or any(p.startswith(path + "/") for p in [*self.files, *self.dirs]):
            return {"name": path, "type": "directory", "size": 0}
        return None

    def ls(self, path: str) -> list[dict[str, Any]]:
        prefix = f"{path}/" if path else ""
        names = {p[len(prefix) :].split("/")[0] for p in [*self.files, *self.dirs] if p.startswith(prefix)}
        found = [self.info(prefix + n) for n in sorted(names) if n]
        return [f for f in found if f is not None]


def _discard(dirs: set[str], path: str) -> bool:
    had = path in dirs
    dirs.discard(path)
    return had


class SharedMemoryFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """fsspec's `memory` protocol over the Tree actor (see the module docstring)."""

    protocol = "memory"
    root_marker = ""

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(path).removeprefix("memory://").strip("/")

    @property
    def tree(self) -> Any:
        # detached: the tree outlives every handle to it, until the Ray instance shuts down
        return Tree.options(name=ACTOR, get_if_exists=True, lifetime="detached").remote()

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw: Any) -> bytes:
        data = ray.get(self.tree.cat.remote(self._strip_protocol(path)))
        if data is None:
            raise FileNotFoundError(path)
        return bytes(data[start:end])

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        path = self._strip_protocol(path)
        ray.get(self.tree.mkdir.remote(path.rsplit("/", 1)[0] if "/" in path else ""))
        ray.get(self.tree.pipe.remote(path, bytes(value)))

    def rm_file(self, path: str) -> None:
        if not ray.get(self.tree.rm.remote(self._strip_protocol(path))):
            raise FileNotFoundError(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def cp_file(self, path1: str, path2: str, **kw: Any) -> None:
        self.pipe_file(path2, self.cat_file(path1))

    def mkdir(self, path: str, create_parents: bool = True, **kw: Any) -> None:
        ray.get(self.tree.mkdir.remote(self._strip_protocol(path)))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        found = ray.get(self.tree.info.remote(self._strip_protocol(path)))
        if found is None:
            raise FileNotFoundError(path)
        return dict(found)

    def ls(self, path: str, detail: bool = True, **kw: Any) -> list[Any]:
        path = self._strip_protocol(path)
        here = self.info(path)
        found = [here] if here["type"] == "file" else ray.get(self.tree.ls.remote(path))
        return found if detail else [f["name"] for f in found]

    def _open(self, path: str, mode: str = "rb", **kw: Any) -> Any:
        import io

        if "r" in mode:
            return io.BytesIO(self.cat_file(path))
        fs, name = self, path

        class Writer(io.BytesIO):
            def close(self) -> None:
                if not self.closed:
                    fs.pipe_file(name, self.getvalue())
                super().close()

        return Writer()


def register() -> None:
    """Make `memory://` the shared file system in this process."""
    fsspec.register_implementation("memory", SharedMemoryFileSystem, clobber=True)


def unregister() -> None:
    """Give `memory://` back to fsspec's own, per-process file system."""
    fsspec.register_implementation("memory", MemoryFileSystem, clobber=True)
