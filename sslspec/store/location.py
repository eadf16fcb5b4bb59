"""Where results live: a local directory (a pathlib.Path) or an fsspec URL (a `Location`).

`of(x)` gives a Path for a local path or a `file://` URL and a Location for any other URL
(`memory://...`, `s3://...`, `gs://...`). A Location offers the part of Path's interface the
results code uses (`/`, name, parent, with_name, suffix, is_dir, is_file, exists, iterdir, mkdir,
read_text, read_bytes, write_bytes, replace, unlink), so readers and writers take either; its
`str()` is the URL, which zarr and xarray open directly. A URL never goes through pathlib, which
would collapse its `//`. fsspec is imported only when a URL is met.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Location:
    """A file or directory on an fsspec filesystem: the URL as given plus (filesystem, path)."""

    def __init__(self, url: str, fs: Any = None, path: str | None = None) -> None:
        url = _strip_slash(url)
        if fs is None or path is None:
            from fsspec.core import url_to_fs  # type: ignore[import-untyped]

            fs, path = url_to_fs(url)
        self.url, self.fs, self.path = url, fs, _strip_slash(str(path))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: Location) -> bool:
        return self.url < other.url

    def __truediv__(self, name: str) -> Location:
        return Location(f"{self.url}/{name}", self.fs, f"{self.path}/{name}")

    @property
    def name(self) -> str:
        return self.url.split("://", 1)[-1].rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        scheme, _, rest = self.url.rpartition("://")
        if "/" not in rest:  # the bucket (or first component) is its own parent, as "/" is
            return self
        return Location(f"{scheme}://{rest.rsplit('/', 1)[0]}", self.fs, self.path.rsplit("/", 1)[0])

    @property
    def suffix(self) -> str:
        stem, dot, ext = self.name.rpartition(".")
        return f".{ext}" if dot and stem else ""

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def resolve(self) -> Location:
        return self

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def iterdir(self) -> Iterator[Location]:
        """The entries directly under this directory (FileNotFoundError when it does not exist)."""
        for info in self.fs.ls(self.path, detail=True):
            full = _strip_slash(str(info["name"]))
            if full.lstrip("/") != self.path.lstrip("/"):  # some stores list the prefix itself
                yield self / full.rsplit("/", 1)[-1]

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Directories are implicit on object stores; where they are real, make them."""
        if self.fs.isdir(self.path) and not exist_ok:
            raise FileExistsError(self.url)
        self.fs.makedirs(self.path, exist_ok=True)

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> int:
        self.fs.pipe_file(self.path, data)
        return len(data)

    def replace(self, target: Location) -> Location:
        """Move this file onto `target` (a rename where the store has one, else copy and delete)."""
        self.fs.mv(self.path, target.path)
        return target

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


Place = Path | Location


def is_url(x: str | Path | Location) -> bool:
    """Whether `x` names a non-local place (a URL other than file://)."""
    return isinstance(of(x), Location)


def of(x: str | Path | Location) -> Place:
    """A Path for a local path or a `file://` URL, a Location for any other URL."""
    if isinstance(x, Path | Location):
        return x
    scheme, sep, _ = x.partition("://")
    if not sep or not scheme.isidentifier():
        return Path(x)
    if scheme in ("file", "local"):
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]

        return Path(url_to_fs(x)[1])
    return Location(x)


def _strip_slash(s: str) -> str:
    stripped = s.rstrip("/")
    return stripped if stripped and not stripped.endswith(":/") and not stripped.endswith(":") else s
