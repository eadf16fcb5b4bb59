"""Batched image augmentations with kornia, reproducible from the plan's data generator.

`Pipeline(aug, size)` turns an `augment images` block (sslspec.spec.images) into a function from a
batch of uint8 images (B, 3, H, W) to float views (B, 3, size, size), drawing different random
parameters per image (kornia), on whatever device the batch is on. kornia draws from torch's
global generator, so each call forks the global RNG state and seeds it with a number drawn from
the run's own data generator: the views depend only on that generator's state (checkpointed for
resume), never on what else used the global RNG.
A CPU and a CUDA run draw different numbers for the same seed.
kornia draws every parameter and picks the images each step applies to; the two steps it runs
slowly on small images (the resized crop and the color jitter) are computed batched by
runtime.images.batched_steps (equal to kornia's up to float32 rounding, tested).

The block's defaults are the official SimCLR CIFAR-10 pipeline (`CIFAR10_STEPS`); `STL10_STEPS`
is the STL-10 one (stronger jitter, blur, no normalization). A step's `p` is its probability per
image.
"""

from __future__ import annotations

from typing import Any

import torch

from sslspec.spec.images import Blur, ColorJitter, ImageAugment

MAX_SEED = 2**62

# The official pipelines: CIFAR-10 is the language's default `augment images`; STL-10 has
# stronger color jitter, a blur and no normalization.
CIFAR10_STEPS = ImageAugment()
STL10_STEPS = ImageAugment(color_jitter=ColorJitter(0.8, 0.8, 0.8, 0.2, 0.8), blur=Blur(), normalize=None)


def _modules(aug: ImageAugment, size: int, reference: bool = False) -> list[Any]:
    """The pipeline's steps -> kornia modules, in order (kornia is imported only for image runs).

    The resized crop and the color jitter are runtime.images.batched_steps' subclasses of kornia's
    modules (kornia's parameters and draws, the image operation batched), and every random step
    chooses its images by lerp; with `reference`, kornia's own modules throughout (the tests and
    the benchmark compare the two)."""
    import kornia.augmentation as K

    from runtime.images import batched_steps

    S: Any = K if reference else batched_steps
    mods: list[Any] = []
    if aug.crop is not None:
        mods.append(S.RandomResizedCrop((size, size), scale=aug.crop.scale, ratio=aug.crop.ratio))
    else:
        mods.append(K.Resize((size, size)))
    if aug.flip is not None:
        mods.append(S.RandomHorizontalFlip(p=aug.flip.p))
    if (j := aug.color_jitter) is not None:
        mods.append(S.ColorJitter(j.brightness, j.contrast, j.saturation, j.hue, p=j.p))
    if aug.grayscale is not None:
        mods.append(S.RandomGrayscale(p=aug.grayscale.p))
    if (b := aug.blur) is not None:
        mods.append(S.RandomGaussianBlur((b.kernel, b.kernel), b.sigma, p=b.p))
    if (s := aug.solarize) is not None:
        # a (min, max) pair is kornia's range of thresholds itself: (t, t) fixes it at t
        mods.append(S.RandomSolarize(thresholds=(s.threshold, s.threshold), additions=0.0, p=s.p))
    if (n := aug.normalize) is not None:
        mods.append(K.Normalize(mean=torch.tensor(n.mean), std=torch.tensor(n.std)))
    return mods


class Pipeline:
    """An `augment images` pipeline applied to uint8 batches; one call is one view of each image.
    `size` is the output side when the crop does not name one (or there is no crop); `reference`:
    kornia's own modules for every step (slower; equal up to float32 rounding)."""

    def __init__(self, aug: ImageAugment, size: int, reference: bool = False) -> None:
        self.aug = aug
        self.size = aug.crop.size if aug.crop is not None and aug.crop.size is not None else size
        self.mods = torch.nn.Sequential(*_modules(aug, self.size, reference))

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
