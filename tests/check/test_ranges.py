"""Every range in the schema and every cross-field rule of the checker, tested at its boundary:
the last value inside is accepted and the first value outside is an error naming the field.

The bounded fields are read from the schema itself (each field's type carries its bounds), so a
field added later is covered without editing this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import pytest

from sslspec.errors import CheckError
from sslspec.spec import schema
from sslspec.spec.fields import CallT, FloatT, IntT, ListT
from sslspec.spec.kinds import missing_runtime
from sslspec.spec.lower import lower

EPS = 1e-6  # the step past a float bound; every bound is a small number, so it is exact enough

# A spec using every block, with each measurement on; the kind blocks are filled in per case.
BASE = """experiment a {{
  seed = 1
  data hltm {{ depth = 3 }}
  augment {{ share = 0 }}
  network {network}
  loss {loss}
  optimizer {optimizer}
  train {{ batch = 1; samples = 4; epochs = 2 }}
  measure {{
    latent_correlation
    covariance_operator {{ top = 2 }}
    weights
    loss {{ every = 1 }}
    theorem_check {{ nodes = [0] }}
  }}
}}
"""
KINDS = {"network": "tree_relu { width = 4 }", "loss": "simple { beta = 0 }", "optimizer": "sgd { lr = 0.1 }"}

# The same for image data (no latent measurements); `augment images` with every step on.
IMAGES = """experiment a {{
  data {data}
  augment images {{ blur = true; solarize = true }}
  network mlp {{ widths = [4] }}
  loss simple {{ beta = 0 }}
  optimizer sgd {{ lr = 0.1 }}
  train {{ batch = 2; samples = 4; epochs = 2 }}
  measure {{ weights; linear_probe; knn }}
}}
"""
# Fields and kinds that only image data has (the HLTM base refuses them for that alone).
IMAGE_ONLY = ("measure.linear_probe.", "measure.knn.")
IMAGE_ONLY_KINDS = ("nt_xent", "exact_cov")
IMAGE_NETWORKS = ("resnet", "convnet")  # on image data, with a two-view loss and no `weights`
# the operator's fields for an image network's layers (refused with tree_relu and mlp)
LAYER_OPERATOR = tuple(
    f"measure.covariance_operator.{f}" for f in ("layers", "images", "views", "probes", "power")
)


def spec_for(block: str | None, kind: str | None) -> str:
    """BASE with `block` of the given kind (its other fields at their defaults); IMAGES for an
    image data kind or the image augmentations."""
    if block == "data" and kind != "hltm":
        return IMAGES.format(data=f'{kind} {{ root = "." }}' if kind != "digits" else "digits { }")
    if block == "augment":
        return IMAGES.format(data="digits { }")
    if block == "network" and kind in IMAGE_NETWORKS:
        text = IMAGES.format(data="digits { }").replace("weights; ", "").replace("simple {", "nt_xent {")
        return text.replace("mlp { widths = [4] }", f"{kind} {{ }}").replace("beta = 0", "")
    kinds = dict(KINDS)
    if block in kinds and kind is not None:
        kinds[block] = f"{kind} {{ }}"
    text = BASE.format(**kinds)
    if kind == "byol":  # the theorem check needs a contrastive loss
        text = text.replace("    theorem_check { nodes = [0] }\n", "")
    return text


@attrs.frozen
class Case:
    """One side of one boundary: `path = text` in a spec where `block` has kind `kind`."""

    path: str
    text: str
    block: str | None = None
    kind: str | None = None
    before: tuple[str, ...] = ()  # settings the field needs to mean something (`path=value`)

    def lower(self) -> object:
        images = self.path.startswith(IMAGE_ONLY) or self.kind in IMAGE_ONLY_KINDS
        text = IMAGES.format(data="digits { }") if images else spec_for(self.block, self.kind)
        if self.path.startswith(LAYER_OPERATOR):
            text = spec_for("network", "convnet")
        if images and self.block == "loss":
            text = text.replace("simple { beta = 0 }", f"{self.kind} {{ }}")
        return lower("a.ssl", [*self.before, f"{self.path}={self.text}"], text=text)


def _sides(t: IntT | FloatT) -> Iterator[tuple[float, float, str]]:
    """(inside, outside, message) for each bound of a numeric type."""
    step = 1 if isinstance(t, IntT) else EPS
    if t.ge is not None:
        yield t.ge, t.ge - step, f"must be >= {t.ge:g}"
    if t.le is not None:
        yield t.le, t.le + step, f"must be <= {t.le:g}"
    if isinstance(t, FloatT):
        if t.gt is not None:
            yield t.gt + EPS, t.gt, f"must be > {t.gt:g}"
        if t.lt is not None:
            yield t.lt - EPS, t.lt, f"must be < {t.lt:g}"


def _show(x: float, t: IntT | FloatT) -> str:
    return str(int(x)) if isinstance(t, IntT) else repr(float(x))


def _bounded(cls: type, prefix: str) -> Iterator[tuple[str, Callable[[str], str], IntT | FloatT, int, int]]:
    """(path, wrap, numeric type, min_len, max_len) for every bounded number or list of numbers in a
    class: `wrap` turns one number's text into the field's text (a list, a call)."""
    for a in attrs.fields(cls):
        t, path = a.metadata.get("type"), f"{prefix}{a.name}"
        if isinstance(t, IntT | FloatT) and any(True for _ in _sides(t)):
            yield path, lambda v: v, t, 0, 0
        elif isinstance(t, ListT) and isinstance(t.item, IntT | FloatT):
            n = max(t.min_len, 1)
            yield path, lambda v, n=n: "[" + ", ".join([v] * n) + "]", t.item, t.min_len, t.max_len or 0
        elif isinstance(t, CallT):
            for name, call in t.calls.items():
                for arg, wrap, item, lo, hi in _bounded(call, ""):
                    as_call = lambda v, name=name, arg=arg, wrap=wrap: f"{name}({arg} = {wrap(v)})"
                    yield path, as_call, item, lo, hi


def _cases() -> Iterator[tuple[str, Case, Case, str]]:
    """(id, inside case, outside case, message of the outside one) for every bound in the schema."""
    owners: list[tuple[type, str, str | None, str | None]] = [
        (cls, f"{block}.", block if kind else None, kind)
        for block, (kinds, _) in schema.BLOCKS.items()
        for kind, cls in kinds.items()
    ]
    subs = schema.SUBBLOCKS[schema.Measure]
    owners += [(cls, f"measure.{name}.", None, None) for name, cls in subs.items()]
    steps = schema.SUBBLOCKS[schema.ImageAugment]
    owners += [(cls, f"augment.{name}.", "augment", "images") for name, cls in steps.items()]
    owners += [(schema.Predictor, "loss.predictor.", "loss", "byol")]
    for cls, prefix, block, kind in owners:
        for path, wrap, t, lo, hi in _bounded(cls, prefix):
            label = f"{path}[{kind}]" if kind else path
            before = NEEDS.get(path, ())
            for inside, outside, message in _sides(t):
                yield (
                    f"{label}:{message}",
                    Case(path, wrap(_show(inside, t)), block, kind, before),
                    Case(path, wrap(_show(outside, t)), block, kind, before),
                    message,
                )
            if lo > 0:  # a list with a least length: that many items pass, one fewer fails
                ok = _show(t.ge if t.ge is not None else 1, t)
                items = ", ".join([ok] * lo)
                fewer = ", ".join([ok] * (lo - 1))
                msg = f"must have {lo if hi == lo else f'at least {lo}'} items"
                at_least, short = Case(path, f"[{items}]", block, kind), Case(path, f"[{fewer}]", block, kind)
                yield f"{label}:{msg}", at_least, short, msg
    for path, t in schema.TOP_FIELDS.items():
        if isinstance(t, IntT):
            for inside, outside, message in _sides(t):
                ok, bad = Case(path, _show(inside, t)), Case(path, _show(outside, t))
                yield f"{path}:{message}", ok, bad, message


# Fields that mean something only with another setting (the checker refuses them otherwise); the
# smallest crop leaves no room for the base's blur (its kernel must be narrower than the views);
# one measurement sample leaves none for a correlation or an operator.
ONE_SAMPLE = ("measure.latent_correlation=false", "measure.covariance_operator=false")
NEEDS = {
    "loss.predictor.lr": ("loss.predictor.optimizer=own",),
    "augment.crop.size": ("augment.blur=false",),
    "train.samples": ONE_SAMPLE,
    "measure.samples": ONE_SAMPLE,
}
CASES = list(_cases())


def test_the_schema_walk_finds_the_known_ranges() -> None:
    """The walk reaches fields of every kind of place: blocks, kinds, sub-blocks, calls, lists, top level."""
    ids = {c[0].split(":")[0] for c in CASES}
    assert {
        "data.depth[hltm]",
        "data.states[hltm]",
        "data.polarity[hltm]",
        "network.width[tree_relu]",
        "network.widths[mlp]",
        "network.activation[tree_relu]",
        "loss.temperature[infonce]",
        "loss.beta[simple]",
        "optimizer.betas[adam]",
        "optimizer.momentum[sgd]",
        "train.epochs",
        "measure.every",
        "measure.theorem_check.nodes",
        "measure.theorem_check.batches",
        "measure.covariance_operator.top",
        "data.size[digits]",
        "augment.blur.p[images]",
        "seed",
    } <= ids
    assert len(CASES) >= 50


def _errors(case: Case) -> list[str]:
    try:
        case.lower()
    except CheckError as exc:
        return [d.message for d in exc.diagnostics]
    return []


@pytest.mark.parametrize(("inside", "outside", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_range_boundary(inside: Case, outside: Case, message: str) -> None:
    """The boundary value itself (or the nearest value inside an open bound) checks clean; the
    first value past it is one error saying the bound. For a kind the runtime cannot run yet
    (loss byol) the spec is refused for that either way, and the bound is the one error more."""
    block, kind = inside.block, inside.kind
    refused = block is not None and kind is not None and missing_runtime(block, kind) is not None
    before, after = _errors(inside), _errors(outside)
    assert bool(before) == refused, before
    if refused:
        assert any("not implemented yet" in m for m in before), before
    (extra,) = [m for m in after if m not in before]
    assert message in extra, extra


MIN = BASE.format(**KINDS)


@pytest.mark.parametrize(
    ("inside", "outside", "says"),
    [
        (["augment.share=2"], ["augment.share=3"], "'share' must be < depth (got share = 3, depth = 3)"),
        (["train.batch=2", "train.samples=4"], ["train.batch=3", "train.samples=4"], "multiple of batch"),
        (
            ["loss.kind=infonce", "loss.negatives=3", "augment.negative=batch", "train.batch=4"],
            ["loss.kind=infonce", "loss.negatives=4", "augment.negative=batch", "train.batch=4"],
            "'negatives' must be < batch when negatives come from the batch (got 4, batch = 4)",
        ),
        (["data.states=2"], ["data.states=3"], "a negative polarity has no meaning for states > 2"),
        (["measure.theorem_check.nodes=[6]"], ["measure.theorem_check.nodes=[7]"], "has node 7"),
        (["measure.theorem_check.epochs=[2]"], ["measure.theorem_check.epochs=[3]"], "has epoch 3"),
        (["data.depth=16"], ["data.depth=17"], "the tree is too large"),
        (["data.tree=65536"], ["data.tree=65537"], "the tree is too large"),
    ],
    ids=["share", "samples", "negatives", "states", "tc_nodes", "tc_epochs", "depth_leaves", "tree_leaves"],
)
def test_cross_rule_boundary(inside: list[str], outside: list[str], says: str) -> None:
    """Each relation between fields accepts its last good value and rejects the first bad one."""
    text = MIN.replace("depth = 3", "") if "data.tree" in inside[0] else MIN  # tree or depth, not both
    lower("a.ssl", inside, text=text)
    with pytest.raises(CheckError) as info:
        lower("a.ssl", outside, text=text)
    assert any(says in d.message for d in info.value.diagnostics), info.value.render()
