"""Lower: a spec file -> the Plan (sweeps expanded, defaults explicit, seeds derived, hashed)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from sslspec.errors import CheckError, Diagnostic, SpecError, did_you_mean
from sslspec.lang import ir
from sslspec.lang.check import build_config
from sslspec.lang.resolve import Program, Section, assign, read_program, to_section
from sslspec.lang.syntax import parse_value
from sslspec.spec.plan import Plan, Run, Seeds, run_hash


@frozen
class Setting:
    """A `--set path=value` from the command line."""

    path: tuple[str, ...]
    value: ir.Value
    text: str


SET_FILE = "--set"
# The most runs one plan may hold. Lowering builds and hashes every run (~1 ms each), so a sweep
# written by mistake as `seed = 0..100000000` is refused at once instead of filling the memory.
MAX_RUNS = 10_000


def parse_setting(text: str, line: int = 1) -> Setting:
    """Parse `path=value` (the `line`-th --set); errors point into it as file `--set`."""
    whole = ir.Span(SET_FILE, line, 1, line, len(text) + 1)
    if "=" not in text:
        raise SpecError([Diagnostic("a setting must look like path=value", whole, _pad(text, line))])
    path, _, value = text.partition("=")
    parts = tuple(p.strip() for p in path.strip().split("."))
    if not all(p.isidentifier() for p in parts):
        raise SpecError(
            [Diagnostic(f"'{path.strip()}' is not a field path like network.width", whole, _pad(text, line))]
        )
    try:
        node = parse_value(value.strip(), SET_FILE)
    except SpecError as exc:
        d = exc.diagnostics[0]
        span = _shifted(d.span, line, len(path) + 1 + len(value) - len(value.lstrip())) if d.span else whole
        raise SpecError([Diagnostic(d.message, span, _pad(text, line))]) from None
    return Setting(parts, _shift(node, line, len(path) + 1 + len(value) - len(value.lstrip())), text)


def _pad(text: str, line: int) -> str:
    return "\n" * (line - 1) + text


def _shifted(span: ir.Span, line: int, dcol: int) -> ir.Span:
    return ir.Span(span.file, line, span.col + dcol, line, span.end_col + dcol)


def _shift(node: Any, line: int, dcol: int) -> Any:
    """Move a parsed --set value's spans to its place in the setting text."""
    changes: dict[str, Any] = {}
    for a in attrs.fields(type(node)):
        v = getattr(node, a.name)
        if a.name == "span" and v is not None:
            changes["span"] = _shifted(v, line, dcol)
        elif isinstance(v, tuple):
            changes[a.name] = tuple(_shift(x, line, dcol) for x in v)
        elif attrs.has(type(v)):
            changes[a.name] = _shift(v, line, dcol)
    return attrs.evolve(node, **changes)


@frozen
class _Axis:
    paths: tuple[tuple[str, ...], ...]
    points: tuple[tuple[ir.Value, ...], ...]  # one tuple of values per point, one value per path
    spans: tuple[ir.Span | None, ...]  # where each path was written
    span: ir.Span | None


def lower(path: str | Path, sets: Sequence[str] = (), text: str | None = None) -> Plan:
    """Read, check and lower a spec into its Plan; raise SpecError with every problem found."""
    if isinstance(sets, str):  # a str is a Sequence[str]: each character would be a setting
        raise TypeError(f"sets= takes a list of 'path=value' strings, not one string: sets=[{sets!r}]")
    settings = [parse_setting(s, i + 1) for i, s in enumerate(sets)]
    prog = read_program(path, text)
    prog.texts[SET_FILE] = "\n".join(sets)
    runs: list[Run] = []
    axes_by_exp: list[tuple[str, tuple[str, ...]]] = []
    for sweep in prog.sweeps.values():
        if sweep.target not in prog.experiments:
            prog.error(
                f"sweep of unknown experiment '{sweep.target}'{did_you_mean(sweep.target, prog.experiments)}",
                sweep.span,
            )
    for name, src in prog.experiments.items():
        base = to_section(prog, src.node)
        for ov in src.overrides:
            base = assign(base, ov.path, ov.value, ov.span)
        axes = _axes(prog, prog.sweeps.get(name), settings)
        if not _few_enough(prog, name, axes, len(runs)):
            continue
        axes_by_exp.append((name, tuple(".".join(p) for a in axes for p in a.paths)))
        seen: dict[str, int] = {}
        for point in itertools.product(*(a.points for a in axes)) if axes else [()]:
            sec = base
            swept: list[tuple[str, Any]] = []
            for axis, values in zip(axes, point, strict=True):
                for p, v, sp in zip(axis.paths, values, axis.spans, strict=True):
                    sec = assign(sec, p, v, sp)
                    swept.append((".".join(p), plain(v)))
            for i, s in enumerate(settings):
                sec = assign(sec, s.path, s.value, ir.Span(SET_FILE, i + 1, 1, i + 1, len(s.text) + 1))
            run = _run(prog, name, sec, len(runs), tuple(swept))
            if run is None:
                continue
            if run.hash in seen:
                prog.error(
                    f"sweep of '{name}' gives the same run twice ({_show(swept)}); remove the repeated value",
                    prog.sweeps[name].span,
                )
                break
            seen[run.hash] = run.index
            runs.append(run)
    if prog.diagnostics:
        raise CheckError(_unique(prog.diagnostics))
    sources = tuple((p, t) for p, t in prog.texts.items() if p != SET_FILE)
    return Plan(str(path), tuple(runs), tuple(axes_by_exp), sources)


