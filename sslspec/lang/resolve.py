"""Resolve: files and includes -> one Section tree per experiment, with overrides applied.

A Section is the user's block structure with values still as ir nodes (so every later error
can point at the text that caused it). Assignments by path (`network.width = 5` from an
include override, a sweep point or `--set`) are applied to a copy of the tree.
"""

from __future__ import annotations

from pathlib import Path

from attrs import define, field, frozen

from sslspec.errors import CheckError, Diagnostic, SpecError
from sslspec.lang import ir
from sslspec.lang.syntax import parse
from sslspec.spec.schema import BLOCKS, SUBBLOCKS, value_fields


@define
class Section:
    """A block as written: its kind, its fields (ir values) and sub-blocks, with spans."""

    kind: str | None = None
    kind_span: ir.Span | None = None
    span: ir.Span | None = None
    values: dict[str, ir.Value] = field(factory=dict)
    blocks: dict[str, Section] = field(factory=dict)
    spans: dict[str, ir.Span | None] = field(factory=dict)  # where each entry was set
    enabled: bool = True  # a sub-block switched off by `name = false`


@frozen
class ExperimentSource:
    """An experiment's statement, the file it came from, and include overrides to apply."""

    node: ir.Experiment
    overrides: tuple[ir.Field, ...]


@define
class Program:
    """Everything read for one top-level spec: texts by path, experiments, sweeps."""

    path: str
    texts: dict[str, str] = field(factory=dict)
    experiments: dict[str, ExperimentSource] = field(factory=dict)
    sweeps: dict[str, ir.Sweep] = field(factory=dict)
    files: list[ir.SpecFile] = field(factory=list)
    diagnostics: list[Diagnostic] = field(factory=list)

    def error(self, message: str, span: ir.Span | None) -> None:
        """Record a diagnostic, with the source text its span points into."""
        src = self.texts.get(span.file) if span else None
        self.diagnostics.append(Diagnostic(message, span, src))


def read_program(path: str | Path, text: str | None = None) -> Program:
    """Read a spec and everything it includes; raise SpecError on missing/circular includes."""
    path = str(path)
    prog = Program(path)
    if text is None:
        try:
            text = read_source(Path(path), path)
        except OSError as exc:
            raise SpecError([Diagnostic(f"cannot read '{path}': {exc.strerror or exc}")]) from None
    _read(prog, path, text, (), ())
    if prog.diagnostics:
        raise CheckError(prog.diagnostics)
    return prog


def _read(
    prog: Program, path: str, text: str, chain: tuple[str, ...], overrides: tuple[ir.Field, ...]
) -> None:
    prog.texts[path] = text
    spec = parse(text, path)
    prog.files.append(spec)
    here = Path(path).resolve()
    for st in spec.statements:
        if isinstance(st, ir.Include):
            _include(prog, path, st, (*chain, str(here)), overrides)
        elif isinstance(st, ir.Experiment):
            if st.name in prog.experiments:
                first = prog.experiments[st.name].node.span
                where = f" (first at {first.file}:{first.line}:{first.col})" if first else ""
                prog.error(f"experiment '{st.name}' is defined twice{where}", st.span)
                continue
            prog.experiments[st.name] = ExperimentSource(st, overrides)
        else:
            if st.target in prog.sweeps:
                prog.error(f"experiment '{st.target}' is swept twice; put all axes in one sweep", st.span)
                continue
            prog.sweeps[st.target] = st


def _include(
    prog: Program, path: str, inc: ir.Include, chain: tuple[str, ...], overrides: tuple[ir.Field, ...]
) -> None:
    target = (Path(path).parent / inc.path).resolve()
    if str(target) in chain:
        names = [Path(p).name for p in chain[chain.index(str(target)) :]] + [target.name]
        prog.error(f"circular include: {' -> '.join(names)}", inc.span)
        return
    shown = str(Path(path).parent / inc.path) if not Path(inc.path).is_absolute() else inc.path
    try:
        text = read_source(target, shown)
    except OSError as exc:
        prog.error(f"cannot include '{inc.path}': {exc.strerror or exc} ({target})", inc.span)
        return
    except SpecError as exc:
        prog.diagnostics.extend(exc.diagnostics)
        return
    _read(prog, shown, text, chain, overrides + inc.overrides)


