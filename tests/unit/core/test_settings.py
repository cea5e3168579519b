from __future__ import annotations

from pathlib import Path

import pytest

from dkos.core.settings import Settings


def test_a_relative_data_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path(".dkos"))
    assert settings.data_dir == tmp_path / ".dkos"
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path / '.dkos' / 'dkos.db'}"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DKOS_LB_HTTP_PORT", "80")
    monkeypatch.setenv("DKOS_RESYNC_INTERVAL", "2.5")
    settings = Settings()
    assert (settings.lb_http_port, settings.resync_interval) == (80, 2.5)
