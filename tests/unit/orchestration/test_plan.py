"""The reconcile decision, over plain data: what a user would see the platform do."""

from __future__ import annotations

from dkos.apps.spec import RestartBackoff
from dkos.engines.base import LABEL_INSTANCE, ContainerState, ContainerStatus
from dkos.orchestration import plan
from dkos.orchestration.instances import Instance, InstanceState

NOW = 1000.0
LIMITS = plan.Limits(backoff_reset_after=600, orphan_grace=30)
S = InstanceState


def _app(
    instances: int = 3,
    template: str = "t1",
    deleting: bool = False,
    *,
    surge: int = 1,
    unavailable: int = 0,
    min_ready: float = 0,
) -> plan.DesiredApp:
    return plan.DesiredApp(
        app_id=1,
        version=1,
        template_hash=template,
        instances=instances,
        deleting=deleting,
        restart=RestartBackoff(),
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=min_ready,
    )


def _instance(
    n: int, state: InstanceState, *, slot: int | None = None, template: str = "t1", **fields: object
) -> Instance:
    return Instance(
        app_id=1,
        id=f"web-{n}",
        slot=n if slot is None else slot,
        version=1,
        template_hash=template,
        state=state,
        container_id=f"c{n}" if state is not S.PENDING else None,
        created_at=float(n),
        **fields,  # type: ignore[arg-type]
    )


def _container(n: int, state: ContainerState = ContainerState.RUNNING, **fields: object) -> ContainerStatus:
    return ContainerStatus(
        id=f"c{n}",
        name=f"dkos.default.web-{n}",
        labels={LABEL_INSTANCE: f"web-{n}"},
        state=state,
        created_at=NOW - 100,
        **fields,  # type: ignore[arg-type]
    )


def _compute(app: plan.DesiredApp, instances: list[Instance], containers: list[ContainerStatus]) -> plan.Plan:
    return plan.compute(app, instances, containers, limits=LIMITS, now=NOW)


def _of(kind: type, decided: plan.Plan) -> list[object]:
    return [a for a in decided.actions if isinstance(a, kind)]


def test_a_new_app_gets_one_instance_per_slot_at_once() -> None:
    decided = _compute(_app(3), [], [])
    assert decided.actions == tuple(plan.CreateInstance(slot=s, not_before=NOW) for s in range(3))


def test_a_steady_app_needs_nothing() -> None:
    instances = [_instance(n, S.HEALTHY) for n in range(3)]
    assert _compute(_app(3), instances, [_container(n) for n in range(3)]).actions == ()


def test_a_killed_instance_fails_with_its_exit_code_and_is_replaced_at_once() -> None:
    instances = [_instance(n, S.HEALTHY, healthy_at=NOW - 50) for n in range(3)]
    containers = [_container(0), _container(1, ContainerState.EXITED, exit_code=137), _container(2)]
    decided = _compute(_app(3), instances, containers)
    assert plan.FailInstance(instances[1], "exited with code 137 (killed)", 137) in decided.actions
    assert plan.RemoveContainer(containers[1]) in decided.actions
    assert plan.CreateInstance(slot=1, not_before=NOW) in decided.actions


def test_an_out_of_memory_exit_says_so() -> None:
    container = _container(0, ContainerState.EXITED, exit_code=137, oom_killed=True)
    assert plan.exit_reason(container) == "exited with code 137 (out of memory)"


def test_a_crash_looping_slot_waits_longer_each_time() -> None:
    history = [_instance(10 + k, S.FAILED, slot=0, ended_at=NOW - 3 + k) for k in range(3)]
    decided = _compute(_app(1), history, [])
    # three failures in a row: the next start waits initial_delay × factor = 2 s after the last one
    assert decided.actions == (plan.CreateInstance(slot=0, not_before=NOW - 1 + 2),)
    history.append(_instance(20, S.FAILED, slot=0, ended_at=NOW - 1))
    decided = _compute(_app(1), history, [])
    assert decided.actions == (plan.CreateInstance(slot=0, not_before=NOW + 3),)
    assert decided.wake_at == NOW + 3


def test_a_pending_instance_starts_when_its_backoff_ends() -> None:
    waiting = _instance(0, S.PENDING, not_before=NOW + 5)
    assert _compute(_app(1), [waiting], []).actions == ()
    assert _compute(_app(1), [waiting], []).wake_at == NOW + 5
    due = _instance(0, S.PENDING, not_before=NOW - 1)
    assert _compute(_app(1), [due], []).actions == (plan.StartInstance(due),)


def test_a_container_started_just_before_a_crash_is_adopted_not_duplicated() -> None:
    pending = _instance(0, S.PENDING)
    container = _container(0)
    assert _compute(_app(1), [pending], [container]).actions == (plan.AdoptContainer(pending, container),)


def test_containers_nothing_tracks_are_swept_after_the_grace_period() -> None:
    old = ContainerStatus(
        id="x",
        name="x",
        labels={LABEL_INSTANCE: "web-99"},
        state=ContainerState.RUNNING,
        created_at=NOW - 31,
    )
    young = ContainerStatus(
        id="y",
        name="y",
        labels={LABEL_INSTANCE: "web-98"},
        state=ContainerState.RUNNING,
        created_at=NOW - 5,
    )
    decided = _compute(_app(0), [], [old, young])
    assert decided.actions == (plan.RemoveContainer(old),)


