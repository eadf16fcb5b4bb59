"""The report's Markdown: provenance, and tables of mean ± std over seeds with swept fields as
rows and columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sslspec.report.sweep import SweepResults, combos, final, fmt_stats, over_seeds, seeds_note, show, stats
from sslspec.store.layout import Status
from sslspec.store.variables import (
    DEAD_FRACTION,
    LEVEL_CORR,
    NODE_LEVEL,
    TC_COSINE,
    TC_REL_ERROR,
    output_layer,
    root_of,
)


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def value_table(sw: SweepResults, da: Any, what: str) -> str:
    """Per-run scalars (sweep dims only) -> a markdown table of mean ± std over seeds.

    Two settings dims forming a full grid: rows = the first, columns = the second; otherwise
    one row per setting with one column per swept field."""
    cs = combos(sw)

    def cell(c: dict[str, Any]) -> str:
        return fmt_stats(*stats(over_seeds(da, c).values))

    dims = sw.settings
    if len(dims) == 2:
        rows_v = list(dict.fromkeys(c[dims[0]] for c in cs))
        cols_v = list(dict.fromkeys(c[dims[1]] for c in cs))
        if len(rows_v) * len(cols_v) == len(cs):
            head = [f"{sw.path(dims[0])} \\ {sw.path(dims[1])}", *(show(v) for v in cols_v)]
            rows = [[show(r), *(cell({dims[0]: r, dims[1]: c}) for c in cols_v)] for r in rows_v]
            return f"{what} ({seeds_note(sw)}):\n\n" + md_table(head, rows)
    head = [*(sw.path(d) for d in dims), what] if dims else [what]
    rows = [[*(show(c[d]) for d in dims), cell(c)] for c in cs]
    return f"{what} ({seeds_note(sw)}):\n\n" + md_table(head, rows)


def level_table(sw: SweepResults) -> str:
    """Per-level correlation at initialization -> after training, mean over seeds."""
    lc = output_layer(sw.ds[LEVEL_CORR])
    init, last = lc.sel(epoch=lc.epoch.min()), final(lc)
    levels = [int(x) for x in lc.level.values]
    head = [*(sw.path(d) for d in sw.settings), *(f"level {lv}" for lv in levels)]
    rows = []
    for c in combos(sw):
        cells = []
        for lv in levels:
            (a, _, _), (b, sb, nb) = (stats(over_seeds(x.sel(level=lv), c).values) for x in (init, last))
            cells.append("—" if nb == 0 else f"{a:.3f} → {b:.3f} ± {sb:.3f}")
        rows.append([*(show(c[d]) for d in sw.settings), *cells])
    text = (
        "Mean best correlation per level (0 = root), at initialization → after training "
        f"± std over seeds ({seeds_note(sw)}):"
    )
    return text + "\n\n" + md_table(head, rows)


ZERO_CORR = 0.01  # a root correlation below this after training reads as "nothing learned"


def _dead_by_level(sw: SweepResults) -> tuple[str, list[Any]]:
    """dead_fraction after training, averaged over the nodes of each tree level (or per mlp layer):
    the axis name and one array per level, root first."""
    dead = final(sw.ds[DEAD_FRACTION])
    if "layer" in dead.dims:
        return "layer", [dead.isel(layer=i) for i in range(dead.sizes["layer"])]
    lv = sw.ds[NODE_LEVEL]  # the same in every run: drop the sweep dims the reader stacked it over
    levels = np.asarray(lv.max([d for d in lv.dims if d != "node"]).values).astype(int)
    return "level", [dead.isel(node=np.flatnonzero(levels == lv)).mean("node") for lv in np.unique(levels)]


def dead_table(sw: SweepResults) -> str:
    """Per setting, the runs whose root correlation ends near 0 and how many of them had no live unit
    at the root or in the level below it (dead_fraction = 1), with the mean dead fraction per level."""
    root = final(root_of(sw.ds[LEVEL_CORR]))
    axis, per_level = _dead_by_level(sw)
    head = [
        *(sw.path(d) for d in sw.settings),
        f"root corr < {ZERO_CORR}",
        "of them: no live unit",
        *(f"dead {axis} {i}" for i in range(len(per_level))),
    ]
    rows = []
    for c in combos(sw):
        corr = np.asarray(over_seeds(root, c).values, dtype=float).ravel()
        dead = [np.asarray(over_seeds(d, c).values, dtype=float).ravel() for d in per_level]
        zero = np.isfinite(corr) & (corr < ZERO_CORR)
        none_live = zero & np.any([d >= 1 for d in dead[:2]], axis=0)
        cells = [fmt_stats(*stats(d[np.isfinite(d)])) for d in dead]
        rows.append(
            [*(show(c[d]) for d in sw.settings), str(int(zero.sum())), str(int(none_live.sum())), *cells]
        )
    text = (
        f"Dead units after training: runs whose root correlation ends below {ZERO_CORR}, and how many "
        f"of them had every unit of the root, or of the {axis} below it, inactive on every measured "
        f"sample (no live unit: nothing could be learned there); then the fraction of such units per "
        f"{axis}, mean ± std over seeds ({seeds_note(sw)}):"
    )
    return text + "\n\n" + md_table(head, rows)


THEOREM = {
    TC_REL_ERROR: "relative error ||g - p|| / ||g|| (0 when the prediction is exact)",
    TC_COSINE: "cosine(g, p) (1 when the prediction has the gradient's direction)",
}


def theorem_table(sw: SweepResults, var: str) -> str:
    """A theorem-check variable at the last checked epoch, per setting and node, vs M."""
    val = final(sw.ds[var])
    ms = [int(m) for m in val.tc_batches.values]
    head = [*(sw.path(d) for d in sw.settings), "node", *(f"M={m}" for m in ms)]
    rows = []
    for c in combos(sw):
        for node in val.tc_node.values:
            e = over_seeds(val, c).sel(tc_node=node)
            cells = [fmt_stats(*stats(e.sel(tc_batches=m).values)) for m in ms]
            rows.append([*(show(c[d]) for d in sw.settings), str(int(node)), *cells])
    text = (
        f"Theorem check, {THEOREM[var]}, of the mean gradient g over M batches against the "
        f"covariance-operator prediction p, at the last checked epoch ({seeds_note(sw)}):"
    )
    return text + "\n\n" + md_table(head, rows)


def _machine(a: dict[str, Any]) -> tuple[str, ...]:
    v = a.get("versions") or {}
    commit = str(a.get("git_commit") or "?")[:7] + (" (dirty)" if a.get("git_dirty") else "")
    return (
        str(a.get("device", "?")),
        str(a.get("host", "?")),
        str(v.get("python", "?")),
        str(v.get("torch", "?")),
        commit,
    )


def _walls(attrs: Sequence[dict[str, Any]]) -> list[float]:
    """The recorded wall times (s) of the stores with one."""
    return [float(a["wall_time_s"]) for a in attrs if isinstance(a.get("wall_time_s"), int | float)]


def total_wall(attrs: Sequence[dict[str, Any]]) -> float:
    """Seconds of worker time the stores record: each unbatched run's wall time, and each replica
    group's once (every replica of a batched group records the group's wall time: the longest)."""
    alone, groups = 0.0, dict[str, float]()
    for a in attrs:
        wall = a.get("wall_time_s")
        if not isinstance(wall, int | float):
            continue
        group = (a.get("replica_group") or {}).get("group")
        if group is None:
            alone += float(wall)
        else:
            groups[str(group)] = max(groups.get(str(group), 0.0), float(wall))
    return alone + sum(groups.values())


def machines(attrs: Sequence[dict[str, Any]]) -> str:
    """Stores' root attributes -> one row per device, host, versions and commit: run count and
    median wall time per run (most runs first)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for a in attrs:
        groups.setdefault(_machine(a), []).append(a)
    rows = []
    for m, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        w = _walls(group)
        rows.append([*m, str(len(group)), f"{np.median(w):.1f}" if w else "?"])
    head = ["device", "host", "python", "torch", "git commit", "runs", "median wall time per run (s)"]
    table = md_table(head, rows)
    if any(a.get("replica_group") for a in attrs):
        table += (
            "\n\nA run trained in a replica group records the group's wall time, so for those runs"
            " the median is that of their groups, not of one run's share."
        )
    return table


