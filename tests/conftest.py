"""Shared fixtures: the repository root and the data mirror beside it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mirror() -> Path:
    from diffsec.sources import default_mirror

    m = default_mirror(REPO)
    if m is None:
        pytest.skip("no ../shared/mirror beside the repository")
    return m
