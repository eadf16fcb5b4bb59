"""The image networks (`network resnet`, `network convnet`) behind the interface every network of
a run has (runtime.networks): an `ImageNet` wraps an Encoder (runtime.images.encoders: a conv
trunk and an MLP projection head) so that the trainer, BYOL, the recorder and the measurements
drive it as they drive a LevelNet.

- Input: the data source's flat views, (B, 3 S S), reshaped here to images (B, 3, S, S) (a view
  of the same memory); S comes from the data set and the crop size (runtime.images.source).
- `net(x, views=V)` -> `EncoderForward`: `raw`, the projection head's output (B, D), and `out`,
  what the loss sees: the same tensor, since the image losses normalize it themselves (NT-Xent and
  exact_cov take cosines, BYOL's cosine distance normalizes; the contrastive family on distances,
  which would need a normalized output, is refused with an image network by the checker).
- Batch norm and views: the V views stacked view-major go through the encoder one view at a
  time, so that each view's batch statistics are its own and the running statistics are updated
  once per view in view order (runtime.network's BN_VIEWS, as for the LevelNet).
- `features(x)`: the trunk's globally pooled features, (B, F), what the linear probe and k-NN read.

Initialization (runtime.images.encoders.init_weights) draws every weight from the run's `init`
generator on the CPU, in module order; the network is then cast and moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from runtime.images.encoders import Bottleneck, Encoder, HeadOptions, build_encoder
from runtime.layout import Layout
from sslspec.spec.images import ConvNet, ResNet
from sslspec.spec.schema import Config

FEATURES_DOC = "the trunk's globally pooled features (the encoder), not the projection head's output"


@dataclass(frozen=True)
class EncoderForward:
    """What an image network's forward exposes: the head's output before and after what the
    network does to it (nothing: `out` is `raw`)."""

    raw: Tensor  # (B, D)
    out: Tensor  # (B, D)


class ImageNet(nn.Module):
    """An Encoder on flat views of S x S images (see the module docstring)."""

    features_doc = FEATURES_DOC

    def __init__(self, encoder: Encoder, side: int, out_dim: int) -> None:
        super().__init__()
        self.encoder, self.side, self.out_dim = encoder, side, out_dim

    def images(self, x: Tensor) -> Tensor:
        """(B, 3 S S) flat views -> (B, 3, S, S)."""
        return x.reshape(x.shape[0], 3, self.side, self.side)

    def forward(self, x: Tensor, views: int = 1) -> EncoderForward:
        """x (V B, 3 S S), V views stacked view-major -> the head's output (V B, D)."""
        images = self.images(x).unflatten(0, (views, -1))  # (V, B, 3, S, S)
        raw = torch.cat([self.encoder(v) for v in images])  # batch norm per view
        return EncoderForward(raw, raw)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3 S S) -> (B, F) the trunk's pooled features."""
        return self.encoder.features(self.images(x))


def encoder_features(net: ResNet | ConvNet) -> tuple[int]:
    """The size F of the trunk's features that a network block builds."""
    if isinstance(net, ResNet):
        return (512 * (Bottleneck.expansion if net.depth == 50 else 1),)
    return (net.channels[-1],)


def build_image_network(
    cfg: Config,
    layout: Layout | None,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
    n_in: int | None,
) -> ImageNet:
    """The ImageNet of `cfg.network` on flat inputs of n_in = 3 S S values, initialized from `gen`
    (on the CPU, then cast and moved to `device`)."""
    net = cfg.network
    assert isinstance(net, ResNet | ConvNet) and n_in is not None, net
    side = math.isqrt(n_in // 3)
    assert 3 * side * side == n_in, f"{n_in} inputs are not 3 square channels"
    opt = HeadOptions(net.batch_norm, net.bn_affine, net.bias)
    if isinstance(net, ResNet):
        enc = build_encoder("resnet", gen, net.projector, depth=net.depth, stem=net.stem, opt=opt)
    else:
        enc = build_encoder("convnet", gen, net.projector, channels=net.channels, opt=opt)
    return ImageNet(enc, side, net.projector[-1]).to(dtype=dtype, device=device)
