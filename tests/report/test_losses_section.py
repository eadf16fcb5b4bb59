"""The loss-operator section of the report, on a shrunken run of specs/paper/7_loss_operators.ssl."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
from click.testing import Result

from sslspec.report.losses_section import section
from sslspec.report.sweep import SweepResults

SPECS = Path(__file__).resolve().parents[2] / "specs"
SHORT = [
    "device=cpu",
    "train.batch=32",
    "train.samples=64",
    "train.epochs=2",
    "measure.samples=512",
    "measure.every=1",
    "measure.theorem_check.batches=[1, 2, 8]",
    "network.bias=false",
]
SWEEP = """sweep hltm_simclr {
  zip {
    loss.temperature = [1, 0.5, 0.5]
    loss.reduction   = [sample, sample, batch]
    loss.kind        = [simple, infonce, infonce]
  }
  zip {
    network.normalize = [none, l2]
    optimizer.lr      = [0.001, 0.1]
  }
  seed = 1..2
}
"""


def shrunken_spec(tmp_path: Path) -> Path:
    """Spec 7 with three losses x two normalizations x two seeds (its own sweep replaced)."""
    (tmp_path / "paper").mkdir()
    shutil.copy(SPECS / "hltm_simclr.ssl", tmp_path / "hltm_simclr.ssl")
    text = (SPECS / "paper" / "7_loss_operators.ssl").read_text()
    spec = tmp_path / "paper" / "7_loss_operators.ssl"
    spec.write_text(text[: text.index("sweep hltm_simclr")] + SWEEP)
    return spec


def rows_of(md: str, table_start: str) -> list[list[str]]:
    """The body rows of the first markdown table after the paragraph starting with `table_start`."""
    block = md[md.index(table_start) :].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_losses_section_on_a_shrunken_run(tmp_path: Path, sslspec_cli: Callable[..., Result]) -> None:
    """The section shows, per loss setting, the identity's error at float32 noise, the error vs M,
    the residue over epochs with a normalization part of 0 without normalization and > 0 with it,
    the verdict, and the residue figure."""
    spec = shrunken_spec(tmp_path)
    sets = [a for s in SHORT for a in ("--set", s)]
    ran = sslspec_cli("run", str(spec), "--out", str(tmp_path / "res"), "-j", "1", *sets)
    assert ran.exit_code == 0, ran.output
    rep = sslspec_cli(
        "report", str(spec), "--root", str(tmp_path / "res"), "--out", str(tmp_path / "rep"), *sets
    )
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### Loss-specific covariance operators" in md
    ident = rows_of(md, "Exact per-batch identity")
    assert len(ident) == 6
    assert all(float(r[-1]) < 1e-5 for r in ident), ident  # float32 noise, no flag
    vs_m = rows_of(md, "The loss's own prediction p")
    assert len(vs_m) == 6 and len(vs_m[0]) == 5 + 3 + 1  # settings, M = 1, 2, 8, simple p
    residue = rows_of(md, "The residue ||g - p||")
    for row in residue:
        norm_part = float(row[-2].split(" ± ")[0])
        assert (norm_part == 0.0) == (row[3] == "none"), row  # network.normalize is the 4th column
        assert len([c for c in row if c.startswith("0.") or c.startswith("1.")]) >= 3 + 2
    assert re.search(r"\*\*Exact in expectation\*\* .*: \d of 6 settings", md)
    assert "**A residue remains**" in md
    assert (tmp_path / "rep" / "7_loss_operators_loss_residue.png").read_bytes().startswith(b"\x89PNG")


def test_verdict_separates_a_falling_error_from_a_residue(tmp_path: Path) -> None:
    """A setting whose error falls with M to below the threshold is called exact; one that stays
    at 0.9 is listed as a residue with its size; the identity's error above 1e-4 is flagged."""
    falling, flat = np.array([0.8, 0.3, 0.05]), np.array([0.95, 0.92, 0.9])
    rel = np.stack(
        [np.broadcast_to(v, (2, 3, 2, 3)) for v in (falling, flat)], axis=1
    )  # (seed, set, epoch, node, M)
    dims = ("seed", "loss", "epoch", "tc_node", "tc_batches")
    ident = np.full(rel.shape, 1e-7)
    ident[:, 1] = 1e-2
    ds = xr.Dataset(
        {
            "tc_rel_error": (dims, rel),
            "tc_rel_error_simple": (dims, rel),
            "tc_batch_rel_error": (dims, ident),
            "tc_residue_normalization": (dims, np.zeros(rel.shape)),
            "tc_residue_other": (dims, rel),
        },
        coords={
            "seed": ("seed", [1, 2], {"swept_path": "seed"}),
            "loss": ("loss", ["simple", "infonce"], {"swept_path": "loss.kind"}),
            "epoch": [0, 5, 10],
            "tc_node": [0, 1],
            "tc_batches": [1, 16, 256],
        },
        attrs={"swept_paths": {"seed": "seed", "loss": "loss.kind"}, "experiment": "synthetic"},
    )
    ds = ds.assign(status=(("seed", "loss"), np.full((2, 2), "complete")))
    runs = [
        {"seed": s, "loss": k, "status": "complete", "run_id": f"{k}{s}", "attrs": {}}
        for s in (1, 2)
        for k in ("simple", "infonce")
    ]
    md = section(SweepResults(tmp_path, ds, None, "", runs), tmp_path, "syn")
    exact = next(line for line in md.splitlines() if line.startswith("**Exact in expectation**"))
    residue = next(line for line in md.splitlines() if line.startswith("**A residue remains**"))
    assert "1 of 2 settings: loss.kind=simple (0.80 -> 0.05)" in exact
    assert "in 1 settings" in residue and "loss.kind=infonce (0.90)" in residue
    ident_rows = rows_of(md, "Exact per-batch identity")
    assert ident_rows[0][-1] == "1.0e-07" and ident_rows[1][-1] == "1.0e-02 **not float noise**"


def test_many_settings_are_split_into_panels_by_their_last_swept_fields() -> None:
    """Spec 7's 56 settings (14 losses x normalize/lr zipped x bias) make 4 panels of 14 lines,
    each fixing (lr, bias) with lines labelled by the rest; 20 or fewer stay one panel, and
    settings no split can bring to 20 lines and 6 panels stay one panel too."""
    from types import SimpleNamespace
    from typing import cast

    from sslspec.report.losses_section import facets

    dims = ["temperature", "reduction", "loss_kind", "normalize", "lr", "bias"]
    sw = cast(SweepResults, SimpleNamespace(settings=dims))
    losses = [(t, r, k) for k in ("simple", "triplet") for r in ("sample", "batch") for t in (0.1, 0.5, 1)]
    cs = [
        dict(zip(dims, (*loss, norm, lr, bias), strict=True))
        for norm, lr in (("none", 0.001), ("l2", 0.1))
        for bias in (False, True)
        for loss in [*losses, (1, "sample", "infonce"), (1, "batch", "infonce")]
    ]
    panels = facets(sw, cs)
    assert [fixed for fixed, _ in panels] == [
        {"lr": 0.001, "bias": False},
        {"lr": 0.001, "bias": True},
        {"lr": 0.1, "bias": False},
        {"lr": 0.1, "bias": True},
    ]
    assert [len(group) for _, group in panels] == [14] * 4
    assert facets(sw, cs[:20]) == [({}, cs[:20])]
    one = cast(SweepResults, SimpleNamespace(settings=["seedlike", "x"]))
    flat = [{"seedlike": i, "x": 0} for i in range(30)]
    assert facets(one, flat) == [({}, flat)]
