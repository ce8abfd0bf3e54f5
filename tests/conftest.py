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


# The longest file first (the whole smoke DAG and the fault injection that reuses it: ~12 of the
# suite's ~16 serial minutes): under `pytest -n 2 --dist loadfile` (README) one worker takes it
# while the other runs every other file beside it. Order within a file is kept.
FIRST = ("test_workflow.py",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in FIRST)   # stable: the rest keep their order
