"""Generators of .ssl texts for the fuzz tests: schema-aware valid specs, and their mutations.

`specs()` writes experiments from the schema itself (sslspec.spec.schema: every block, kind, field
and field type), with values that are mostly in range and sometimes not, optional sweeps (grids,
ranges and zips over real field paths), include statements of the reference spec with overrides,
and comments, blank lines, `;` separators and odd spacing anywhere the grammar allows them. Such
a text always parses; many of them also check and plan. `mutants()` damages one of them at the
character level (insert, delete, replace, duplicate a slice, with characters the grammar gives
meaning to plus control, Unicode line-breaking and non-UTF-8-range ones) or at the token level
(delete, repeat, swap, or replace a token with another token or keyword). `settings()` gives
`--set path=value` strings over real and made-up paths.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
from hypothesis import strategies as st

from sslspec.spec import schema
from sslspec.spec.fields import BoolT, CallT, ChoiceT, DeviceT, FloatT, IntT, ListT, PathT, TreeT

REFERENCE = Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"
KEYWORDS = ("include", "experiment", "sweep", "zip", "true", "false")
names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
comment = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=10).map(
    lambda s: "#" + s.replace("\x85", "")
)


# ---- values -------------------------------------------------------------------------------


def _int_text(lo: int | None, hi: int | None) -> st.SearchStrategy[str]:
    lo = 0 if lo is None else lo
    return st.integers(lo, max(lo, hi if hi is not None else lo + 3)).map(str)


def _float_text(t: FloatT) -> st.SearchStrategy[str]:
    lo = next((b for b in (t.ge, t.gt) if b is not None), -2.0)
    hi = next((b for b in (t.le, t.lt) if b is not None), lo + 4.0)
    inside = st.floats(lo, hi, exclude_min=t.gt is not None, exclude_max=t.lt is not None)
    short = (
        inside.map(lambda x: f"{x:.3g}")
        .filter(lambda s: "inf" not in s)
        .map(lambda s: s if "e" in s or "." in s else s + ".0")
    )
    return st.one_of(inside.map(repr), short)


def _call_text(t: CallT, valid: bool) -> st.SearchStrategy[str]:
    options = sorted(t.calls.items())

    @st.composite
    def call(draw: st.DrawFn) -> str:
        name, cls = draw(st.sampled_from(options))
        args = [a for a in attrs.fields(cls) if draw(st.booleans())]
        if valid and name == "uniform":  # low <= high
            low, high = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2)))
            return f"uniform(low = {low!r}, high = {high!r})"
        inner = ", ".join(f"{a.name} = {draw(value_text(a.metadata['type'], valid))}" for a in args)
        if not args and getattr(t, "bare", False) and draw(st.booleans()):
            return name
        return f"{name}({inner}{draw(st.sampled_from(['', ',']) if args else st.just(''))})"

    scalar = _float_text(FloatT(ge=0, le=1)) if getattr(t, "scalar", None) else st.nothing()
    return st.one_of(call(), scalar)


@st.composite
def _tree_text(draw: st.DrawFn, valid: bool) -> str:
    """A tree shape; with `valid`, every leaf at one depth."""
    depth = draw(st.integers(1, 3))

    def node(level: int) -> str:
        if level == depth or (not valid and draw(st.integers(0, 3)) == 0):
            return str(draw(st.integers(1, 3)))
        return _list([node(level + 1) for _ in range(draw(st.integers(1, 3)))])

    return node(0)


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def value_text(t: Any, valid: bool = False) -> st.SearchStrategy[str]:
    """Text of a value for a field of language type `t`: valid, or (unless `valid`) mostly valid
    and sometimes any value at all."""
    if isinstance(t, IntT):
        right = _int_text(t.ge, t.le)
    elif isinstance(t, FloatT):
        right = _float_text(t)
    elif isinstance(t, BoolT):
        right = st.sampled_from(["true", "false"])
    elif isinstance(t, ChoiceT):
        bare = [o for o in t.options if o.isidentifier()]  # "train+unlabeled" is written as a string
        quoted = st.sampled_from(t.options).map(json.dumps)
        right = st.sampled_from(bare) | quoted if bare else quoted
    elif isinstance(t, CallT):
        right = _call_text(t, valid)
    elif isinstance(t, ListT):
        lo, hi = t.min_len, t.max_len if t.max_len is not None else t.min_len + 3
        right = st.lists(value_text(t.item, valid), min_size=lo, max_size=hi).map(_list)
    elif isinstance(t, TreeT):
        right = _tree_text(valid)
    elif isinstance(t, DeviceT):
        right = st.sampled_from(["auto", "cpu", "cuda", '"cuda:1"', '"cpu"', *([] if valid else ["gpu"])])
    elif isinstance(t, PathT):
        right = st.sampled_from(['"results"', '"out/r"', '"memory://x"', *([] if valid else ['""', '" "'])])
    else:
        right = any_value
    return right if valid else st.one_of(right, right, right, any_value, _wide)


_wide = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["1e999", "-1e-320", "+0", "-0.0", "1E+308", "99..1"]),
)
_scalar = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5).map(json.dumps),
    st.sampled_from(["true", "false", "auto", "l2", "none", "relu"]),
    st.tuples(st.integers(-3, 9), st.integers(-3, 9)).map(lambda ab: f"{ab[0]}..{ab[1]}"),
)
any_value: st.SearchStrategy[str] = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(_list),
        st.tuples(names, st.lists(st.tuples(names, inner), max_size=2)).map(
            lambda c: f"{c[0]}(" + ", ".join(f"{k} = {v}" for k, v in c[1]) + ")"
        ),
    ),
    max_leaves=5,
)


# ---- blocks, experiments, sweeps ----------------------------------------------------------


def _fields(cls: type) -> dict[str, Any]:
    """A block class's value fields: name -> language type."""
    return {n: a.metadata["type"] for n, a in schema.value_fields(cls).items()}


