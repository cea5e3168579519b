from __future__ import annotations

from dkos.apps.spec import RestartBackoff
from dkos.orchestration import backoff
from dkos.orchestration.instances import Instance, InstanceState

POLICY = RestartBackoff(initial_delay=1, factor=2, max_delay=300)


def _ended(n: int, state: InstanceState, ended_at: float, healthy_at: float | None = None) -> Instance:
    return Instance(
        app_id=1,
        id=f"web-{n}",
        slot=0,
        version=1,
        template_hash="t",
        state=state,
        ended_at=ended_at,
        healthy_at=healthy_at,
    )


def _failures(count: int) -> list[Instance]:
    return [_ended(n, InstanceState.FAILED, ended_at=100.0 + n) for n in range(count)]


def test_the_first_failure_is_replaced_at_once() -> None:
    assert backoff.compute_not_before(_failures(1), POLICY, reset_after=600, now=101.5) == 101.5


def test_failures_in_a_row_wait_longer_each_time_up_to_the_cap() -> None:
    delays = [backoff.delay_for(backoff.failure_streak(_failures(n), reset_after=600), POLICY) for n in range(1, 12)]
    assert delays == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_the_delay_counts_from_the_last_failure() -> None:
    history = _failures(3)  # last one ended at 102
    assert backoff.compute_not_before(history, POLICY, reset_after=600, now=102.5) == 104.0


def test_a_long_healthy_run_resets_the_streak() -> None:
    history = [*_failures(5), _ended(9, InstanceState.FAILED, ended_at=2000.0, healthy_at=1000.0)]
    assert backoff.failure_streak(history, reset_after=600) == 1


def test_a_deliberate_stop_resets_the_streak() -> None:
    history = [*_failures(5), _ended(9, InstanceState.STOPPED, ended_at=200.0)]
    assert backoff.failure_streak(history, reset_after=600) == 0
