"""Report tables hold the right numbers: mean ± standard deviation (ddof 0) over seeds, per setting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from click.testing import Result

from sslspec.report.sweep import SweepResults, final, label, load_source, show
from sslspec.report.tables import provenance, theorem_table, total_wall, value_table
from sslspec.spec.lower import lower
from sslspec.store.variables import LEVEL_CORR, TC_REL_ERROR, root_of
from tests.store.conftest import write_store

# Final root correlation per (width, seed); each setting's four seeds have a known mean and spread.
FINAL = {
    (2, 1): 0.125, (2, 2): 0.25, (2, 3): 0.5, (2, 4): 0.625,
    (5, 1): 0.5, (5, 2): 0.5, (5, 3): 0.75, (5, 4): 1.0,
}  # fmt: skip


def test_report_tables_show_mean_and_standard_deviation_over_seeds(
    sslspec_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """`sslspec report` on 2 widths x 4 seeds prints each cell as mean ± std (not the standard error),
    with the seed count; the level table goes from the mean at initialization to the final mean ± std."""
    for (width, seed), value in FINAL.items():
        swept = {"network.width": width, "seed": seed}
        write_store(tmp_path / "results", "e", f"r{width}{seed}", swept=swept, value=value)
    result = sslspec_cli("report", tmp_path / "results" / "e", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    two, five = ([v for (w, _), v in FINAL.items() if w == width] for width in (2, 5))
    assert f"{np.std(two):.3f}" == "0.198" and f"{np.std(two) / 2:.3f}" == "0.099"  # std, standard error
    assert f"{np.std(five):.3f}" == "0.207" and f"{np.mean(five):.3f}" == "0.688"
    assert "| 2 | 0.375 ± 0.198 (n=4) |\n| 5 | 0.688 ± 0.207 (n=4) |" in md
    # the fixture's level l ends at value + l/16 and starts 2/8 lower (epoch 0 of 2)
    assert "| 2 | 0.125 → 0.375 ± 0.198 | 0.188 → 0.438 ± 0.198 | 0.250 → 0.500 ± 0.198 |" in md
    assert "| 5 | 0.438 → 0.688 ± 0.207 | 0.500 → 0.750 ± 0.207 | 0.562 → 0.812 ± 0.207 |" in md


SPEC = """experiment e {
  data hltm { depth = 2 }
  network tree_relu { width = 2 }
  loss simple { beta = 0 }
  optimizer sgd { lr = 0.1 }
  train { batch = 4; samples = 8; epochs = 2 }
}
sweep e {
  network.width = [2, 5]
  seed = 1..4
}
"""


def test_report_of_a_spec_with_set_finds_the_runs_the_set_plans(
    sslspec_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A spec source with `--set` reports the runs of the plan as set (other run ids than without
    it): the same numbers as from the results directory, nothing missing."""
    spec = tmp_path / "e.ssl"
    spec.write_text(SPEC)
    sets = ["train.samples=16"]
    assert {r.id for r in lower(spec, sets).runs}.isdisjoint(r.id for r in lower(spec).runs)
    for run in lower(spec, sets).runs:
        swept = dict(run.swept)
        value = FINAL[(swept["network.width"], swept["seed"])]
        write_store(tmp_path / "results", run.experiment, run.id, swept=swept, value=value)
    out = tmp_path / "report"
    result = sslspec_cli("report", spec, "--root", tmp_path / "results", "--out", out, "--set", sets[0])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "Runs: 8 planned; 8 complete, 0 failed, 0 running, 0 missing" in md
    assert "| 2 | 0.375 ± 0.198 (n=4) |\n| 5 | 0.688 ± 0.207 (n=4) |" in md


