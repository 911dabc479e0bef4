"""An answer that comes as soon as an agent run shows it is waiting (`agent_client.decide`, which
the gateway and `agentic agents approve|deny` use): the run names its approval in its progress as
it asks, and Temporal creates the child `ApprovalWorkflow` a moment after the run's workflow task
completes. In that moment the approval's query answers NOT_FOUND; CI met it once (a test that
answered at once got "workflow not found"). The answer waits for it, within a bound."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.agents import AGENT_APPROVAL_ROUTE
from agentic_core.incident import ApprovalRequest, ApprovalState
from workers import agent_client
from workers.errors import AgenticError


class LateApproval:
    """A handle whose workflow exists only from its `exists_after`-th query on."""

    def __init__(self, exists_after: int) -> None:
        self.id = "agent-x-approval-1-0"
        self.exists_after = exists_after
        self.queries = 0

    async def query(self, name: str, result_type: Any = None) -> ApprovalState:
        self.queries += 1
        if self.queries <= self.exists_after:
            raise RPCError(f"workflow not found for ID: {self.id}", RPCStatusCode.NOT_FOUND, b"")
        request = ApprovalRequest(
            approval_id=self.id,
            incident_id="agent-x",
            question="restart?",
            plan=[],
            plan_hash="0" * 64,
            route=AGENT_APPROVAL_ROUTE,
        )
        return ApprovalState(request=request)


async def test_an_approval_that_is_about_to_exist_is_waited_for() -> None:
    late = LateApproval(exists_after=3)
    st = await agent_client.approval_state(late)  # type: ignore[arg-type]
    assert st.request.approval_id == late.id and late.queries == 4


async def test_an_approval_that_never_comes_is_said_after_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_client, "APPROVAL_STARTS_S", 0.3)
    never = LateApproval(exists_after=10_000)
    with pytest.raises(AgenticError, match=f"no approval {never.id}"):
        await agent_client.approval_state(never)  # type: ignore[arg-type]
    assert 2 <= never.queries <= 10
