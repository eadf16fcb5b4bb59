"""Shared test options: `--update-golden` rewrites the expected files of golden tests; hypothesis
profiles, chosen with SSLSPEC_HYPOTHESIS_PROFILE: `ci` (the default: derandomized, so every CI run
tries the same examples, about a minute of fuzzing in all) and `slow` (random, many examples, for
long local runs: `SSLSPEC_HYPOTHESIS_PROFILE=slow pytest tests/fuzz`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Generated spec texts are large and some strategies filter; neither is a problem here.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=150, derandomize=True, deadline=None, print_blob=True, suppress_health_check=_QUIET
)
settings.register_profile(
    "slow", max_examples=2_000, deadline=None, print_blob=True, suppress_health_check=_QUIET
)
settings.load_profile(os.environ.get("SSLSPEC_HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite golden expected files (tests/*/errors/*.err, tests/plan/golden/*) from actual output.",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[Path, str], None]:
    """A function (expected_path, actual_text) that asserts equality, or rewrites under --update-golden."""
    update = bool(request.config.getoption("--update-golden"))

    def compare(path: Path, actual: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
            return
        assert path.exists(), f"no golden file {path}; run pytest with --update-golden and review the diff"
        assert actual == path.read_text(), f"output differs from {path}; --update-golden accepts it"

    return compare
