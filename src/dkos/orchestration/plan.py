"""The reconcile decision: desired app + stored instances + what the engine reports → actions.

A pure function (`compute`) with `now` as an input, like Nomad's `reconcile_cluster.go`:
the reconciler loop gathers the inputs, calls it, and carries the actions out. Calling it
again with the same inputs gives the same actions, so every pass is safe to repeat.

Rules, in order:
1. A container whose instance is stopped, failed or unknown is removed (unknown ones only
   after a grace period: the sweeper).
2. A running instance whose container exited or vanished fails, with the exit reason.
3. Each slot `0 … instances-1` holds one instance of the current template. A missing one is
   created, after the slot's restart backoff. An old-template instance that is healthy is
   replaced one slot at a time (start the new one, stop the old one once the new one is
   healthy); one that is not healthy serves nobody and is replaced at once.
4. Instances in slots beyond `instances`, and all of them when the app is deleted, stop
   gracefully. A deleted app whose instances and containers are all gone is finished.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from dkos.apps.spec import RestartBackoff
from dkos.engines.base import ContainerState, ContainerStatus
from dkos.orchestration import backoff
from dkos.orchestration.instances import ACTIVE, LIVE, TERMINAL, Instance, InstanceState


@dataclass(frozen=True)
class DesiredApp:
    app_id: int
    version: int
    template_hash: str
    instances: int
    deleting: bool
    restart: RestartBackoff
    max_surge: int = 1
    """Instances allowed above `instances` while a new version rolls out (already resolved)."""
    max_unavailable: int = 0
    """Available instances allowed below `instances` while a new version rolls out."""
    min_ready_seconds: float = 0.0


@dataclass(frozen=True)
class Limits:
    backoff_reset_after: float
    orphan_grace: float


@dataclass(frozen=True)
class CreateInstance:
    slot: int
    not_before: float


@dataclass(frozen=True)
class StartInstance:
    instance: Instance


@dataclass(frozen=True)
class AdoptContainer:
    """A pending instance whose container runs already (the server died right after starting it)."""

    instance: Instance
    container: ContainerStatus


@dataclass(frozen=True)
class FailInstance:
    instance: Instance
    reason: str
    exit_code: int | None = None


@dataclass(frozen=True)
class StopInstance:
    instance: Instance
    reason: str


@dataclass(frozen=True)
class RemoveContainer:
    container: ContainerStatus


@dataclass(frozen=True)
class FinishDelete:
    pass


Action = CreateInstance | StartInstance | AdoptContainer | FailInstance | StopInstance | RemoveContainer | FinishDelete


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    wake_at: float | None
    """When to look again even if nothing happens (a pending restart backoff ends)."""


def exit_reason(container: ContainerStatus) -> str:
    """A human reason for a stopped container, e.g. `exited with code 137 (out of memory)`."""
    if container.error:
        return f"could not run: {container.error}"
    code = container.exit_code
    if container.oom_killed:
        return f"exited with code {code} (out of memory)"
    if code == 137:
        return "exited with code 137 (killed)"
    if code == 143:
        return "exited with code 143 (terminated)"
    return f"exited with code {code}"


def _observe(instance: Instance, container: ContainerStatus | None, now: float) -> Action | None:
    """What the engine's report means for one live instance."""
    if instance.state is InstanceState.PENDING:
        if container is None:
            return StartInstance(instance) if instance.not_before <= now else None
        if container.state is ContainerState.RUNNING:
            return AdoptContainer(instance, container)
        if container.state is ContainerState.CREATED:
            return StartInstance(instance)
        return FailInstance(instance, exit_reason(container), container.exit_code)
    if container is None:
        return FailInstance(instance, "container disappeared")
    if container.state is not ContainerState.RUNNING:
        return FailInstance(instance, exit_reason(container), container.exit_code)
    return None


def _failed(instance: Instance, action: FailInstance, now: float) -> Instance:
    return dataclasses.replace(
        instance,
        state=InstanceState.FAILED,
        reason=action.reason,
        exit_code=action.exit_code,
        ended_at=now,
    )


