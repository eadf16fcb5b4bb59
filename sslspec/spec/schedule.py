"""Learning-rate schedules: the `schedule` field of an optimizer block, and the learning rate
each optimizer step takes under it.

    optimizer sgd {
      lr       = 0.03
      schedule = cosine(warmup_epochs = 10, final_lr = 0.0)
    }

`constant` (the default) keeps `lr`; `cosine` decays it along half a cosine to `final_lr`, reached
after the run's last step, without restarts. Either may start with a linear warm-up, given in
epochs or in optimizer steps: during its W steps, step t (0-based) takes lr * (t + 1) / W, so the
first step already moves and step W - 1 takes `lr`. The cosine then runs over the remaining
T - W steps (T = epochs * samples / batch, every step of the run):

    lr(t) = final_lr + (lr - final_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2.

The learning rate is a pure function of the step index (`lr_at`), set before each step, so a
resumed run, which restores its step count from its checkpoint, continues the schedule exactly,
and a replica of a batched group takes the same values as alone. A second optimizer with another
base lr (BYOL's own predictor optimizer) follows the same curve scaled to its lr: it takes
lr_at(...) * its_lr / lr. The Plan leaves `schedule` out while it is `constant` without warm-up
(schema.fld's `added`), so the run hash of every spec written before schedules is unchanged.
"""

from __future__ import annotations

import math

from attrs import frozen

from sslspec.spec.fields import CallT, FloatT, IntT, fld

WARMUP_EPOCHS_DOC = "epochs of linear warm-up at the start: step t of its W steps takes lr (t + 1) / W"
WARMUP_STEPS_DOC = "the warm-up in optimizer steps instead (set one of the two; at most the run's steps)"


@frozen
class ConstantLR:
    """The optimizer's `lr` at every step, after an optional linear warm-up."""

    warmup_epochs: int = fld(0, IntT(ge=0), WARMUP_EPOCHS_DOC)
    warmup_steps: int = fld(0, IntT(ge=0), WARMUP_STEPS_DOC)


@frozen
class CosineLR:
    """Half a cosine from `lr` down to `final_lr` over the steps after the warm-up (per optimizer
    step, no restarts); `final_lr` is reached after the run's last step."""

    warmup_epochs: int = fld(0, IntT(ge=0), WARMUP_EPOCHS_DOC)
    warmup_steps: int = fld(0, IntT(ge=0), WARMUP_STEPS_DOC)
    final_lr: float = fld(0.0, FloatT(ge=0), "the learning rate the cosine ends at (<= lr)")


Schedule = ConstantLR | CosineLR
SCHEDULES: dict[str, type] = {"constant": ConstantLR, "cosine": CosineLR}
SCHEDULE = CallT(SCHEDULES, bare=True)
SCHEDULE_DOC = "how lr changes per optimizer step: constant or cosine, each with an optional warm-up"
CONSTANT = ConstantLR()


def warmup_steps(schedule: Schedule, steps_per_epoch: int) -> int:
    """W, the warm-up's length in optimizer steps."""
    return schedule.warmup_steps or schedule.warmup_epochs * steps_per_epoch


def is_constant(schedule: Schedule) -> bool:
    """Whether every step takes the optimizer's `lr` (no warm-up, no decay)."""
    return isinstance(schedule, ConstantLR) and not schedule.warmup_steps and not schedule.warmup_epochs


def lr_at(schedule: Schedule, lr: float, step: int, total: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (0-based) of a run of `total` steps whose
    optimizer has base learning rate `lr` (see the module docstring)."""
    w = warmup_steps(schedule, steps_per_epoch)
    if step < w:
        return lr * (step + 1) / w
    if isinstance(schedule, ConstantLR):
        return lr
    span = max(total - w, 1)
    cosine = (1 + math.cos(math.pi * min(step - w, span) / span)) / 2
    return schedule.final_lr + (lr - schedule.final_lr) * cosine


def scaled(schedule: Schedule, lr: float, base: float) -> Schedule:
    """The schedule of a second optimizer with base learning rate `base` following the curve of
    one with `lr`: the cosine's final lr scaled by base / lr."""
    if isinstance(schedule, CosineLR):
        return CosineLR(schedule.warmup_epochs, schedule.warmup_steps, schedule.final_lr * base / lr)
    return schedule


def describe(schedule: Schedule, lr: float, total: int, steps_per_epoch: int) -> str:
    """One line for a store's attributes: 'cosine from 0.03 to 0 over 19,110 steps after a linear
    warm-up of 390 steps'."""
    w = warmup_steps(schedule, steps_per_epoch)
    warm = f" after a linear warm-up of {w:,} steps" if w else ""
    if isinstance(schedule, ConstantLR):
        return f"constant {lr:g}{warm}"
    return f"cosine from {lr:g} to {schedule.final_lr:g} over {max(total - w, 0):,} steps{warm}"
