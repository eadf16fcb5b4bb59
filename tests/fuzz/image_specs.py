"""Generators of small image experiments over the newest constructs, for the check-then-run fuzz.

`image_specs()` writes a whole experiment on scikit-learn's digits (no download): an `augment
images` block whose steps are on, off, changed or left out; a `convnet`, now and then a tiny
`resnet` or an `mlp` on the flat pixels; `nt_xent`, `exact_cov` or `byol` with its predictor
options; `sgd` or `adam` with a `constant` or `cosine` learning-rate schedule (call or block
form); and measurements (collapse, k-NN, the linear probe, the per-layer covariance operator, the
theorem check, the loss trace). Every size is tiny, so a run of an accepted spec takes about a
second on a CPU. Values are mostly in range and sometimes just outside it or in conflict with
another block, so that both sides of `check` are reached. `overrides()` gives `--set` arguments
over the same fields.
"""

from __future__ import annotations

from hypothesis import strategies as st

SIDES = (8, 9, 12)


def _choose(draw: st.DrawFn, *options: str) -> str:
    return draw(st.sampled_from(options))


def _maybe(draw: st.DrawFn, item: str) -> list[str]:
    return [item] if draw(st.booleans()) else []


def _ints(draw: st.DrawFn, lo: int, hi: int, n_lo: int = 1, n_hi: int = 2) -> str:
    return (
        "["
        + ", ".join(str(v) for v in draw(st.lists(st.integers(lo, hi), min_size=n_lo, max_size=n_hi)))
        + "]"
    )


def _range(draw: st.DrawFn, lo: float, hi: float) -> str:
    a, b = draw(st.floats(lo, hi)), draw(st.floats(lo, hi))
    if draw(st.integers(0, 9)):  # mostly ordered; sometimes reversed (check refuses it)
        a, b = min(a, b), max(a, b)
    return f"[{a:.3g}, {b:.3g}]"


def _p(draw: st.DrawFn) -> str:
    return f"{draw(st.floats(0, 1)):.2g}"


@st.composite
def _augment(draw: st.DrawFn) -> str:
    """An `augment images` block: each step left out, removed, switched on or changed."""
    steps: list[str] = []
    crop = draw(st.integers(0, 3))
    if crop == 1:
        steps.append("crop = false")
    elif crop >= 2:
        fields = [f"scale = {_range(draw, 0.1, 1.0)}", *_maybe(draw, f"ratio = {_range(draw, 0.5, 2.0)}")]
        fields += _maybe(draw, f"size = {draw(st.integers(2, 12))}")
        steps.append("crop { " + "; ".join(fields) + " }")
    steps += _maybe(draw, _choose(draw, "flip = false", f"flip {{ p = {_p(draw)} }}"))
    jitter = "; ".join(f"{n} = {draw(st.floats(0, 1)):.2g}" for n in ("brightness", "contrast"))
    steps += _maybe(draw, _choose(draw, "color_jitter = false", f"color_jitter {{ {jitter} }}"))
    steps += _maybe(draw, _choose(draw, "grayscale = false", f"grayscale {{ p = {_p(draw)} }}"))
    kernel = draw(st.sampled_from([3, 5, 9, 15, 17, 23, 25, 4]))
    blur = f"blur {{ kernel = {kernel}; sigma = {_range(draw, 0.1, 2.0)}; p = {_p(draw)} }}"
    steps += _maybe(draw, _choose(draw, "blur = true", blur))
    steps += _maybe(draw, _choose(draw, "solarize = true", f"solarize {{ threshold = {_p(draw)} }}"))
    steps += _maybe(draw, "normalize = false")
    return "augment images { " + "; ".join(steps) + " }" if steps or draw(st.booleans()) else ""


