"""sslspec report: shrunken paper sweeps -> report.md and PNG figures; missing runs are named."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from sslspec.lower import lower

PAPER = Path(__file__).resolve().parents[2] / "specs" / "paper"
SPECS = sorted(PAPER.glob("*.ssl"))
VIEWS, OPERATOR = PAPER / "5_views.ssl", PAPER / "6_operator.ssl"
PNG = b"\x89PNG\r\n\x1a\n"
# Seconds per run: 4 SGD steps on a depth-3 tree; the swept axes and the seeds are kept.
SHRINK = [
    "train.samples=128",
    "train.batch=32",
    "train.epochs=1",
    "measure.samples=256",
    "data.depth=3",
]


SETS = [a for s in SHRINK for a in ("--set", s)]


@pytest.fixture(scope="module")
def report(sslspec_cli: Callable[..., Result], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run the six shrunken paper specs (one `sslspec run` of all), delete one run, build the
    report; the paths and the deleted run."""
    tmp = tmp_path_factory.mktemp("paper")
    root, out = tmp / "results", tmp / "report"
    result = sslspec_cli("run", *SPECS, *SETS, "--out", root)
    assert result.exit_code == 0, result.output
    gone = lower(VIEWS, SHRINK).runs[3]
    shutil.rmtree(root / "hltm_simclr" / gone.id)
    result = sslspec_cli("report", *SPECS, "--root", root, "--out", out, *SETS)
    assert result.exit_code == 0, result.output
    return {"out": out, "gone": gone, "md": (out / "report.md").read_text()}


def test_report_writes_markdown_and_valid_pngs(report: dict[str, object]) -> None:
    """report.md links every figure written, and each is a non-empty PNG file."""
    out, md = report["out"], str(report["md"])
    assert isinstance(out, Path)
    pngs = sorted(p.name for p in out.glob("*.png"))
    expected = {
        "5_views_levels.png",
        "5_views_root.png",
        "6_operator_levels.png",
        "6_operator_eigvals.png",
        "6_operator_theorem.png",
    }
    assert expected <= set(pngs)
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
        assert f"]({name})" in md


def test_tables_have_swept_fields_and_seed_counts(report: dict[str, object]) -> None:
    """Views: share rows x flip columns with per-cell seed counts; the theorem table has M columns."""
    md = str(report["md"])
    assert "| augment.share \\ augment.flip | 0 | 0.1 |" in md
    assert "5 seeds per setting; 29 of 30 runs complete" in md
    assert "(n=5)" in md and "(n=4)" in md  # the setting that lost a run averages 4 seeds
    fields = "| network.bias | network.normalize | optimizer.lr | loss.reduction | loss.kind | node |"
    assert fields + " M=1 | M=4 | M=16 | M=64 | M=256 |" in md
    assert "5 seeds per setting; 10 of 10 runs complete" in md


def test_deleted_run_is_listed_as_missing(report: dict[str, object]) -> None:
    """A run deleted from the results root appears by id, swept values and status `missing`."""
    md, gone = str(report["md"]), report["gone"]
    swept = dict(gone.swept)  # type: ignore[attr-defined]
    row = f"| {gone.id} | {swept['augment.share']} | {swept['augment.flip']} | {swept['seed']} | missing |"  # type: ignore[attr-defined]
    assert row in md
    assert "Runs: 30 planned; 29 complete, 0 failed, 0 running, 1 missing" in md


def test_report_states_provenance(report: dict[str, object]) -> None:
    """The report says on which device and host the runs ran and how long they took."""
    md = str(report["md"])
    assert "- Device: cpu" in md and "host: " in md and "- Wall time: " in md and '"torch": ' in md