def _run(
    prog: Program, name: str, sec: Section, index: int, swept: tuple[tuple[str, Any], ...]
) -> Run | None:
    cfg = build_config(prog, name, sec)
    if cfg is None:
        return None
    return Run(name, index, cfg, Seeds.derive(cfg.seed), swept, run_hash(name, cfg))


def _axes(prog: Program, sweep: ir.Sweep | None, settings: Sequence[Setting]) -> list[_Axis]:
    if sweep is None:
        return []
    fixed = {s.path for s in settings}
    axes: list[_Axis] = []
    seen: dict[tuple[str, ...], ir.Span | None] = {}
    for entry in sweep.axes:
        fields = entry.fields if isinstance(entry, ir.Zip) else (entry,)
        columns: list[tuple[ir.Value, ...]] = []
        for f in fields:
            if f.path in seen:
                prog.error(f"'{f.name}' is swept twice", f.span)
            seen[f.path] = f.span
            values = _values(prog, f)
            if values is None:
                break
            columns.append(values)
        if len(columns) < len(fields):
            continue  # a field's values were reported as unusable
        if isinstance(entry, ir.Zip) and len({len(c) for c in columns}) > 1:
            lengths = ", ".join(f"{f.name}: {len(c)}" for f, c in zip(fields, columns, strict=True))
            prog.error(f"zip needs lists of one length (got {lengths})", entry.span)
            continue
        kept = [(f, c) for f, c in zip(fields, columns, strict=True) if f.path not in fixed]
        if not kept:
            continue  # every path of this axis is fixed by --set
        n = len(kept[0][1])
        if n == 0:
            prog.error(
                f"sweep axis '{fields[0].name}' has no values, so the sweep expands to zero runs", entry.span
            )
            continue
        axes.append(
            _Axis(
                tuple(f.path for f, _ in kept),
                tuple(zip(*(c for _, c in kept), strict=True)),
                tuple(f.span for f, _ in kept),
                entry.span,
            )
        )
    return axes


def _few_enough(prog: Program, name: str, axes: list[_Axis], before: int) -> bool:
    """Whether the sweep of `name` keeps the plan within MAX_RUNS; reports it when not."""
    n = math.prod(len(a.points) for a in axes)
    if before + n <= MAX_RUNS:
        return True
    sizes = " x ".join(str(len(a.points)) for a in axes)
    prog.error(
        f"sweep of '{name}' expands to {n:,} runs ({sizes}); a plan may hold at most {MAX_RUNS:,}",
        prog.sweeps[name].span,
    )
    return False


def _values(prog: Program, f: ir.Field) -> tuple[ir.Value, ...] | None:
    """The values an axis field takes, or None after reporting why it has none that can be used."""
    v = f.value
    if isinstance(v, ir.List):
        return v.items
    if isinstance(v, ir.Range):
        if v.stop < v.start:
            prog.error(f"range {v.start}..{v.stop} is empty (ranges count up and include both ends)", v.span)
            return None
        if v.stop - v.start >= MAX_RUNS:
            n = v.stop - v.start + 1
            prog.error(
                f"range {v.start}..{v.stop} has {n:,} values; a plan may hold at most {MAX_RUNS:,} runs",
                v.span,
            )
            return None
        return tuple(ir.Int(i, span=v.span) for i in range(v.start, v.stop + 1))
    prog.error(f"sweep values for '{f.name}' must be a list [a, b, ...] or a range a..b", v.span)
    return None


def plain(v: ir.Value) -> Any:
    """An ir value as plain JSON-native Python (for swept-value coordinates)."""
    if isinstance(v, ir.Int | ir.Float | ir.Str | ir.Bool):
        return v.value
    if isinstance(v, ir.Ident):
        return v.name
    if isinstance(v, ir.List):
        return [plain(x) for x in v.items]
    if isinstance(v, ir.Range):  # never a valid field value; kept short for the message it gets
        return f"{v.start}..{v.stop}"
    return {"call": v.name, **{a.name: plain(a.value) for a in v.args}}


def _show(swept: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{p} = {v}" for p, v in swept)


def _unique(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Drop repeats (a bad base value is seen once per run) and sort by position."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    order = lambda d: (
        d.span is not None,
        d.span.file if d.span else "",
        d.span.line if d.span else 0,
        d.span.col if d.span else 0,
    )
    for d in sorted(diags, key=order):
        key = (d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def check(path: str | Path, sets: Sequence[str] = (), text: str | None = None) -> list[Diagnostic]:
    """Every problem with a spec (syntax, includes, fields, values, sweeps); empty when fine."""
    try:
        lower(path, sets, text)
    except SpecError as exc:
        return list(exc.diagnostics)
    return []