@st.composite
def _network(draw: st.DrawFn, kind: str) -> str:
    bn = [
        f"batch_norm = {_choose(draw, 'true', 'true', 'false')}",
        f"bn_affine = {_choose(draw, 'true', 'false')}",
    ]
    options = [f for f in [*bn, f"bias = {_choose(draw, 'true', 'false')}"] if draw(st.booleans())]
    if kind == "convnet":
        body = [f"channels = {_ints(draw, 1, 4, 1, 3)}", f"projector = {_ints(draw, 1, 4)}", *options]
    elif kind == "resnet":
        body = [f"stem = {_choose(draw, 'imagenet', 'cifar')}", f"projector = {_ints(draw, 1, 4)}", *options]
    else:
        body = [f"widths = {_ints(draw, 2, 6, 1, 2)}"]
    return f"network {kind} {{ " + "; ".join(body) + " }"


@st.composite
def _loss(draw: st.DrawFn) -> str:
    kind = _choose(draw, "nt_xent", "exact_cov", "byol")
    if kind == "nt_xent":
        return f"loss nt_xent {{ temperature = {draw(st.floats(0.05, 2)):.2g} }}"
    if kind == "exact_cov":
        tau, beta = draw(st.floats(0.05, 2)), draw(st.floats(-1, 1))
        return f"loss exact_cov {{ temperature = {tau:.2g}; beta = {beta:.2g} }}"
    fields = [f"momentum = {draw(st.floats(0, 1)):.3g}", f"target = {_choose(draw, 'independent', 'copy')}"]
    fields += [f"distance = {_choose(draw, 'cosine', 'mse')}"]
    pred = draw(st.integers(0, 3))
    if pred == 0:
        fields.append("predictor = false")
    elif pred >= 2:
        inner = [
            f"layers = {_choose(draw, 'mlp', 'linear')}",
            *_maybe(draw, f"width = {draw(st.integers(1, 4))}"),
        ]
        inner += _maybe(draw, f"batch_norm = {_choose(draw, 'true', 'false')}")
        if draw(st.integers(0, 3)):  # mostly with the predictor's batch norm, which they need
            inner += _maybe(draw, f"bn_mean = {_choose(draw, 'normal', 'detach', 'omit')}")
            inner += _maybe(draw, f"bn_std = {_choose(draw, 'normal', 'detach', 'omit')}")
        own = draw(st.booleans())
        inner += [
            f"optimizer = {'own' if own else 'main'}",
            *_maybe(draw, f"lr = {draw(st.floats(0.001, 0.5)):.2g}"),
        ]
        fields.append("predictor { " + "; ".join(inner) + " }")
    return "loss byol { " + "; ".join(fields) + " }"


@st.composite
def _optimizer(draw: st.DrawFn) -> str:
    kind = _choose(draw, "sgd", "adam")
    lr = draw(st.floats(0.001, 0.2))
    fields = [f"lr = {lr:.2g}"]
    warmup = _choose(
        draw, "", f"warmup_epochs = {draw(st.integers(0, 3))}", f"warmup_steps = {draw(st.integers(0, 6))}"
    )
    final = f"final_lr = {draw(st.floats(0, 0.3)):.2g}" if draw(st.booleans()) else ""
    args = ", ".join(a for a in (warmup, final) if a)
    form = draw(st.integers(0, 3))
    if form == 1:
        fields.append(f"schedule = cosine({args})" if draw(st.booleans()) else "schedule = cosine")
    elif form == 2:
        fields.append(f"schedule = constant({warmup})")
    elif form == 3:
        inner = "; ".join(a for a in (warmup, final) if a)  # the block form: `schedule KIND { .. }`
        fields.append(f"schedule {_choose(draw, 'cosine', 'cosine', 'constant')} {{ {inner} }}")
    return f"optimizer {kind} {{ " + "; ".join(fields) + " }"


