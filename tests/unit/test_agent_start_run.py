"""`agents.start_run` lists the agent's tools when asked (`StartRunInput.list_tools`, the workflow's
`START_LISTS_TOOLS_PATCH`): the gateway's catalogue (`tool_specs`) for a configured agent. A listing
that fails or is too slow never fails the start: `tools` is None and the workflow lists through
`tools.list_tools` (its retries, its note), as it does for a run whose start was not asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from activities.agents import activities as agent_activities
from activities.agents.activities import AgentActivities
from agentic_core.agents import AgentLimits, AgentRequest, StartRunInput
from agentic_core.incident import ToolSpec

SPECS = [ToolSpec(name="get_pods", server="infra", mutating=False)]


class Ledger:
    """What start_run writes: the run and its user message (in the same call)."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.messages: list[Any] = []

    async def start_agent_run(self, run_id: str, *, first_message: Any = None, **_: Any) -> None:
        self.runs.append(run_id)
        if first_message is not None:
            self.messages.append(first_message)


class Catalogue:
    def __init__(self, *, fails: bool = False, delay_s: float = 0.0) -> None:
        self.asked: list[str] = []
        self.fails, self.delay_s = fails, delay_s

    async def __call__(self, agent: str) -> list[ToolSpec]:
        self.asked.append(agent)
        await asyncio.sleep(self.delay_s)
        if self.fails:
            raise RuntimeError("no MCP server answered")
        return list(SPECS)


def activities(ledger: Ledger, catalogue: Catalogue | None) -> AgentActivities:
    return AgentActivities(
        ledger,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no model call here
        agents={"observability": AgentLimits(max_steps=3)},
        tool_specs=catalogue,
    )


def start(agent: str = "observability", *, list_tools: bool = True) -> StartRunInput:
    req = AgentRequest(request_id="r1", text="why does sonarr restart?", agent=agent, requested_by="alice")
    return StartRunInput(run_id="agent-r1", request=req, agent=agent, list_tools=list_tools)


async def test_asked_it_lists_the_agents_tools_with_the_start() -> None:
    ledger, catalogue = Ledger(), Catalogue()
    res = await activities(ledger, catalogue).start_run(start())
    assert res.configured and res.limits.max_steps == 3
    assert res.tools == SPECS and catalogue.asked == ["observability"]
    assert ledger.runs == ["agent-r1"] and [m.role for m in ledger.messages] == ["user"]


async def test_not_asked_it_lists_nothing() -> None:
    catalogue = Catalogue()
    res = await activities(Ledger(), catalogue).start_run(start(list_tools=False))
    assert res.configured and res.tools is None and catalogue.asked == []


async def test_a_listing_that_fails_leaves_it_to_tools_list_tools() -> None:
    ledger, catalogue = Ledger(), Catalogue(fails=True)
    res = await activities(ledger, catalogue).start_run(start())
    assert res.configured and res.limits.max_steps == 3 and res.tools is None
    assert catalogue.asked == ["observability"] and ledger.runs == ["agent-r1"]


async def test_a_listing_that_takes_too_long_leaves_it_to_tools_list_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_activities, "START_LIST_TIMEOUT_S", 0.05)
    res = await activities(Ledger(), Catalogue(delay_s=5)).start_run(start())
    assert res.configured and res.tools is None


async def test_an_agent_not_configured_gets_no_tools() -> None:
    catalogue = Catalogue()
    res = await activities(Ledger(), catalogue).start_run(start("coding"))
    assert not res.configured and "not configured" in res.answer
    assert res.tools is None and catalogue.asked == []


async def test_without_a_catalogue_it_lists_nothing() -> None:
    res = await activities(Ledger(), None).start_run(start())
    assert res.configured and res.tools is None
