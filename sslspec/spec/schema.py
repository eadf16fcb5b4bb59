"""The schema: every block kind and field of the language as frozen attrs classes.

These classes are both the checker's source of truth (field names, types, ranges, docs in
each field's metadata) and the Plan's typed configuration that the runtime reads. A field's
metadata holds `type` (a sslspec.spec.fields object) and `doc`.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen

from sslspec.lang import ir
from sslspec.spec.byol import BN_AFFINE_DOC, BN_MEAN_DOC, BN_PART, BN_STD_DOC, BYOLLoss, Predictor
from sslspec.spec.fields import (
    Bad,
    BoolT,
    CallT,
    ChoiceT,
    DeviceT,
    FloatT,
    IntT,
    LayerT,
    ListT,
    PathT,
    Tree,
    TreeT,
    describe,
    fld,
)
from sslspec.spec.images import (
    AUGMENT_STEPS,
    KNN,
    ConvNet,
    ExactCovLoss,
    ImageAugment,
    LinearProbe,
    NTXentLoss,
    ResNet,
)
from sslspec.spec.schedule import CONSTANT, SCHEDULE, SCHEDULE_DOC, Schedule

# ---- calls (values with named arguments) --------------------------------------------------


@frozen
class Constant:
    """A fixed polarity magnitude."""

    value: float = fld(1.0, FloatT(ge=0, le=1), "|rho| of every edge")


@frozen
class Uniform:
    """Polarity magnitudes drawn uniformly from [low, high], once per edge per tree."""

    low: float = fld(0.0, FloatT(ge=0, le=1), "lowest |rho|")
    high: float = fld(1.0, FloatT(ge=0, le=1), "highest |rho|")


@frozen
class Activation:
    """relu, or leaky_relu(slope)."""

    name: str = fld("relu", ChoiceT(("relu", "leaky_relu")), "the nonlinearity")
    slope: float = fld(0.0, FloatT(ge=0, lt=1), "negative-side slope")


@frozen
class _LeakyRelu:
    """max(x, slope * x)."""

    slope: float = fld(0.01, FloatT(ge=0, lt=1), "negative-side slope")


@frozen
class _Relu:
    """max(x, 0)."""


def _constant(node: ir.Value) -> Constant:
    """A bare number is `constant(value = x)`; its errors name the field, not `constant.value`."""
    value_type = attrs.fields(Constant).value.metadata["type"]
    return Constant(value_type.coerce(node))


# The most observed leaves a tree may have: the Plan holds every tree in full, and the runtime
# builds one block of units per node.
MAX_LEAVES = 1 << 16


# The most memory the dense covariance-operator matrices of one measurement may take (float64):
# `covariance_operator.full` (every node's P x P matrix, plus one level's matrices while they are
# built) and the theorem check's within-class term (simple loss, beta != 0: a P x N_l P matrix and
# its accumulator per checked node). The spectrum, trace, norms and the plain check need none.
MAX_OPERATOR_BYTES = 4 << 30
# The operator's per-class sums cost n_classes * sum(N F W D) float64 numbers: the joint values of
# the latents the views share (states ** nodes of levels 0..share) are capped, checked before a run.
MAX_CLASSES = 4096


def _activation(obj: _Relu | _LeakyRelu) -> Activation:
    """`relu` and `leaky_relu(slope)` are both an Activation, told apart by name."""
    if isinstance(obj, _LeakyRelu):
        return Activation("leaky_relu", obj.slope)
    return Activation("relu", 0.0)


def _ordered(obj: Uniform | Constant) -> Uniform | Constant:
    if isinstance(obj, Uniform) and obj.low > obj.high:
        raise Bad(f"'uniform' needs low <= high (got low = {obj.low}, high = {obj.high})")
    return obj


POLARITY = CallT({"uniform": Uniform, "constant": Constant}, scalar=_constant, finish=_ordered)
ACTIVATION = CallT({"relu": _Relu, "leaky_relu": _LeakyRelu}, bare=True, finish=_activation)
REDUCTION = ChoiceT(("batch", "sample"))
POSITIVE_INT = IntT(ge=1)
NODE_LIST = ListT(IntT(ge=0))


# ---- blocks -------------------------------------------------------------------------------


@frozen
class DataBlock:
    """The base of every `data` kind: a data source's configuration (the HLTM today; an image
    data set next). `Config.data` has this type, so code that needs one kind's fields narrows
    with isinstance (the runtime's data sources and the checker's per-kind rules do)."""


@frozen
class HLTM(DataBlock):
    """A hierarchical latent tree model; every sample is freshly drawn."""

    depth: int = fld(5, IntT(ge=1), "edges from the root to a leaf")
    branching: int | None = fld(2, IntT(ge=1), "children per latent node")
    states: int = fld(2, IntT(ge=2), "values each latent variable takes")
    polarity: Constant | Uniform = fld(Uniform(0.7, 1.0), POLARITY, "|rho| of each edge")
    sign: str = fld("random", ChoiceT(("random", "positive")), "sign of each edge's polarity")
    tree: Tree | None = fld(None, TreeT(), "explicit shape: nested lists, an integer = that many leaves")
    leaf_noise: float = fld(0.0, FloatT(ge=0, le=1), "probability an observed leaf is replaced by noise")


IMAGE_SPLIT = ChoiceT(("train", "test", "train+test"))


@frozen
class Digits(DataBlock):
    """scikit-learn's bundled 8 x 8 digits (1,797 images, 10 classes; no download), upscaled
    to `size` and replicated to 3 channels; `train` is a fixed 80% of them, `test` the rest."""

    size: int = fld(32, IntT(ge=8, le=256), "side of the upscaled square images, in pixels")
    split: str = fld("train", IMAGE_SPLIT, "which images train on")


@frozen
class Cifar10(DataBlock):
    """CIFAR-10 read from a local copy (the python pickles or the binary version); never downloaded."""

    root: str | None = fld(None, PathT(), "folder holding cifar-10-batches-py/ or cifar-10-batches-bin/")
    split: str = fld("train", IMAGE_SPLIT, "which images train on")


@frozen
class STL10(DataBlock):
    """STL-10 read from a local copy of its binary version (stl10_binary/); never downloaded."""

    root: str | None = fld(None, PathT(), "folder holding stl10_binary/")
    split: str = fld(
        "train+unlabeled",
        ChoiceT(("train", "test", "unlabeled", "train+unlabeled")),
        "which images train on (the official runs: train+unlabeled, 105,000 images)",
    )


IMAGE_DATA = (Digits, Cifar10, STL10)


def image_side(data: DataBlock) -> int:
    """An image data block -> the side of its square images, in pixels (the views' side unless
    the crop names one)."""
    if isinstance(data, STL10):
        return 96
    return data.size if isinstance(data, Digits) else 32


@frozen
class Augment:
    """How the two views and the negatives are drawn."""

    share: int = fld(0, IntT(ge=0), "the positive view keeps the latents of levels 0..share")
    flip: float = fld(0.0, FloatT(ge=0, le=1), "probability each observed leaf of a view is flipped")
    negative: str = fld("independent", ChoiceT(("independent", "batch")), "where negatives come from")


@frozen
class TreeReLU:
    """One block of `width` units per latent node, mirroring the tree."""

    width: int = fld(10, POSITIVE_INT, "hidden units per latent node")
    bias: bool = fld(True, BoolT(), "a learned bias per unit")
    activation: Activation = fld(Activation(), ACTIVATION, "the nonlinearity after each hidden layer")
    batch_norm: bool = fld(False, BoolT(), "affine batch normalization of the pre-activations")
    normalize: str = fld("l2", ChoiceT(("l2", "none")), "output normalization")
    bn_affine: bool = fld(True, BoolT(), BN_AFFINE_DOC, added=True)
    bn_mean: str = fld("normal", BN_PART, BN_MEAN_DOC, added=True)
    bn_std: str = fld("normal", BN_PART, BN_STD_DOC, added=True)


@frozen
class MLP:
    """A fully connected network on the flattened leaves."""

    widths: tuple[int, ...] = fld((64, 64), ListT(POSITIVE_INT, min_len=1), "units per layer")
    bias: bool = fld(True, BoolT(), "a learned bias per unit")
    activation: Activation = fld(Activation(), ACTIVATION, "the nonlinearity after each hidden layer")
    batch_norm: bool = fld(False, BoolT(), "affine batch normalization of the pre-activations")
    normalize: str = fld("l2", ChoiceT(("l2", "none")), "output normalization")
    bn_affine: bool = fld(True, BoolT(), BN_AFFINE_DOC, added=True)
    bn_mean: str = fld("normal", BN_PART, BN_MEAN_DOC, added=True)
    bn_std: str = fld("normal", BN_PART, BN_STD_DOC, added=True)


@frozen
class SimpleLoss:
    """L = (1 + beta) d_pos - d_neg."""

    beta: float = fld(0.0, FloatT(ge=-1), "extra weight on the positive term")
    reduction: str = fld("sample", REDUCTION, "batch: the official form; sample: per example")


@frozen
class TripletLoss:
    """Soft triplet: tau * log(1 + exp((d_pos - d_neg + margin) / tau))."""

    temperature: float = fld(1.0, FloatT(gt=0), "tau, the softness of the hinge")
    margin: float = fld(0.0, FloatT(ge=0), "added to d_pos - d_neg")
    reduction: str = fld("sample", REDUCTION, "batch: the official form; sample: per example")


@frozen
class InfoNCELoss:
    """InfoNCE with `negatives` negatives per example."""

    temperature: float = fld(0.1, FloatT(gt=0), "tau, dividing the distances in the softmax")
    negatives: int = fld(1, POSITIVE_INT, "negatives per example")
    reduction: str = fld("sample", REDUCTION, "batch: the official form; sample: per example")


@frozen
class SGD:
    """Stochastic gradient descent (torch.optim.SGD)."""

    lr: float = fld(0.1, FloatT(gt=0), "learning rate")
    momentum: float = fld(0.0, FloatT(ge=0, lt=1), "momentum factor")
    weight_decay: float = fld(0.0, FloatT(ge=0), "L2 penalty coefficient")
    schedule: Schedule = fld(CONSTANT, SCHEDULE, SCHEDULE_DOC, added=True)


@frozen
class Adam:
    """Adam (torch.optim.Adam)."""

    lr: float = fld(1e-3, FloatT(gt=0), "learning rate")
    betas: tuple[float, ...] = fld(
        (0.9, 0.999), ListT(FloatT(ge=0, lt=1), 2, 2), "decay rates of the gradient's running moments"
    )
    weight_decay: float = fld(0.0, FloatT(ge=0), "L2 penalty coefficient")
    schedule: Schedule = fld(CONSTANT, SCHEDULE, SCHEDULE_DOC, added=True)


@frozen
class Train:
    """How long to train, on freshly drawn samples."""

    batch: int = fld(128, POSITIVE_INT, "examples per SGD step")
    samples: int = fld(64000, POSITIVE_INT, "fresh samples per epoch, a multiple of batch")
    epochs: int = fld(50, IntT(ge=0), "training epochs")


# ---- measurements -------------------------------------------------------------------------


@frozen
class LatentCorrelation:
    """Pearson correlation of each latent (one-vs-rest per state) with each unit."""


@frozen
class CovarianceOperator:
    """The covariance operator per latent node (tree_relu, mlp), or per layer of an image network:
    OP_A, the covariance over `images` images of each layer's connection averaged over `views`
    augmented views, its top eigenvalues and trace (exact for the head's Linear layers, randomized
    for convs) and the views' noise tr(V) / A in it."""

    top: int = fld(8, POSITIVE_INT, "eigenvalues and eigenvectors kept")
    vectors: bool = fld(True, BoolT(), "store the eigenvectors (epochs x nodes x P x top values)")
    full: bool = fld(False, BoolT(), "also store the whole matrix")
    official: bool = fld(False, BoolT(), "also the official code's 'conn' norm (another index order)")
    # image networks (resnet, convnet): per layer, over `images` images with `views` views each
    layers: tuple[str, ...] | None = fld(
        None,
        ListT(LayerT(), min_len=1),
        "image networks: layers to measure (default: every layer)",
        added=True,
    )
    images: int = fld(64, IntT(ge=2), "image networks: images per measurement", added=True)
    views: int = fld(2, IntT(ge=2), "image networks: augmented views of each image", added=True)
    probes: int = fld(8, IntT(ge=0), "image networks: Hutchinson probes for a conv layer's trace", added=True)
    power: int = fld(2, IntT(ge=0), "image networks: power passes of the randomized eigensolver", added=True)


