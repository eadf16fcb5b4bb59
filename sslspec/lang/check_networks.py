"""Check rules of the image networks (sslspec.spec.images: `network resnet`, `network convnet`);
sslspec.lang.check calls `network_rules` for every experiment. What an image network needs from
the other blocks (image data) and which measurements it supports are declared in
sslspec.spec.kinds, a ResNet's depths in its field's type; the rule here is between the network
and the training block: an image network trains with batch norm (the trunk's, and the head's
when on), which needs at least two examples per view in a batch.
"""

from __future__ import annotations

from collections.abc import Callable

from sslspec.lang import ir
from sslspec.lang.resolve import Section
from sslspec.spec import schema
from sslspec.spec.images import IMAGE_NETWORKS
from sslspec.spec.schema import Config

Bad = Callable[[str, "ir.Span | None"], None]  # (message, where) -> records an error


def _span(sec: Section, block: str, name: str) -> ir.Span | None:
    b = sec.blocks.get(block)
    if b is None:
        return sec.span
    return b.spans.get(name) or (b.values[name].span if name in b.values else None) or b.span


def network_rules(bad: Bad, cfg: Config, sec: Section) -> None:
    """Report a batch too small for an image network's batch norm."""
    net = cfg.network
    if not isinstance(net, IMAGE_NETWORKS):
        return
    kind = schema.kind_of(net)
    if cfg.train.batch < 2:
        bad(
            f"'batch' must be >= 2 with network {kind}: its batch norm needs two examples per view "
            f"(got {cfg.train.batch})",
            _span(sec, "train", "batch"),
        )
