"""The head's exact operator factors for every projection-head option a spec can choose: without
batch norm the layer after a Linear is its in-place ReLU, which must not touch the Jacobian's input."""

from __future__ import annotations

import pytest
import torch
from test_operator import assert_head_operators_match_autograd, views

from runtime.images.encoders import HeadOptions, build_encoder


@pytest.mark.parametrize(
    "opt",
    [HeadOptions(batch_norm=False), HeadOptions(batch_norm=False, bias=False), HeadOptions(affine=False)],
)
def test_head_factors_match_per_view_autograd_for_every_head_option(opt: HeadOptions) -> None:
    """Each head layer's operator from K = J^T (x) h equals per-view autograd's, with the head's batch
    norm off (it was a RuntimeError: the in-place ReLU ran on a view of jacrev's input, so a spec with
    `batch_norm = false` and `theorem_check` passed check and failed at its first measurement) or
    without affine parameters."""
    gen = torch.Generator().manual_seed(0)
    enc = build_encoder("convnet", gen, head=(5, 3, 4), channels=(3, 4), opt=opt).to(torch.float64)
    assert_head_operators_match_autograd(enc, views(3, 4))
