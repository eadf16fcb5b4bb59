"""The notebook example docs/sweep.ipynb: committed without outputs, and it runs top to bottom in
a Jupyter kernel, showing progress, the table and the plot."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "sweep.ipynb"


def test_the_committed_notebook_has_no_outputs() -> None:
    """Every code cell of docs/sweep.ipynb is stored without outputs or execution counts."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def _texts(cell: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
    )


def test_the_notebook_runs_a_sweep_and_plots_it(tmp_path: Path) -> None:
    """Executed in a kernel next to specs/, the notebook checks, plans and runs 4 runs, shows a
    progress line that ends 'finished', a table over widths and a PNG plot, with no error."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "docs")}}
    ).execute()
    cells = {c.id: c for c in nb.cells}
    assert _texts(cells["spec"]).strip() == "[]"
    assert _texts(cells["plan"]).count("'network.width'") == 4
    run = _texts(cells["run"])
    assert "finished: ran 4 of 4 runs (0 up to date)" in run
    assert run.count("complete") >= 4  # the per-run lines and the status table
    assert "width" in _texts(cells["table"])
    assert any("image/png" in o.get("data", {}) for o in cells["plot"].outputs)
    assert len(list((tmp_path / "docs" / "results" / "hltm_simclr").glob("*/v0001.zarr"))) == 4
