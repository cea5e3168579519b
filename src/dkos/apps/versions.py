"""Pure decisions about versions: what changed, and whether instances must be replaced.

Every change to an app stores a new immutable version. Instances are replaced only when
the *template* changes (everything but `instances`), or on a restart; scaling keeps the
template, so it starts or stops instances without touching the others (the Kubernetes
pod-template-hash idea, derived here rather than stored as a counter).
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Any

from dkos.apps.spec import AppSpec


class ChangeKind(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    SCALE = "scale"
    RESTART = "restart"
    ROLLBACK = "rollback"
    DELETE = "delete"


OUTSIDE_TEMPLATE = ("alarms", "log_alarms", "scaling_policies")
"""Spec fields that change no container: a deploy that changes only them replaces no instance."""


def _template(spec: AppSpec) -> dict[str, Any]:
    data = spec.to_json()
    data.pop("instances")
    for field in OUTSIDE_TEMPLATE:
        data.pop(field, None)
    return data


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def compute_template_hash(
    spec: AppSpec,
    *,
    previous_spec: AppSpec | None,
    previous_hash: str | None,
    kind: ChangeKind,
    version: int,
) -> str:
    """The template hash of a new version: unchanged when only `instances` changed, new on a
    restart (salted with the version so each restart differs), else the hash of the template."""
    if previous_hash is not None and previous_spec is not None:
        if kind is ChangeKind.RESTART:
            return _digest([previous_hash, "restart", version])
        if _template(spec) == _template(previous_spec):
            return previous_hash
    return _digest(_template(spec))


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def describe_change(old: AppSpec | None, new: AppSpec, kind: ChangeKind) -> str:
    """One line saying what changed, e.g. `image dkos-demo:1 → dkos-demo:2; instances 2 → 3`."""
    if kind is ChangeKind.RESTART:
        return "restart"
    if old is None:
        return f"created with image {new.image}, {new.instances} instances"
    before, after = old.to_json(), new.to_json()
    parts = []
    for key in after:
        if before.get(key) == after[key]:
            continue
        if isinstance(after[key], int | float | str) or after[key] is None:
            parts.append(f"{key} {_show(before.get(key))} → {_show(after[key])}")
        else:
            parts.append(f"{key} changed")
    return "; ".join(parts) or "no change"
