from __future__ import annotations

from dkos.apps.store import Deployment, DeploymentStatus
from dkos.apps.versions import ChangeKind
from dkos.orchestration.instances import Instance, InstanceState
from dkos.orchestration.progress import Outcome, compute_outcome

DEPLOYMENT = Deployment(
    id=1,
    app_id=1,
    project="default",
    app="web",
    kind=ChangeKind.UPDATE,
    from_version=1,
    to_version=2,
    target_instances=2,
    status=DeploymentStatus.RUNNING,
    reason="",
    created_at=100.0,
    finished_at=None,
)


def _instance(n: int, state: InstanceState, template: str = "t2", **fields: object) -> Instance:
    return Instance(
        app_id=1,
        id=f"web-{n}",
        slot=fields.pop("slot", n),
        version=2,
        template_hash=template,
        state=state,
        **fields,
    )  # type: ignore[arg-type]


def _outcome(instances: list[Instance], now: float = 110.0) -> Outcome | None:
    return compute_outcome(
        DEPLOYMENT, instances, template_hash="t2", desired=2, failure_threshold=3, progress_deadline=60, now=now
    )


def test_succeeds_when_exactly_the_desired_instances_are_healthy_on_the_new_template() -> None:
    assert _outcome([_instance(0, InstanceState.HEALTHY), _instance(1, InstanceState.HEALTHY)]) == Outcome(
        DeploymentStatus.SUCCEEDED
    )


def test_is_under_way_while_an_old_instance_still_runs() -> None:
    old = _instance(5, InstanceState.HEALTHY, template="t1", slot=1)
    assert _outcome([_instance(0, InstanceState.HEALTHY), _instance(1, InstanceState.HEALTHY), old]) is None


def test_fails_at_once_on_a_missing_image() -> None:
    missing = _instance(
        0,
        InstanceState.FAILED,
        reason="image not found: foo:1",
        permanent_failure=True,
        ended_at=101.0,
    )
    outcome = _outcome([missing])
    assert outcome is not None and outcome.status is DeploymentStatus.FAILED
    assert "image not found: foo:1" in outcome.reason


def test_fails_after_repeated_crashes_in_one_slot() -> None:
    crashes = [
        _instance(n, InstanceState.FAILED, slot=0, reason="exited with code 1", ended_at=100.0 + n) for n in range(3)
    ]
    assert _outcome(crashes[:2]) is None
    outcome = _outcome(crashes)
    assert outcome is not None and outcome.status is DeploymentStatus.FAILED and "exited with code 1" in outcome.reason


def test_failures_from_before_the_deployment_do_not_count() -> None:
    earlier = [_instance(n, InstanceState.FAILED, slot=0, reason="x", ended_at=50.0 + n) for n in range(5)]
    assert _outcome(earlier) is None


def test_fails_when_no_new_instance_gets_healthy_within_the_progress_deadline() -> None:
    starting = [_instance(0, InstanceState.STARTING), _instance(1, InstanceState.STARTING)]
    assert _outcome(starting, now=159.0) is None
    outcome = _outcome(starting, now=161.0)
    assert outcome is not None and outcome.status is DeploymentStatus.FAILED
    assert outcome.reason == "no progress for 60s (progress deadline): 0 of 2 instances healthy"


def test_progress_pushes_the_deadline_back() -> None:
    one_healthy = [_instance(0, InstanceState.HEALTHY, healthy_at=150.0), _instance(1, InstanceState.STARTING)]
    assert _outcome(one_healthy, now=200.0) is None
