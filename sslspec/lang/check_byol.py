"""Check rules of BYOL and of the batch-norm options its ablation added (sslspec.lang.check calls
`byol_rules` for every experiment): a field that the rest of the spec makes meaningless is an
error at its position, never silently ignored.

- `bn_affine`, `bn_mean`, `bn_std` of the network or of BYOL's predictor need `batch_norm = true`
  there;
- the predictor's `width` needs an mlp predictor, its `lr` its own optimizer (`optimizer = own`);
- BYOL draws no negatives, so the HLTM's `augment.negative` means nothing with it.
"""

from __future__ import annotations

from collections.abc import Callable

from sslspec.lang import ir
from sslspec.lang.resolve import Section
from sslspec.spec import schema
from sslspec.spec.schema import Config

Bad = Callable[[str, "ir.Span | None"], None]  # (message, where) -> records an error
BN_FIELDS = ("bn_affine", "bn_mean", "bn_std")


def _written(sec: Section | None, name: str) -> tuple[bool, ir.Span | None]:
    """Whether `name` was written in `sec` (a value set there or by a sweep), and where."""
    if sec is None or name not in sec.values:
        return False, None
    return True, sec.spans.get(name) or sec.values[name].span or sec.span


def _needs(bad: Bad, sec: Section | None, names: tuple[str, ...], holds: bool, why: str) -> None:
    """An error at each of `names` written in `sec` while the condition they need does not hold."""
    if holds:
        return
    for name in names:
        written, span = _written(sec, name)
        if written:
            bad(f"'{name}' {why}", span)


def byol_rules(bad: Bad, cfg: Config, sec: Section) -> None:
    """Report the fields written where the rest of the experiment makes them meaningless."""
    net = cfg.network
    _needs(bad, sec.blocks.get("network"), BN_FIELDS, net.batch_norm, "applies only with batch_norm = true")
    loss, loss_sec = cfg.loss, sec.blocks.get("loss")
    if not isinstance(loss, schema.BYOLLoss):
        return
    pred = loss.predictor
    pred_sec = loss_sec.blocks.get("predictor") if loss_sec is not None else None
    if pred is not None:
        _needs(
            bad, pred_sec, BN_FIELDS, pred.batch_norm, "applies only with the predictor's batch_norm = true"
        )
        _needs(
            bad, pred_sec, ("width",), pred.layers == "mlp", "applies only to an mlp predictor (layers = mlp)"
        )
        _needs(
            bad,
            pred_sec,
            ("lr",),
            pred.optimizer == "own",
            "applies only to the predictor's own optimizer (optimizer = own)",
        )
    if isinstance(cfg.augment, schema.Augment) and isinstance(cfg.data, schema.HLTM):
        _needs(
            bad, sec.blocks.get("augment"), ("negative",), False, "means nothing for loss byol (no negatives)"
        )