@st.composite
def _items(draw: st.DrawFn, cls: type, indent: str, valid: bool) -> list[str]:
    """Lines of a block of class `cls`: a random subset of its fields (unless `valid`, now and
    then a misspelt one) and, for `measure`, its sub-blocks as flags, `name = bool` or blocks."""
    lines = []
    skip = (
        [("tree",), ("depth", "branching")][draw(st.integers(0, 1))] if valid and cls is schema.HLTM else ()
    )
    for name, t in _fields(cls).items():
        if (valid and (cls, name) in INTERLOCKED) or name in skip:
            continue
        if draw(st.integers(0, 2)) == 0:
            lines.append(f"{indent}{name}{draw(_eq)}{draw(value_text(t, valid))}")
    if valid and cls is schema.Train and draw(st.booleans()):
        batch = draw(st.sampled_from([8, 16, 128]))
        lines += [f"{indent}batch = {batch}", f"{indent}samples = {batch * draw(st.integers(1, 9))}"]
    for name, sub in schema.SUBBLOCKS.get(cls, {}).items():
        form = draw(st.integers(0, 4))
        if form == 1:
            lines.append(indent + name)
        elif form == 2:
            lines.append(f"{indent}{name} = {draw(st.sampled_from(['true', 'false']))}")
        elif form == 3:
            lines.append(draw(_block(name, None, sub, indent, valid)))
    if not valid and draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), f"{indent}{draw(names)}{draw(_eq)}{draw(any_value)}")
    return draw(st.permutations(lines)) if draw(st.integers(0, 3)) == 0 else lines


# Fields whose valid values depend on others: samples a multiple of batch (written together, below),
# states > 2 only with sign = positive, share < depth, the batch-norm options only with batch_norm
# = true. (`loss byol` is left out of valid texts: its predictor's fields and augment.negative
# depend on each other and on it; tests/check covers those rules.)
INTERLOCKED = {
    (schema.Train, "batch"),
    (schema.Train, "samples"),
    (schema.HLTM, "states"),
    (schema.Augment, "share"),
    *((net, name) for net in (schema.TreeReLU, schema.MLP) for name in ("bn_affine", "bn_mean", "bn_std")),
}
_eq = st.sampled_from([" = ", "=", "  =  ", "\t= "])


