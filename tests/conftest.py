"""Shared test options: `--update-golden` rewrites the expected files of golden tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
