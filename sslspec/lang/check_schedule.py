"""Check rules of an optimizer's learning-rate schedule (sslspec.spec.schedule); sslspec.lang.check
calls `schedule_rules` for every experiment. Each is an error at the argument that breaks it:

- the warm-up is given in epochs or in steps, not both;
- the warm-up fits in the run: at most its T = epochs * samples / batch steps (a warm-up of the
  whole run is allowed with `constant`, where it is the whole schedule), and with `cosine` fewer
  than T, so that some step decays;
- the cosine decays: `final_lr` <= the optimizer's `lr`.
"""

from __future__ import annotations

from collections.abc import Callable

from sslspec.lang import ir
from sslspec.lang.resolve import Section
from sslspec.spec.schedule import CosineLR, warmup_steps
from sslspec.spec.schema import Config

Bad = Callable[[str, "ir.Span | None"], None]  # (message, where) -> records an error


def schedule_rules(bad: Bad, cfg: Config, sec: Section) -> None:
    """Report the impossible schedules of `cfg`'s optimizer (see the module docstring)."""
    opt, train = cfg.optimizer, cfg.train
    schedule = opt.schedule
    at = _locator(sec.blocks.get("optimizer"), sec.span)
    if schedule.warmup_epochs and schedule.warmup_steps:
        bad(
            "give the warm-up in epochs or in steps, not both "
            f"(got warmup_epochs = {schedule.warmup_epochs}, warmup_steps = {schedule.warmup_steps})",
            at("warmup_steps"),
        )
        return
    per_epoch = train.samples // train.batch
    total, w = train.epochs * per_epoch, warmup_steps(schedule, per_epoch)
    cosine = isinstance(schedule, CosineLR)
    name = "warmup_epochs" if schedule.warmup_epochs else "warmup_steps"
    if w and (w > total or (cosine and w == total)):
        shown = f"{schedule.warmup_epochs} epochs ({w:,} steps)" if schedule.warmup_epochs else f"{w:,} steps"
        whole = "as long as" if w == total else "longer than"
        tail = ", leaving no step for the cosine" if cosine and w == total else ""
        run = f"{train.epochs} epochs of {per_epoch:,} steps, {total:,} steps"
        bad(f"a warm-up of {shown} is {whole} the run ({run}){tail}", at(name))
    if isinstance(schedule, CosineLR) and schedule.final_lr > opt.lr:
        bad(
            f"'final_lr' must be <= lr, where the cosine starts (got final_lr = {schedule.final_lr}, "
            f"lr = {opt.lr})",
            at("final_lr"),
        )


def _locator(opt: Section | None, fallback: ir.Span | None) -> Callable[[str], ir.Span | None]:
    """argument name -> where it was written in the optimizer's schedule: an argument of the call
    `schedule = cosine(...)`, a field of `schedule { ... }`, else the schedule, the optimizer block."""

    def at(name: str) -> ir.Span | None:
        if opt is None:
            return fallback
        call = opt.values.get("schedule")
        if isinstance(call, ir.Call):
            arg = next((a for a in call.args if a.name == name), None)
            return (arg.span if arg else None) or call.span or opt.spans.get("schedule") or opt.span
        block = opt.blocks.get("schedule")
        if block is not None:
            return block.spans.get(name) or block.span
        return opt.span

    return at
