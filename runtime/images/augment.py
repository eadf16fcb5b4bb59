"""Batched image augmentations with kornia, reproducible from the plan's data generator.

`Pipeline(steps, size)` turns a batch of uint8 images (B, 3, H, W) into float views
(B, 3, size, size), drawing different random parameters per image (kornia), on whatever device
the batch is on. kornia draws from torch's global generator, so each call forks the global RNG
state and seeds it with a number drawn from the run's own data generator: the views depend only
on that generator's state (checkpointed for resume), never on what else used the global RNG.
A CPU and a CUDA run draw different numbers for the same seed.

The steps and their defaults are the official SimCLR CIFAR-10 pipeline; `STL10_STEPS` is the
STL-10 one (blur, no normalization). A step's `p` is its probability per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from attrs import frozen

MAX_SEED = 2**62


@frozen
class ResizedCrop:
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@frozen
class HorizontalFlip:
    p: float = 0.5


@frozen
class ColorJitter:
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8


@frozen
class Grayscale:
    p: float = 0.2


@frozen
class GaussianBlur:
    kernel: int = 9
    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 1.0


@frozen
class Solarize:
    p: float = 0.0
    threshold: float = 0.5


@frozen
class Normalize:
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)


Step = ResizedCrop | HorizontalFlip | ColorJitter | Grayscale | GaussianBlur | Solarize | Normalize

CIFAR10_STEPS: tuple[Step, ...] = (ResizedCrop(), HorizontalFlip(), ColorJitter(), Grayscale(), Normalize())
STL10_STEPS: tuple[Step, ...] = (
    ResizedCrop(),
    HorizontalFlip(),
    ColorJitter(0.8, 0.8, 0.8, 0.2),
    Grayscale(),
    GaussianBlur(),
)


def _module(step: Step, size: int) -> Any:
    """One step -> its kornia module (imported here: kornia is needed only for image runs)."""
    import kornia.augmentation as K

    if isinstance(step, ResizedCrop):
        return K.RandomResizedCrop((size, size), scale=step.scale, ratio=step.ratio)
    if isinstance(step, HorizontalFlip):
        return K.RandomHorizontalFlip(p=step.p)
    if isinstance(step, ColorJitter):
        return K.ColorJitter(step.brightness, step.contrast, step.saturation, step.hue, p=step.p)
    if isinstance(step, Grayscale):
        return K.RandomGrayscale(p=step.p)
    if isinstance(step, GaussianBlur):
        return K.RandomGaussianBlur((step.kernel, step.kernel), step.sigma, p=step.p)
    if isinstance(step, Solarize):
        return K.RandomSolarize(thresholds=0.0, additions=0.0, p=step.p)
    mean, std = torch.tensor(step.mean), torch.tensor(step.std)
    return K.Normalize(mean=mean, std=std)


class Pipeline:
    """A sequence of steps applied to uint8 batches; one call is one view of each image."""

    def __init__(self, steps: Sequence[Step], size: int) -> None:
        self.steps, self.size = tuple(steps), size
        mods = [_module(s, size) for s in self.steps if not (isinstance(s, Solarize) and s.p == 0)]
        if not any(isinstance(s, ResizedCrop) for s in self.steps):
            import kornia.augmentation as K

            mods.insert(0, K.Resize((size, size)))
        self.mods = torch.nn.Sequential(*mods)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, size, size) float32 views; consumes one draw of `gen`."""
        seed = int(torch.randint(0, MAX_SEED, (1,), generator=gen, device=gen.device).item())
        x = images.to(torch.float32) / 255.0
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=images.device.type):
            torch.manual_seed(seed)
            out: torch.Tensor = self.mods(x)
        return out

    def views(self, images: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of each image (SimCLR / BYOL): two draws of `gen`."""
        return self(images, gen), self(images, gen)
