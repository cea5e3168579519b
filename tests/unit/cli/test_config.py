"""Where the CLI finds the server and token: env, then the saved login, then the local defaults."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dkos.cli import config, errors


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home")}


def save_login(env: dict[str, str], url: str, token: str) -> Path:
    path = config.config_path(env)
    config.save(path, config.Login(url=url, token=token))
    return path


def write_admin_token(cwd: Path, token: str, data_dir: str = ".dkos") -> None:
    (cwd / data_dir).mkdir(parents=True)
    (cwd / data_dir / "admin.token").write_text(token + "\n")


def test_defaults_to_the_local_server_and_its_admin_token(home: dict[str, str], tmp_path: Path) -> None:
    write_admin_token(tmp_path, "admin-tok")

    assert config.resolve(home, cwd=tmp_path) == config.Target("http://127.0.0.1:7700", "admin-tok")


def test_the_admin_token_follows_dkos_data_dir(home: dict[str, str], tmp_path: Path) -> None:
    write_admin_token(tmp_path, "elsewhere", data_dir="state")

    assert config.resolve({**home, "DKOS_DATA_DIR": "state"}, cwd=tmp_path).token == "elsewhere"


def test_no_token_anywhere_means_none(home: dict[str, str], tmp_path: Path) -> None:
    assert config.resolve(home, cwd=tmp_path) == config.Target("http://127.0.0.1:7700", None)


def test_the_saved_login_beats_the_defaults(home: dict[str, str], tmp_path: Path) -> None:
    write_admin_token(tmp_path, "admin-tok")
    save_login(home, "https://dkos.example.com", "saved-tok")

    assert config.resolve(home, cwd=tmp_path) == config.Target("https://dkos.example.com", "saved-tok")


def test_env_vars_beat_the_saved_login(home: dict[str, str], tmp_path: Path) -> None:
    save_login(home, "https://dkos.example.com", "saved-tok")
    env = {**home, "DKOS_URL": "http://other:7700/", "DKOS_TOKEN": "env-tok"}

    assert config.resolve(env, cwd=tmp_path) == config.Target("http://other:7700", "env-tok")


def test_a_token_is_only_sent_to_the_server_it_was_saved_for(home: dict[str, str], tmp_path: Path) -> None:
    save_login(home, "https://dkos.example.com", "saved-tok")
    write_admin_token(tmp_path, "admin-tok")

    assert config.resolve({**home, "DKOS_URL": "https://evil.example.com"}, cwd=tmp_path).token is None
    assert config.resolve({**home, "DKOS_URL": "http://localhost:7700"}, cwd=tmp_path).token == "admin-tok"


def test_xdg_config_home_is_respected(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}

    assert config.config_path(env) == tmp_path / "xdg" / "dkos" / "config.json"
    assert (
        config.config_path({"HOME": str(tmp_path / "home")}) == tmp_path / "home" / ".config" / "dkos" / "config.json"
    )


def test_the_saved_login_is_private_even_over_an_older_file(home: dict[str, str]) -> None:
    path = config.config_path(home)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)

    save_login(home, "http://a:1", "t")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path) == config.Login("http://a:1", "t")


def test_a_damaged_config_file_is_an_error_not_ignored(home: dict[str, str], tmp_path: Path) -> None:
    path = config.config_path(home)
    path.parent.mkdir(parents=True)
    path.write_text("not json")

    with pytest.raises(errors.Failure, match="run `dkos login` again"):
        config.resolve(home, cwd=tmp_path)


@pytest.mark.parametrize("url", ["dkos.example.com", "ftp://x", "http://"])
def test_a_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(errors.Failure) as raised:
        config.normalize_url(url)
    assert raised.value.exit_code is errors.ExitCode.INVALID
