"""Damaged stored data, found and named: which store, which variable, which chunk.

The writer checksums every chunk (crc32c of the compressed bytes, see sslspec.store.write), so a
changed byte makes zarr's decoding fail; stores written before that have only zstd's frame, which
catches some damage. Readers go through `read_array` / `check_group`, which turn such a failure
into a `DamagedStore` that names the store, the variable and every damaged chunk of it (by its
key under the variable's directory, e.g. `c/3/0/0`); `verify` reads every chunk of every
complete version under a root. A chunk file deleted outright reads as never written (NaN).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sslspec.errors import DamagedStore, Diagnostic, StoreError
from sslspec.store.layout import Status, run_dirs, status_of, version_attrs, versions
from sslspec.store.location import Place

# What zarr's codecs raise on bytes they cannot decode: crc32c mismatch or a bad frame
# (ValueError), zstd errors (RuntimeError), a chunk of the wrong size (TypeError, ValueError).
DECODE_ERRORS = (ValueError, RuntimeError, TypeError)


def damaged_chunks(arr: Any) -> Iterator[tuple[str, str]]:
    """(chunk key, reason) of every chunk of a zarr array that fails to decode."""
    for idx in np.ndindex(*arr.cdata_shape):
        try:
            arr.get_block_selection(idx)
        except DECODE_ERRORS as exc:
            yield arr.metadata.encode_chunk_key(idx), _reason(exc)


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "checksum mismatch" if "checksum" in text else f"{type(exc).__name__}: {text[:100]}"


def damage(store: Place, name: str, arr: Any) -> list[str]:
    """One line per damaged chunk of variable `name` of `store`."""
    return [f"{store}: variable '{name}', chunk {key}: {why}" for key, why in damaged_chunks(arr)]


def raise_damaged(lines: list[str], exc: Exception | None = None) -> None:
    """DamagedStore with `lines`, or (no chunk found: the read failed otherwise) with `exc`."""
    if lines:
        raise DamagedStore([Diagnostic(line) for line in lines]) from None
    if exc is not None:
        raise exc


def read_array(store: Place, name: str, arr: Any) -> np.ndarray[Any, Any]:
    """The whole of zarr array `arr` (variable `name` of `store`); DamagedStore naming every
    damaged chunk when it does not decode."""
    try:
        return np.asarray(arr[...])
    except DECODE_ERRORS as exc:
        raise_damaged(damage(store, name, arr), exc)
        raise


def load_checked(store: Place, ds: Any) -> Any:
    """An xarray Dataset opened from `store`, loaded into memory; DamagedStore naming every
    damaged chunk of every variable when any does not decode."""
    try:
        return ds.load()
    except DECODE_ERRORS as exc:
        import zarr

        group: Any = zarr.open_group(str(store), mode="r")
        raise_damaged(
            [
                line
                for name, arr in sorted(group.arrays(), key=lambda kv: kv[0])
                for line in damage(store, name, arr)
            ],
            exc,
        )
        raise


@dataclass
class Report:
    """What `verify` found: stores and chunks read, and one line per problem."""

    stores: int = 0
    arrays: int = 0
    chunks: int = 0
    unchecked: int = 0  # arrays stored without a checksum (written before checksums were)
    problems: list[str] = field(default_factory=list)


def verify(root: Place) -> Report:
    """Read every chunk of every complete version under a results root (or experiment or run
    directory)."""
    import zarr

    out = Report()
    for _, d in run_dirs(root):
        for _, store in versions(d):
            try:
                if status_of(version_attrs(store), store) != Status.COMPLETE:
                    continue
                group: Any = zarr.open_group(str(store), mode="r")
                arrays = sorted(group.arrays(), key=lambda kv: kv[0])
            except StoreError as exc:
                out.problems.extend(d.message for d in exc.diagnostics)
                continue
            except Exception as exc:  # unreadable array metadata is damage too
                out.problems.append(f"{store}: cannot open its arrays: {type(exc).__name__}: {exc}")
                continue
            out.stores += 1
            for name, arr in arrays:
                out.arrays += 1
                out.chunks += int(np.prod(arr.cdata_shape))
                out.unchecked += not any(c.to_dict()["name"] == "crc32c" for c in arr.metadata.codecs)
                out.problems.extend(damage(store, name, arr))
    return out
