"""The table of what a run's store holds: every coordinate and variable with its dims, units, long
name, dtype and the measurement that produces it. The writer declares from it (runtime.record's
Recorder loops over it) and readers look names and dims up in it; no other module spells them.

Dims depend on the network: `NET` stands for the network's own nodes (`node` for `tree_relu`,
`layer` for `mlp`), `LAYERS` for the layer axis that an `mlp` puts in front of per-latent-node
variables (nothing for `tree_relu`). `resolve_dims` turns them into names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

NET = "<net>"  # node (tree_relu) or layer (mlp)
LAYERS = "<layers>"  # layer (mlp) or nothing (tree_relu)


@dataclass(frozen=True)
class Entry:
    """One array of a store.

    `measure`: the `measure` block that produces it (None: always written); `option`: a boolean
    field of that block that must be true. `chunk`: along the first dim, one chunk per `row`
    (measured epoch), per training `epoch` (the loss windows of one epoch) or the `whole` array.
    A coordinate with `aux` is a non-index coordinate (its dim is named after another one).
    `result`: the key of the measurement's result (the accumulator's dict, or the theorem check's
    fields) that the writer stores under this name, cropped to the declared shape. `scheduled`:
    only for a run whose optimizer has an lr schedule (its lr changes over the run)."""

    name: str
    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str = "float32"
    measure: str | None = None
    option: str | None = None
    chunk: Literal["row", "epoch", "whole"] = "row"
    aux: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    result: str | None = None  # the key of the measurement's result that the writer stores here
    scheduled: bool = False


def _c(name: str, units: str, long_name: str, dim: str | None = None, **kw: Any) -> Entry:
    return Entry(name, (dim or name,), units, long_name, "int64", chunk="whole", aux=dim is not None, **kw)


_OP, _TC, _LC = "covariance_operator", "theorem_check", "latent_correlation"

COORDS: tuple[Entry, ...] = (
    _c("epoch", "epochs", "training epochs completed when measured (0 = initialization)"),
    _c("level", "1", "latent level (0 = root)"),
    _c("height", "1", "height above the leaves (official numbering)", dim="level"),
    _c("node", "1", "latent node, breadth first (0 = root)"),
    _c("node_level", "1", "level of each latent node", dim="node"),
    _c("node_parent", "1", "parent of each latent node (-1: none)", dim="node"),
    _c("edge", "1", "edge into each non-root latent node, then each leaf"),
    _c("step", "steps", "SGD steps done at the end of the window", measure="loss"),
    _c("unit", "1", "hidden unit of a node (or layer)"),
    _c("layer", "1", "layer of the network (0 = output layer)"),
    # a data variable to xarray (not listed in `coordinates`), as it always was
    Entry("layer_width", ("layer",), "1", "units of each layer", "int64", chunk="whole"),
    _c("state", "1", "latent state (one-vs-rest indicator)", measure="latent_correlation"),
    _c("eig", "1", "eigenvalue rank (0 = largest)", measure=_OP),
    _c(
        "op_index",
        "1",
        "operator row: input i major, unit o minor (= vec(W))",
        measure=_OP,
    ),
    _c(
        "op_index2",
        "1",
        "operator column (same order as op_index)",
        measure=_OP,
        option="full",
    ),
    _c(
        "op_layer",
        "1",
        "measured layer of an image network (its name: the attribute `layers` of layer_op_eigval)",
        measure=_OP,
    ),
    _c(
        "op_layer_size",
        "1",
        "weights P of each measured layer",
        dim="op_layer",
        measure=_OP,
    ),
    _c(
        "op_layer_exact",
        "1",
        "1: the layer's operator formed exactly from K = J^T (x) h; 0: randomized (Ritz values, Hutch++)",
        dim="op_layer",
        measure=_OP,
    ),
    _c("op_eig", "1", "eigenvalue rank of a layer's operator (0 = largest)", measure=_OP),
    _c(
        "op_weight",
        "1",
        "weight of a layer in vec(W) = W.reshape(-1) order (output unit major)",
        measure=_OP,
        option="vectors",
    ),
    _c("input", "1", "input of a node (children in order, then their units)", measure="weights"),
    _c("output", "1", "dimension of the network's output", measure="collapse"),
    _c("tc_node", "1", "network {net} checked by the theorem check", measure="theorem_check"),
    _c("tc_batches", "batches", "M: training batches the gradient is averaged over", measure="theorem_check"),
)

_TC_DIMS = ("epoch", "tc_node", "tc_batches")
_TC_WHAT = "mean gradient g over M batches vs the loss's prediction p = -2 sum_m OP_w[node, m] vec(W_m)"
_TC_SIMPLE = (
    "vs the simple-loss prediction -2 c sum_m (OP - beta V)[node, m] vec(W_m) (the check before issue 11)"
)

VARIABLES: tuple[Entry, ...] = (
    Entry("polarity", ("edge",), "1", "polarity delta of each edge (sign * |rho|)", "float64", chunk="whole"),
    Entry(
        "loss",
        ("step",),
        "1",
        "training loss, mean over {every} SGD step(s)",
        "float64",
        "loss",
        chunk="epoch",
    ),
    Entry(
        "learning_rate",
        ("step",),
        "1",
        "learning rate of the run's optimizer, mean over the {every} SGD step(s) of each loss window",
        "float64",
        "loss",
        chunk="epoch",
        attrs={"comment": "the lr schedule's value per optimizer step (see the `schedule` attribute)"},
        scheduled=True,
    ),
    Entry(
        "corr",
        ("epoch", LAYERS, "node", "state", "unit"),
        "1",
        "Pearson correlation of [latent == state] with the unit's pre-activation",
        measure=_LC,
        attrs={"comment": "one-vs-rest per state; for 2 states, state 1 is the latent value itself"},
        result="corr",
    ),
    Entry(
        "best_corr",
        ("epoch", LAYERS, "node"),
        "1",
        "max over states and units of |corr|",
        measure=_LC,
        result="best",
    ),
    Entry(
        "level_corr",
        ("epoch", LAYERS, "level"),
        "1",
        "mean best_corr of each level",
        measure=_LC,
        result="level_mean",
    ),
    Entry(
        "dead_fraction",
        ("epoch", NET),
        "1",
        "fraction of the {net}'s units inactive (pre-activation <= 0) on every measured sample",
        measure=_LC,
        attrs={"comment": "1 at a node: no unit ever active there, so its correlation cannot leave 0"},
        result="dead_fraction",
    ),
    Entry(
        "op_eigval",
        ("epoch", NET, "eig"),
        "1",
        "top eigenvalues of the covariance operator V_x[K_bar(x)]",
        measure=_OP,
        attrs={"comment": "K_bar averages over every augmentation of the spec, leaf flips included"},
        result="eigvals",
    ),
    Entry(
        "op_eigvec",
        ("epoch", NET, "op_index", "eig"),
        "1",
        "eigenvectors of the covariance operator (columns), NaN beyond the node's size",
        measure=_OP,
        option="vectors",
        result="eigvecs",
    ),
    Entry("op_trace", ("epoch", NET), "1", "trace of the covariance operator", measure=_OP, result="trace"),
    Entry(
        "op_fro", ("epoch", NET), "1", "Frobenius norm of the covariance operator", measure=_OP, result="fro"
    ),
    Entry(
        "op_full",
        ("epoch", NET, "op_index", "op_index2"),
        "1",
        "the whole covariance operator, NaN-padded",
        measure=_OP,
        option="full",
        result="full",
    ),
    Entry(
        "conn_official_fro",
        ("epoch", NET),
        "1",
        "Frobenius norm of the official code's 'conn' matrix (another index order; not the paper's operator)",
        measure=_OP,
        option="official",
        attrs={
            "computed": "on request (official = true), derived from the class-mean connections A "
            "through the smaller Gram matrix; no dense P x P matrix is formed"
        },
        result="conn",
    ),
    Entry(
        "layer_op_eigval",
        ("epoch", "op_layer", "op_eig"),
        "1",
        "top eigenvalues of a layer's covariance operator over images, OP_A = Cov_x[K_bar(x)]",
        "float64",
        measure=_OP,
        attrs={
            "comment": "K_bar(x): the mean over `views` augmented views of image x; E[OP_A] = OP + V / A "
            "(layer_op_view_noise); the network in eval mode"
        },
        result="eigvals",
    ),
    Entry(
        "layer_op_eigvec",
        ("epoch", "op_layer", "op_weight", "op_eig"),
        "1",
        "eigenvectors (Ritz vectors when randomized) of a layer's operator, NaN beyond its size",
        measure=_OP,
        option="vectors",
        result="eigvecs",
    ),
    Entry(
        "layer_op_trace",
        ("epoch", "op_layer"),
        "1",
        "trace of a layer's covariance operator OP_A (exact, or Hutch++)",
        "float64",
        measure=_OP,
        result="trace",
    ),
    Entry(
        "layer_op_trace_stderr",
        ("epoch", "op_layer"),
        "1",
        "standard error of layer_op_trace's Hutchinson part (0 when exact)",
        "float64",
        measure=_OP,
        result="trace_stderr",
    ),
    Entry(
        "layer_op_view_noise",
        ("epoch", "op_layer"),
        "1",
        "tr(V_hat) / A: the views' noise in layer_op_trace (layer_op_trace minus it estimates tr(OP))",
        "float64",
        measure=_OP,
        result="view_noise",
    ),
    Entry(
        "tc_rel_error",
        _TC_DIMS,
        "1",
        f"relative error ||g - p|| / ||g||: {_TC_WHAT}",
        measure=_TC,
        result="rel_error",
    ),
    Entry("tc_cosine", _TC_DIMS, "1", f"cosine(g, p): {_TC_WHAT}", measure=_TC, result="cosine"),
    Entry(
        "tc_rel_error_own",
        _TC_DIMS,
        "1",
        "relative error with the node's own operator block only",
        measure=_TC,
        result="rel_error_own",
    ),
    Entry(
        "tc_cosine_own",
        _TC_DIMS,
        "1",
        "cosine with the node's own operator block only",
        measure=_TC,
        result="cosine_own",
    ),
    Entry("tc_grad_norm", _TC_DIMS, "1", "norm of the mean gradient g", measure=_TC, result="grad_norm"),
    Entry(
        "tc_batch_rel_error",
        _TC_DIMS,
        "1",
        "exact per-batch identity: ||chain-rule form - autograd gradient|| / ||autograd||, means over M",
        measure=_TC,
        attrs={"comment": "sum_{b,k} w_kb (K(a) - K(b)) Delta f ; NaN with batch norm (no per-example K)"},
        result="batch_rel_error",
    ),
    Entry(
        "tc_rel_error_simple",
        _TC_DIMS,
        "1",
        f"relative error {_TC_SIMPLE}",
        measure=_TC,
        result="rel_error_simple",
    ),
    Entry("tc_cosine_simple", _TC_DIMS, "1", f"cosine {_TC_SIMPLE}", measure=_TC, result="cosine_simple"),
    Entry(
        "tc_residue_normalization",
        _TC_DIMS,
        "1",
        "||g - u|| / ||g||: the residue's part the output normalization explains (u: the chain-rule form "
        "with the raw output's K and Delta f, the same weights; 0 without normalization)",
        measure=_TC,
        result="residue_normalization",
    ),
    Entry(
        "tc_residue_other",
        _TC_DIMS,
        "1",
        "||u - p|| / ||g||: the rest of the residue g - p (weights varying with the views, biases, finite M)",
        measure=_TC,
        result="residue_other",
    ),
    Entry(
        "weight",
        ("epoch", NET, "unit", "input"),
        "1",
        "weight matrix of each node, NaN beyond its fan-in",
        measure="weights",
    ),
    Entry("weight_norm", ("epoch", NET), "1", "Frobenius norm of each node's weights", measure="weights"),
    Entry(
        "output_std",
        ("epoch", "output"),
        "1",
        "std over the measured samples of each dimension of the l2-normalized output",
        "float64",
        measure="collapse",
        attrs={"comment": "about 1/sqrt(output size) when the output is spread, 0 when it collapsed"},
        result="std",
    ),
    Entry(
        "output_std_mean",
        ("epoch",),
        "1",
        "mean over the output's dimensions of output_std",
        "float64",
        measure="collapse",
        result="std_mean",
    ),
    Entry(
        "output_eff_rank",
        ("epoch",),
        "1",
        "effective rank exp(entropy of normalized eigenvalues) of the l2-normalized output's covariance",
        "float64",
        measure="collapse",
        attrs={"comment": "scale-free: dimensional collapse; meaningless once output_std is ~0"},
        result="eff_rank",
    ),
    Entry(
        "probe_accuracy",
        ("epoch",),
        "1",
        "linear probe on frozen encoder features: accuracy on the test split",
        "float64",
        measure="linear_probe",
    ),
    Entry(
        "probe_train_accuracy",
        ("epoch",),
        "1",
        "linear probe on frozen encoder features: accuracy on the train split it was fit on",
        "float64",
        measure="linear_probe",
    ),
    Entry(
        "knn_accuracy",
        ("epoch",),
        "1",
        "cosine k-NN accuracy of frozen encoder features",
        "float64",
        measure="knn",
    ),
)

# The readout's variables by what they hold (runtime.images.readout fills them).
READOUT = {"probe": "probe_accuracy", "probe_train": "probe_train_accuracy", "knn": "knn_accuracy"}

BY_NAME: dict[str, Entry] = {e.name: e for e in (*COORDS, *VARIABLES)}
THEOREM = tuple(e.name for e in VARIABLES if e.measure == _TC)


def results_of(measure: str) -> tuple[Entry, ...]:
    """The entries a measurement's results are written to (those with a `result` key)."""
    return tuple(e for e in VARIABLES if e.measure == measure and e.result is not None)


