"""The blocks image experiments add: `augment images { ... }`, the steps of both views'
pipeline, the image networks `resnet` and `convnet` (a trunk and an MLP projection head), the
two-view losses `nt_xent` and `exact_cov`, and the measurements on labelled images,
`linear_probe` and `knn`.

Each step is a sub-block, on with the official SimCLR CIFAR-10 parameters by default (crop, flip,
color jitter, grayscale, normalize) or off by default (blur, solarize); `name = false` removes a
step, `name { field = value }` changes it, `name = true` switches an off step on with its
defaults. The STL-10 configuration (stronger jitter, blur, no normalization) is written out in
specs/images/stl10_simclr.ssl. The runtime executes the steps in this order, batched with kornia
(runtime.images.augment); without an `augment images` block an image data set uses its own
official pipeline.
"""

from __future__ import annotations

from attrs import frozen

from sslspec.spec.byol import BN_AFFINE_DOC
from sslspec.spec.fields import BoolT, ChoiceT, FloatT, IntT, ListT, fld

PROBABILITY = FloatT(ge=0, le=1)
RANGE = ListT(FloatT(gt=0), 2, 2)


@frozen
class Crop:
    """Random resized crop: a random area fraction and aspect ratio, resized to `size`."""

    size: int | None = fld(None, IntT(ge=1), "output side in pixels (default: the data set's image side)")
    scale: tuple[float, ...] = fld((0.08, 1.0), ListT(FloatT(gt=0, le=1), 2, 2), "[min, max] area fraction")
    ratio: tuple[float, ...] = fld((3 / 4, 4 / 3), RANGE, "[min, max] aspect ratio")


@frozen
class Flip:
    """Horizontal flip."""

    p: float = fld(0.5, PROBABILITY, "probability per image")


@frozen
class ColorJitter:
    """Random brightness, contrast, saturation and hue, applied together with probability p."""

    brightness: float = fld(0.4, FloatT(ge=0), "brightness factor range 1 +- this")
    contrast: float = fld(0.4, FloatT(ge=0), "contrast factor range 1 +- this")
    saturation: float = fld(0.4, FloatT(ge=0), "saturation factor range 1 +- this")
    hue: float = fld(0.1, FloatT(ge=0, le=0.5), "hue shift range +- this (a fraction of a turn)")
    p: float = fld(0.8, PROBABILITY, "probability per image")


@frozen
class Grayscale:
    """Conversion to grey (kept as 3 channels)."""

    p: float = fld(0.2, PROBABILITY, "probability per image")


@frozen
class Blur:
    """Gaussian blur with a random sigma."""

    kernel: int = fld(9, IntT(ge=3), "kernel side in pixels (odd)")
    sigma: tuple[float, ...] = fld((0.1, 2.0), RANGE, "[min, max] of the uniform sigma")
    p: float = fld(1.0, PROBABILITY, "probability per image")


@frozen
class Solarize:
    """Pixels above `threshold` inverted."""

    threshold: float = fld(0.5, PROBABILITY, "intensity above which pixels are inverted")
    p: float = fld(0.2, PROBABILITY, "probability per image")


@frozen
class Normalize:
    """Per-channel (x - mean) / std, last."""

    mean: tuple[float, ...] = fld((0.4914, 0.4822, 0.4465), ListT(FloatT(), 3, 3), "per channel")
    std: tuple[float, ...] = fld((0.2023, 0.1994, 0.2010), ListT(FloatT(gt=0), 3, 3), "per channel")


@frozen
class ImageAugment:
    """Both views' augmentation pipeline for image data (steps in this order)."""

    crop: Crop | None = fld(Crop(), None)
    flip: Flip | None = fld(Flip(), None)
    color_jitter: ColorJitter | None = fld(ColorJitter(), None)
    grayscale: Grayscale | None = fld(Grayscale(), None)
    blur: Blur | None = fld(None, None)
    solarize: Solarize | None = fld(None, None)
    normalize: Normalize | None = fld(Normalize(), None)


AUGMENT_STEPS: dict[str, type] = {
    "crop": Crop,
    "flip": Flip,
    "color_jitter": ColorJitter,
    "grayscale": Grayscale,
    "blur": Blur,
    "solarize": Solarize,
    "normalize": Normalize,
}


WIDTHS = ListT(IntT(ge=1), min_len=1)
PROJECTOR_DOC = "the projection head's layer widths: hidden layers, then the output the loss sees"
HEAD_BN_DOC = "batch normalization after each hidden layer of the projection head (before its ReLU)"
HEAD_BIAS_DOC = "a learned bias in the projection head's hidden layers (its output layer always has one)"
RESNET_DEPTHS = (18, 50)


@frozen
class ResNet:
    """A ResNet encoder (its pooled features are what the linear probe reads) and an MLP
    projection head on them (Linear, batch norm, ReLU per hidden layer, then a Linear)."""

    depth: int = fld(
        18, IntT(one_of=RESNET_DEPTHS), "18 (basic blocks, 512 features) or 50 (bottlenecks, 2048 features)"
    )
    stem: str = fld(
        "cifar",
        ChoiceT(("cifar", "imagenet")),
        "cifar: a 3x3 stride-1 first conv and no max pool; imagenet: 7x7 stride 2 and a max pool",
    )
    projector: tuple[int, ...] = fld((512, 128), WIDTHS, PROJECTOR_DOC)
    batch_norm: bool = fld(True, BoolT(), HEAD_BN_DOC)
    bn_affine: bool = fld(True, BoolT(), BN_AFFINE_DOC)
    bias: bool = fld(True, BoolT(), HEAD_BIAS_DOC)


@frozen
class ConvNet:
    """A small conv net for CPU-sized runs (3x3 conv, batch norm, ReLU blocks, then global average
    pooling: the features the linear probe reads) and an MLP projection head like resnet's."""

    channels: tuple[int, ...] = fld(
        (32, 64, 128), WIDTHS, "output channels of each block; every block after the first halves the side"
    )
    projector: tuple[int, ...] = fld((128, 64), WIDTHS, PROJECTOR_DOC)
    batch_norm: bool = fld(True, BoolT(), HEAD_BN_DOC)
    bn_affine: bool = fld(True, BoolT(), BN_AFFINE_DOC)
    bias: bool = fld(True, BoolT(), HEAD_BIAS_DOC)


IMAGE_NETWORKS = (ResNet, ConvNet)


@frozen
class NTXentLoss:
    """NT-Xent (SimCLR): over the 2B projections of a batch's two views, each view's positive is
    the other view of its image and its negatives the 2B - 2 others; cosine similarity / tau."""

    temperature: float = fld(0.5, FloatT(gt=0), "tau, dividing the cosine similarities")


@frozen
class ExactCovLoss:
    """The official covariance-operator surrogate: NT-Xent's weights on the distances
    r = 1 - cosine, detached, so that its gradient is a weighted covariance operator exactly."""

    temperature: float = fld(0.5, FloatT(gt=0), "tau of the negative weights exp(-r / tau)")
    beta: float = fld(0.0, FloatT(ge=-1), "extra weight on the positive term (1 + beta)")


@frozen
class LinearProbe:
    """Logistic regression on the frozen encoder features of the data set's labelled train split,
    accuracy on its test split (the final model, or the weight decay chosen on a held-out part of
    the train split; never selected on the test split)."""

    selection: str = fld("last", ChoiceT(("last", "validation")), "how the probe's weight decay is chosen")


@frozen
class KNN:
    """Cosine k-nearest-neighbour accuracy of the test split's features against the train split's."""

    k: int = fld(200, IntT(ge=1), "neighbours that vote")