def compute(
    app: DesiredApp,
    instances: Sequence[Instance],
    containers: Sequence[ContainerStatus],
    *,
    limits: Limits,
    now: float,
) -> Plan:
    actions: list[Action] = []
    by_id = {i.id: i for i in instances}
    container_of: dict[str, ContainerStatus] = {}

    for container in containers:
        owner = by_id.get(container.instance_id or "")
        if owner is None:
            age = now - (container.created_at or 0.0)
            if age >= limits.orphan_grace:
                actions.append(RemoveContainer(container))
        elif owner.state in TERMINAL:
            actions.append(RemoveContainer(container))
        else:
            container_of[owner.id] = container

    # What the engine says happened, applied to a working copy so the rest of the plan
    # (and the backoff history) sees this pass's failures at once.
    current: dict[str, Instance] = dict(by_id)
    for instance in instances:
        if instance.state not in LIVE:
            continue
        its_container = container_of.get(instance.id)
        observed = _observe(instance, its_container, now)
        if isinstance(observed, FailInstance):
            actions.append(observed)
            current[instance.id] = _failed(instance, observed, now)
            if its_container is not None:
                actions.append(RemoveContainer(its_container))
        elif observed is not None:
            actions.append(observed)

    for instance in instances:
        if instance.state is InstanceState.STOPPING:
            actions.append(StopInstance(instance, instance.reason or "stopping"))

    live = [i for i in current.values() if i.state in LIVE]
    wake_at: list[float] = [i.not_before for i in live if i.state is InstanceState.PENDING and i.not_before > now]

    def stop(instance: Instance, reason: str) -> None:
        actions.append(StopInstance(instance, reason))

    if app.deleting:
        for instance in live:
            stop(instance, "app deleted")
        if not any(i.state in ACTIVE for i in current.values()) and not containers:
            actions.append(FinishDelete())
        return Plan(tuple(actions), min(wake_at, default=None))

    by_slot: dict[int, list[Instance]] = defaultdict(list)
    for instance in live:
        if instance.slot >= app.instances:
            stop(instance, f"scaled to {app.instances}")
        else:
            by_slot[instance.slot].append(instance)

    history: dict[int, list[Instance]] = defaultdict(list)
    for instance in current.values():
        if instance.state in TERMINAL and instance.template_hash == app.template_hash:
            history[instance.slot].append(instance)

    def create(slot: int) -> None:
        not_before = backoff.compute_not_before(
            history[slot], app.restart, reset_after=limits.backoff_reset_after, now=now
        )
        actions.append(CreateInstance(slot=slot, not_before=not_before))
        if not_before > now:
            wake_at.append(not_before)

    def available(instance: Instance) -> bool:
        """Healthy for at least `min_ready_seconds` (Kubernetes' "available")."""
        return instance.state is InstanceState.HEALTHY and (
            not app.min_ready_seconds or now - (instance.healthy_at or now) >= app.min_ready_seconds
        )

    # Per slot: the current-template instance (if any) and the old one still serving.
    to_roll: list[tuple[int, Instance]] = []
    occupied = 0
    ready = 0
    for slot in range(app.instances):
        here = by_slot.get(slot, [])
        new = _best_first([i for i in here if i.template_hash == app.template_hash])
        old = [i for i in here if i.template_hash != app.template_hash]
        serving = [i for i in old if i.state is InstanceState.HEALTHY]
        for instance in old:
            if instance not in serving:  # an old instance that serves nobody goes at once
                stop(instance, f"replaced by version {app.version}")
        for extra in new[1:]:
            stop(extra, "duplicate in its slot")
        if new and available(new[0]):
            for instance in serving:
                stop(instance, f"replaced by version {app.version}")
            serving = []
        elif new and new[0].state is InstanceState.HEALTHY and app.min_ready_seconds:
            wake_at.append((new[0].healthy_at or now) + app.min_ready_seconds)
        if not new and not serving:
            create(slot)
            occupied += 1
            continue
        occupied += len(new[:1]) + len(serving[:1])
        ready += 1 if serving or available(new[0]) else 0
        if not new:
            to_roll.append((slot, serving[0]))

    # Rolling: start new instances beside old ones within the surge, and stop old ones
    # before their replacement is ready within the unavailable budget (both resolved
    # from the strategy with Kubernetes' rounding).
    surge_room = app.instances + app.max_surge - occupied
    unavailable_room = ready - (app.instances - app.max_unavailable)
    for slot, old_instance in to_roll:
        if surge_room > 0:
            surge_room -= 1
            create(slot)
        elif unavailable_room > 0:
            unavailable_room -= 1
            stop(old_instance, f"replaced by version {app.version}")
            create(slot)

    return Plan(tuple(actions), min(wake_at, default=None))


_PREFERENCE = {
    InstanceState.HEALTHY: 0,
    InstanceState.STARTING: 1,
    InstanceState.UNHEALTHY: 2,
    InstanceState.PENDING: 3,
}


def _best_first(instances: Sequence[Instance]) -> list[Instance]:
    """Healthy before starting before unhealthy before pending; newer first among equals."""
    return sorted(instances, key=lambda i: (_PREFERENCE.get(i.state, 9), -i.created_at))
