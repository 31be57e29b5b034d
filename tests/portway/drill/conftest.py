"""The drill e2e tests' shared runs: see `drill_pool`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drill_pool import RUNS, DrillPool


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "drill(run): the test judges this run of `drill_pool.RUNS` (started with others)"
    )


@pytest.fixture(scope="module")
def drills(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DrillPool]:
    """Every run the module's selected tests name, started at once (see `drill_pool`)."""
    names = [
        marker.args[0]
        for item in request.session.items
        if item.module is request.module
        for marker in item.iter_markers("drill")
    ]
    unknown = set(names) - RUNS.keys()
    assert not unknown, f"no such drill run: {unknown}"
    pool = DrillPool(names, tmp_path_factory.mktemp("drills"))
    try:
        yield pool
    finally:
        pool.close()
