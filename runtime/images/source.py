"""The image data source: a data set held on the device, batches drawn by index, two augmented views.

`ImageSource` reads its data set once (runtime.images.datasets: one uint8 tensor (N, 3, H, W)),
moves it to the run's device once, and draws each training batch as `batch` indices from the
current epoch's permutation of the set (a fresh permutation from the data generator when one is
used up; an epoch of the spec, `train.samples`, need not be a pass over the set). Each image gets
two views from the run's `augment images` pipeline, else the data set's official one
(runtime.images.augment, seeded from the same data generator); negatives, when the loss wants
them, are views of further images drawn the same way. The inputs are flattened, (B, 3 S S), for
the networks that take flat inputs.

Its position is the permutation and the cursor in it (`state_dict`), so a resumed run draws the
same batches. A measurement batch is `n` images drawn with replacement from the measure
generator, resized and normalized but not augmented. It provides no latents: the checker refuses
the latent measurements on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from runtime.images import augment
from runtime.images.datasets import DataError, Images, read
from runtime.layout import Layout
from runtime.sampler import Edges
from sslspec.errors import Diagnostic, SpecError
from sslspec.spec import schema
from sslspec.spec.images import ImageAugment
from sslspec.spec.plan import Plan
from sslspec.spec.schema import Config


def images_of(data: schema.DataBlock, split: str | None = None) -> Images:
    """The images an image data block names, or those of another `split` of its data set
    (DataError when its copy is missing or malformed)."""
    if isinstance(data, schema.Digits):
        return read("digits", split=split or data.split, size=data.size)
    assert isinstance(data, schema.Cifar10 | schema.STL10), data
    return read(schema.kind_of(data) or "", data.root, split or data.split)


def steps_of(cfg: Config) -> tuple[ImageAugment, int]:
    """The run's augmentation pipeline (its `augment images` block, else the data set's official
    one) and the views' side."""
    aug = cfg.augment
    if not isinstance(aug, ImageAugment):
        aug = augment.STL10_STEPS if isinstance(cfg.data, schema.STL10) else augment.CIFAR10_STEPS
    crop = aug.crop
    size = crop.size if crop is not None and crop.size is not None else schema.image_side(cfg.data)
    return aug, size


class Flat:
    """Views of a batch as the network's flat inputs."""

    def __init__(self, x: Tensor, pos: Tensor, neg: Tensor) -> None:
        self.x, self.pos, self.neg = x, pos, neg  # (B, 3, S, S), (B, 3, S, S), (H, B, 3, S, S)

    def inputs(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return self.x.flatten(1).to(dtype), self.pos.flatten(1).to(dtype), self.neg.flatten(2).to(dtype)


class Plain:
    """A measurement batch: (B, 3, S, S) images and their (B,) labels."""

    def __init__(self, x: Tensor, labels: Tensor) -> None:
        self.x, self.labels = x, labels

    def inputs(self, dtype: torch.dtype) -> Tensor:
        return self.x.flatten(1).to(dtype)


class ImageSource:
    """A data set on `device`, drawn by index (see the module docstring)."""

    def __init__(self, cfg: Config, tree_seed: int, device: torch.device) -> None:
        images = images_of(cfg.data)
        steps, size = steps_of(cfg)
        self.layout: Layout | None = None
        self.edges: Edges | None = None
        self.input_dim = 3 * size * size
        self.device = device
        self.pixels = images.pixels.to(device)  # (N, 3, H, W) uint8, moved once
        self.labels = images.labels.to(device)  # (N,)
        self.train_views = augment.Pipeline(steps, size)
        plain = ImageAugment(None, None, None, None, None, None, steps.normalize)
        self.plain_view = augment.Pipeline(plain, size)  # resized and normalized only
        self.order = torch.empty(0, dtype=torch.long)  # this pass's permutation, on the CPU
        self.cursor = 0
        self.data = cfg.data
        self._labelled: tuple[Images, Images] | None = None

    def labelled(self) -> tuple[Images, Images]:
        """The data set's labelled train and test splits (read on first use), for the probe."""
        if self._labelled is None:
            self._labelled = (images_of(self.data, "train"), images_of(self.data, "test"))
        return self._labelled

    def _indices(self, n: int, gen: torch.Generator) -> Tensor:
        """The next `n` indices of the current permutation, drawing a new one when it runs out."""
        out = []
        while n > 0:
            if self.cursor >= len(self.order):
                perm = torch.randperm(len(self.pixels), generator=gen, device=gen.device)
                self.order, self.cursor = perm.cpu(), 0
            take = self.order[self.cursor : self.cursor + n]
            out.append(take)
            self.cursor += len(take)
            n -= len(take)
        return torch.cat(out).to(self.device)

    def views(self, batch: int, negatives: int, gen: torch.Generator) -> Flat:
        index = self._indices(batch * (1 + negatives), gen)  # (B (1 + H),)
        images = self.pixels[index[:batch]]
        x, pos = self.train_views.views(images, gen)
        if negatives:
            neg = self.train_views(self.pixels[index[batch:]], gen).unflatten(0, (negatives, batch))
        else:
            neg = x.new_empty(0, *x.shape)
        return Flat(x, pos, neg)

    def measure_batch(self, n: int, gen: torch.Generator) -> Plain:
        index = torch.randint(len(self.pixels), (n,), generator=gen, device=gen.device).to(self.device)
        return Plain(self.plain_view(self.pixels[index], gen), self.labels[index])

    def augment(self, batch: Any, gen: torch.Generator) -> Any:
        raise AssertionError("the checker refuses measurements that need latents on image data")

    def latents(self, batch: Any) -> Sequence[Tensor]:
        raise AssertionError("the checker refuses measurements that need latents on image data")

    def classes(self, batch: Any) -> Tensor:
        raise AssertionError("the checker refuses measurements that need latents on image data")

    def n_classes(self) -> int:
        raise AssertionError("the checker refuses measurements that need latents on image data")

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.clone(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.cursor = state["order"].clone(), int(state["cursor"])


def check_data(plans: Sequence[Plan]) -> None:
    """Read every image data set the plans' runs name, once each, before anything runs: the split
    each trains on, and the labelled train and test splits when a run reads out its features (the
    probe, k-NN). A missing or malformed copy is a SpecError (exit 2) naming the spec, the file and
    what was expected."""
    seen: set[tuple[schema.DataBlock, str]] = set()
    problems = []
    for plan in plans:
        for run in plan.runs:
            data, m = run.config.data, run.config.measure
            if not isinstance(data, schema.IMAGE_DATA):
                continue
            readout = ("train", "test") if m.linear_probe is not None or m.knn is not None else ()
            for split in (data.split, *readout):
                if (data, split) in seen:
                    continue
                seen.add((data, split))
                try:
                    images_of(data, split)
                except DataError as exc:
                    problems.append(Diagnostic(f"{plan.spec}: {exc}"))
    if problems:
        raise SpecError(problems)