@frozen
class Weights:
    """Each node's weight matrix."""


@frozen
class LossTrace:
    """The training loss, averaged over each `every` SGD steps."""

    every: int = fld(1, POSITIVE_INT, "SGD steps per recorded value")


@frozen
class TheoremCheck:
    """Mean gradient over M batches against the covariance-operator prediction."""

    batches: tuple[int, ...] = fld((1, 4, 16, 64, 256), ListT(POSITIVE_INT, min_len=1), "values of M")
    nodes: tuple[int, ...] = fld((0,), ListT(IntT(ge=0), min_len=1), "latent nodes (0 = root)")
    epochs: tuple[int, ...] | None = fld(None, ListT(IntT(ge=0)), "epochs to check (default: all measured)")


@frozen
class Collapse:
    """Whether the output collapsed: the per-dimension std of the l2-normalized output over the
    measured samples (about 1/sqrt(D) when spread, 0 when collapsed) and the effective rank of its
    covariance."""


@frozen
class Measure:
    """What to record, at epoch 0, every `every` epochs and after the last."""

    every: int = fld(1, POSITIVE_INT, "epochs between measurements; 0 and the last always")
    samples: int | None = fld(None, POSITIVE_INT, "fresh samples per pass (default: train.samples)")
    latent_correlation: LatentCorrelation | None = fld(None, None)
    covariance_operator: CovarianceOperator | None = fld(None, None)
    weights: Weights | None = fld(None, None)
    loss: LossTrace | None = fld(LossTrace(), None)
    theorem_check: TheoremCheck | None = fld(None, None)
    linear_probe: LinearProbe | None = fld(None, None, added=True)
    knn: KNN | None = fld(None, None, added=True)
    collapse: Collapse | None = fld(None, None, added=True)


