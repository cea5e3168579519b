"""Fixtures for CLI tests: the CLI runs through `CliRunner` against a `FakeDkos`.

The one seam the CLI offers for tests is `main.new_client`: it is replaced so every
command's `Client` sends its requests to the fake through `httpx.MockTransport`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from dkos.cli import client, main, wait

from .fakes import FakeDkos


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeDkos]:
    fake = FakeDkos()

    def new_client(url: str, token: str | None) -> client.Client:
        return client.Client(url, token, transport=httpx.MockTransport(fake.handler))

    monkeypatch.setattr(main, "new_client", new_client)
    monkeypatch.setenv("DKOS_URL", "http://dkos.test:7700")
    monkeypatch.setenv("DKOS_TOKEN", "s3cret")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(wait, "POLL_INTERVAL", 0)
    yield fake


@pytest.fixture
def cli() -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main.app, list(args))

    return invoke
