"""sslspec report: shrunken paper sweeps -> report.md and PNG figures; missing runs are named."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import Result

from sslspec.report.figures import fig_eigvals, fig_theorem
from sslspec.report.sweep import SweepResults
from sslspec.spec.lower import lower

PAPER = Path(__file__).resolve().parents[2] / "specs" / "paper"
# Claims 1-6 (the later specs' sections have their own tests on their own shrunken runs, e.g.
# test_losses_section.py for spec 7: their theorem checks would make this module minutes slower).
SPECS = sorted(p for p in PAPER.glob("*.ssl") if p.name.split("_")[0] in {"1", "2", "3", "4", "5", "6"})
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
    return {"out": out, "gone": gone, "md": (out / "report.md").read_text(), "root": root}


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
        "1_emergence_luck_scatter.png",
        "2_width_polarity_luck_topk.png",
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


def test_luck_section_appears_for_sweeps_with_corr(report: dict[str, object]) -> None:
    """Every spec storing `corr` at two epochs gets the luck-matters section; the width sweep also
    gets the over-parameterization table, with the chance rate beside every hit rate."""
    md = str(report["md"])
    assert md.count("### Luck matters") == 6  # every paper spec records corr at epoch 0 and the last
    assert "| width | best initial \\|corr\\| | best final \\|corr\\| | top-1 hit vs chance |" in md
    width_1 = next(r for r in md.split("best final")[1].splitlines() if r.startswith("| 1 | "))
    assert width_1.endswith("| — vs — | — vs — |")  # one unit: a top-k hit is certain, so no number


def test_deleted_run_is_listed_as_missing(report: dict[str, object]) -> None:
    """A run deleted from the results root appears by id, swept values and status `missing`."""
    md, gone = str(report["md"]), report["gone"]
    swept = dict(gone.swept)  # type: ignore[attr-defined]
    row = f"| {gone.id} | {swept['augment.share']} | {swept['augment.flip']} | {swept['seed']} | missing |"  # type: ignore[attr-defined]
    assert row in md
    assert "Runs: 30 planned; 29 complete, 0 failed, 0 running, 1 missing" in md


def test_report_states_provenance(report: dict[str, object]) -> None:
    """The report says on which device, host and versions the runs ran and how long they took."""
    md = str(report["md"])
    assert "| device | host | python | torch | git commit | runs | median wall time per run (s) |" in md
    assert "| cpu (1 thread) | " in md and "wall time " in md
    # 175 planned over the six specs; specs 2-5 share their reference setting (5 seeds, 15 repeats).
    assert "160 distinct runs over 6 source(s): 159 complete, 1 missing." in md
    summary = md.split("## ")[0]  # before the first source: every machine over all distinct runs
    assert "All runs with a store, " in summary and "| 159 | " in summary


def test_results_directory_is_a_source(sslspec_cli: Callable[..., Result], tmp_path: Path) -> None:
    """`sslspec report RESULTS`: the runs found under an experiment directory, no spec needed."""
    emergence = PAPER / "1_emergence.ssl"
    result = sslspec_cli("run", emergence, *SETS, "--out", tmp_path / "results")
    assert result.exit_code == 0, result.output
    result = sslspec_cli("report", tmp_path / "results" / "hltm_simclr", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "swept: `seed` (5)" in md and "5 distinct runs over 1 source(s): 5 complete." in md
    assert (tmp_path / "report" / "hltm_simclr_levels.png").read_bytes().startswith(PNG)


def test_bad_sources_exit_2(report: dict[str, object], sslspec_cli: Callable[..., Result]) -> None:
    """A missing spec, or a results directory holding several different sweeps: exit 2, a
    message saying what to do, no traceback, and nothing written."""
    root = report["root"]
    assert isinstance(root, Path)
    out = root.parent / "never"
    missing = sslspec_cli("report", PAPER / "no_such.ssl", "--out", out)
    assert missing.exit_code == 2 and "no_such.ssl" in missing.output
    mixed = sslspec_cli("report", root / "hltm_simclr", "--out", out)
    assert mixed.exit_code == 2 and "load_sweep(spec, root=...)" in mixed.output
    for r in (missing, mixed):
        assert "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("fill", [np.nan, 0.0, -1.0])
def test_theorem_and_spectrum_figures_survive_data_log_axes_cannot_show(fill: float, tmp_path: Path) -> None:
    """All-NaN (every run failed), zero or negative values: the figure is drawn on linear axes
    instead of raising (a log axis needs positive data)."""
    seed = xr.DataArray([1, 2], dims="seed", attrs={"swept_path": "seed"})
    ds = xr.Dataset(
        {
            "tc_rel_error": (("seed", "epoch", "tc_node", "tc_batches"), np.full((2, 2, 1, 3), fill)),
            "tc_cosine": (("seed", "epoch", "tc_node", "tc_batches"), np.full((2, 2, 1, 3), fill)),
            "op_eigval": (("seed", "epoch", "node", "eig"), np.full((2, 2, 3, 2), fill)),
            "node_level": ("node", [0, 1, 1]),
            "status": ("seed", ["failed", "failed"]),
        },
        coords={"seed": seed, "epoch": [0, 5], "tc_node": [0], "tc_batches": [1, 4, 16], "eig": [0, 1]},
        attrs={"swept_paths": {"seed": "seed"}, "experiment": "x"},
    )
    runs = [{"seed": s, "status": "failed", "run_id": f"r{s}", "attrs": {}} for s in (1, 2)]
    sw = SweepResults(tmp_path, ds, None, "", runs)
    for draw in (fig_theorem, fig_eigvals):
        png = tmp_path / f"{draw.__name__}.png"
        assert draw(sw, png)
        assert png.read_bytes().startswith(PNG)


def test_report_of_a_root_holding_one_run_without_a_sweep(
    sslspec_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sslspec run specs/quickstart.ssl` then `sslspec report results` reports that one run (issue 15)."""
    monkeypatch.chdir(tmp_path)
    quickstart = PAPER.parent / "quickstart.ssl"
    shrink = ["train.samples=128", "train.batch=32", "train.epochs=1", "measure.samples=256"]
    assert sslspec_cli("run", quickstart, *(a for s in shrink for a in ("--set", s))).exit_code == 0
    result = sslspec_cli("report", "results")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "1 distinct runs over 1 source(s): 1 complete." in md
    assert "swept: nothing" in md and "| root correlation after training |" in md
    assert (tmp_path / "report" / "results_levels.png").read_bytes().startswith(PNG)
