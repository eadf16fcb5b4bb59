"""Index: one JSON line per store event in `ROOT/index.jsonl`, so listing runs opens no zarr group.

Writers append with `record` (O_APPEND, one os.write of one line under 4 KiB, so lines from
concurrent processes never interleave); readers take the last line per (experiment, run id,
version). `refresh` adds lines for stores the index does not know or still lists as running;
`rebuild` rewrites the whole index from the stores.

A URL root (sslspec.store.location) has no index: `refresh` and `rebuild` there scan the stores and
write nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sslspec import faults
from sslspec.store.location import Location, Place, of
from sslspec.store.read import read_attrs, run_dirs, versions

INDEX = "index.jsonl"
MAX_LINE = 4096  # bytes; a single O_APPEND write of at most this much is not interleaved
Key = tuple[str, str, int]


def record(root: str | Path, entry: dict[str, Any]) -> None:
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
    Path(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(root) / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if faults.reached("index append"):  # a crash in the middle of the line
            os.write(fd, line[: len(line) // 2])
            faults.die("index append")
        if os.write(fd, line) != len(line):
            raise OSError(f"short write to {Path(root) / INDEX}")
    finally:
        os.close(fd)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":"), allow_nan=True) + "\n").encode()


def _short(v: Any) -> Any:
    text = json.dumps(v)
    return v if len(text) <= 200 else text[:197] + "..."


def read(root: str | Path) -> dict[Key, dict[str, Any]]:
    """The last entry per (experiment, run_id, version) in ROOT/index.jsonl ({} when absent).

    Lines that do not parse (a torn write after a crash) are skipped.
    """
    out: dict[Key, dict[str, Any]] = {}
    try:
        text = (Path(root) / INDEX).read_bytes()
    except FileNotFoundError:
        return out
    for raw in text.splitlines():
        try:
            e = json.loads(raw)
            out[(e["experiment"], e["run_id"], int(e["version"]))] = e
        except (ValueError, KeyError, TypeError):
            continue
    return out


def entry(root: str | Place, store: str | Place) -> dict[str, Any]:
    """An index entry describing one store (root attrs plus final metrics), path relative to root."""
    store, root = of(store), of(root)
    a = read_attrs(store)
    rel = _relative(root, store)
    return {
        "experiment": a.get("experiment", store.parent.parent.name),
        "run_id": a.get("run_id", store.parent.name),
        "version": int(store.name[1:].removesuffix(".zarr")),
        "status": a.get("status", "running"),
        "swept": a.get("swept", {}),
        "epochs_done": a.get("epochs_done", 0),
        "metrics": metrics(store),
        "path": rel,
    }


def _relative(root: Place, store: Place) -> str:
    if isinstance(root, Location) or isinstance(store, Location):
        head = f"{root}/"
        return str(store)[len(head) :] if str(store).startswith(head) else str(store)
    try:
        return str(store.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(store)


def metrics(store: Place) -> dict[str, float]:
    """Final key metrics: root best_corr at the last measured epoch and the last training loss."""
    import numpy as np
    import zarr

    out: dict[str, float] = {}
    group: Any = zarr.open_group(str(store), mode="r")
    for name, key in (("best_corr", "root_corr"), ("loss", "loss")):
        if name not in group:
            continue
        values = np.asarray(group[name][...], dtype=np.float64)
        values = values[:, 0] if name == "best_corr" else values  # (epoch, node) -> the root node
        done = values[np.isfinite(values)]
        if done.size:
            out[key] = float(done[-1])
    return out


def refresh(root: str | Place) -> dict[Key, dict[str, Any]]:
    """`read`, after appending entries for stores that are unindexed or indexed as running."""
    root = of(root)
    if isinstance(root, Location):
        return scan(root)
    known = read(root)
    for exp, d in run_dirs(Path(root)) if Path(root).is_dir() else ():
        for n, p in versions(d):
            e = known.get((exp, d.name, n))
            if e is None or e.get("status") == "running":
                new = entry(root, p)
                changed = e is None or any(new[k] != e.get(k) for k in ("status", "epochs_done"))
                if changed:
                    record(root, new)
                    known[(exp, d.name, n)] = new
    return known


def scan(root: str | Place) -> dict[Key, dict[str, Any]]:
    """The entries of every store under a root, read from the stores (writes nothing)."""
    return {(e, d.name, n): entry(root, p) for e, d in run_dirs(root) for n, p in versions(d)}


def rebuild(root: str | Place) -> dict[Key, dict[str, Any]]:
    """Rewrite ROOT/index.jsonl from the stores alone (atomic replace); return the entries (on a
    URL root, which has no index, only the entries)."""
    root = of(root)
    entries = scan(root)
    if isinstance(root, Location):
        return entries
    tmp = root / f".{INDEX}.{os.getpid()}.tmp"
    tmp.write_bytes(b"".join(_line({**e, "time": time.time()}) for e in entries.values()))
    os.replace(tmp, root / INDEX)
    return entries


def runs(entries: dict[Key, dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(newest version's entry, number of versions) per run, sorted by experiment and run id."""
    by_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (exp, run_id, _), e in entries.items():
        by_run.setdefault((exp, run_id), []).append(e)
    return [(max(es, key=lambda e: int(e["version"])), len(es)) for _, es in sorted(by_run.items())]