@st.composite
def _measure(draw: st.DrawFn, network: str) -> str:
    items = _maybe(draw, f"every = {draw(st.integers(1, 2))}") + _maybe(
        draw, f"samples = {draw(st.integers(2, 16))}"
    )
    items += _maybe(draw, "collapse") + _maybe(draw, f"knn {{ k = {draw(st.integers(1, 9))} }}")
    items += _maybe(draw, f"linear_probe {{ selection = {_choose(draw, 'last', 'validation')} }}")
    if draw(st.integers(0, 2)) == 0:
        op = [
            f"images = {draw(st.integers(2, 4))}",
            f"top = {draw(st.integers(1, 3))}",
            "probes = 1",
            "power = 1",
        ]
        layers = f"layers = [{_choose(draw, 'conv0', 'head0', 'conv0', 'head0', 'head1', 'conv1')}]"
        op += [layers] if network == "resnet" else _maybe(draw, layers)  # every ResNet layer: minutes
        op += _maybe(draw, f"vectors = {_choose(draw, 'true', 'false')}")
        items.append("covariance_operator { " + "; ".join(op) + " }")
    if draw(st.integers(0, 3)) == 0:
        nodes = _ints(draw, 0, 1 + (draw(st.integers(0, 5)) == 0), 1, 2)  # head layers; 2 is past most heads
        items.append(f"theorem_check {{ nodes = {nodes}; batches = [1, 2] }}")
    items += _maybe(draw, f"loss {{ every = {draw(st.integers(1, 3))} }}")
    return "measure { " + "; ".join(items) + " }"


@st.composite
def image_specs(draw: st.DrawFn) -> str:
    """A whole image experiment (see the module docstring), one block a line."""
    batch = draw(st.integers(2, 6)) if draw(st.integers(0, 9)) else 1
    samples = batch * draw(st.integers(1, 2)) + (1 if draw(st.integers(0, 19)) == 0 else 0)
    split = _choose(draw, "train", "test", '"train+test"')
    network = draw(st.sampled_from(["convnet"] * 6 + ["resnet", "mlp"]))
    blocks = [
        f"seed = {draw(st.integers(0, 9))}",
        f"data digits {{ size = {draw(st.sampled_from(SIDES))}; split = {split} }}",
        draw(_augment()),
        draw(_network(network)),
        draw(_loss()),
        draw(_optimizer()),
        f"train {{ batch = {batch}; samples = {samples}; epochs = {draw(st.integers(0, 2))} }}",
        draw(_measure(network)),
    ]
    return "experiment fz {\n" + "".join(f"  {b}\n" for b in blocks if b) + "}\n"


# `--set` overrides of the newest fields: a path and a value text, in range or not.
OVERRIDES = st.one_of(
    st.sampled_from(["network.depth=34", "network.depth=50", "network.stem=imagenet", "network.kind=resnet"]),
    st.integers(-1, 40).map(lambda v: f"augment.blur.kernel={v}"),
    st.integers(-1, 14).map(lambda v: f"augment.crop.size={v}"),
    st.sampled_from(
        ["cosine", "constant", "linear", "cosine(warmup_epochs = 1)", "cosine(final_lr = 1)", "3"]
    ).map(lambda v: f"optimizer.schedule={v}"),
    st.integers(-1, 5).map(lambda v: f"optimizer.schedule.warmup_steps={v}"),
    st.sampled_from(
        ["loss.kind=byol", "loss.kind=nt_xent", "loss.predictor=false", "loss.predictor.width=0"]
    ),
    st.integers(0, 3).map(lambda v: f"measure.theorem_check.nodes=[{v}]"),
    st.sampled_from(["conv0", "conv3", "head1", "head9", "7"]).map(
        lambda v: f"measure.covariance_operator.layers=[{v}]"
    ),
    st.integers(0, 3).map(lambda v: f"train.batch={v}"),
    st.sampled_from(["train", "test", '"train+test"', "unlabeled"]).map(lambda v: f"data.split={v}"),
)
overrides = st.lists(OVERRIDES, max_size=2)
