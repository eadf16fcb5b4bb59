"""What the runtime can run, declared per kind so that `sslspec check` refuses what it cannot.

Every block kind (`data hltm`, `network mlp`, `loss byol`, ...) declares the capabilities it
provides and those it needs from the other blocks, and every measurement the capabilities it
needs; the checker reports, at the measurement's or the kind's position, needs that no block of
the experiment provides, and, at the kind's position, a kind the runtime has no implementation
of. So a spec that passes `check` never fails at start-up with "not supported".

Plain dicts keyed by kind, read by the checker: a new kind (the image data sets, BYOL, the image
networks) adds its schema class to `schema.BLOCKS`, its entry here and its runtime builder
(runtime.source's DATA_SOURCES, runtime.objective's OBJECTIVES, runtime.networks' NETWORKS);
nothing registers itself on import, and a test may add a toy kind to all three dicts for its
duration.
"""

from __future__ import annotations

from attrs import frozen

# What each capability means, for the error message when nothing provides it.
CAPABILITIES: dict[str, str] = {
    "latents": "a data source with latent variables (the HLTM)",
    "tree": "a data source with a latent tree (the HLTM)",
    "jacobians": "a network with per-node Jacobians (tree_relu or mlp)",
    "node_weights": "a network with one weight matrix per node (tree_relu or mlp)",
    "images": "an image data source (digits, cifar10 or stl10)",
    "contrastive": "a loss of the contrastive family (simple, triplet or infonce)",
    "layers": "an image network (resnet or convnet), whose layers are measured one by one",
    "negatives": "a loss with negative pairs (nt_xent or exact_cov, with an image network)",
    "head_loss": "a loss defined on an unnormalized projection head output (nt_xent, exact_cov or byol)",
}


@frozen
class Support:
    """One kind: the capabilities it provides, those it needs from the experiment's other blocks,
    and why the runtime cannot run it (None: it can)."""

    provides: frozenset[str] = frozenset()
    needs: tuple[str, ...] = ()
    missing: str | None = None


def _provides(*names: str) -> Support:
    return Support(frozenset(names))


# block -> kind -> Support. A kind of schema.BLOCKS that is not listed here has no runtime.
SUPPORT: dict[str, dict[str, Support]] = {
    "data": {
        "hltm": _provides("latents", "tree"),
        "digits": _provides("images"),
        "cifar10": _provides("images"),
        "stl10": _provides("images"),
    },
    "augment": {"images": Support(needs=("images",))},
    "network": {
        "tree_relu": Support(frozenset({"jacobians", "node_weights"}), needs=("tree",)),  # units per node
        "mlp": _provides("jacobians", "node_weights"),
        # a conv trunk and a projection head (runtime.images.network), whose output is not normalized
        "resnet": Support(frozenset({"layers"}), needs=("images", "head_loss")),
        "convnet": Support(frozenset({"layers"}), needs=("images", "head_loss")),
    },
    "loss": {
        "simple": _provides("contrastive"),
        "triplet": _provides("contrastive"),
        "infonce": _provides("contrastive"),
        "nt_xent": _provides("head_loss", "negatives"),
        "exact_cov": _provides("head_loss", "negatives"),
        "byol": _provides("head_loss"),
    },
    "optimizer": {"sgd": Support(), "adam": Support()},
}

# measurement (a sub-block of `measure`) -> the capabilities it needs from the experiment's blocks;
# ALTERNATIVES lists other sets that serve as well (the operator per latent node of a LevelNet, or
# per layer of an image network: runtime.images.operator).
ALTERNATIVES: dict[str, tuple[tuple[str, ...], ...]] = {
    "covariance_operator": (("images", "layers"),),
    "theorem_check": (("images", "layers", "negatives"),),  # on the head's layers
}
NEEDS: dict[str, tuple[str, ...]] = {
    "latent_correlation": ("latents",),
    "covariance_operator": ("latents", "jacobians"),
    "theorem_check": ("latents", "jacobians", "contrastive"),
    "weights": ("node_weights",),
    "linear_probe": ("images",),
    "knn": ("images",),
}


def missing_runtime(block: str, kind: str) -> str | None:
    """Why `block kind` cannot run (its declared reason, or that it has no runtime); None if it can."""
    support = SUPPORT.get(block, {}).get(kind)
    if support is None:
        return f"{block} kind '{kind}' has no runtime"
    return support.missing


def needs(block: str, kind: str) -> tuple[str, ...]:
    """What `block kind` needs from the experiment's other blocks."""
    support = SUPPORT.get(block, {}).get(kind)
    return support.needs if support is not None else ()


def provided(kinds: dict[str, str]) -> frozenset[str]:
    """The capabilities the blocks of an experiment provide together (block -> its kind)."""
    out: frozenset[str] = frozenset()
    for block, kind in kinds.items():
        support = SUPPORT.get(block, {}).get(kind)
        if support is not None:
            out |= support.provides
    return out
