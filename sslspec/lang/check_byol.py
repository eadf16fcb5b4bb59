"""Check rules of BYOL and of the batch-norm options its ablation added (sslspec.lang.check calls
`byol_rules` for every experiment): a field set to something other than its default where the
rest of the spec makes it mean nothing is an error at its position, never silently ignored (set
to its default it changes nothing, not even the run's hash, so a zip may write it in every row).

- `bn_affine`, `bn_mean`, `bn_std` of the network or of BYOL's predictor need `batch_norm = true`
  there;
- the predictor's `width` needs an mlp predictor, its `lr` its own optimizer (`optimizer = own`);
- BYOL draws no negatives, so the HLTM's `augment.negative = batch` means nothing with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from sslspec.lang import ir
from sslspec.lang.resolve import Section
from sslspec.spec import schema
from sslspec.spec.schema import Config

Bad = Callable[[str, "ir.Span | None"], None]  # (message, where) -> records an error
BN_FIELDS = ("bn_affine", "bn_mean", "bn_std")


def _needs(bad: Bad, sec: Section | None, block: Any, names: tuple[str, ...], holds: bool, why: str) -> None:
    """An error at each of `names` written in `sec` with a value other than its default in `block`
    (the built config) while the condition the field needs does not hold."""
    if holds or sec is None:
        return
    defaults = attrs.fields_dict(type(block))
    for name in names:
        if name not in defaults:  # a block without the field (an image network has no bn_mean)
            continue
        value = getattr(block, name)
        if name in sec.values and value != defaults[name].default:
            shown = str(value).lower() if isinstance(value, bool) else value
            bad(f"'{name}' {why} (got {shown})", sec.spans.get(name) or sec.values[name].span or sec.span)


def byol_rules(bad: Bad, cfg: Config, sec: Section) -> None:
    """Report the fields set where the rest of the experiment makes them mean nothing."""
    net = cfg.network
    _needs(
        bad,
        sec.blocks.get("network"),
        net,
        BN_FIELDS,
        net.batch_norm,
        "needs batch_norm = true in the network",
    )
    loss, loss_sec = cfg.loss, sec.blocks.get("loss")
    if not isinstance(loss, schema.BYOLLoss):
        return
    pred = loss.predictor
    pred_sec = loss_sec.blocks.get("predictor") if loss_sec is not None else None
    if pred is not None:
        bn_off = "needs the predictor's batch_norm = true"
        _needs(bad, pred_sec, pred, BN_FIELDS, pred.batch_norm, bn_off)
        _needs(
            bad,
            pred_sec,
            pred,
            ("width",),
            pred.layers == "mlp",
            "needs an mlp predictor, layers = mlp",
        )
        own = "needs the predictor's own optimizer, optimizer = own"
        _needs(bad, pred_sec, pred, ("lr",), pred.optimizer == "own", own)
    if isinstance(cfg.augment, schema.Augment) and isinstance(cfg.data, schema.HLTM):
        why = "means nothing for loss byol, which draws no negatives"
        _needs(bad, sec.blocks.get("augment"), cfg.augment, ("negative",), False, why)
