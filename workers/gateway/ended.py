"""What a request to `/v1/chat/completions` hears of a run that ended without an answer
(docs/gateway.md#a-run-that-ended-without-an-answer): `410 Gone` for the key that names it, which
says how it ended and to send a new key (`run_gone`), never a 503 to retry; the 503 with
`Retry-After` only when the run cannot be followed (Temporal unreachable)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from agentic_core.agents import AgentResult
from workers.agent_client import run_ended
from workers.gateway.core import GatewayError, _unavailable
from workers.temporal import ENDED_WITHOUT_RESULT, RunEnding, ended_as


def named_by(request: Request) -> str | None:
    """The header that names the request's run (`Idempotency-Key`, else `X-Request-Id`), if any."""
    for header in ("Idempotency-Key", "X-Request-Id"):
        if request.headers.get(header):
            return header
    return None


RUN_GONE = 410  # a run that ended without an answer (docs/gateway.md#a-run-that-ended-without-an-answer)


def run_gone(said: str, ended: RunEnding | None, header: str | None) -> GatewayError:
    """The error of a request whose run gave no result, `said` how (`agent_client.run_ended`):
    `ended` (terminated, cancelled, timed out, failed) is `410 Gone`, without `Retry-After`: the
    run is over for good, and the same `header` would only reattach to it again, so the answer says
    to send a new one (the `openai` client does not retry a 410; a 503 or a 409 it retries). None
    (the run cannot be followed: Temporal unreachable) is the 503 with `Retry-After` it was."""
    if ended is None:
        return _unavailable(said)
    again = (
        f"the {header} names that run for good; send a new {header} to start a new run"
        if header
        else "ask again to start a new run"
    )
    return GatewayError(RUN_GONE, f"{said}. No answer will come: {again}", code=f"run_{ended}")


def ending(exc: WorkflowFailureError | RPCError) -> RunEnding | None:
    """How a run whose result raised `exc` ended; None: it cannot be followed (Temporal unreachable)."""
    return None if isinstance(exc, RPCError) else ended_as(exc.cause)


async def run_result(
    handle: WorkflowHandle[Any, AgentResult], header: str | None, headers: dict[str, str]
) -> AgentResult:
    """The run's result, or the error a request waiting on it gets (`run_gone`, with `headers`)."""
    try:
        return await handle.result()
    except (WorkflowFailureError, RPCError) as exc:
        err = run_gone(run_ended(handle.id, exc), ending(exc), header)
        err.headers.update(headers)
        raise err from None


async def not_gone(handle: WorkflowHandle[Any, AgentResult], header: str | None, headers: dict[str, str]) -> None:
    """A stream that reattaches to a run that already ended without an answer gets the same `410`
    as a request that waits on it, before its headers go out (one `describe`, on reattaching only)."""
    try:
        desc = await handle.describe()
    except RPCError as exc:
        err = _unavailable(f"cannot follow the agent run {handle.id}: {exc.message}")
        err.headers.update(headers)
        raise err from None
    if desc.status in ENDED_WITHOUT_RESULT:
        await run_result(handle, header, headers)
