"""The report draws a scheduled sweep's learning rate and loss against the optimizer step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from click.testing import Result

from sslspec.report.sweep import load_source
from sslspec.spec.lower import lower

REFERENCE = Path(__file__).resolve().parents[2] / "specs" / "hltm_simclr.ssl"
SPEC = f"""\
include "{REFERENCE}" {{
  data.depth         = 3
  network.width      = 4
  train.batch        = 16
  train.samples      = 160
  train.epochs       = 3
  measure.every      = 3
  measure.samples    = 256
  measure.loss.every = 2
  optimizer.schedule = cosine(warmup_steps = 5, final_lr = 0.001)
}}
sweep hltm_simclr {{
  seed         = 1..2
  optimizer.lr = [0.05, 0.1]
}}
"""


def test_a_scheduled_sweep_gets_a_schedule_figure(sslspec_cli: Callable[..., Result], tmp_path: Path) -> None:
    """A sweep over lr with a cosine schedule: the report links `*_schedule.png` (a PNG) with its
    caption, and the loaded sweep holds each lr's curve, warm-up rising, then falling to the end;
    the same spec with a constant lr gets no such figure."""
    spec = tmp_path / "cosine.ssl"
    spec.write_text(SPEC)
    root, out = tmp_path / "results", tmp_path / "report"
    assert sslspec_cli("run", spec, "--out", root).exit_code == 0
    assert sslspec_cli("report", spec, "--root", root, "--out", out).exit_code == 0
    md = (out / "report.md").read_text()
    assert "![Learning-rate schedule (left)" in md and "(cosine_schedule.png)" in md
    assert (out / "cosine_schedule.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    lr = load_source(spec, root).ds["learning_rate"]
    for base in (0.05, 0.1):
        curve = lr.sel(lr=base).isel(seed=0).values  # windows of 2 steps over 30 steps
        assert curve.shape == (15,) and np.argmax(curve) == 2 and curve[-1] < 0.05 * base
        assert np.array_equal(curve, lr.sel(lr=base).isel(seed=1).values)
    plain = tmp_path / "plain.ssl"
    plain.write_text(SPEC.replace("  optimizer.schedule = cosine(warmup_steps = 5, final_lr = 0.001)\n", ""))
    assert len(lower(plain).runs) == 4
    assert sslspec_cli("run", plain, "--out", root).exit_code == 0
    assert sslspec_cli("report", plain, "--root", root, "--out", tmp_path / "plain").exit_code == 0
    text = (tmp_path / "plain" / "report.md").read_text()
    assert "_schedule.png" not in text and "Learning-rate schedule" not in text
