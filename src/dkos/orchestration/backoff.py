"""Restart backoff, a pure decision over one slot's history (CrashLoopBackOff as reference).

A slot is one of an app's `instances` places; each instance that ran in it is history.
The first failure after a good run is replaced at once; each further failure in a row
waits `initial_delay × factor^(n-2)`, capped at `max_delay`. A run that stayed healthy
for `reset_after` seconds, a deliberate stop, or a new template ends the streak.
"""

from __future__ import annotations

from collections.abc import Sequence

from dkos.apps.spec import RestartBackoff
from dkos.orchestration.instances import Instance, InstanceState


def failure_streak(history: Sequence[Instance], *, reset_after: float) -> int:
    """Failures in a row at the end of `history` (terminal instances of one slot and template)."""
    streak = 0
    for instance in sorted(history, key=lambda i: i.ended_at or 0.0):
        if instance.state is InstanceState.STOPPED:
            streak = 0
        elif instance.state is InstanceState.FAILED:
            ran_fine = (
                instance.healthy_at is not None
                and instance.ended_at is not None
                and instance.ended_at - instance.healthy_at >= reset_after
            )
            streak = 1 if ran_fine else streak + 1
    return streak


def delay_for(streak: int, policy: RestartBackoff) -> float:
    if streak <= 1:
        return 0.0
    return float(min(policy.initial_delay * policy.factor ** (streak - 2), policy.max_delay))


def compute_not_before(history: Sequence[Instance], policy: RestartBackoff, *, reset_after: float, now: float) -> float:
    """When the slot's next instance may start."""
    delay = delay_for(failure_streak(history, reset_after=reset_after), policy)
    if delay == 0:
        return now
    last_end = max((i.ended_at or 0.0) for i in history if i.state is InstanceState.FAILED)
    return max(now, last_end + delay)
