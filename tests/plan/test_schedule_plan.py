"""The `schedule` field in the Plan: the default leaves every run hash as it was, a schedule is
part of the run's identity, and the Plan's JSON reads back to the same schedule."""

from __future__ import annotations

from pathlib import Path

from sslspec.spec.lower import lower
from sslspec.spec.plan import config_from_data, config_to_data
from sslspec.spec.schedule import ConstantLR, CosineLR

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