@st.composite
def _block(draw: st.DrawFn, name: str, kind: str | None, cls: type, indent: str, valid: bool) -> str:
    head = f"{name} {kind}" if kind else name
    body = draw(_items(cls, indent + "  ", valid))
    return draw(_enclose(head, body, indent))


@st.composite
def _enclose(draw: st.DrawFn, head: str, body: list[str], indent: str) -> str:
    """`head { ... }` on several lines with comments and blank lines, or on one line with `;`."""
    if not body:
        return f"{indent}{head} {{{draw(st.sampled_from(['', ' ', chr(10) + indent]))}}}"
    if draw(st.integers(0, 3)) == 0:
        return (
            f"{indent}{head} {{ "
            + draw(st.sampled_from(["; ", " ; ", ";"])).join(b.strip() for b in body)
            + " }"
        )
    opener = f"{indent}{head} {{" + (" " + draw(comment) if draw(st.integers(0, 3)) == 0 else "")
    return "\n".join([opener, *draw(_decorated(body, indent + "  ")), indent + "}"])


@st.composite
def _decorated(draw: st.DrawFn, lines: list[str], indent: str) -> list[str]:
    """Lines with comment lines, blank lines and trailing comments added at random."""
    out: list[str] = []
    for line in lines:
        if draw(st.integers(0, 5)) == 0:
            out.append(indent + draw(comment))
        if draw(st.integers(0, 6)) == 0:
            out.append(draw(st.sampled_from(["", "   ", "\t"])))
        if draw(st.integers(0, 4)) == 0 and "#" not in line.split("\n")[-1]:
            line += draw(st.sampled_from([" ", "  ", "\t"])) + draw(comment)
        out.append(line)
    return out


@st.composite
def experiment(draw: st.DrawFn, name: str, valid: bool) -> str:
    """An experiment with its required blocks (unless `valid`, one of them dropped now and then),
    optional blocks and top-level fields."""
    top = [(f, t) for f, t in schema.TOP_FIELDS.items() if draw(st.booleans())]
    lines = [f"  {f}{draw(_eq)}{draw(value_text(t, valid))}" for f, t in top]
    for block, (kinds, required) in schema.BLOCKS.items():
        if not required and draw(st.booleans()):
            continue
        if required and not valid and draw(st.integers(0, 19)) == 0:
            continue
        kind = draw(st.sampled_from(sorted((k for k in kinds if not valid or k != "byol"), key=str)))
        lines.append(draw(_block(block, kind, kinds[kind], "  ", valid)))
    return draw(_enclose(f"experiment {name}", draw(st.permutations(lines)), ""))


def _paths() -> list[tuple[str, Any]]:
    """Every field path of an experiment with its type (`network.width`, `data.polarity`)."""
    out: list[tuple[str, Any]] = list(schema.TOP_FIELDS.items())
    for block, (kinds, _) in schema.BLOCKS.items():
        for cls in kinds.values():
            out += [(f"{block}.{f}", t) for f, t in _fields(cls).items()]
    return sorted({p: t for p, t in out}.items())  # a path two kinds share keeps one type


PATHS = _paths()
path_and_type = st.sampled_from(PATHS)


# Paths a valid sweep may vary whatever the kinds of the blocks (no two values mean the same run).
SAFE_AXES = {
    "seed": range(0, 50),
    "data.depth": range(1, 5),
    "train.epochs": range(0, 9),
}


@st.composite
def _axis_values(draw: st.DrawFn, t: Any, n: int | None = None, valid: bool = False) -> str:
    if isinstance(t, IntT) and n is None and draw(st.booleans()):
        lo = draw(st.integers(t.ge or 0, (t.ge or 0) + 4))
        return f"{lo}..{lo + draw(st.integers(0, 3))}"
    size = n if n is not None else draw(st.integers(1, 3))
    return _list(draw(st.lists(value_text(t, valid), min_size=size, max_size=size, unique=True)))


