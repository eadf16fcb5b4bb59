"""Data sources: where a run's samples come from, behind one small interface.

A data source draws, on the run's device and from an explicit `torch.Generator`, the views of
one training batch and plain batches for a measurement pass; it says what it can be measured
against (sslspec.spec.kinds: the HLTM provides `latents`, which the latent correlation, the
covariance operator's classes and the theorem check need); and it saves and restores its own
position for a resume (the generators themselves are the run context's and are checkpointed
with it).

- The first implementation is the HLTM (`HLTMSource`): every sample is freshly drawn from the
  tree, so its position is the data generator's state alone and `state_dict` is empty.
- The second will be an image data set (CIFAR-10, STL-10, digits; another issue): the set held on
  the device as one uint8 tensor, batches drawn by index from the data generator and augmented
  on the device with kornia seeded from the same stream, `provides` without `latents` (the
  checker then refuses the latent measurements), a (V, B, C, H, W) view batch instead of
  (V, B, n_leaves), and as its position the epoch's permutation and the cursor in it, which
  `state_dict` returns and `load_state_dict` puts back.

`DATA_SOURCES` maps a `data` kind to its builder (a plain dict: a test adds a toy kind to it,
together with its schema class in sslspec.spec.schema.BLOCKS and its entry in
sslspec.spec.kinds.SUPPORT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from runtime.images.source import ImageSource
from runtime.layout import Layout
from runtime.measure import class_index, n_classes
from runtime.sampler import Edges, Sample, augment_sample, draw_edges, draw_measure_batch, draw_views
from sslspec.spec import schema
from sslspec.spec.schema import Config


class ViewBatch(Protocol):
    """The views of one training batch."""

    def inputs(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, n), its positive view (B, n) and the negatives (H, B, n), as the network's input."""
        ...


class MeasureBatch(Protocol):
    """B plain samples for a measurement pass."""

    def inputs(self, dtype: torch.dtype) -> Tensor:
        """(B, n) the network's input."""
        ...


class DataSource(Protocol):
    """One run's data (see the module docstring). `layout` is the latent tree (None for a source
    without latents); `edges` its per-edge polarities, stored with the run (None without a tree);
    `input_dim` the size of one flat input."""

    layout: Layout | None
    edges: Edges | None
    input_dim: int

    def views(self, batch: int, negatives: int, gen: torch.Generator) -> ViewBatch:
        """The views of one training batch of `batch` examples with `negatives` negatives each."""
        ...

    def measure_batch(self, n: int, gen: torch.Generator) -> MeasureBatch:
        """`n` fresh plain samples for a measurement pass."""
        ...

    def augment(self, batch: MeasureBatch, gen: torch.Generator) -> MeasureBatch:
        """The samples of a measure batch passed through the part of the view augmentation that
        keeps their class (the HLTM's leaf flips), for the covariance operator, whose class means
        average over every augmentation; `batch` itself (and no draw) when there is none. Only
        for sources with latents."""
        ...

    def latents(self, batch: MeasureBatch) -> Sequence[Tensor]:
        """Per latent level (B, N_l) long: the latent states of a measure batch's samples, for
        the latent correlation; only for sources with latents."""
        ...

    def classes(self, batch: MeasureBatch) -> Tensor:
        """(B,) long: the class of each sample of a measure batch, for the covariance operator
        (the joint value of what a positive pair shares); only for sources with latents."""
        ...

    def n_classes(self) -> int:
        """How many values `classes` takes."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The source's position beyond its generators (for a checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back a position saved by `state_dict`."""
        ...


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


class HLTMSource:
    """The hierarchical latent tree model: the tree's layout and its edges, drawn once from the
    run's `tree` seed on the CPU, and fresh samples and views drawn on `device`."""

    def __init__(self, cfg: Config, tree_seed: int, device: torch.device) -> None:
        data = cfg.data
        assert isinstance(data, schema.HLTM) and data.tree is not None, data  # the checker made it explicit
        assert isinstance(cfg.augment, schema.Augment), cfg.augment  # the checker refuses `augment images`
        self.data, self.augmentation = data, cfg.augment
        self.layout: Layout | None = Layout.from_shape(data.tree, data.states)
        self.edges: Edges | None = draw_edges(data, self.layout, _generator(tree_seed, torch.device("cpu")))
        self.input_dim = self.layout.n_leaves
        self.device = device
        self._layout, self._edges = self.layout.to(device), self.edges.to(device)

    def views(self, batch: int, negatives: int, gen: torch.Generator) -> ViewBatch:
        return draw_views(
            self._layout, self._edges, self.data, self.augmentation, batch, negatives, gen, self.device
        )

    def measure_batch(self, n: int, gen: torch.Generator) -> MeasureBatch:
        return draw_measure_batch(self._layout, self._edges, self.data, n, gen, self.device)

    def augment(self, batch: MeasureBatch, gen: torch.Generator) -> MeasureBatch:
        assert isinstance(batch, Sample)
        return augment_sample(self._layout, self.augmentation, batch, gen, self.device)

    def latents(self, batch: MeasureBatch) -> Sequence[Tensor]:
        assert isinstance(batch, Sample)
        return batch.latents

    def classes(self, batch: MeasureBatch) -> Tensor:
        return class_index(self.latents(batch), self.augmentation.share, self.data.states)

    def n_classes(self) -> int:
        assert self.layout is not None
        return n_classes(self.layout, self.augmentation.share, self.data.states)

    def state_dict(self) -> dict[str, Any]:
        return {}  # every sample is fresh: the data generator's state is the whole position

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"an HLTM source has no position to restore (got {sorted(state)})")


# data kind -> (config, tree seed, device) -> its source
SourceBuilder = Callable[[Config, int, torch.device], DataSource]
DATA_SOURCES: dict[str, SourceBuilder] = {
    "hltm": HLTMSource,
    "digits": ImageSource,
    "cifar10": ImageSource,
    "stl10": ImageSource,
}


def build_source(cfg: Config, tree_seed: int, device: torch.device) -> DataSource:
    """The data source of `cfg.data` (its kind was accepted by the checker, so it is here)."""
    kind = schema.kind_of(cfg.data)
    if kind not in DATA_SOURCES:
        raise ValueError(f"no data source for kind {kind!r}")
    return DATA_SOURCES[kind](cfg, tree_seed, device)