# ---- the experiment -----------------------------------------------------------------------

Network = TreeReLU | MLP | ResNet | ConvNet
Loss = SimpleLoss | TripletLoss | InfoNCELoss | BYOLLoss | NTXentLoss | ExactCovLoss
Optimizer = SGD | Adam


@frozen
class Config:
    """One run's configuration, every default explicit (built by sslspec.lang.check)."""

    seed: int
    device: str
    results: str  # results root (relative to the working directory), unless `--out` is given
    data: DataBlock
    augment: Augment | ImageAugment
    network: Network
    loss: Loss
    optimizer: Optimizer
    train: Train
    measure: Measure


# Blocks of an experiment: name -> (kinds, required). A kind of None means the block has none.
BLOCKS: dict[str, tuple[dict[str | None, type], bool]] = {
    "data": ({"hltm": HLTM, "digits": Digits, "cifar10": Cifar10, "stl10": STL10}, True),
    "augment": ({None: Augment, "images": ImageAugment}, False),
    "network": ({"tree_relu": TreeReLU, "mlp": MLP, "resnet": ResNet, "convnet": ConvNet}, True),
    "loss": (
        {
            "simple": SimpleLoss,
            "triplet": TripletLoss,
            "infonce": InfoNCELoss,
            "byol": BYOLLoss,
            "nt_xent": NTXentLoss,
            "exact_cov": ExactCovLoss,
        },
        True,
    ),
    "optimizer": ({"sgd": SGD, "adam": Adam}, True),
    "train": ({None: Train}, False),
    "measure": ({None: Measure}, False),
}

