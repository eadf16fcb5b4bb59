"""Check: a resolved Section tree -> typed config (sslspec.spec.schema), collecting every error.

`build_config` never stops at the first problem: each bad field is reported at its position
and replaced by its default, so one pass finds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import attrs

from sslspec.errors import did_you_mean
from sslspec.lang import ir
from sslspec.lang.check_byol import byol_rules
from sslspec.lang.check_networks import network_rules
from sslspec.lang.check_operator import operator_rules
from sslspec.lang.check_schedule import schedule_rules
from sslspec.lang.resolve import Program, Section
from sslspec.spec import schema
from sslspec.spec.fields import Bad, CallT, tree_branching, tree_depth, uniform_tree
from sslspec.spec.kinds import ALTERNATIVES, CAPABILITIES, NEEDS, missing_runtime, needs, provided
from sslspec.spec.schema import Config

At = Callable[[str, str], "ir.Span | None"]  # (block, field) -> where it was written


class _Checker:
    def __init__(self, prog: Program, name: str) -> None:
        self.prog = prog
        self.name = name

    def bad(self, message: str, span: ir.Span | None) -> None:
        self.prog.error(message, span)

    def config(self, sec: Section) -> Config | None:
        n_before = len(self.prog.diagnostics)
        top: dict[str, Any] = dict(schema.TOP_DEFAULTS)
        for name, node in sec.values.items():
            if name in schema.TOP_FIELDS:
                top[name] = self.coerce(schema.TOP_FIELDS[name], node, name, top[name])
            elif name in schema.BLOCKS:
                self.bad(
                    f"'{name}' is a block, not a field: set its kind ({name}.kind = ...) "
                    f"or one of its fields ({name}.FIELD = ...)",
                    sec.spans.get(name) or node.span,
                )
            else:
                options = [*schema.TOP_FIELDS, *schema.BLOCKS]
                self.bad(
                    f"experiment '{self.name}' has no field '{name}'{did_you_mean(name, options)}",
                    sec.spans.get(name) or node.span,
                )
        blocks: dict[str, Any] = {}
        for name, sub in sec.blocks.items():
            if name not in schema.BLOCKS:
                self.bad(
                    _no_block(f"experiment '{self.name}'", name, schema.TOP_FIELDS, schema.BLOCKS),
                    sec.spans.get(name) or sub.span,
                )
                continue
            blocks[name] = self.block(name, sub)
        for name, (kinds, required) in schema.BLOCKS.items():
            if name not in sec.blocks and required:
                self.bad(
                    f"experiment '{self.name}' has no '{name}' block (one of: {', '.join(map(str, kinds))})",
                    sec.span,
                )
            elif name not in sec.blocks and None in kinds:
                blocks[name] = kinds[None]()
        if len(self.prog.diagnostics) > n_before or any(b is None for b in blocks.values()):
            return None
        cfg = Config(**top, **blocks)
        return self.cross(cfg, sec)

    def block(self, name: str, sec: Section) -> Any:
        kinds, _ = schema.BLOCKS[name]
        if sec.kind not in kinds:
            listing = ", ".join(k for k in kinds if k)
            if sec.kind is None:
                self.bad(f"block '{name}' needs a kind: {listing}", sec.span)
            elif None in kinds:
                self.bad(f"block '{name}' takes no kind (got '{sec.kind}')", sec.kind_span or sec.span)
            else:
                self.bad(
                    f"unknown {name} kind '{sec.kind}'; must be {listing}"
                    f"{did_you_mean(sec.kind, [k for k in kinds if k])}",
                    sec.kind_span or sec.span,
                )
            return None
        label = f"{name} {sec.kind}" if sec.kind else name
        return self.build(kinds[sec.kind], sec, label)

    def build(self, cls: type, sec: Section, label: str) -> Any:
        fields = schema.value_fields(cls)
        subs = schema.SUBBLOCKS.get(cls, {})
        kwargs: dict[str, Any] = {}
        for name, node in sec.values.items():
            span = node.span or sec.spans.get(name)
            if name in fields:
                kwargs[name] = self.coerce(fields[name].metadata["type"], node, name, fields[name].default)
            elif name in subs and isinstance(node, ir.Bool):
                kwargs[name] = subs[name]() if node.value else None
            else:
                self.bad(
                    f"'{label}' has no field '{name}'{did_you_mean(name, [*fields, *subs])}",
                    sec.spans.get(name) or span,
                )
        for name, sub in sec.blocks.items():
            if name in subs:
                kwargs[name] = self.build(subs[name], sub, f"{label}.{name}") if sub.enabled else None
            elif name in fields and isinstance(fields[name].metadata["type"], CallT):
                kwargs[name] = self.call_from_section(fields[name], sub, name)
            else:
                self.bad(_no_block(f"'{label}'", name, fields, subs), sec.spans.get(name) or sub.span)
        return cls(**kwargs)

    def call_from_section(self, attr: attrs.Attribute[Any], sub: Section, name: str) -> Any:
        """`data.polarity.low = x` where polarity was not written: start from the default call."""
        default: Any = attr.default  # a call object (Uniform(...)): only call fields get here
        calls: dict[str, type] = attr.metadata["type"].calls
        # An Activation is built by the call named after it (relu, leaky_relu), not by its class.
        if isinstance(default, schema.Activation):
            call_name = default.name
        else:
            call_name = next(n for n, c in calls.items() if c is type(default))
        args = [ir.Arg(a.name, _to_node(getattr(default, a.name))) for a in attrs.fields(calls[call_name])]
        args = [a for a in args if a.name not in sub.values]
        args += [ir.Arg(k, v, span=sub.spans.get(k)) for k, v in sub.values.items()]
        return self.coerce(
            attr.metadata["type"], ir.Call(call_name, tuple(args), span=sub.span), name, default
        )

    def coerce(self, type_: Any, node: ir.Value, name: str, default: Any) -> Any:
        try:
            return type_.coerce(node)
        except Bad as bad:
            self.bad(
                f"'{name}' {bad.message}" if not bad.message.startswith("'") else bad.message,
                bad.span or node.span,
            )
            return default

    # ---- relations between fields ---------------------------------------------------------

    def cross(self, cfg: Config, sec: Section) -> Config | None:
        """Rules between blocks: the generic ones, the data kind's own, and what the runtime
        supports (kinds.SUPPORT, kinds.NEEDS); None after recording errors."""
        n_before = len(self.prog.diagnostics)

        def at(block: str, name: str) -> ir.Span | None:
            b = sec.blocks.get(block)
            if b is None:
                return sec.span
            return b.spans.get(name) or b.span

        self.supported(cfg, sec)
        byol_rules(self.bad, cfg, sec)
        schedule_rules(self.bad, cfg, sec)
        network_rules(self.bad, cfg, sec)
        operator_rules(self.bad, cfg, sec)
        if cfg.train.samples % cfg.train.batch:
            self.bad(
                f"'samples' must be a multiple of batch (got samples = {cfg.train.samples}, "
                f"batch = {cfg.train.batch})",
                at("train", "samples"),
            )
        loss = cfg.loss
        if (
            isinstance(loss, schema.InfoNCELoss)
            and isinstance(cfg.augment, schema.Augment)
            and cfg.augment.negative == "batch"
            and loss.negatives >= cfg.train.batch
        ):
            self.bad(
                f"'negatives' must be < batch when negatives come from the batch "
                f"(got {loss.negatives}, batch = {cfg.train.batch})",
                at("loss", "negatives"),
            )
        tc = cfg.measure.theorem_check
        for ep in tc.epochs or () if tc is not None else ():
            if ep > cfg.train.epochs:
                self.bad(
                    f"'theorem_check.epochs' has epoch {ep}, after the last ({cfg.train.epochs})",
                    _sub_span(sec, "theorem_check", "epochs"),
                )
        if cfg.measure.samples is None:
            cfg = attrs.evolve(cfg, measure=attrs.evolve(cfg.measure, samples=cfg.train.samples))
        _spread_samples(self, cfg, sec, at)
        rules = DATA_RULES.get(schema.kind_of(cfg.data) or "")
        if rules is not None:
            cfg = rules(self, cfg, sec, at)
        if len(self.prog.diagnostics) > n_before:
            return None
        return cfg

    def supported(self, cfg: Config, sec: Section) -> None:
        """Report each kind without a runtime and each measurement no block can provide for."""
        chosen = {b: k for b in schema.BLOCKS if (k := schema.kind_of(getattr(cfg, b))) is not None}
        have = provided(chosen)

        def lacking(what: str, wanted: tuple[str, ...], span: ir.Span | None) -> None:
            for need in wanted:
                if need not in have:
                    have_not = "which this experiment does not have"
                    self.bad(f"{what} needs {CAPABILITIES.get(need, need)}, {have_not}", span)

        for block, kind in chosen.items():
            sub = sec.blocks.get(block)
            span = (sub.kind_span or sub.span) if sub else sec.span
            why = missing_runtime(block, kind)
            if why is not None:
                self.bad(why, span)
            lacking(f"{block} kind '{kind}'", needs(block, kind), span)
        for name, wanted in NEEDS.items():
            if getattr(cfg.measure, name, None) is not None:
                options = (wanted, *ALTERNATIVES.get(name, ()))
                if not any(all(need in have for need in option) for option in options):
                    closest = min(options, key=lambda option: sum(need not in have for need in option))
                    lacking(f"measurement '{name}'", closest, _measure_span(sec, name))


def _spread_samples(checker: _Checker, cfg: Config, sec: Section, at: At) -> None:
    """A correlation, a covariance or a spread over the measurement pass needs two samples at
    least: over one, every such statistic would be stored as 0."""
    names = ["latent_correlation", "collapse"]
    if isinstance(cfg.data, schema.HLTM):  # on an image network the operator has its own `images`
        names.append("covariance_operator")
    wanted = [n for n in names if getattr(cfg.measure, n) is not None]
    n = cfg.measure.samples
    if not wanted or n is None or n >= 2:
        return
    written = sec.blocks.get("measure")
    block = "measure" if written is not None and "samples" in written.spans else "train"
    unset = "" if block == "measure" else ", which measure.samples defaults to"
    message = f"'{block}.samples' must be >= 2 for {', '.join(wanted)} (got {n}{unset})"
    checker.bad(message, at(block, "samples"))


def _hltm_rules(checker: _Checker, cfg: Config, sec: Section, at: At) -> Config:
    """The HLTM's rules: make depth, branching and tree explicit (a tree too large to build stays
    None), and check what depends on the tree (sign with states, share, theorem-check nodes)."""
    assert isinstance(cfg.data, schema.HLTM)
    data_sec = sec.blocks["data"]
    data = _tree(checker, cfg.data, data_sec, at)
    if not isinstance(cfg.augment, schema.Augment):
        return cfg  # `augment images` on the HLTM: refused by its needs (kinds.SUPPORT)
    if data.states > 2 and data.sign == "random":
        checker.bad(
            f"a negative polarity has no meaning for states > 2 (states = {data.states}); "
            "set sign = positive",
            at("data", "sign") if "sign" in data_sec.values else at("data", "states"),
        )
    if cfg.augment.share >= data.depth:
        checker.bad(
            f"'share' must be < depth (got share = {cfg.augment.share}, depth = {data.depth})",
            at("augment", "share"),
        )
    tc = cfg.measure.theorem_check
    if tc is not None and data.tree is not None:
        n_nodes = _count_latent(data.tree)
        for node in tc.nodes:
            if node >= n_nodes:
                checker.bad(
                    f"'theorem_check.nodes' has node {node}, but the tree has {n_nodes} latent nodes "
                    f"(0..{n_nodes - 1})",
                    _sub_span(sec, "theorem_check", "nodes"),
                )
    if data.tree is not None:
        _operator_memory(checker, cfg, data.tree, sec)
        _classes(checker, cfg, data, at)
    return attrs.evolve(cfg, data=data)


def _classes(checker: _Checker, cfg: Config, data: schema.HLTM, at: At) -> None:
    """The operator and the theorem check group samples by the joint value of the latents of levels
    0..share: refuse more than schema.MAX_CLASSES of them (the runtime cannot hold their sums)."""
    m = cfg.measure
    assert isinstance(cfg.augment, schema.Augment)  # `augment images` returned before (_hltm_rules)
    measured = m.covariance_operator is not None or m.theorem_check is not None
    if not measured or data.tree is None or cfg.augment.share >= data.depth:
        return
    nodes = sum(len(level) for level in _latent_levels(data.tree)[: cfg.augment.share + 1])
    count = data.states**nodes
    if count > schema.MAX_CLASSES:
        checker.bad(
            f"'share' = {cfg.augment.share} makes {data.states} ** {nodes} = {count} classes of shared "
            f"latents for the covariance operator and theorem check (at most {schema.MAX_CLASSES}); "
            "share fewer levels or measure neither",
            at("augment", "share"),
        )


def _tree(checker: _Checker, data: schema.HLTM, written: Section, at: At) -> schema.HLTM:
    """Make depth, branching and tree all explicit; a tree too large to build stays None."""
    if data.tree is not None:
        for name in ("depth", "branching"):
            if name in written.values:
                checker.bad(f"give either 'tree' or '{name}', not both", at("data", name))
        leaves = _count_leaves(data.tree)
        if leaves > schema.MAX_LEAVES:
            checker.bad(
                f"the tree is too large: {leaves} leaves (at most {schema.MAX_LEAVES})", at("data", "tree")
            )
        return attrs.evolve(data, depth=tree_depth(data.tree), branching=tree_branching(data.tree))
    assert data.branching is not None
    # Checked before building: branching ** depth leaves would exhaust memory and time.
    if data.depth > 64 or data.branching**data.depth > schema.MAX_LEAVES:
        checker.bad(
            f"the tree is too large: branching ** depth = {data.branching} ** {data.depth} leaves "
            f"(at most {schema.MAX_LEAVES})",
            at("data", "branching" if data.branching > schema.MAX_LEAVES else "depth"),
        )
        return data
    return attrs.evolve(data, tree=uniform_tree(data.depth, data.branching))


def _operator_memory(checker: _Checker, cfg: Config, tree: Any, sec: Section) -> None:
    """Refuse dense operator matrices that would not fit in schema.MAX_OPERATOR_BYTES."""
    if not isinstance(cfg.network, schema.TreeReLU | schema.MLP):
        return  # an image network on the HLTM: refused by its needs (kinds.SUPPORT)
    levels = _operator_levels(cfg.network, tree)  # (nodes, P) per level
    limit = schema.MAX_OPERATOR_BYTES
    op, tc = cfg.measure.covariance_operator, cfg.measure.theorem_check
    if op is not None and op.full:
        n, p_max = sum(k for k, _ in levels), max(p for _, p in levels)
        need = 8 * (n * p_max**2 + max(k * p**2 for k, p in levels))
        if need > limit:
            checker.bad(
                f"'full' needs {_gib(need)} per measurement ({n} nodes x {p_max} x {p_max} float64, "
                f"plus one level's matrices while built); at most {_gib(limit)}: leave full = false "
                "(the spectrum, trace and norms need no dense matrix)",
                _sub_span(sec, "covariance_operator", "full"),
            )
    beta = cfg.loss.beta if isinstance(cfg.loss, schema.SimpleLoss) else 0.0
    if tc is not None and beta != 0:
        level_of = [lvl for lvl, (k, _) in enumerate(levels) for _ in range(k)]
        rows = [levels[level_of[node]] for node in tc.nodes if node < len(level_of)]
        need = sum(16 * k * p**2 for k, p in rows)
        if need > limit:
            checker.bad(
                f"'theorem_check' with beta = {beta} keeps the within-class term as dense "
                f"matrices: {_gib(need)} for nodes {list(tc.nodes)}; at most {_gib(limit)}",
                _sub_span(sec, "theorem_check", "nodes"),
            )


def _image_rules(checker: _Checker, cfg: Config, sec: Section, at: At) -> Config:
    """An image data set's rules: a local copy's `root` is given (nothing is ever downloaded),
    and the HLTM's augment fields (share, flip, negative) are not set, since they mean nothing
    for images (the image views are the data set's official augmentation pipeline)."""
    data = cfg.data
    kind = schema.kind_of(data)
    if isinstance(data, schema.Cifar10 | schema.STL10) and data.root is None:
        checker.bad(
            f"data {kind} needs 'root', the folder holding a local copy (nothing is downloaded)",
            (sec.blocks["data"].kind_span or sec.blocks["data"].span),
        )
    written = sec.blocks.get("augment")
    if isinstance(cfg.augment, schema.Augment):
        for name in written.values if written is not None else ():
            checker.bad(
                f"augment field '{name}' applies to the HLTM; for data {kind} write "
                "`augment images { .. }`",
                at("augment", name),
            )
        return cfg
    blur, crop = cfg.augment.blur, cfg.augment.crop
    side = crop.size if crop is not None and crop.size is not None else schema.image_side(data)
    if blur is not None and blur.kernel % 2 == 0:
        checker.bad(f"'blur.kernel' must be odd (got {blur.kernel})", _aug_span(written, "blur", "kernel"))
    elif blur is not None and blur.kernel // 2 >= side:  # its reflected border needs kernel // 2 < side
        checker.bad(
            f"'blur.kernel' must be at most {2 * side - 1} for views of {side} x {side} pixels "
            f"(got {blur.kernel})",
            _aug_span(written, "blur", "kernel"),
        )
    for step in ("crop", "blur", "solarize"):
        lo_hi = _ranges(getattr(cfg.augment, step))
        for name, (lo, hi) in lo_hi.items():
            if lo > hi:
                checker.bad(
                    f"'{step}.{name}' needs min <= max (got [{lo}, {hi}])", _aug_span(written, step, name)
                )
    return cfg


def _ranges(step: Any) -> dict[str, tuple[float, float]]:
    """The [min, max] fields of an augmentation step (None: no step)."""
    if step is None:
        return {}
    return {
        a.name: getattr(step, a.name)
        for a in attrs.fields(type(step))
        if a.name in ("scale", "ratio", "sigma")
    }


def _aug_span(written: Section | None, step: str, name: str) -> ir.Span | None:
    s = written.blocks.get(step) if written is not None else None
    if s is None:
        return written.span if written is not None else None
    return s.spans.get(name) or s.span


# Rules between blocks that only one data kind has, keyed by kind: the HLTM's tree rules run for
# an HLTM only. A kind without an entry has none.
DataRules = Callable[[_Checker, Config, Section, At], Config]
DATA_RULES: dict[str, DataRules] = {
    "hltm": _hltm_rules,
    "digits": _image_rules,
    "cifar10": _image_rules,
    "stl10": _image_rules,
}


def _no_block(owner: str, name: str, values: Collection[str], blocks: Collection[str]) -> str:
    """The message for `name { .. }` or a path `name.x` where `owner` has no block `name`."""
    if name in values:
        return f"{owner} field '{name}' takes a value, not a block"
    return f"{owner} has no block '{name}'{did_you_mean(name, [*values, *blocks])}"


def _measure_span(sec: Section, name: str) -> ir.Span | None:
    """Where measurement `name` was switched on (its block or flag), else the measure block."""
    m = sec.blocks.get("measure")
    if m is None:
        return sec.span
    s = m.blocks.get(name)
    return (s.span if s else None) or m.spans.get(name) or m.span


def _sub_span(sec: Section, sub: str, name: str) -> ir.Span | None:
    m = sec.blocks.get("measure")
    s = m.blocks.get(sub) if m else None
    return (s.spans.get(name) or s.span) if s else sec.span


def _operator_levels(net: schema.TreeReLU | schema.MLP, tree: Any) -> list[tuple[int, int]]:
    """(nodes, P) per level of the network's operators: P = the level's widest fan-in * its width
    (as the runtime pads a level); a tree_relu node per latent node, an mlp node per layer."""
    if isinstance(net, schema.MLP):
        widths = tuple(reversed(net.widths))  # level 0 = the output layer
        fan_in = (*widths[1:], _count_leaves(tree))
        return [(1, f * w) for f, w in zip(fan_in, widths, strict=True)]
    out = []
    for level in _latent_levels(tree):
        fans = [node if isinstance(node, int) else len(node) * net.width for node in level]
        out.append((len(level), max(fans) * net.width))
    return out


def _latent_levels(tree: Any) -> list[list[Any]]:
    """The latent nodes of each level, root first (a node is a list of children or a leaf count)."""
    levels, level = [], [tree]
    while level:
        levels.append(level)
        level = [child for node in level if not isinstance(node, int) for child in node]
    return levels


def _gib(count: int) -> str:
    """A byte count in GiB, for messages."""
    return f"{count / 2**30:,.1f} GiB"


def _count_leaves(shape: Any) -> int:
    return shape if isinstance(shape, int) else sum(_count_leaves(c) for c in shape)


def _count_latent(shape: Any) -> int:
    return 1 if isinstance(shape, int) else 1 + sum(_count_latent(c) for c in shape)


def _to_node(value: Any) -> ir.Value:
    if isinstance(value, bool):
        return ir.Bool(value)
    if isinstance(value, int):
        return ir.Int(value)
    if isinstance(value, float):
        return ir.Float(value, repr(value))
    if isinstance(value, str):
        return ir.Ident(value)
    if isinstance(value, tuple):
        return ir.List(tuple(_to_node(v) for v in value))
    raise TypeError(f"no literal for {value!r}")  # pragma: no cover


def build_config(prog: Program, name: str, sec: Section) -> Config | None:
    """Validate one experiment's Section; return its Config, or None after recording errors."""
    return _Checker(prog, name).config(sec)
