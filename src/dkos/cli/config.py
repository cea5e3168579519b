"""Where the CLI finds the dkos server and its token.

Every command starts here. The URL comes from, in order:

1. the `DKOS_URL` environment variable (scripts and CI set it per call);
2. the config file `$XDG_CONFIG_HOME/dkos/config.json` (default `~/.config/dkos/`),
   written by `dkos login`;
3. `http://127.0.0.1:7700`, where `dkos server` listens by default.

The token comes from `DKOS_TOKEN`, else the config file, else the admin token the local
server wrote to `<data dir>/admin.token` (`DKOS_DATA_DIR`, default `./.dkos`), so whoever
just ran `make run` can type commands at once. A token is only ever sent to the server it
was saved for: the config file's token only with the config file's URL, the local admin
token only to a loopback address.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dkos.cli import errors

DEFAULT_URL = "http://127.0.0.1:7700"
DEFAULT_DATA_DIR = ".dkos"
ADMIN_TOKEN_FILE = "admin.token"
_LOOPBACK_HOSTS = {"localhost", "::1"}


@dataclass(frozen=True)
class Login:
    """What `dkos login` saved: a server and the token to use with it."""

    url: str
    token: str


@dataclass(frozen=True)
class Target:
    """The server a command talks to and the token it presents (None: send none, get a 401)."""

    url: str
    token: str | None


def config_path(env: Mapping[str, str]) -> Path:
    """The config file, honouring XDG_CONFIG_HOME as other Linux tools do."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "dkos" / "config.json"


def normalize_url(url: str) -> str:
    """`url` without a trailing slash; raises `errors.Failure` unless it is http(s)://host[:port]."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.Failure(
            f"not a server URL: {url!r} (expected e.g. http://127.0.0.1:7700)",
            errors.ExitCode.INVALID,
        )
    return url


def load(path: Path) -> Login | None:
    """The saved login, or None when there is none; a damaged file is an error, not ignored."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.Failure(f"cannot read {path}: {exc.strerror}", errors.ExitCode.INVALID) from exc
    try:
        data = json.loads(text)
        return Login(url=str(data["url"]), token=str(data["token"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.Failure(
            f"{path} is damaged (expected JSON with url and token); run `dkos login` again",
            errors.ExitCode.INVALID,
        ) from exc


def save(path: Path, login: Login) -> None:
    """Write the login so only its owner can read it (0600), replacing any older one atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A leftover temp file keeps its old mode through O_CREAT; narrow it before the token lands.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"url": login.url, "token": login.token}, file, indent=2)
        file.write("\n")
    os.replace(tmp, path)


def resolve(env: Mapping[str, str], *, cwd: Path) -> Target:
    """The server and token a command uses, from `env` (normally `os.environ`) and files."""
    saved = load(config_path(env))
    if env.get("DKOS_URL"):
        url = normalize_url(env["DKOS_URL"])
    elif saved is not None:
        url = saved.url
    else:
        url = DEFAULT_URL
    token = env.get("DKOS_TOKEN") or None
    if token is None and saved is not None and saved.url == url:
        token = saved.token
    if token is None and _is_loopback(url):
        token = _read_admin_token(cwd / (env.get("DKOS_DATA_DIR") or DEFAULT_DATA_DIR) / ADMIN_TOKEN_FILE)
    return Target(url=url, token=token)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _read_admin_token(path: Path) -> str | None:
    # Unreadable is normal here (no local server, or someone else's): fall through to a 401
    # that tells the user what to do, rather than failing before the request.
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