def test_a_setting_with_no_complete_run_shows_a_dash(
    sslspec_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """When every seed of a setting is missing its cells are '—' (no number), and the others are unchanged."""
    spec = tmp_path / "e.ssl"
    spec.write_text(SPEC)
    for run in lower(spec).runs:
        swept = dict(run.swept)
        if swept["network.width"] == 2:
            value = FINAL[(2, swept["seed"])]
            write_store(tmp_path / "results", run.experiment, run.id, swept=swept, value=value)
    result = sslspec_cli("report", spec, "--root", tmp_path / "results", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Runs: 8 planned; 4 complete, 0 failed, 0 running, 4 missing" in md
    assert "| 2 | 0.375 ± 0.198 (n=4) |\n| 5 | — |" in md
    assert "| 5 | — | — | — |" in md


def _add_dead(path: Path, root: float, level1: float) -> None:
    """Give a synthetic store node levels and a dead_fraction: `root` at node 0, `level1` at nodes 1-2,
    0.25 below; earlier epochs hold other values (the table reads the last)."""
    g = zarr.open_group(str(path), mode="r+", zarr_format=3)
    levels = np.array([0, 1, 1, 2, 2, 2, 2])
    arr = g.create_array("node_level", shape=(7,), dtype="int64", dimension_names=["node"])
    arr[...] = levels
    dead = np.where(levels == 0, root, np.where(levels == 1, level1, 0.25)).astype(np.float32)
    arr = g.create_array("dead_fraction", shape=(3, 7), dtype="float32", dimension_names=["epoch", "node"])
    arr[...] = np.stack([np.full(7, 0.75, np.float32), np.full(7, 0.75, np.float32), dead])


def test_dead_units_table_separates_no_live_unit_from_nothing_learned(
    sslspec_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """Of the runs whose root correlation ends near 0, the dead-unit table counts those with a dead
    root or a dead level below it, and gives each level's final dead fraction as mean ± std."""
    cases = {1: (0.0, 1.0, 0.0), 2: (0.0, 0.0, 1.0), 3: (0.0, 0.0, 0.0), 4: (0.5, 0.5, 0.0)}
    for seed, (value, root, level1) in cases.items():
        swept = {"network.width": 4, "seed": seed}
        path = write_store(tmp_path / "results", "e", f"r{seed}", swept=swept, value=value)
        _add_dead(path, root, level1)
    result = sslspec_cli("report", tmp_path / "results" / "e", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    head = "| network.width | root corr < 0.01 | of them: no live unit | dead level 0 | dead level 1 |"
    assert head + " dead level 2 |" in md
    assert "| 4 | 3 | 2 | 0.375 ± 0.415 (n=4) | 0.250 ± 0.433 (n=4) | 0.250 ± 0.000 (n=4) |" in md


TREES = SPEC.replace("data hltm { depth = 2 }", "data hltm { tree = [2, 2] }").replace(
    "network.width = [2, 5]", "data.tree = [[2, 2], [3, 3]]"
)


def test_a_spec_sweeping_a_list_valued_field_finds_its_runs(
    sslspec_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A spec that sweeps a list-valued field (`data.tree`) reports every planned run as found, with
    each tree's own mean ± std (the planned values are matched to the stores' JSON coordinates)."""
    spec = tmp_path / "e.ssl"
    spec.write_text(TREES)
    for run in lower(spec).runs:
        swept = dict(run.swept)
        value = FINAL[(2 if swept["data.tree"] == [2, 2] else 5, swept["seed"])]
        write_store(tmp_path / "results", run.experiment, run.id, swept=swept, value=value)
    result = sslspec_cli("report", spec, "--root", tmp_path / "results", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Runs: 8 planned; 8 complete, 0 failed, 0 running, 0 missing" in md
    assert "| [2, 2] | 0.375 ± 0.198 (n=4) |\n| [3, 3] | 0.688 ± 0.207 (n=4) |" in md


MACHINE = {
    "device": "cpu",
    "host": "a",
    "versions": {"python": "3.11.9", "torch": "2.13.0"},
    "git_commit": "0123456789ab",
}
PROVENANCE = {  # (width, seed) -> status and root attributes; (5, 2) has no store at all
    (2, 1): ("complete", {**MACHINE, "wall_time_s": 10.0, "started": "T00:00:00", "finished": "T00:00:10"}),
    (2, 2): ("complete", {**MACHINE, "wall_time_s": 30.0, "started": "T00:00:01", "finished": "T00:00:31"}),
    (5, 1): ("failed", {
        "device": "cuda", "host": "b", "versions": {"python": "3.12.1"},
        "git_commit": "fedcba987654", "git_dirty": True, "started": "T00:00:02",
        "finished": "T00:00:07", "error": "RuntimeError: boom",
    }),
}  # fmt: skip


def test_provenance_names_machines_times_and_the_runs_not_complete(tmp_path: Path) -> None:
    """The provenance section counts runs by status, spans the earliest start to the last finish,
    sums the recorded wall times, groups runs by machine (most runs first, median wall time, '?'
    when none is recorded, like an unrecorded version; a dirty commit marked) and lists each run
    not complete with its error."""
    spec = tmp_path / "e.ssl"
    spec.write_text(SPEC.replace("seed = 1..4", "seed = 1..2"))
    ids = {}
    for run in lower(spec).runs:
        swept = dict(run.swept)
        key = (swept["network.width"], swept["seed"])
        ids[key] = run.id
        if key in PROVENANCE:
            status, attrs = PROVENANCE[key]
            write_store(tmp_path / "results", run.experiment, run.id, swept=swept, status=status, **attrs)
    text = provenance(load_source(spec, tmp_path / "results"))
    assert text == "\n".join(
        [
            "- Runs: 4 planned; 2 complete, 1 failed, 0 running, 1 missing",
            "- Started T00:00:00, last finished T00:00:31; 40.0 s of worker time (wall times summed,"
            " a replica group's once)",
            "",
            "Where the runs with a store ran:",
            "",
            "| device | host | python | torch | git commit | runs | median wall time per run (s) |",
            "|---|---|---|---|---|---|---|",
            "| cpu | a | 3.11.9 | 2.13.0 | 0123456 | 2 | 20.0 |",
            "| cuda | b | 3.12.1 | ? | fedcba9 (dirty) | 1 | ? |",
            "",
            "**Runs not complete (2), excluded from every statistic:**",
            "",
            "| run id | network.width | seed | status | error |",
            "|---|---|---|---|---|",
            f"| {ids[5, 1]} | 5 | 1 | failed | RuntimeError: boom |",
            f"| {ids[5, 2]} | 5 | 2 | missing |  |",
        ]
    )


def test_two_swept_settings_make_a_grid_or_one_row_per_setting(tmp_path: Path) -> None:
    """With two swept settings (besides the seed) that form a full grid the value table has the
    first as rows and the second as columns; when they do not, one row per setting, one column each."""
    for (width, seed), value in FINAL.items():
        for lr, shift in ((0.1, 0.0), (0.2, 0.25)):
            swept = {"network.width": width, "optimizer.lr": lr, "seed": seed}
            write_store(tmp_path / "grid", "e", f"r{width}{seed}{lr}", swept=swept, value=value + shift)
            if (width, lr) in ((2, 0.1), (5, 0.2)):
                write_store(tmp_path / "zip", "e", f"r{width}{seed}{lr}", swept=swept, value=value + shift)
    tables = {}
    for name in ("grid", "zip"):
        sw = load_source(tmp_path / name / "e")
        tables[name] = value_table(sw, final(root_of(sw.ds[LEVEL_CORR])), "root corr")
    assert tables["grid"] == (
        "root corr (4 seeds per setting; 16 of 16 runs complete):\n\n"
        "| network.width \\ optimizer.lr | 0.1 | 0.2 |\n|---|---|---|\n"
        "| 2 | 0.375 ± 0.198 (n=4) | 0.625 ± 0.198 (n=4) |\n"
        "| 5 | 0.688 ± 0.207 (n=4) | 0.938 ± 0.207 (n=4) |"
    )
    assert tables["zip"] == (
        "root corr (4 seeds per setting; 8 of 8 runs complete):\n\n"
        "| network.width | optimizer.lr | root corr |\n|---|---|---|\n"
        "| 2 | 0.1 | 0.375 ± 0.198 (n=4) |\n"
        "| 5 | 0.2 | 0.938 ± 0.207 (n=4) |"
    )


def test_theorem_table_reads_each_runs_last_checked_epoch_per_node_and_m() -> None:
    """The theorem-check table has one row per setting and checked node, one column per M, each cell
    mean ± std over seeds at each run's last epoch with a value (a run that stopped early counts at
    its own last one)."""
    w, s, e, n, m = np.ix_(range(2), range(2), range(3), range(2), range(2))
    value = np.broadcast_to(e / 10 + w / 5 + s / 10 + n / 100 + m / 1000, (2, 2, 3, 2, 2)).copy()
    value[1, 1, 2] = np.nan  # width 5, seed 2 ends after epoch 5: its last value is 0.1 lower + 0.1
    dims = ("width", "seed", "epoch", "tc_node", "tc_batches")
    ds = xr.Dataset(
        {"tc_rel_error": (dims, value), "status": (("width", "seed"), [["complete"] * 2] * 2)},
        coords={
            "width": xr.DataArray([2, 5], dims="width", attrs={"swept_path": "network.width"}),
            "seed": xr.DataArray([1, 2], dims="seed", attrs={"swept_path": "seed"}),
            "epoch": [0, 5, 10],
            "tc_node": [0, 3],
            "tc_batches": [1, 4],
        },
        attrs={"swept_paths": {"width": "network.width", "seed": "seed"}, "experiment": "e"},
    )
    runs = [
        {"width": a, "seed": b, "status": "complete", "run_id": "r", "attrs": {}}
        for a in (2, 5)
        for b in (1, 2)
    ]
    text = theorem_table(SweepResults(Path("e.ssl"), ds, None, "", runs), TC_REL_ERROR)
    assert text.startswith(
        "Theorem check, relative error ||g - p|| / ||g|| (0 when the prediction is exact), "
    )
    assert text.endswith(
        "at the last checked epoch (2 seeds per setting; 4 of 4 runs complete):\n\n"
        "| network.width | node | M=1 | M=4 |\n|---|---|---|---|\n"
        "| 2 | 0 | 0.250 ± 0.050 (n=2) | 0.251 ± 0.050 (n=2) |\n"
        "| 2 | 3 | 0.260 ± 0.050 (n=2) | 0.261 ± 0.050 (n=2) |\n"
        "| 5 | 0 | 0.400 ± 0.000 (n=2) | 0.401 ± 0.000 (n=2) |\n"
        "| 5 | 3 | 0.410 ± 0.000 (n=2) | 0.411 ± 0.000 (n=2) |"
    )


def test_a_setting_is_labelled_as_the_spec_writes_it_and_wrapped_on_request(tmp_path: Path) -> None:
    """A setting's label is `path=value, ...` with booleans lowercase (as a spec writes them), the
    whole text when no width is given, lines of at most `width` characters otherwise, 'all runs'
    for the setting of a sweep without settings."""
    swept = {"loss.batch_norm": True, "network.width": 10, "seed": 1}
    write_store(tmp_path, "e", "r", swept=swept)
    sw = load_source(tmp_path / "e")
    combo = {d: r[d] for r in sw.runs for d in sw.settings}
    text = label(sw, combo)
    assert text == "loss.batch_norm=true, network.width=10" and show(False) == "false"
    assert label(sw, combo, 30) == "loss.batch_norm=true,\nnetwork.width=10"
    assert label(sw, {}) == "all runs"


def test_worker_time_counts_a_replica_group_once() -> None:
    """Every replica of a batched group records the group's wall time, so the total counts each
    group once (its longest record) and each unbatched run once; a store without one adds nothing."""
    group = lambda g, w: {"wall_time_s": w, "replica_group": {"group": g, "size": 2}}
    attrs = [group("g1", 50.0), group("g1", 52.0), group("g2", 7.0), {"wall_time_s": 10.0}, {"status": "x"}]
    assert total_wall(attrs) == 52.0 + 7.0 + 10.0


def test_the_machines_table_says_when_its_medians_are_groups() -> None:
    """With runs trained in replica groups the machines table says that their wall time is the
    group's; without any, it says nothing of groups."""
    from sslspec.report.tables import machines

    alone = [{"device": "cpu", "wall_time_s": 10.0}]
    batched = [*alone, {"device": "cpu", "wall_time_s": 30.0, "replica_group": {"group": "g", "size": 2}}]
    assert "replica group" not in machines(alone)
    assert machines(batched).endswith("the median is that of their groups, not of one run's share.")
