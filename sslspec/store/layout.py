"""The results layout, for the writer and every reader: where a run's versions live, how they are
named, which schema version a store declares, and its status.

A results root holds `ROOT/<experiment>/<run id>/vNNNN.zarr`, one version per execution (numbered
from 1, at least four digits), the checkpoint of a version beside it as `vNNNN.ckpt.pt`, the run's
lock as `.lock`, and the root's index as `ROOT/index.jsonl`. A version's root attributes carry
`schema_version` (SCHEMA_VERSION when written) and `status` (a `Status`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from sslspec.errors import Diagnostic, StoreError
from sslspec.store.location import Place, of

SCHEMA_VERSION = 1  # written into every store; readers refuse a newer one
INDEX = "index.jsonl"
LOCK = ".lock"
CHECKPOINT_SUFFIX = ".ckpt.pt"
_VERSION = re.compile(r"^v(\d{4,})\.zarr$")


class Status(StrEnum):
    """A version's `status` attribute (`MISSING`: a run with no version, only in what readers say)."""

    COMPLETE = "complete"
    FAILED = "failed"
    RUNNING = "running"  # being written, or its process died (resumable when it has a checkpoint)
    MISSING = "missing"


def error(message: str) -> StoreError:
    return StoreError([Diagnostic(message)])


# ---- paths ------------------------------------------------------------------------------------


def run_dir(root: Place, experiment: str, run_id: str) -> Place:
    return root / experiment / run_id


def version_name(n: int) -> str:
    return f"v{n:04d}.zarr"


def version_number(store: Place) -> int:
    """vNNNN.zarr -> NNNN (0 for any other name)."""
    m = _VERSION.match(store.name)
    return int(m.group(1)) if m else 0


def version_label(store: Place) -> str:
    """`.../v0003.zarr` -> `v0003` (a version's name without the suffix)."""
    return store.name.removesuffix(".zarr")


def version_path(run: Place, n: int) -> Place:
    return run / version_name(n)


def checkpoint_path(store: Place) -> Place:
    """`.../v0003.zarr` -> `.../v0003.ckpt.pt`."""
    return store.with_name(store.name.removesuffix(".zarr") + CHECKPOINT_SUFFIX)


def versions(run: str | Place) -> list[tuple[int, Place]]:
    """The (number, path) of every vNNNN.zarr under a run directory, oldest first (none when the
    directory does not exist)."""
    run = of(run)
    found = [(version_number(p), p) for p in (run.iterdir() if run.is_dir() else ())]
    return sorted((n, p) for n, p in found if n)


def is_run_dir(d: Place) -> bool:
    return d.is_dir() and any(version_number(p) for p in d.iterdir())


def run_dirs(path: str | Place) -> Iterator[tuple[str, Place]]:
    """(experiment, run dir) of every run under a results root, an experiment dir or a run dir."""
    path = of(path)
    if not path.is_dir():
        raise error(f"{path}: no such results directory")
    if is_run_dir(path):
        yield path.parent.name, path
        return
    subs = sorted(p for p in path.iterdir() if p.is_dir())
    if any(is_run_dir(p) for p in subs):
        for d in subs:
            if is_run_dir(d):
                yield path.name, d
        return
    for exp in subs:
        for d in sorted(p for p in exp.iterdir() if p.is_dir()):
            if is_run_dir(d):
                yield exp.name, d


# ---- root attributes --------------------------------------------------------------------------


def read_attrs(store: str | Place) -> dict[str, Any]:
    """A store's root attributes, schema-checked (zarr.json read directly: no group is opened).

    StoreError when zarr.json is missing or unreadable, or the store was not written by sslspec or
    by a newer one. A version claimed but not yet written has no zarr.json: see `status`."""
    meta = of(store) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except FileNotFoundError:
        raise error(f"{store}: not a zarr v3 store (no zarr.json)") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise error(f"{store}: cannot read zarr.json: {exc}") from None
    if not isinstance(attrs, dict):
        raise error(f"{store}: zarr.json 'attributes' is not an object")
    check_schema(attrs, store)
    return dict(attrs)


def check_schema(attrs: dict[str, Any], store: str | Place) -> None:
    """Raise StoreError unless `schema_version` is an int this reader knows (<= SCHEMA_VERSION)."""
    v = attrs.get("schema_version")
    if v is None:
        raise error(f"{store}: store has no 'schema_version' attribute; it was not written by sslspec")
    if isinstance(v, bool) or not isinstance(v, int):
        raise error(f"{store}: store 'schema_version' must be an integer (got {v!r})")
    if v > SCHEMA_VERSION:
        raise error(
            f"{store}: store schema version {v} is newer than this sslspec reads ({SCHEMA_VERSION}); "
            "upgrade sslspec"
        )


def version_attrs(store: Place) -> dict[str, Any]:
    """`read_attrs`, except {} for a version claimed by a process that has not written (or died
    before writing) its first zarr.json: such a version reads as RUNNING."""
    return read_attrs(store) if (store / "zarr.json").exists() else {}


def status_of(attrs: dict[str, Any], store: str | Place) -> Status:
    """The status a store's root attributes declare (RUNNING while none is written yet)."""
    value = attrs.get("status", Status.RUNNING)
    if value not in tuple(Status) or value == Status.MISSING:
        raise error(f"{store}: unknown store status {value!r}")
    return Status(value)


def status(store: Place) -> Status:
    """A version's status (see `version_attrs`)."""
    return status_of(version_attrs(store), store)
