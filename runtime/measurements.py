"""Running the measurements of one epoch: the network's own nodes (tree nodes or mlp layers), one
pass of fresh samples through the accumulators of runtime.measure, and the theorem check; the
Recorder (runtime.record) writes what they give."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from runtime.activity import DeadUnits
from runtime.collapse import OutputSpread
from runtime.connections import Scratch
from runtime.context import RunContext
from runtime.images.measure import head_check, measure_images
from runtime.images.network import encoder_features
from runtime.images.readout import readout
from runtime.images.source import ImageSource
from runtime.layout import Layout
from runtime.measure import CovarianceOperator, LatentCorrelation
from runtime.network import Forward, LevelNet
from runtime.networks import level_net
from runtime.objective import Contrastive
from runtime.sampler import Views
from runtime.source import ViewBatch
from runtime.theorem import TheoremResult, theorem_check
from sslspec.spec import schema
from sslspec.spec.images import IMAGE_NETWORKS
from sslspec.spec.schema import Config

CHUNK = 4096  # measurement samples per batched pass
# Samples per forward in a chunk, by device type (a whole chunk where none is named): the latent
# correlation, the dead units and the output's spread read a whole forward block at once; on the
# CPU each of the ~100 small ops of a forward and its accumulators costs microseconds however few
# its samples, so bigger blocks amortize them, up to where the activations leave the cache.
FORWARD = {"cpu": 1024}
# Samples per Jacobian block within a forward block (at most; `block_size`): on the CPU a block's
# Jacobians stay in cache for the operator's class sums that read them; a GPU wants whole chunks.
BLOCK = {"cpu": 512}
JACOBIAN_NUMBERS = 1 << 20  # a CPU block's Jacobians at most (4 MiB of float32), down to MIN_BLOCK
MIN_BLOCK = 64  # samples: fewer would make each class-sum product (N, F, b) @ (N, b, D W) as costly to
# write out as to compute (its output is F D W a node whatever b), which is what wide nets have


@dataclass(frozen=True)
class NetNodes:
    """The network's own nodes, which weights and operators are indexed by: the latent nodes for
    `tree_relu` (dim `node`), the layers for `mlp` (dim `layer`, 0 = the output layer)."""

    dim: str
    widths: tuple[int, ...]  # units of each network node
    fan_in: tuple[int, ...]  # inputs of each network node
    levels: tuple[int, ...]  # network nodes per level of the network (tree levels, or 1 per layer)

    @classmethod
    def of(cls, cfg: Config, layout: Layout | None, n_in: int) -> NetNodes:
        """The nodes of `cfg.network` on inputs of size `n_in` (a tree network: of `layout`)."""
        net = cfg.network
        if isinstance(net, IMAGE_NETWORKS):  # the projection head's output layer only
            head = (*encoder_features(net), *net.projector)
            return cls("layer", (head[-1],), (head[-2],), (1,))
        if isinstance(net, schema.MLP):
            widths = tuple(reversed(net.widths))  # level 0 = output layer
            fan_in = (*widths[1:], n_in)
            return cls("layer", widths, fan_in, (1,) * len(widths))
        assert layout is not None
        kids = torch.cat([m.sum(1) for m in layout.child_mask])  # (n_latent,)
        w = net.width
        last = layout.n_latent - layout.sizes[-1]  # parents of leaves take one input per child
        fan_in = tuple(int(k) * (w if i < last else 1) for i, k in enumerate(kids))
        return cls("node", (w,) * layout.n_latent, fan_in, layout.sizes)

    @property
    def count(self) -> int:
        return len(self.widths)

    def level_fan_in(self) -> list[torch.Tensor]:
        """Per network level, (N_l,) the real fan-in of each node (for CovarianceOperator)."""
        out, i = [], 0
        for n in self.levels:
            out.append(torch.tensor(self.fan_in[i : i + n]))
            i += n
        return out


class LayerCorrelation:
    """Latent correlation for an `mlp`: every latent node against every unit of every layer,
    as one LatentCorrelation per layer fed that layer's pre-activations for each latent node.
    result(): `corr` (L, n_latent, S, W_max), `best` (L, n_latent), `level_mean` (L, depth);
    units beyond a layer's width are NaN."""

    def __init__(self, layout: Layout, widths: tuple[int, ...]) -> None:
        self.layout, self.widths = layout, widths
        self.layers = [LatentCorrelation(layout, w) for w in widths]

    def update(self, latents: Any, pre: list[torch.Tensor]) -> None:
        for acc, p in zip(self.layers, pre, strict=True):  # p: (B, 1, W_l)
            acc.update(latents, [p.expand(-1, n, -1) for n in self.layout.sizes])

    def result(self) -> dict[str, torch.Tensor]:
        rs = [acc.result() for acc in self.layers]
        w_max = max(self.widths)
        corr = torch.stack(
            [
                torch.nn.functional.pad(r["corr"], (0, w_max - r["corr"].shape[-1]), value=torch.nan)
                for r in rs
            ]
        )
        return {
            "corr": corr,
            "best": torch.stack([r["best"] for r in rs]),
            "level_mean": torch.stack([r["level_mean"] for r in rs]),
        }


