"""The blocks BYOL adds: `loss byol` with its `predictor` sub-block, and the batch-norm options of
the BYOL ablation (loss-operators.md section 4), which the networks (sslspec.spec.schema) and the
predictor share: `bn_affine`, and `bn_mean`, `bn_std`, each batch statistic applied normally,
computed but detached from the gradient, or omitted (runtime.batchnorm)."""

from __future__ import annotations

from attrs import frozen

from sslspec.spec.fields import BoolT, ChoiceT, FloatT, IntT, fld

BN_PART = ChoiceT(("normal", "detach", "omit"))
BN_AFFINE_DOC = "batch norm: a learned scale and shift after normalizing"
BN_MEAN_DOC = (
    "batch norm: the batch mean subtracted normally, without its gradient (detach) or not at all (omit)"
)
BN_STD_DOC = (
    "batch norm: divided by the batch std normally, without its gradient (detach) or not at all (omit)"
)


@frozen
class Predictor:
    """BYOL's predictor on the online network's output (D units): `mlp` is D -> width -> D with a
    ReLU after the hidden layer, `linear` one D -> D layer; batch norm (per view, batch statistics
    only) after the first layer: the mlp's hidden layer, the linear predictor's output."""

    layers: str = fld("mlp", ChoiceT(("mlp", "linear")), "mlp: D -> width -> D; linear: D -> D")
    width: int = fld(32, IntT(ge=1), "hidden units of an mlp predictor")
    bias: bool = fld(True, BoolT(), "a learned bias per unit")
    batch_norm: bool = fld(True, BoolT(), "batch normalization after the first layer")
    bn_affine: bool = fld(True, BoolT(), BN_AFFINE_DOC)
    bn_mean: str = fld("normal", BN_PART, BN_MEAN_DOC)
    bn_std: str = fld("normal", BN_PART, BN_STD_DOC)
    optimizer: str = fld(
        "main",
        ChoiceT(("main", "own")),
        "main: stepped by the run's optimizer; own: a second optimizer of the same kind and settings",
    )
    lr: float | None = fld(None, FloatT(gt=0), "the own optimizer's learning rate (default: the run's)")


@frozen
class BYOLLoss:
    """BYOL: a predictor on the online network's output regresses a target network's output on
    the other view (stop-gradient), symmetrized over the two views; the target is an exponential
    moving average of the online network's parameters (batch-norm buffers are not averaged).
    `predictor = false`: no predictor (with momentum 0, SimSiam without its predictor)."""

    momentum: float = fld(0.996, FloatT(ge=0, le=1), "EMA rate m: target <- m target + (1 - m) online")
    target: str = fld(
        "independent",
        ChoiceT(("independent", "copy")),
        "the target's first weights: its own random draw (the official code) or the online network's",
    )
    distance: str = fld(
        "cosine",
        ChoiceT(("cosine", "mse")),
        "cosine: 2 - 2 cos on l2-normalized outputs; mse: squared distance of the outputs as they are",
    )
    predictor: Predictor | None = fld(Predictor(), None)
