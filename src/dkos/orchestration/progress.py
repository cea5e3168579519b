"""Whether a deployment has succeeded or failed, decided from the app's instances (pure).

A deployment succeeds when exactly the desired number of instances run, all healthy and
all of the current template. It fails when an instance of the new template cannot start
for a permanent reason (a missing image), when one slot has failed `failure_threshold`
times in a row since the deployment began, or when it made no progress (no new instance
became healthy) for `progress_deadline` seconds. The reconciler then rolls an update back
to the version before it; otherwise it keeps trying with backoff.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from dkos.apps.store import Deployment, DeploymentStatus
from dkos.apps.versions import ChangeKind
from dkos.orchestration.instances import ACTIVE, Instance, InstanceState


@dataclass(frozen=True)
class Outcome:
    status: DeploymentStatus
    reason: str = ""


def healthy_count(instances: Sequence[Instance], template_hash: str) -> int:
    return sum(1 for i in instances if i.state is InstanceState.HEALTHY and i.template_hash == template_hash)


def compute_outcome(
    deployment: Deployment,
    instances: Sequence[Instance],
    *,
    template_hash: str,
    desired: int,
    failure_threshold: int,
    progress_deadline: float,
    now: float,
) -> Outcome | None:
    """The deployment's outcome, or None while it is still under way."""
    active = [i for i in instances if i.state in ACTIVE]
    if deployment.kind is ChangeKind.DELETE:
        return None  # finished by the reconciler once every container is gone
    if len(active) == desired and healthy_count(active, template_hash) == desired:
        return Outcome(DeploymentStatus.SUCCEEDED)

    failures_since_start = sorted(
        (
            i
            for i in instances
            if i.state is InstanceState.FAILED
            and i.template_hash == template_hash
            and (i.ended_at or 0.0) >= deployment.created_at
        ),
        key=lambda i: i.ended_at or 0.0,
    )
    streaks: dict[int, int] = defaultdict(int)
    for failure in failures_since_start:
        if failure.permanent_failure:
            return Outcome(DeploymentStatus.FAILED, f"instance {failure.id} failed: {failure.reason}")
        streaks[failure.slot] = 0 if failure.healthy_at is not None else streaks[failure.slot] + 1
        if streaks[failure.slot] >= failure_threshold:
            return Outcome(
                DeploymentStatus.FAILED,
                f"{failure_threshold} starts in a row failed; last: instance {failure.id} {failure.reason}",
            )
    last_progress = max(
        (i.healthy_at or 0.0 for i in instances if i.template_hash == template_hash),
        default=0.0,
    )
    if now - max(deployment.created_at, last_progress) > progress_deadline:
        return Outcome(
            DeploymentStatus.FAILED,
            f"no progress for {progress_deadline:g}s (progress deadline): "
            f"{healthy_count(active, template_hash)} of {desired} instances healthy",
        )
    return None