def resolve_dims(dims: Sequence[str], net: str) -> tuple[str, ...]:
    """Table dims -> dim names for a network whose own nodes are `net` ("node" or "layer")."""
    out = []
    for d in dims:
        if d == NET:
            out.append(net)
        elif d == LAYERS:
            out.extend(["layer"] if net == "layer" else [])
        else:
            out.append(d)
    return tuple(out)


def wanted(entry: Entry, measure: Any, scheduled: bool = False) -> bool:
    """Whether a config's `measure` block makes this entry's measurement (and option) produce it;
    `scheduled`: whether the run's optimizer has an lr schedule (entries that need one are
    otherwise never wanted, so a reader that does not know says nothing is missing)."""
    if entry.scheduled and not scheduled:
        return False
    if entry.measure is None:
        return True
    block = getattr(measure, entry.measure)
    return block is not None and (entry.option is None or bool(getattr(block, entry.option)))


# ---- readers' lookups -------------------------------------------------------------------------


def _name(name: str) -> str:
    """A name readers use, checked against the table when this module is imported."""
    if name not in BY_NAME:
        raise KeyError(f"{name!r} is not in the variable table")
    return name


CORR, ROOT_CORR, LEVEL_CORR, LOSS = _name("corr"), _name("best_corr"), _name("level_corr"), _name("loss")
LR = _name("learning_rate")
POLARITY, WEIGHT, WEIGHT_NORM = _name("polarity"), _name("weight"), _name("weight_norm")
OP_EIGVAL, NODE_LEVEL = _name("op_eigval"), _name("node_level")
LAYER_OP_EIGVAL, LAYER_OP_TRACE = _name("layer_op_eigval"), _name("layer_op_trace")
LAYER_OP_VIEW_NOISE, LAYER_OP_TRACE_STDERR = _name("layer_op_view_noise"), _name("layer_op_trace_stderr")
OP_LAYER_SIZE, OP_LAYER_EXACT = _name("op_layer_size"), _name("op_layer_exact")
DEAD_FRACTION = _name("dead_fraction")
TC_REL_ERROR, TC_COSINE = _name("tc_rel_error"), _name("tc_cosine")
TC_BATCH_REL_ERROR, TC_REL_ERROR_SIMPLE = _name("tc_batch_rel_error"), _name("tc_rel_error_simple")
TC_RESIDUE_NORMALIZATION, TC_RESIDUE_OTHER = _name("tc_residue_normalization"), _name("tc_residue_other")
OUTPUT_STD, OUTPUT_STD_MEAN, OUTPUT_EFF_RANK = (
    _name("output_std"),
    _name("output_std_mean"),
    _name("output_eff_rank"),
)