def provenance(sw: SweepResults) -> str:
    """What ran, where and how long, from the stores' root attributes (one row per device, host,
    versions and commit); the runs not complete, by name."""
    counts = {str(s): sum(r["status"] == s for r in sw.runs) for s in Status}
    attrs = [r["attrs"] for r in sw.runs if r["attrs"]]
    started = sorted(str(a["started"]) for a in attrs if a.get("started"))
    finished = sorted(str(a["finished"]) for a in attrs if a.get("finished"))
    out = [
        f"- Runs: {len(sw.runs)} planned; " + ", ".join(f"{n} {s}" for s, n in counts.items()),
        f"- Started {started[0] if started else '?'}, last finished {finished[-1] if finished else '?'}; "
        f"{total_wall(attrs):.1f} s of worker time (wall times summed, a replica group's once)",
    ]
    if attrs:
        out += ["", "Where the runs with a store ran:", "", machines(attrs)]
    bad = [r for r in sw.runs if r["status"] != Status.COMPLETE]
    if bad:
        head = ["run id", *(sw.path(d) for d in sw.dims), "status", "error"]
        rows = [
            [r["run_id"], *(show(r[d]) for d in sw.dims), r["status"], str(r["attrs"].get("error", ""))]
            for r in bad
        ]
        note = f"**Runs not complete ({len(bad)}), excluded from every statistic:**"
        out += ["", note, "", md_table(head, rows)]
    return "\n".join(out)