@st.composite
def _valid_axis(draw: st.DrawFn, n: int | None) -> tuple[str, str]:
    path = draw(st.sampled_from(sorted(SAFE_AXES)))
    size = n if n is not None else draw(st.integers(1, 3))
    values = draw(st.lists(st.sampled_from(SAFE_AXES[path]), min_size=size, max_size=size, unique=True))
    if n is None and draw(st.booleans()):
        lo = min(values)
        return path, f"{lo}..{max(values)}"
    return path, _list([str(v) for v in values])


@st.composite
def sweep(draw: st.DrawFn, target: str, valid: bool) -> str:
    """A sweep of `target`: grid axes (lists, ranges) and zips over field paths (with `valid`,
    paths every experiment has, each swept once, over distinct values)."""
    lines: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(1, 3)) if draw(st.integers(0, 3)) == 0 else None
        axis: list[tuple[str, str]] = []
        for _ in range(draw(st.integers(1, 2)) if n else 1):
            if valid:
                axis.append(draw(_valid_axis(n)))
            else:
                p, t = draw(path_and_type)
                axis.append((p, draw(_axis_values(t, n))))
        if valid and (used & {p for p, _ in axis} or len({p for p, _ in axis}) < len(axis)):
            continue
        used |= {p for p, _ in axis}
        if n:
            lines.append(draw(_enclose("zip", [f"    {p} = {v}" for p, v in axis], "  ")))
        else:
            lines.append(f"  {axis[0][0]}{draw(_eq)}{axis[0][1]}")
    return draw(_enclose(f"sweep {target}", lines, ""))


@st.composite
def include(draw: st.DrawFn, valid: bool) -> str:
    """`include` of the reference spec (its experiment is `hltm_simclr`), maybe with overrides."""
    head = f"include {json.dumps(str(REFERENCE))}"
    if valid:
        chosen = draw(st.lists(st.sampled_from(sorted(SAFE_AXES)), max_size=3, unique=True))
        overrides = [f"  {p} = {draw(st.sampled_from(SAFE_AXES[p]))}" for p in chosen]
    else:
        overrides = [f"  {p} = {draw(value_text(t))}" for p, t in draw(st.lists(path_and_type, max_size=3))]
    return draw(_enclose(head, overrides, "")) if overrides or draw(st.booleans()) else head


@st.composite
def specs(draw: st.DrawFn, valid: bool | None = None) -> str:
    """A whole file that parses: experiments, sweeps, an include, comments and blank lines. With
    `valid` (drawn when None) every value fits its field, so most such files also plan."""
    valid = draw(st.booleans()) if valid is None else valid
    exp_names = draw(st.lists(names, min_size=0 if not valid else 1, max_size=2, unique=True))
    parts = [draw(experiment(n, valid)) for n in exp_names]
    if draw(st.integers(0, 3)) == 0 and "hltm_simclr" not in exp_names:
        parts.append(draw(include(valid)))
        exp_names.append("hltm_simclr")
    for n in exp_names:
        if draw(st.booleans()):
            parts.append(draw(sweep(n, valid)))
    parts = draw(st.permutations(parts))
    text = "\n".join(draw(_decorated(parts, "")))
    newline = draw(st.sampled_from(["\n", "\n", "", "\n\n", "\r\n"]))
    return text.replace("\n", newline) if newline == "\r\n" else text + newline


# ---- mutations ----------------------------------------------------------------------------

# Characters with a meaning to the grammar, then ones it should refuse cleanly.
SPECIAL = [
    *'{}[]()=.,;"#\\\n\t -+_0123456789eE',
    "\r",
    "\x00",
    "\x0c",
    "\u2028",
    "\x85",
    "\ufeff",
    "é",
    "\U0001f600",
]
TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|[A-Za-z_]\w*|\.\.|\s+|.', re.S
)
TOKEN_POOL = [
    *KEYWORDS,
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ".",
    "..",
    ";",
    "\n",
    '"',
    "#",
    "0",
    "-1",
    "1e9",
    "1.5",
    "x",
    '"s"',
]


