"""Reading an app spec file for `dkos apps deploy`: its text and the content type to send.

The server validates the spec (docs/app-spec.md) and names every broken field; the CLI
only checks that the file exists and parses, so a typo in the YAML gets a clear local
message instead of a round trip. The text is sent as written — not re-serialised — so
what the server stores and reports matches the user's file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from dkos.cli import errors

YAML_SUFFIXES = (".yaml", ".yml")
YAML_CONTENT_TYPE = "application/yaml"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class SpecFile:
    text: str
    content_type: str


def read(path: Path) -> SpecFile:
    """The file's text and content type, or `errors.Failure` (exit 2) saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise errors.Failure(f"spec file not found: {path}", errors.ExitCode.INVALID) from exc
    except IsADirectoryError as exc:
        raise errors.Failure(f"spec file is a directory: {path}", errors.ExitCode.INVALID) from exc
    except UnicodeDecodeError as exc:
        raise errors.Failure(f"spec file {path} is not UTF-8 text", errors.ExitCode.INVALID) from exc
    except OSError as exc:
        raise errors.Failure(f"cannot read spec file {path}: {exc.strerror}", errors.ExitCode.INVALID) from exc
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise errors.Failure(f"spec file {path} is not valid YAML: {exc}", errors.ExitCode.INVALID) from exc
        return SpecFile(text=text, content_type=YAML_CONTENT_TYPE)
    try:
        json.loads(text)
    except ValueError as exc:
        raise errors.Failure(
            f"spec file {path} is not valid JSON: {exc} (name it .yaml or .yml if it is YAML)",
            errors.ExitCode.INVALID,
        ) from exc
    return SpecFile(text=text, content_type=JSON_CONTENT_TYPE)