def require_finite(result: dict[str, torch.Tensor], keys: tuple[str, ...], what: str) -> None:
    """Raise FloatingPointError naming the quantity and node when a result is not finite."""
    for key in keys:
        bad = ~torch.isfinite(result[key].reshape(result[key].shape[0], -1)).all(dim=1)
        if bad.any():
            node = int(bad.nonzero()[0])
            raise FloatingPointError(f"{what} {key} of node {node} is not finite")


def measure_pass(
    ctx: RunContext,
    corr: LatentCorrelation | LayerCorrelation | None,
    op: CovarianceOperator | None,
    dead: DeadUnits | None = None,
    spread: OutputSpread | None = None,
) -> int:
    """Feed `measure.samples` fresh samples of the data source, in chunks, to the accumulators;
    return the count. The latent correlation, the dead units and the output's spread (the collapse
    measurement) see the plain samples; the operator sees them as a view would
    (`DataSource.augment`: leaf flips), so that its class means average over every augmentation
    the spec declares (a second forward only when flips are on).

    With the operator on, each chunk is sorted by class (stably). The accumulators are fed blocks of
    FORWARD samples, one forward each; the operator gets each block in parts of `block_size`
    samples with their own Jacobians: its class sums then read contiguous runs of one class, with
    no copies, from Jacobians still in cache."""
    cfg, gen, net = ctx.cfg, ctx.gens["measure"], level_net(ctx.net)  # an image network: images.measure
    left = total = int(cfg.measure.samples or cfg.train.samples)
    while (corr is not None or op is not None or spread is not None) and left > 0:
        b = min(CHUNK, left)
        left -= b
        sample = ctx.source.measure_batch(b, gen)
        plain = seen = sample.inputs(ctx.dtype)
        latents = ctx.source.latents(sample) if corr is not None else ()
        cls = torch.zeros(0, dtype=torch.long)
        if op is not None:
            augmented = ctx.source.augment(sample, gen)
            cls = ctx.source.classes(augmented)
            order = torch.argsort(cls, stable=True)
            cls, plain = cls[order], plain[order]
            seen = plain if augmented is sample else augmented.inputs(ctx.dtype)[order]
            latents = [z[order] for z in latents]
        step, sub = FORWARD.get(plain.device.type, CHUNK), block_size(ctx, plain.device, op is not None)
        for s in range(0, b, step):
            rows = slice(s, s + step)
            plain_needed = corr is not None or spread is not None or (op is not None and seen is plain)
            fwd = net(plain[rows]) if plain_needed else None
            if spread is not None and fwd is not None:
                spread.update(fwd.raw)
            if corr is not None and fwd is not None:
                corr.update([z[rows] for z in latents], fwd.pre)
                if dead is not None:
                    dead.update(fwd.pre)
            if op is not None:
                fwd = fwd if fwd is not None and seen is plain else net(seen[rows])
                block_cls = cls[rows]
                for t in range(0, len(block_cls), sub):
                    part = forward_rows(fwd, t, t + sub)
                    op.update(block_cls[t : t + sub], part.inputs, net.jacobians(part))
    return total


def forward_rows(fwd: Forward, start: int, stop: int) -> Forward:
    """The samples start..stop-1 of a forward (views; the forward itself when it has no others)."""
    if start == 0 and stop >= fwd.raw.shape[0]:
        return fwd
    part = slice(start, stop)
    return Forward([x[part] for x in fwd.inputs], [x[part] for x in fwd.pre], fwd.raw[part], fwd.out[part])