@st.composite
def char_mutant(draw: st.DrawFn, text: str) -> str:
    """`text` with 1 to 4 character-level edits."""
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 3))
        ch = draw(st.sampled_from(SPECIAL) | st.characters(blacklist_categories=("Cs",)))
        if op == 0:
            text = text[:i] + ch + text[i:]
        elif op == 1:
            text = text[:i] + text[i + draw(st.integers(1, 8)) :]
        elif op == 2:
            text = text[:i] + ch + text[i + 1 :]
        else:
            j = draw(st.integers(i, min(len(text), i + 30)))
            text = text[:j] + text[i:j] + text[j:]
    return text


@st.composite
def token_mutant(draw: st.DrawFn, text: str) -> str:
    """`text` with 1 to 3 token-level edits: delete, repeat, swap two, or replace a token."""
    toks = TOKEN.findall(text)
    for _ in range(draw(st.integers(1, 3))):
        if not toks:
            toks = [draw(st.sampled_from(TOKEN_POOL))]
            continue
        i = draw(st.integers(0, len(toks) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[i])
        elif op == 2:
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        else:
            new = draw(st.sampled_from(TOKEN_POOL) | st.sampled_from(toks))
            toks[i] = new if not new[:1].isalnum() or not draw(st.booleans()) else f" {new} "
    return "".join(toks)


@st.composite
def mutants(draw: st.DrawFn) -> str:
    base = draw(specs())
    return draw(char_mutant(base) if draw(st.booleans()) else token_mutant(base))


@st.composite
def extremes(draw: st.DrawFn) -> str:
    """A valid text with one extreme added: deep nesting of (), [] or {} (up to far beyond any
    recursion limit), an integer or float with thousands of digits, or a range of billions."""
    base = draw(specs(valid=True))
    form = draw(st.integers(0, 4))
    depth = draw(st.sampled_from([30_000, 65, 64, 2]))  # the first is the one that matters most
    size = draw(st.sampled_from([5000, 20, 19, 3]))
    digits = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=size, max_size=size)))
    if form == 0:
        opener, closer = draw(st.sampled_from([("[", "]"), ("x(a = ", ")")]))
        thing = f"experiment deep {{\n  v = {opener * depth}1{closer * depth}\n}}\n"
    elif form == 1:
        thing = f"experiment deep {{\n{'b {' * depth}{'}' * depth}}}\n"
    elif form == 2:
        thing = f"experiment big {{\n  seed = {draw(st.sampled_from(['', '-', '+']))}{digits}\n}}\n"
    elif form == 3:
        thing = f"experiment big {{\n  x = 1.{digits}e{digits[:6]}\n}}\n"
    else:
        thing = f"sweep {draw(names)} {{ seed = 0..{digits} }}\n"
    return base + "\n" + thing


any_text = st.one_of(
    specs(),
    mutants(),
    mutants(),
    extremes(),
    st.lists(st.sampled_from([*SPECIAL, "experiment ", "sweep ", "include ", "x"]), max_size=30).map("".join),
)


# ---- --set --------------------------------------------------------------------------------


@st.composite
def setting(draw: st.DrawFn) -> str:
    """One `--set` argument: a real path with a value for its type, or something malformed."""
    form = draw(st.integers(0, 5))
    if form <= 2:
        p, t = draw(path_and_type)
        value = draw(value_text(t, form == 0)) if form < 2 else draw(_axis_values(t))
        return f"{p}{draw(st.sampled_from(['=', ' = ', '= ']))}{value}"
    if form == 3:
        path = ".".join(draw(st.lists(names, min_size=1, max_size=3)))
        return f"{path}={draw(any_value)}"
    if form == 4:
        return draw(char_mutant(f"{draw(path_and_type)[0]}={draw(any_value)}"))
    return "".join(draw(st.lists(st.sampled_from([*SPECIAL, "a", "network", "width"]), max_size=12)))


settings = st.lists(setting(), max_size=3)
