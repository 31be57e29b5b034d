"""Suite-wide settings: hypothesis runs derandomized in CI so a run is reproducible."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Undo what a test's `setup_logging` (a CLI verb run in-process) did to the root logger.

    Its handler writes to the test's captured stderr, which pytest closes after the
    test; a thread still running from that test (an emulator, a registry watch)
    would then log into a closed file and print a traceback into a later test's
    captured output.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
