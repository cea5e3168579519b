from __future__ import annotations

from dkos.apps import spec
from dkos.apps.versions import ChangeKind, compute_template_hash, describe_change

BASE = spec.parse("name: web\nimage: demo:1\ninstances: 2")


def _hash(new: spec.AppSpec, kind: ChangeKind, previous_hash: str = "h0", version: int = 2) -> str:
    return compute_template_hash(new, previous_spec=BASE, previous_hash=previous_hash, kind=kind, version=version)


def test_scaling_keeps_the_template_so_instances_are_not_replaced() -> None:
    assert _hash(BASE.model_copy(update={"instances": 5}), ChangeKind.SCALE) == "h0"


def test_a_new_image_changes_the_template() -> None:
    assert _hash(BASE.model_copy(update={"image": "demo:2"}), ChangeKind.UPDATE) != "h0"


def test_each_restart_makes_a_new_template() -> None:
    first = _hash(BASE, ChangeKind.RESTART, version=2)
    second = _hash(BASE, ChangeKind.RESTART, previous_hash=first, version=3)
    assert len({"h0", first, second}) == 3


def test_the_change_line_says_what_changed() -> None:
    new = BASE.model_copy(update={"image": "demo:2", "instances": 3, "env": {"A": "1"}})
    assert describe_change(BASE, new, ChangeKind.UPDATE) == "image demo:1 → demo:2; env changed; instances 2 → 3"
    assert describe_change(None, BASE, ChangeKind.CREATE) == "created with image demo:1, 2 instances"


def test_declaring_changing_or_dropping_alarms_keeps_the_template() -> None:
    oom = {"name": "oom", "query": "OutOfMemory", "threshold": 3, "window": 60}
    cpu = {"name": "cpuhigh", "metric": "cpu_percent", "threshold": 90, "period": 300}
    declared = spec.validate({**BASE.to_json(), "log_alarms": [oom], "alarms": [cpu]})
    assert _hash(declared, ChangeKind.UPDATE) == "h0"
    changed = spec.validate({**BASE.to_json(), "log_alarms": [{**oom, "threshold": 5}]})
    dropped = compute_template_hash(BASE, previous_spec=changed, previous_hash="h1", kind=ChangeKind.UPDATE, version=3)
    assert dropped == "h1"
    assert _hash(declared.model_copy(update={"image": "demo:2"}), ChangeKind.UPDATE) != "h0"
