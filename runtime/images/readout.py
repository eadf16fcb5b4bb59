"""Reading a frozen representation out on labelled images: the linear probe and the k-NN accuracy
of one measurement pass.

The features are the encoder's, not the projection head's (`features` of runtime.networks): for an
`mlp` network, the input of its output layer (the last hidden layer's activations; the output
layer is the head); for `resnet` and `convnet`, the trunk's pooled features. Both labelled
splits of the data set (its train and test splits, whatever split the run trains on) are read once
per run, resized and normalized as the views are but not augmented, and passed through the network
in eval mode in chunks. The probe's selection rule (the final model, or a weight decay chosen on a
held-out part of the train split, never on the test split) is stored with its variables.
"""

from __future__ import annotations

from typing import Any

import torch

from runtime.images.evaluate import Split, knn, linear_probe
from runtime.images.source import ImageSource
from runtime.networks import Network
from sslspec.store.variables import READOUT

CHUNK = 1024  # images per forward pass


def features(net: Network, source: ImageSource, pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 3, H, W) uint8 on the device -> (N, F) the encoder's features, on the CPU."""
    gen = torch.Generator(device=pixels.device)  # the plain view draws nothing random
    out = []
    for start in range(0, pixels.shape[0], CHUNK):
        x = source.plain_view(pixels[start : start + CHUNK], gen).flatten(1).to(dtype)
        out.append(net.features(x).detach().cpu())  # (B, F): the encoder's features
    return torch.cat(out)


@torch.no_grad()
def readout(
    net: Network, source: ImageSource, dtype: torch.dtype, probe: Any, neighbours: Any
) -> dict[str, float]:
    """The probe's test and train accuracy (when `probe`, a LinearProbe config, is given) and the
    k-NN accuracy (when `neighbours`, a KNN config, is)."""
    train, test = source.labelled()
    splits = [
        Split(features(net, source, s.pixels.to(source.device), dtype), s.labels) for s in (train, test)
    ]
    out: dict[str, float] = {}
    if probe is not None:
        with torch.enable_grad():
            res = linear_probe(splits[0], splits[1], selection=probe.selection)
        out |= {READOUT["probe"]: res.accuracy, READOUT["probe_train"]: res.train_accuracy}
    if neighbours is not None:
        out[READOUT["knn"]] = knn(splits[0], splits[1], k=neighbours.k)
    return out
