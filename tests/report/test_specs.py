"""The paper specs: each checks, plans, names its claim, and sweeps what the issue asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sslspec.cli import app
from sslspec.spec.lower import lower
from sslspec.spec.schema import InfoNCELoss, SimpleLoss, TripletLoss

PAPER = Path(__file__).resolve().parents[2] / "specs" / "paper"
SPECS = sorted(PAPER.glob("*.ssl"))


def test_paper_specs_are_numbered_claims() -> None:
    """specs/paper/ holds the claim specs 1 to 7 in order (the loss operators are 7)."""
    assert [p.name[:2] for p in SPECS][:7] == ["1_", "2_", "3_", "4_", "5_", "6_", "7_"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_paper_spec_checks_plans_and_names_its_claim(spec: Path) -> None:
    """`sslspec check` and `sslspec plan` accept the spec; it opens with the claim it tests."""
    runner = CliRunner()
    assert runner.invoke(app, ["check", str(spec)]).exit_code == 0
    planned = runner.invoke(app, ["plan", str(spec)])
    assert planned.exit_code == 0, planned.output
    assert spec.read_text().startswith("# Claim") and "Tian et al. 2020" in spec.read_text()
    plan = lower(spec)
    assert "seed" in dict(plan.axes)["hltm_simclr"] and len(plan.runs) >= 5


def test_width_polarity_grid() -> None:
    """The headline table sweeps 5 widths x 4 polarities x 5 seeds at depth 5."""
    plan = lower(PAPER / "2_width_polarity.ssl")
    assert len(plan.runs) == 100 and {r.config.data.depth for r in plan.runs} == {5}
    assert sorted({r.config.network.width for r in plan.runs}) == [1, 2, 5, 10, 20]


def test_loss_zip_gives_each_loss_its_own_fields() -> None:
    """The loss zip yields simple, triplet, InfoNCE batch and InfoNCE sample with 1 and 8 negatives."""
    plan = lower(PAPER / "4_losses.ssl")
    kinds = {
        (type(r.config.loss), r.config.loss.reduction, getattr(r.config.loss, "negatives", None))
        for r in plan.runs
    }
    assert kinds == {
        (SimpleLoss, "sample", None),
        (TripletLoss, "sample", None),
        (InfoNCELoss, "batch", 1),
        (InfoNCELoss, "sample", 1),
        (InfoNCELoss, "sample", 8),
    }
    assert len(plan.runs) == 25


def test_operator_spec_checks_the_theorem_over_m() -> None:
    """The operator spec checks M = 1..256 for the exact (simple, raw) and the official settings."""
    plan = lower(PAPER / "6_operator.ssl")
    for r in plan.runs:
        assert r.config.measure.theorem_check.batches == (1, 4, 16, 64, 256)
        assert r.config.measure.covariance_operator.top == 8
    exact = {(type(r.config.loss), r.config.network.bias, r.config.network.normalize) for r in plan.runs}
    assert exact == {(SimpleLoss, False, "none"), (InfoNCELoss, True, "l2")}


def test_loss_operator_spec_covers_every_loss_setting() -> None:
    """Spec 7: simple, triplet and InfoNCE, per sample and batch, temperatures 0.1, 0.5 and 1 for the
    two with one, each with and without output normalization and bias, checked over training."""
    plan = lower(PAPER / "7_loss_operators.ssl")
    seen = set()
    for r in plan.runs:
        loss, net, tc = r.config.loss, r.config.network, r.config.measure.theorem_check
        assert tc is not None and tc.batches == (1, 4, 16, 64, 256) and tc.epochs is None
        seen.add(
            (type(loss).__name__, loss.reduction, getattr(loss, "temperature", None), net.normalize, net.bias)
        )
    temps = (0.1, 0.5, 1.0)
    want = {("SimpleLoss", red, None) for red in ("sample", "batch")}
    want |= {
        (k, red, t) for k in ("TripletLoss", "InfoNCELoss") for red in ("sample", "batch") for t in temps
    }
    assert seen == {(*w, n, b) for w in want for n in ("none", "l2") for b in (False, True)}
    assert len(plan.runs) == len(seen) * 2 and plan.runs[0].config.train.epochs == 20
