"""The measurement pass's sample count against the statistics measured over it."""

from __future__ import annotations

import pytest

from sslspec.errors import CheckError
from sslspec.spec.lower import lower

HLTM = """experiment a {
  data hltm { depth = 2 }
  network tree_relu { width = 2 }
  loss simple {}
  optimizer sgd {}
  train { batch = 1; samples = 2; epochs = 1 }
  measure { latent_correlation; covariance_operator { top = 1 } }
}
"""
DIGITS = """experiment a {
  data digits { size = 8 }
  network convnet { channels = [2]; projector = [2] }
  loss nt_xent {}
  optimizer sgd {}
  train { batch = 2; samples = 2; epochs = 1 }
  measure { collapse; covariance_operator { images = 2; top = 1 } }
}
"""


@pytest.mark.parametrize(
    ("text", "sets", "where", "says"),
    [
        (
            HLTM,
            ["measure.samples=1"],
            (1, 1),
            "'measure.samples' must be >= 2 for latent_correlation, covariance_operator (got 1)",
        ),
        (
            HLTM,
            ["train.samples=1"],
            (1, 1),
            "'train.samples' must be >= 2 for latent_correlation, "
            "covariance_operator (got 1, which measure.samples defaults to)",
        ),
        (DIGITS, ["measure.samples=1"], (1, 1), "'measure.samples' must be >= 2 for collapse (got 1)"),
        (
            HLTM.replace("samples = 2", "samples = 1"),
            [],
            (6, 22),
            "'train.samples' must be >= 2 for "
            "latent_correlation, covariance_operator (got 1, which measure.samples defaults to)",
        ),
    ],
    ids=["hltm_measure", "hltm_train_default", "images_collapse", "in_the_file"],
)
def test_one_measurement_sample_is_refused_where_it_was_written(
    text: str, sets: list[str], where: tuple[int, int], says: str
) -> None:
    """A correlation, an HLTM operator or a spread over one sample is refused at the samples field
    that set it (every such statistic was stored as 0: "root corr 0.000"); two samples check, and
    an image network's operator (its own `images`) does not count."""
    lower("a.ssl", [s.replace("=1", "=2") for s in sets], text.replace("samples = 1", "samples = 2"))
    with pytest.raises(CheckError) as info:
        lower("a.ssl", sets, text)
    (d,) = info.value.diagnostics
    assert d.message == says and d.span is not None and (d.span.line, d.span.col) == where
    lower("a.ssl", ["measure.samples=1"], DIGITS.replace("collapse; ", ""))