# The root: latent node 0 (level 0); for an mlp, measured against its output layer (layer 0).
ROOT = {"node": 0, "level": 0, "layer": 0}


def root_index(dims: Sequence[str]) -> tuple[int | slice, ...]:
    """An index into an array with `dims` taking each dim of ROOT at the root, keeping the rest."""
    return tuple(ROOT[d] if d in ROOT else slice(None) for d in dims)


def root_values(values: np.ndarray[Any, Any], dims: Sequence[str]) -> np.ndarray[Any, Any]:
    """best_corr (epoch, [layer,] node) or level_corr (epoch, [layer,] level) -> the root's values
    per epoch."""
    return np.asarray(values[root_index(dims)])


def root_of(da: Any) -> Any:
    """An xarray variable over node or level (and, for an mlp, layer) -> its values at the root."""
    return da.isel({d: i for d, i in ROOT.items() if d in da.dims})


def output_layer(da: Any) -> Any:
    """An xarray variable -> its values against an mlp's output layer (unchanged without a layer
    axis), the layer the root correlation is read at."""
    return da.isel(layer=ROOT["layer"]) if "layer" in da.dims else da


def net_dim(da: Any) -> str:
    """The dim of a variable over the network's own nodes (NET): layer for an mlp, else node."""
    return "layer" if "layer" in da.dims else "node"
