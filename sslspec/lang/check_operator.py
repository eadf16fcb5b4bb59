"""Check rules of the covariance operator and the theorem check on an image network
(runtime.images.operator, runtime.images.theorem): sslspec.lang.check calls `operator_rules` for
every experiment.

- With an image network (`resnet`, `convnet`) the operator is measured per layer: each name in
  `layers` must be one the network has (conv<k>: the trunk's convs in module order, shortcuts
  included; head<k>: the projection head's Linear layers), and `full` and `official`, which
  belong to the per-node operator of a tree_relu or mlp, are refused.
- With an image network the theorem check's `nodes` are the head's Linear layers (0 = head0).
- With a tree_relu or mlp network the image fields (layers, images, views, probes, power) mean
  nothing and are refused where written.
"""

from __future__ import annotations

from collections.abc import Callable

from sslspec.lang import ir
from sslspec.lang.resolve import Section
from sslspec.spec import schema
from sslspec.spec.images import IMAGE_NETWORKS, ConvNet, ResNet
from sslspec.spec.schema import Config

Bad = Callable[[str, "ir.Span | None"], None]  # (message, where) -> records an error
IMAGE_FIELDS = ("layers", "images", "views", "probes", "power")
NODE_FIELDS = ("full", "official")
# ResNet depth -> blocks per stage and convs per block (the shortcut conv of a stage's first block
# comes on top: every stage's first block has one but the first stage's of depth 18)
_RESNET_CONVS = {18: ((2, 2, 2, 2), 2), 50: ((3, 4, 6, 3), 3)}


def conv_count(net: ResNet | ConvNet) -> int:
    """How many Conv2d layers the network's trunk has (runtime.images.encoders builds them)."""
    if isinstance(net, ConvNet):
        return len(net.channels)
    blocks, per_block = _RESNET_CONVS.get(net.depth, _RESNET_CONVS[18])
    shortcuts = 4 if net.depth == 50 else 3  # depth 50: the first stage widens 64 -> 256 too
    return 1 + sum(blocks) * per_block + shortcuts


def layer_names(net: ResNet | ConvNet) -> tuple[str, ...]:
    """Every measurable layer of an image network, trunk first."""
    convs = tuple(f"conv{k}" for k in range(conv_count(net)))
    return convs + tuple(f"head{k}" for k in range(len(net.projector)))


def _span(sec: Section, name: str) -> ir.Span | None:
    m = sec.blocks.get("measure")
    s = m.blocks.get("covariance_operator") if m else None
    return (s.spans.get(name) or s.span) if s else sec.span


def _tc_span(sec: Section) -> ir.Span | None:
    m = sec.blocks.get("measure")
    s = m.blocks.get("theorem_check") if m else None
    return (s.spans.get("nodes") or s.span) if s else sec.span


def _written(sec: Section) -> dict[str, ir.Value]:
    m = sec.blocks.get("measure")
    s = m.blocks.get("covariance_operator") if m else None
    return s.values if s else {}


def operator_rules(bad: Bad, cfg: Config, sec: Section) -> None:
    """Report layers an image network does not have and fields that do not apply to its kind."""
    op, net, tc = cfg.measure.covariance_operator, cfg.network, cfg.measure.theorem_check
    if tc is not None and isinstance(net, IMAGE_NETWORKS):
        heads = len(net.projector)
        for node in tc.nodes:
            if node >= heads:
                bad(
                    f"'theorem_check.nodes' has {node}, but the head of {schema.kind_of(net)} has "
                    f"{heads} Linear layers (0..{heads - 1})",
                    _tc_span(sec),
                )
    if op is None:
        return
    written = _written(sec)
    kind = schema.kind_of(net)
    if not isinstance(net, IMAGE_NETWORKS):
        for name in IMAGE_FIELDS:
            if name in written:
                bad(
                    f"'covariance_operator.{name}' applies to image networks (resnet, convnet)",
                    _span(sec, name),
                )
        return
    for name in NODE_FIELDS:
        if getattr(op, name):
            bad(
                f"'covariance_operator.{name}' applies to tree_relu and mlp, not network {kind}",
                _span(sec, name),
            )
    names = layer_names(net)
    items = written.get("layers")
    for i, layer in enumerate(op.layers or ()):
        if layer not in names:
            prefix = [n for n in names if n[:4] == layer[:4]]
            have = f"{prefix[0]}..{prefix[-1]}" if prefix else "none"
            where = items.items[i].span if isinstance(items, ir.List) else _span(sec, "layers")
            bad(f"'covariance_operator.layers' has {layer}, but {kind} has {have}", where)
