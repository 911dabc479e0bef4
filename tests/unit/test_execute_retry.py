"""An approved action waits for its MCP server across a supervisor restart (benchmarks/chaos.py
found incidents failed because `tools.execute` gave up after 3 attempts, 6 s, while a killed
MCP server was being restarted; the action's row stayed `running` and the runbook was demoted)."""

from __future__ import annotations

from workers.settings import Settings
from workflows.incident import EXECUTE_RETRY


def retry_window_s() -> float:
    """Seconds from the first attempt to the last one, back-off only (attempts take no time)."""
    assert EXECUTE_RETRY.maximum_attempts and EXECUTE_RETRY.maximum_interval
    wait, total = EXECUTE_RETRY.initial_interval.total_seconds(), 0.0
    for _ in range(EXECUTE_RETRY.maximum_attempts - 1):
        total += wait
        wait = min(wait * EXECUTE_RETRY.backoff_coefficient, EXECUTE_RETRY.maximum_interval.total_seconds())
    return total


def test_execute_outlasts_a_restart_at_the_supervisors_longest_back_off() -> None:
    longest = Settings.model_fields["supervisor_backoff_max_s"].default  # 60 s
    start = 30.0  # a restarted MCP server healthy again, generously (chaos: 4 to 21 s on 2 loaded cores)
    assert retry_window_s() >= longest + start, retry_window_s()
    assert retry_window_s() <= 300  # and not forever: a server that stays away fails the action
