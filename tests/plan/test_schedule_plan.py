"""The `schedule` field in the Plan: the default leaves every run hash as it was, a schedule is
part of the run's identity, and the Plan's JSON reads back to the same schedule; which schedules
are constant, and the words a store records for one."""

from __future__ import annotations

from pathlib import Path

from sslspec.spec.lower import lower
from sslspec.spec.plan import config_from_data, config_to_data
from sslspec.spec.schedule import ConstantLR, CosineLR, describe, is_constant

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.ssl"


def test_the_default_schedule_leaves_the_run_hash_unchanged() -> None:
    """Writing `schedule = constant` (or `constant()`) gives the hash and plan data of not writing it."""
    plain = lower(QUICKSTART).runs[0]
    for written in ("constant", "constant()", "constant(warmup_steps = 0)"):
        run = lower(QUICKSTART, [f"optimizer.schedule={written}"]).runs[0]
        assert run.hash == plain.hash and run.to_data() == plain.to_data(), written
    assert "schedule" not in config_to_data(plain.config)["optimizer"]


def test_a_schedule_is_part_of_the_run_and_reads_back() -> None:
    """A cosine schedule or a warm-up changes the run hash, and config_from_data(config_to_data(c))
    gives the same schedule back."""
    plain = lower(QUICKSTART).runs[0]
    settings = {
        "cosine": CosineLR(),
        "cosine(warmup_epochs = 1, final_lr = 0.001)": CosineLR(warmup_epochs=1, final_lr=0.001),
        "constant(warmup_steps = 3)": ConstantLR(warmup_steps=3),
    }
    hashes = {plain.hash}
    for written, schedule in settings.items():
        run = lower(QUICKSTART, [f"optimizer.schedule={written}"]).runs[0]
        assert run.config.optimizer.schedule == schedule
        assert config_from_data(config_to_data(run.config)) == run.config
        hashes.add(run.hash)
    assert len(hashes) == 1 + len(settings)


def test_only_a_constant_lr_without_warm_up_is_constant() -> None:
    """is_constant holds for `constant` alone: a warm-up in steps or in epochs, or a cosine, is not
    constant (a run would otherwise skip its warm-up)."""
    assert is_constant(ConstantLR())
    for schedule in (
        ConstantLR(warmup_steps=3),
        ConstantLR(warmup_epochs=1),
        CosineLR(),
        CosineLR(final_lr=0.1),
    ):
        assert not is_constant(schedule), schedule


def test_describe_states_the_schedule_in_words() -> None:
    """describe names the curve, its lrs, the cosine's steps after the warm-up (none when the warm-up
    covers the run) and the warm-up's steps (from epochs x steps per epoch)."""
    assert describe(ConstantLR(), 0.1, 100, 20) == "constant 0.1"
    assert (
        describe(ConstantLR(warmup_epochs=2), 0.1, 100, 20)
        == "constant 0.1 after a linear warm-up of 40 steps"
    )
    cosine = CosineLR(warmup_steps=390, final_lr=0.0)
    want = "cosine from 0.03 to 0 over 19,110 steps after a linear warm-up of 390 steps"
    assert describe(cosine, 0.03, 19_500, 390) == want
    assert describe(CosineLR(final_lr=0.001), 0.5, 1_000, 10) == "cosine from 0.5 to 0.001 over 1,000 steps"
    assert describe(CosineLR(warmup_steps=30), 0.5, 20, 10).startswith("cosine from 0.5 to 0 over 0 steps")
