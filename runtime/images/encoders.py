"""Image encoders and heads: ResNet-18/50 (CIFAR or ImageNet stem), a small conv net for CPU-sized
experiments, and the MLP head used as SimCLR's projector and BYOL's predictor.

Every constructor takes an explicit torch.Generator for its initialization (no global RNG), so a
run's weights depend only on the plan's `init` seed. `Encoder.features(x)` is the representation
the linear probe reads (after global pooling, before the head); `Encoder.forward(x)` is the head's
output that the loss sees.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from attrs import frozen
from torch import nn


@frozen
class HeadOptions:
    """The projector/predictor MLP's options (the BYOL ablation knobs of loss-operators.md s. 4):
    `batch_norm` in hidden layers, its `affine` parameters, `bias` of the linear layers."""

    batch_norm: bool = True
    affine: bool = True
    bias: bool = True


def mlp_head(n_in: int, widths: Sequence[int], opt: HeadOptions = HeadOptions()) -> nn.Sequential:
    """n_in -> widths[0] -> ... -> widths[-1]: Linear (+ BN) + ReLU between layers, a plain Linear last."""
    layers: list[nn.Module] = []
    sizes = [n_in, *widths]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(widths) - 1
        layers.append(nn.Linear(a, b, bias=opt.bias or last))
        if not last:
            if opt.batch_norm:
                layers.append(nn.BatchNorm1d(b, affine=opt.affine))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.short = _shortcut(c_in, c, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        out = c * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(c_in, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out)
        self.short = _shortcut(c_in, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return torch.relu(self.bn3(self.conv3(h)) + self.short(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


RESNETS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNetTrunk(nn.Module):
    """ResNet without its classifier: (B, 3, H, W) -> (B, F) pooled features (F = 512 or 2048).
    stem "cifar": 3x3 stride-1 conv, no max pool (the official CIFAR variant); "imagenet": 7x7
    stride-2 conv and a 3x3 stride-2 max pool."""

    def __init__(self, depth: int = 18, stem: str = "cifar") -> None:
        super().__init__()
        block, counts = RESNETS[depth]
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
        stages: list[nn.Module] = []
        c_in = 64
        for i, n in enumerate(counts):
            c = 64 * 2**i
            for j in range(n):
                stages.append(block(c_in, c, 2 if (j == 0 and i > 0) else 1))
                c_in = c * block.expansion
        self.stages = nn.Sequential(*stages)
        self.n_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)


class ConvTrunk(nn.Module):
    """A small conv net for CPU-sized runs: `channels` 3x3 conv + BN + ReLU blocks, each but the
    first halving the resolution, then global average pooling."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, 1 if i == 0 else 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.n_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)


class Encoder(nn.Module):
    """A trunk plus a projection head; `features` is what a linear probe reads."""

    def __init__(self, trunk: ResNetTrunk | ConvTrunk, head: Sequence[int], opt: HeadOptions) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = mlp_head(trunk.n_features, head, opt) if head else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.trunk(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.trunk(x))
        return out


def init_weights(module: nn.Module, gen: torch.Generator) -> None:
    """Kaiming-normal convs (fan_out, as torchvision's ResNet), PyTorch's default uniform for linear
    layers, BN at weight 1 / bias 0: all drawn from `gen`, in module order."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            std = (2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.in_features**0.5
            with torch.no_grad():
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_encoder(
    kind: str,
    gen: torch.Generator,
    head: Sequence[int] = (512, 128),
    depth: int = 18,
    stem: str = "cifar",
    channels: Sequence[int] = (32, 64, 128),
    opt: HeadOptions = HeadOptions(),
) -> Encoder:
    """ "resnet" or "convnet" -> an Encoder initialized from `gen` (on the CPU; move it after)."""
    trunk: ResNetTrunk | ConvTrunk = ResNetTrunk(depth, stem) if kind == "resnet" else ConvTrunk(channels)
    enc = Encoder(trunk, head, opt)
    init_weights(enc, gen)
    return enc
