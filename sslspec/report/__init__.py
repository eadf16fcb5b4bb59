"""Report: specs (or results directories) of sweeps -> `report.md` with tables and PNG figures.

Each source is read with `load_sweep`; the runs it should hold are the spec's Plan (for a results
directory: the runs found there), so a run that is missing, failed or still running is listed by
name, never dropped. Statistics are over the `seed` axis (see `sweep`); tables and figures are
made only for the variables the stores hold. Layout: `sweep` (loading, statistics), `tables`
(Markdown), `figures` (PNG), and here the assembly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sslspec.report import collapse, layer_operator, losses_section, luck_section, readout
from sslspec.report.figures import FIGURES
from sslspec.report.sweep import MAX_PANELS, SweepResults, combos, final, load_source, seeds_note
from sslspec.report.tables import (
    THEOREM,
    dead_table,
    level_table,
    machines,
    provenance,
    theorem_table,
    total_wall,
    value_table,
)
from sslspec.store.variables import DEAD_FRACTION, LEVEL_CORR, root_of

__all__ = ["build", "load_source", "section"]


def section(sw: SweepResults, out: Path, stem: str) -> str:
    """One source's markdown: claim, provenance, tables, figures (only for variables present)."""
    ds = sw.ds
    parts = [f"## {sw.source}", ""]
    if sw.claim:
        parts += [f"*Claim:* {sw.claim}", ""]
    swept = ", ".join(f"`{sw.path(d)}` ({ds.sizes[d]})" for d in sw.dims) or "nothing"
    parts += [f"Experiment `{ds.attrs['experiment']}`, swept: {swept}.", "", provenance(sw), ""]
    if LEVEL_CORR in ds:
        root = final(root_of(ds[LEVEL_CORR]))
        parts += [value_table(sw, root, "root correlation after training"), "", level_table(sw), ""]
        if DEAD_FRACTION in ds:
            parts += [dead_table(sw), ""]
    parts += [theorem_table(sw, var) + "\n" for var in THEOREM if var in ds]
    for var, draw, name, caption in FIGURES:
        if var not in ds:
            continue
        png = out / f"{stem}_{name}.png"
        if draw(sw, png):
            parts += [f"![{caption}]({png.name})", "", f"*{caption}. {seeds_note(sw)}.*", ""]
        elif name != "root":
            n = len(combos(sw))
            parts += [f"({name} figure omitted: {n} settings, more than {MAX_PANELS} panels)", ""]
    if luck_section.applies(ds):
        parts += [luck_section.section(sw, out, stem)]
    if losses_section.applies(ds):
        parts += [losses_section.section(sw, out, stem)]
    if collapse.applies(ds):
        parts += [collapse.section(sw, out, stem)]
    if layer_operator.applies(ds):
        parts += [layer_operator.section(sw, out, stem)]
    if readout.applies(ds):
        parts += [readout.section(sw, out, stem)]
    return "\n".join(parts)


def build(sources: Sequence[Path], out: Path, root: Path | None = None, sets: Sequence[str] = ()) -> Path:
    """Specs or results directories -> OUT/report.md and OUT/*.png; returns the report's path."""
    sweeps = [load_source(Path(src), root, sets) for src in sources]  # all load, or nothing is written
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    stems: dict[str, int] = {}
    for src, sw in zip(sources, sweeps, strict=True):
        stem = slug(Path(src))
        stems[stem] = stems.get(stem, 0) + 1
        sections.append(section(sw, out, stem if stems[stem] == 1 else f"{stem}_{stems[stem]}"))
    listed = ", ".join(f"`{s}`" for s in sources)
    head = ["# sslspec report", "", f"Sources: {listed}", "", _summary(sweeps), ""]
    path = out / "report.md"
    path.write_text("\n".join(head + sections) + "\n")
    return path


def _summary(sweeps: Sequence[SweepResults]) -> str:
    """All sources together: distinct runs (a run two specs share counts once) and their status."""
    runs = {r["run_id"]: r for sw in sweeps for r in sw.runs}
    status: dict[str, int] = {}
    for r in runs.values():
        status[r["status"]] = status.get(r["status"], 0) + 1
    done = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    line = f"{len(runs)} distinct runs over {len(sweeps)} source(s): {done}."
    attrs = [r["attrs"] for r in runs.values() if r["attrs"]]
    if not attrs:
        return line
    head = (
        f"All runs with a store, {total_wall(attrs):.0f} s of worker time in all (their wall times"
        " summed, a batched replica group's once, as each of its runs records the group's):"
    )
    return "\n".join([line, "", head, "", machines(attrs)])


def slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_") or "sweep"
