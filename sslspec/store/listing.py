"""The JSON that `sslspec ls --json` and `sslspec show --json` print, for scripts.

The shape is a promise: keys are only ever added, never renamed or removed, and `schema` names
the format (bumped on any incompatible change). docs/cli.md documents every key.
"""

from __future__ import annotations

from typing import Any

LS_SCHEMA = "sslspec.ls/1"
SHOW_SCHEMA = "sslspec.show/1"


def ls_document(root: str, runs: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """Index entries (newest version of each run, number of versions) under `root` -> the ls JSON."""
    return {"schema": LS_SCHEMA, "root": root, "runs": [_run(e, n) for e, n in runs]}


def _run(e: dict[str, Any], n_versions: int) -> dict[str, Any]:
    metrics = e.get("metrics") or {}
    return {
        "experiment": str(e["experiment"]),
        "run_id": str(e["run_id"]),
        "status": str(e["status"]),
        "version": int(e["version"]),
        "versions": n_versions,
        "epochs_done": int(e.get("epochs_done", 0)),
        "swept": dict(e.get("swept") or {}),
        "root_corr": _number(metrics.get("root_corr")),
        "loss": _number(metrics.get("loss")),
        "path": str(e.get("path", "")),
        "damaged": bool(e.get("damaged", False)),
    }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def show_document(
    store: str, number: int, versions: list[tuple[int, str, str]], attrs: dict[str, Any]
) -> dict[str, Any]:
    """A run's store (`number` of its versions, each (number, status, path)) and root attributes ->
    the show JSON; the attributes are the store's own, with the plan parsed into an object."""
    import json
    from contextlib import suppress

    shown = dict(attrs)
    if isinstance(shown.get("plan"), str):
        with suppress(ValueError):  # else kept as the text it is
            shown["plan"] = json.loads(shown["plan"])
    return {
        "schema": SHOW_SCHEMA,
        "store": store,
        "experiment": attrs.get("experiment"),
        "run_id": attrs.get("run_id"),
        "version": number,
        "status": next((s for n, s, _ in versions if n == number), None),
        "versions": [{"version": n, "status": s, "path": p} for n, s, p in versions],
        "attrs": shown,
    }
