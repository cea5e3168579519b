"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dkos_server import DkosServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DkosServer]:
    """A real `dkos server` of the test's own, cleaned up with what it leaves running."""
    running = DkosServer(tmp_path / "data").start()
    yield running
    running.cleanup()
