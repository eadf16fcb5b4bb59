"""Limits of the augmentation pipeline that depend on the views' side: `check` refuses what the
runtime cannot do, at its position, and what it accepts runs."""

from __future__ import annotations

import pytest
import torch

from runtime.images.augment import Pipeline
from runtime.images.source import steps_of
from sslspec.errors import CheckError
from sslspec.spec.lower import lower

SPEC = """\
experiment a {{
  data {data}
  augment images {{
    {crop}
    blur {{ kernel = {kernel} }}
  }}
  network convnet {{ channels = [4]; projector = [4] }}
  loss nt_xent {{}}
  optimizer sgd {{}}
  train {{ batch = 2; samples = 4; epochs = 1 }}
}}
"""


@pytest.mark.parametrize(
    ("data", "crop", "side"),
    [
        ("digits { size = 8 }", "", 8),
        ("digits { size = 32 }", "crop { size = 5 }", 5),
        ("digits { size = 8 }", "crop = false", 8),
        ('cifar10 { root = "/nowhere" }', "", 32),
    ],
)
def test_a_blur_kernel_wider_than_the_views_is_refused_and_the_widest_allowed_runs(
    data: str, crop: str, side: int
) -> None:
    """kernel = 2 side - 1 checks and blurs views of that side; kernel = 2 side + 1 is one error
    at the kernel's position (it was accepted, then the run failed in kornia with exit 1)."""
    widest = 2 * side - 1
    (run,) = lower("a.ssl", (), SPEC.format(data=data, crop=crop, kernel=widest)).runs
    steps, size = steps_of(run.config)
    views = Pipeline(steps, size)(torch.zeros(2, 3, side, side, dtype=torch.uint8), torch.Generator())
    assert views.shape == (2, 3, size, size) and size == side
    with pytest.raises(CheckError) as info:
        lower("a.ssl", (), SPEC.format(data=data, crop=crop, kernel=widest + 2))
    (d,) = info.value.diagnostics
    assert (
        d.message
        == f"'blur.kernel' must be at most {widest} for views of {side} x {side} pixels (got {widest + 2})"
    )
    assert d.span is not None and (d.span.line, d.span.col) == (5, 12)