# Sub-blocks that may appear in a block (switched on by a flag, `name = true`, or `name {..}`).
SUBBLOCKS: dict[type, dict[str, type]] = {
    ImageAugment: AUGMENT_STEPS,
    Measure: {
        "latent_correlation": LatentCorrelation,
        "covariance_operator": CovarianceOperator,
        "weights": Weights,
        "loss": LossTrace,
        "theorem_check": TheoremCheck,
        "linear_probe": LinearProbe,
        "knn": KNN,
        "collapse": Collapse,
    },
    BYOLLoss: {"predictor": Predictor},
}

TOP_FIELDS: dict[str, Any] = {"seed": IntT(ge=0), "device": DeviceT(), "results": PathT()}
TOP_DEFAULTS: dict[str, Any] = {"seed": 1, "device": "auto", "results": "results"}
TOP_DOCS: dict[str, str] = {
    "seed": "the run's seed; every random stream's seed is derived from it",
    "device": "where to run (auto: a GPU when there is one); not part of the run's identity",
    "results": "results root, a directory or an fsspec URL (`--out` overrides it)",
}


_KIND_OF: dict[type, str | None] = {cls: kind for kinds, _ in BLOCKS.values() for kind, cls in kinds.items()}


def kind_of(obj: Any) -> str | None:
    """The kind name a config object was built from (`infonce` for InfoNCELoss). Kinds added to
    BLOCKS after import (a test's toy data source) are found by a scan."""
    cls = type(obj)
    if cls in _KIND_OF:
        return _KIND_OF[cls]
    return next((k for kinds, _ in BLOCKS.values() for k, c in kinds.items() if c is cls), None)


def value_fields(cls: type) -> dict[str, attrs.Attribute[Any]]:
    """The fields of a block class that take values (not sub-blocks)."""
    subs = SUBBLOCKS.get(cls, {})
    return {a.name: a for a in attrs.fields(cls) if a.name not in subs}


__all__ = ["BYOLLoss", "Bad", "Predictor", "describe"]
