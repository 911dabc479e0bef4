"""What the gateway answers for a run that gave no result (`workers.gateway.ended.run_gone`), from
how Temporal says it ended (`workers.temporal.ended_as`, the SDK's own exceptions): `410 Gone`
without `Retry-After`, its code the way it ended, and what to do (a new key), or, for a run that
cannot be followed (Temporal unreachable), the `503` with `Retry-After` a client should retry.
Through HTTP: tests/integration/test_gateway.py."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError, TerminatedError, TimeoutType
from temporalio.exceptions import CancelledError as RunCancelledError
from temporalio.exceptions import TimeoutError as RunTimeoutError

from workers.gateway.ended import run_gone
from workers.temporal import RunEnding, ended_as


@pytest.mark.parametrize(
    ("cause", "ended"),
    [
        (TerminatedError("wrong cluster"), "terminated"),
        (RunCancelledError("Cancelled"), "cancelled"),
        (RunTimeoutError("timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]), "timed_out"),
        (ApplicationError("the ledger went away"), "failed"),
        (None, "failed"),
    ],
)
def test_ended_as_says_the_way_in_one_word(cause: BaseException | None, ended: RunEnding) -> None:
    assert ended_as(cause) == ended


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Request-Id"])
def test_a_run_that_ended_is_gone_for_its_key(header: str) -> None:
    err = run_gone("the agent run agent-gw-1 was cancelled", "cancelled", header)
    assert err.status == 410 and "Retry-After" not in err.headers
    assert err.body() == {
        "error": {
            "message": (
                f"the agent run agent-gw-1 was cancelled. No answer will come: the {header} names that run "
                f"for good; send a new {header} to start a new run"
            ),
            "type": "invalid_request_error",
            "param": None,
            "code": "run_cancelled",
        }
    }


def test_a_run_without_a_key_says_to_ask_again() -> None:
    err = run_gone("the agent run agent-gw-2 timed out", "timed_out", None)
    assert err.status == 410 and err.code == "run_timed_out"
    assert err.message == "the agent run agent-gw-2 timed out. No answer will come: ask again to start a new run"


def test_a_run_that_cannot_be_followed_is_a_503_to_retry() -> None:
    err = run_gone("cannot follow the agent run agent-gw-3: connection refused", None, "Idempotency-Key")
    assert err.status == 503 and err.headers == {"Retry-After": "5"} and err.code == "unavailable"