def block_size(ctx: RunContext, device: torch.device, jacobians: bool) -> int:
    """Samples per forward of a measurement chunk: BLOCK for the device (a whole CHUNK where it names
    none), fewer (down to MIN_BLOCK) when their Jacobians (D * sum_l N_l W_l numbers a sample below
    the root's identity) would pass JACOBIAN_NUMBERS."""
    most = BLOCK.get(device.type)
    if most is None or not jacobians:
        return CHUNK if most is None else most
    net = level_net(ctx.net)
    per_sample = net.widths[0] * sum(n * w for n, w in zip(net.sizes[1:], net.widths[1:], strict=True))
    return max(MIN_BLOCK, min(most, JACOBIAN_NUMBERS // max(per_sample, 1)))


def check_batch(ctx: RunContext, views: ViewBatch) -> tuple[torch.Tensor, ...]:
    """A theorem check's batch: x, x_pos, x_neg as the network's input and the classes (H + 1, B)
    of the anchors and the negatives (the checker admits the check on sources with latents only,
    whose views are runtime.sampler.Views)."""
    assert isinstance(views, Views)
    classes = torch.stack([ctx.source.classes(s) for s in (views.x, *views.neg)])
    return (*views.inputs(ctx.dtype), classes)


def theorem_due(cfg: Config, epoch: int) -> bool:
    """Whether the theorem check runs after `epoch` epochs."""
    tc = cfg.measure.theorem_check
    return tc is not None and (tc.epochs is None or epoch in tc.epochs)


def operator(ctx: RunContext, nodes: NetNodes, epoch: int) -> CovarianceOperator | None:
    """The operator accumulator when recorded or needed by a theorem check at this epoch."""
    m = ctx.cfg.measure
    c, tc, due = m.covariance_operator, m.theorem_check, theorem_due(ctx.cfg, epoch)
    if c is None and not due:
        return None
    beta = ctx.objective.beta if isinstance(ctx.objective, Contrastive) else 0.0
    within = tuple(tc.nodes) if due and tc is not None and beta != 0 else ()
    return CovarianceOperator(
        nodes.level_fan_in(),
        ctx.source.n_classes(),
        top=c.top if c else 1,
        full=bool(c and c.full),
        official=bool(c and c.official),
        within=within,
        scratch=_SCRATCH.setdefault(ctx.net, Scratch()),
    )


# The operator's float64 staging buffers, one set per network (so per run), reused by every
# epoch's accumulator instead of allocated (and, in deterministic mode, NaN-filled) anew; their
# contents are always written before they are read. Weak keys: they go with the network.
_SCRATCH: weakref.WeakKeyDictionary[torch.nn.Module, Scratch] = weakref.WeakKeyDictionary()


@dataclass
class Measured:
    """What one measurement pass found, for the Recorder to write: the accumulators' results (the
    operator's only when it is recorded; the latent correlation's with the `dead_fraction` of each
    network node) and the theorem check's result."""

    corr: dict[str, torch.Tensor] | None = None
    op: dict[str, torch.Tensor] | None = None
    theorem: TheoremResult | None = field(default=None, repr=False)
    readout: dict[str, float] | None = None  # linear probe and k-NN accuracies (image data)
    # measurement name -> its results keyed as the variable table's `result`s (the Recorder writes
    # each through sslspec.store.variables.results_of(name)): the collapse, and where a network
    # kind adds measurements of its own, theirs
    results: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def _readout(ctx: RunContext) -> dict[str, float] | None:
    """The linear probe's and k-NN's accuracies on the network's features, when measured."""
    m = ctx.cfg.measure
    if m.linear_probe is None and m.knn is None:
        return None
    assert isinstance(ctx.source, ImageSource)  # the checker asks for image data
    return readout(ctx.net, ctx.source, ctx.dtype, m.linear_probe, m.knn)


@torch.no_grad()
def measure(ctx: RunContext, nodes: NetNodes, epoch: int) -> Measured:
    """One measurement pass on fresh samples after `epoch` epochs: the latent correlation, the
    covariance operator, the output's collapse and the theorem check, as the config asks, and the
    probe and k-NN on image data; an image network's own measurements are runtime.images.measure's."""
    m, net = ctx.cfg.measure, ctx.net
    net.eval()
    if not isinstance(net, LevelNet):  # an image network: its own measurements, then the readout
        due = m.theorem_check is not None and theorem_due(ctx.cfg, epoch)
        theorem = head_check(ctx) if due else None
        return Measured(results=measure_images(ctx, epoch), readout=_readout(ctx), theorem=theorem)
    corr: LatentCorrelation | LayerCorrelation | None = None
    if m.latent_correlation is not None:
        assert ctx.source.layout is not None  # the checker asks for a source with latents
        corr = (
            LayerCorrelation(ctx.source.layout, nodes.widths)
            if nodes.dim == "layer"
            else LatentCorrelation(ctx.source.layout, nodes.widths[0])
        )
    op = operator(ctx, nodes, epoch)
    dead = DeadUnits() if corr is not None else None
    spread = OutputSpread() if m.collapse is not None else None
    measure_pass(ctx, corr, op, dead, spread)
    found = Measured(
        {**corr.result(), "dead_fraction": dead.result()} if corr is not None and dead is not None else None,
        op.result() if op is not None and m.covariance_operator is not None else None,
        results={"collapse": spread.result()} if spread is not None else {},
    )
    found.readout = _readout(ctx)
    tc = m.theorem_check
    if tc is not None and theorem_due(ctx.cfg, epoch) and op is not None:
        B, H, gen = ctx.cfg.train.batch, ctx.objective.negatives, ctx.gens["measure"]
        draw = lambda: check_batch(ctx, ctx.source.views(B, H, gen))
        with torch.enable_grad():
            found.theorem = theorem_check(net, ctx.cfg.loss, draw, op, tc.nodes, tc.batches)
    return found