def read_source(path: Path, shown: str) -> str:
    """A spec file's text, decoded as UTF-8; SpecError at the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        span = ir.Span(shown, line, col, line, col + 1)
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise SpecError([Diagnostic(message, span, data.decode("utf-8", "replace"))]) from None


# ---- sections -----------------------------------------------------------------------------


def to_section(prog: Program, exp: ir.Experiment) -> Section:
    """Build the Section tree of an experiment, reporting duplicate fields and blocks."""
    return _block(prog, ir.Block("experiment", exp.name, exp.items, span=exp.span))


def _block(prog: Program, block: ir.Block) -> Section:
    sec = Section(block.kind, block.kind_span, block.span)
    for item in block.items:
        name = item.path[0] if isinstance(item, ir.Field) else item.name
        if name in sec.spans:
            first = sec.spans[name]
            where = f" (first at {first.line}:{first.col})" if first else ""
            prog.error(f"duplicate field '{name}'{where}", item.span)
            continue
        sec.spans[name] = item.span
        if isinstance(item, ir.Field):
            sec.values[name] = item.value
        elif isinstance(item, ir.Flag):
            sec.blocks[name] = Section(span=item.span)
        else:
            sec.blocks[name] = _block(prog, item)
    return sec


def assign(root: Section, path: tuple[str, ...], value: ir.Value, span: ir.Span | None) -> Section:
    """Return a copy of `root` with `path` set to `value`; unknown names are left for check.

    `x.kind = name` changes a block's kind; a path through a call sets that call's argument;
    a path into a missing block creates it; `sub = true/false` switches a sub-block.
    """
    root = _shallow(root)
    sec = root
    for i, name in enumerate(path[:-1]):
        node = sec.values.get(name)
        if isinstance(node, ir.Ident):  # a bare call name: `activation = leaky_relu`
            node = ir.Call(node.name, (), span=node.span)
        if isinstance(node, ir.Call):
            sec.values[name] = _set_arg(node, path[i + 1 :], value, span)
            sec.spans[name] = span
            return root
        if name not in sec.blocks:
            sec.blocks[name] = Section(span=span)
            sec.spans[name] = span
            if isinstance(sec.values.get(name), ir.Bool):  # `sub = false` then `sub.x = ..`: on again
                del sec.values[name]
        sec.blocks[name] = sec = _shallow(sec.blocks[name])
        sec.enabled = True
    last = path[-1]
    if last == "kind" and len(path) > 1:
        sec.kind = value.name if isinstance(value, ir.Ident) else getattr(value, "value", None)
        sec.kind_span = span
        _drop_foreign_fields(sec, path[0])
        return root
    if last in sec.blocks and isinstance(value, ir.Bool):
        sec.blocks[last].enabled = value.value
    else:
        sec.blocks.pop(last, None)
        sec.values[last] = value
    sec.spans[last] = span
    return root


def _shallow(sec: Section) -> Section:
    """Copy one level of a Section (ir values are immutable; sub-sections are copied on write)."""
    return Section(
        sec.kind, sec.kind_span, sec.span, dict(sec.values), dict(sec.blocks), dict(sec.spans), sec.enabled
    )


def _set_arg(call: ir.Call, rest: tuple[str, ...], value: ir.Value, span: ir.Span | None) -> ir.Value:
    if len(rest) != 1:
        # A deeper path through a call cannot exist; leave a marker value the checker reports.
        return ir.Call(call.name, (*call.args, ir.Arg(".".join(rest), value, span=span)), span=call.span)
    args = [a for a in call.args if a.name != rest[0]]
    args.append(ir.Arg(rest[0], value, span=span))
    return ir.Call(call.name, tuple(args), span=call.span)


def _drop_foreign_fields(sec: Section, block: str) -> None:
    """After a kind change, forget the old kind's fields and sub-blocks that the new kind does not
    have, so `--set loss.kind=simple` works on a spec written with `loss infonce { temperature = .. }`
    (and a zip can set `loss.predictor.width` for its byol rows and `loss.kind = infonce` for another)."""
    cls = BLOCKS.get(block, ({}, False))[0].get(sec.kind)
    if cls is None:
        return  # an unknown kind: check reports it
    keep = {*value_fields(cls), *SUBBLOCKS.get(cls, {})}
    for name in [n for n in sec.values if n not in keep]:
        del sec.values[name]
        sec.spans.pop(name, None)
    for name in [n for n in sec.blocks if n not in keep]:
        del sec.blocks[name]
        sec.spans.pop(name, None)
