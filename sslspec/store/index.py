"""Index: one JSON line per store event in `ROOT/index.jsonl`, so listing runs opens no zarr group.

Writers append with `record` (O_APPEND, one os.write of one line under 4 KiB, so lines from
concurrent processes never interleave); readers take the last line per (experiment, run id,
version). `refresh` adds lines for stores the index does not know or still lists as running;
`rebuild` rewrites the whole index from the stores.

A URL root (sslspec.store.location) has no index: `refresh` and `rebuild` there scan the stores and
write nothing. `listing` is what `sslspec ls` shows: it rebuilds an index that has a damaged line
(a crash mid-append) and reports stores whose data is damaged instead of indexing them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslspec.errors import DamagedStore
from sslspec.store.files import Files
from sslspec.store.integrity import read_array
from sslspec.store.layout import INDEX, Status, run_dirs, status_of, version_attrs, version_number, versions
from sslspec.store.location import Location, Place, of
from sslspec.store.variables import LOSS, ROOT_CORR, root_values

MAX_LINE = 4096  # bytes; a single O_APPEND write of at most this much is not interleaved
Key = tuple[str, str, int]


def record(root: str | Path, entry: dict[str, Any], files: Files | None = None) -> None:
    """Append one entry (experiment, run_id, version, status, swept, epochs_done, metrics, path)."""
    entry = {**entry, "time": entry.get("time", time.time())}
    line = _line(entry)
    if len(line) > MAX_LINE:  # long swept values (tree shapes) are shortened, then metrics dropped
        entry["swept"] = {k: _short(v) for k, v in dict(entry.get("swept", {})).items()}
        line = _line(entry)
    if len(line) > MAX_LINE:
        entry.pop("metrics", None)
        line = _line(entry)
    if len(line) > MAX_LINE:
        raise ValueError(f"index entry is {len(line)} bytes; the limit is {MAX_LINE}")
    files = files or Files()
    files.mkdir(Path(root), parents=True, exist_ok=True)
    files.append(Path(root) / INDEX, line)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":"), allow_nan=True) + "\n").encode()


def _short(v: Any) -> Any:
    text = json.dumps(v)
    return v if len(text) <= 200 else text[:197] + "..."


def read(root: str | Path) -> dict[Key, dict[str, Any]]:
    """The last entry per (experiment, run_id, version) in ROOT/index.jsonl ({} when absent).

    Lines that do not parse (a torn write after a crash) are skipped."""
    return _read(root)[0]


def _read(root: str | Path) -> tuple[dict[Key, dict[str, Any]], int]:
    """`read` and the number of lines skipped."""
    out: dict[Key, dict[str, Any]] = {}
    try:
        text = (Path(root) / INDEX).read_bytes()
    except FileNotFoundError:
        return out, 0
    torn = 0
    for raw in text.splitlines():
        try:
            e = json.loads(raw)
            out[(e["experiment"], e["run_id"], int(e["version"]))] = e
        except (ValueError, KeyError, TypeError):
            torn += 1
    return out, torn


def entry(root: str | Place, store: str | Place, damaged: list[str] | None = None) -> dict[str, Any]:
    """An index entry describing one store (root attrs plus final metrics), path relative to root.

    A store whose metrics do not decode raises DamagedStore, or with a `damaged` list gets its
    messages appended there and the entry is marked `damaged` (it is never written to the index)."""
    store, root = of(store), of(root)
    a = version_attrs(store)
    e: dict[str, Any] = {
        "experiment": a.get("experiment", store.parent.parent.name),
        "run_id": a.get("run_id", store.parent.name),
        "version": version_number(store),
        "status": str(status_of(a, store)),
        "swept": a.get("swept", {}),
        "epochs_done": a.get("epochs_done", 0),
        "metrics": {},
        "path": _relative(root, store),
    }
    try:
        e["metrics"] = metrics(store) if a else {}
    except DamagedStore as exc:
        if damaged is None:
            raise
        damaged.extend(d.message for d in exc.diagnostics)
        e["damaged"] = True
    return e


def _relative(root: Place, store: Place) -> str:
    if isinstance(root, Location) or isinstance(store, Location):
        head = f"{root}/"
        return str(store)[len(head) :] if str(store).startswith(head) else str(store)
    try:
        return str(store.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(store)


def metrics(store: Place) -> dict[str, float]:
    """Final key metrics: the root correlation (variables.ROOT) at the last measured epoch and the
    last training loss. DamagedStore when either does not decode."""
    import numpy as np
    import zarr

    out: dict[str, float] = {}
    group: Any = zarr.open_group(str(store), mode="r")
    for name, key in ((ROOT_CORR, "root_corr"), (LOSS, "loss")):
        if name not in group:
            continue
        arr = group[name]
        values = np.asarray(read_array(store, name, arr), dtype=np.float64)
        if name == ROOT_CORR:
            values = root_values(values, arr.metadata.dimension_names)
        done = values[np.isfinite(values)]
        if done.size:
            out[key] = float(done[-1])
    return out


def refresh(root: str | Place, damaged: list[str] | None = None) -> dict[Key, dict[str, Any]]:
    """`read`, after appending entries for stores that are unindexed or indexed as running
    (`damaged`: see `entry`)."""
    root = of(root)
    if isinstance(root, Location):
        return scan(root, damaged)
    known = read(root)
    for exp, d in run_dirs(Path(root)) if Path(root).is_dir() else ():
        for n, p in versions(d):
            e = known.get((exp, d.name, n))
            if e is None or e.get("status") == Status.RUNNING:
                new = entry(root, p, damaged)
                changed = e is None or any(new[k] != e.get(k) for k in ("status", "epochs_done"))
                if changed and not new.get("damaged"):
                    record(root, new)
                if changed:
                    known[(exp, d.name, n)] = new
    return known


def scan(root: str | Place, damaged: list[str] | None = None) -> dict[Key, dict[str, Any]]:
    """The entries of every store under a root, read from the stores (writes nothing)."""
    return {(e, d.name, n): entry(root, p, damaged) for e, d in run_dirs(root) for n, p in versions(d)}


def rebuild(root: str | Place, damaged: list[str] | None = None) -> dict[Key, dict[str, Any]]:
    """Rewrite ROOT/index.jsonl from the stores alone (atomic replace); return the entries (on a
    URL root, which has no index, only the entries). Damaged stores are left out of the file."""
    root = of(root)
    entries = scan(root, damaged)
    if isinstance(root, Location):
        return entries
    lines = [_line({**e, "time": time.time()}) for e in entries.values() if not e.get("damaged")]
    tmp = root / f".{INDEX}.{os.getpid()}.tmp"
    tmp.write_bytes(b"".join(lines))
    os.replace(tmp, root / INDEX)
    return entries


@dataclass
class Listing:
    """What `sslspec ls` shows: the entries, notes about the index, damaged stores."""

    entries: dict[Key, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def listing(root: str | Place, rebuild_first: bool = False) -> Listing:
    """`refresh`, or `rebuild` when asked or when the index has lines that do not parse (a crash
    cut an append short: the line, and any appended after it onto the same line, are lost)."""
    root = of(root)
    out = Listing({})
    torn = 0 if isinstance(root, Location) else _read(Path(root))[1]
    if rebuild_first or torn:
        out.entries = rebuild(root, out.damaged)
        if torn:
            out.notes.append(
                f"{root / INDEX}: {torn} damaged line{'s' if torn != 1 else ''} (an append cut short "
                "by a crash); the index was rebuilt from the stores"
            )
    else:
        out.entries = refresh(root, out.damaged)
    return out


def runs(entries: dict[Key, dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(newest version's entry, number of versions) per run, sorted by experiment and run id."""
    by_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (exp, run_id, _), e in entries.items():
        by_run.setdefault((exp, run_id), []).append(e)
    return [(max(es, key=lambda e: int(e["version"])), len(es)) for _, es in sorted(by_run.items())]