def test_the_container_of_a_stopped_instance_is_removed() -> None:
    stopped = _instance(0, S.STOPPED, ended_at=NOW - 1)
    container = _container(0, ContainerState.EXITED, exit_code=0)
    assert plan.RemoveContainer(container) in _compute(_app(0), [stopped], [container]).actions


def test_scaling_in_stops_the_highest_slots() -> None:
    instances = [_instance(n, S.HEALTHY) for n in range(3)]
    decided = _compute(_app(1), instances, [_container(n) for n in range(3)])
    assert [a.instance.slot for a in _of(plan.StopInstance, decided)] == [1, 2]  # type: ignore[attr-defined]


def test_a_new_version_rolls_one_slot_at_a_time() -> None:
    old = [_instance(n, S.HEALTHY, template="t0") for n in range(2)]
    containers = [_container(n) for n in range(2)]
    decided = _compute(_app(2), old, containers)
    assert decided.actions == (plan.CreateInstance(slot=0, not_before=NOW),)

    starting = _instance(5, S.STARTING, slot=0)
    decided = _compute(_app(2), [*old, starting], [*containers, _container(5)])
    assert decided.actions == ()  # the new one is not healthy yet: the old one keeps serving

    healthy = _instance(5, S.HEALTHY, slot=0)
    decided = _compute(_app(2), [*old, healthy], [*containers, _container(5)])
    assert plan.StopInstance(old[0], "replaced by version 1") in decided.actions
    assert plan.CreateInstance(slot=1, not_before=NOW) in decided.actions


def test_an_old_instance_that_serves_nobody_is_replaced_at_once() -> None:
    broken = [_instance(n, S.UNHEALTHY, template="t0") for n in range(2)]
    decided = _compute(_app(2), broken, [_container(n) for n in range(2)])
    assert len(_of(plan.StopInstance, decided)) == 2
    assert len(_of(plan.CreateInstance, decided)) == 2


def test_deleting_stops_everything_then_finishes() -> None:
    instances = [_instance(n, S.HEALTHY) for n in range(2)]
    decided = _compute(_app(2, deleting=True), instances, [_container(n) for n in range(2)])
    assert len(_of(plan.StopInstance, decided)) == 2 and not _of(plan.FinishDelete, decided)
    done = [_instance(n, S.STOPPED, ended_at=NOW) for n in range(2)]
    assert _compute(_app(2, deleting=True), done, []).actions == (plan.FinishDelete(),)


def test_a_stopping_instance_is_stopped_again_after_a_restart_of_the_server() -> None:
    stopping = _instance(0, S.STOPPING, reason="scaled to 0")
    assert _compute(_app(0), [stopping], [_container(0)]).actions == (plan.StopInstance(stopping, "scaled to 0"),)


def _old_fleet(count: int) -> tuple[list[Instance], list[ContainerStatus]]:
    return [_instance(n, S.HEALTHY, template="t0") for n in range(count)], [_container(n) for n in range(count)]


def test_the_default_strategy_for_four_uses_one_surge_and_one_unavailable() -> None:
    old, containers = _old_fleet(4)
    decided = _compute(_app(4, surge=1, unavailable=1), old, containers)
    assert _of(plan.CreateInstance, decided) == [
        plan.CreateInstance(slot=0, not_before=NOW),
        plan.CreateInstance(slot=1, not_before=NOW),
    ]
    assert _of(plan.StopInstance, decided) == [plan.StopInstance(old[1], "replaced by version 1")]


def test_a_surge_of_two_starts_two_new_instances_and_stops_nothing_yet() -> None:
    old, containers = _old_fleet(2)
    decided = _compute(_app(2, surge=2, unavailable=0), old, containers)
    assert len(_of(plan.CreateInstance, decided)) == 2 and not _of(plan.StopInstance, decided)


def test_no_surge_replaces_within_the_unavailable_budget() -> None:
    old, containers = _old_fleet(3)
    decided = _compute(_app(3, surge=0, unavailable=1), old, containers)
    assert _of(plan.StopInstance, decided) == [plan.StopInstance(old[0], "replaced by version 1")]
    assert _of(plan.CreateInstance, decided) == [plan.CreateInstance(slot=0, not_before=NOW)]


def test_a_new_instance_must_stay_healthy_for_min_ready_seconds_before_the_old_one_goes() -> None:
    old, containers = _old_fleet(1)
    fresh = _instance(5, S.HEALTHY, slot=0, healthy_at=NOW - 2)
    decided = _compute(_app(1, min_ready=5), [*old, fresh], [*containers, _container(5)])
    assert not _of(plan.StopInstance, decided)
    assert decided.wake_at == NOW + 3
    settled = _instance(5, S.HEALTHY, slot=0, healthy_at=NOW - 6)
    decided = _compute(_app(1, min_ready=5), [*old, settled], [*containers, _container(5)])
    assert _of(plan.StopInstance, decided) == [plan.StopInstance(old[0], "replaced by version 1")]
