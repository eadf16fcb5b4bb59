"""A run's network behind one interface, whichever its kind: what the trainer, the objectives
(BYOL's predictor and target), the recorder and the measurements on images need of it.

`Network` is one of two nn.Modules that share these members:

- `net(x, views=V)`: x (V B, n) the V views of a batch stacked view-major (batch norm
  normalizes each view on its own) -> a forward with `raw` (V B, D), the output before any
  normalization (the collapse measurement reads it), and `out` (V B, D), what the loss sees;
- `features(x)`: (B, n) -> (B, F), the representation a linear probe and k-NN read, and
  `features_doc`, which says what it is (stored with the probe's variables);
- `out_dim`: D.

`LevelNet` (runtime.network: `tree_relu`, `mlp`) also exposes every node's inputs,
pre-activations and Jacobians, which the latent correlation, the covariance operator and the
theorem check read; `ImageNet` (runtime.images.network: `resnet`, `convnet`) exposes the above
only, and the checker admits those measurements only with a network that provides them
(sslspec.spec.kinds). `level_net` narrows a run's network for code that needs a LevelNet.

`NETWORKS` maps a network kind to its builder (a plain dict).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from runtime.images.network import ImageNet, build_image_network
from runtime.layout import Layout
from runtime.network import LevelNet, build_network
from sslspec.spec import schema
from sslspec.spec.schema import Config

Network = LevelNet | ImageNet

# (config, the data's tree or None, the init generator, dtype, device, flat input size) -> network
Builder = Callable[[Config, Layout | None, torch.Generator, torch.dtype, torch.device, int | None], Network]
NETWORKS: dict[str, Builder] = {
    "tree_relu": build_network,
    "mlp": build_network,
    "resnet": build_image_network,
    "convnet": build_image_network,
}


def build(
    cfg: Config,
    layout: Layout | None,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    n_in: int,
) -> Network:
    """The network of `cfg.network` on inputs of size `n_in`, initialized from `gen` (on the CPU) and
    moved to `device`."""
    kind = schema.kind_of(cfg.network)
    assert kind is not None and kind in NETWORKS, cfg.network
    return NETWORKS[kind](cfg, layout, gen, dtype, torch.device("cpu"), n_in).to(device)


def level_net(net: Network) -> LevelNet:
    """`net` as a LevelNet, for the measurements that only a LevelNet supports (the checker refuses
    them with any other network)."""
    assert isinstance(net, LevelNet), f"{type(net).__name__} has no per-node inputs or Jacobians"
    return net
