"""The rollout's checks of the agents and their guardrails (waves 3, 4, 5 and 7 of deploy/waves.yaml).

`RolloutActivities` holds one `AgentChecks` and registers these with its own:

- `rollout.check_router` ("router selects the correct agent"): the deployed Deployments are ready
  and the Services exist (read from the cluster's API), then each case's text is routed through
  Temporal (`RouteProbeWorkflow` on the platform's task queue: the worker that polls it routes
  with its own exemplars and models) and must land on the expected agent;
- `rollout.check_agents` (wave 5, the agents answer): each request runs as an `AgentWorkflow` on
  the platform's task queue (routed, or naming its agent) and must end in the expected status
  with an answer, on the expected agent: today a request for the coding or web agent ends
  `not_configured` and says which settings enable it, with no model and no tool involved;
- `rollout.check_allowlists` ("tool allow-lists respected"): the tool gateway refuses each listed
  call (a tool not on an agent's list, a write for a read-only agent) and allows each allowed one
  (a read tool on the list, offered by a deployed MCP server: the catalogue is listed from them);
- `rollout.check_timeouts` ("timeouts and retries enforced"): the gateway's per-call timeout is
  set and bounded; an MCP server that accepts a connection and never answers is cut off within
  the probe's timeout by the same client the gateway uses; this check itself runs with a
  start-to-close timeout and a bounded retry policy, as every activity of the rollout;
- `rollout.check_unauthorized` ("unauthorized actions rejected"): the gateway refuses each listed
  call (a protected namespace, a write for a read-only agent), and every configured MCP server
  refuses a call that carries no bearer token (401);
- `rollout.check_guardrail_events` ("guardrail events logged"): a call the gateway refuses leaves
  a guardrail event in the ledger (subject `rollout/<workflow id>/wave-<N>`), read back.

What they exercise: the gateway and the Temporal client of the worker that runs the rollout,
against the MCP servers its settings name and the Temporal it is connected to (or the
`temporal_address` a check names). Run the rollout on a worker that reaches the deployed services
(AGENTIC_MCP_INFRA_URL at the deployed server, AGENTIC_TEMPORAL_ADDRESS at the platform's
Temporal) for them to test the deployment; against kmock in the tests they test the same code
with the Deployments and Services kmock holds. A check that cannot test what it says (no
gateway, no Temporal client) fails and says why; it never passes by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.kube.client import KubeClient
from activities.tools.mcp_client import McpClient, ServerError
from agentic_core.agents import (
    AGENT_WORKFLOW,
    ROUTE_PROBE_WORKFLOW,
    AgentRequest,
    AgentResult,
    Route,
    RouteInput,
    agent_run_id,
)
from agentic_core.models import ToolCall
from agentic_core.rollout import CheckInput, CheckResult

if TYPE_CHECKING:
    from activities.tools.gateway import ToolActivities

NO_GATEWAY = "no tool gateway on the worker running the rollout: the check cannot test the guardrails"


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


@contextlib.asynccontextmanager
async def _beating(detail: str, every_s: float = 10.0) -> AsyncIterator[None]:
    """Heartbeat every `every_s` while the body waits (a routing request may take a while)."""

    async def beat() -> None:
        while True:
            _heartbeat(detail)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _calls(items: Any) -> list[tuple[str, ToolCall]]:
    """`[{agent, tool, arguments}]` from a check's params as (agent, call) pairs."""
    return [
        (str(i.get("agent", "incident")), ToolCall(tool=str(i["tool"]), arguments=dict(i.get("arguments") or {})))
        for i in items or []
    ]


def _subject(wave: int) -> str:
    try:
        info = activity.info()
        return f"rollout/{info.workflow_id}/wave-{wave}"
    except RuntimeError:
        return f"rollout/-/wave-{wave}"


def _result(inp: CheckInput, problems: list[str], fine: list[str]) -> CheckResult:
    return CheckResult(
        name=inp.check.name, passed=not problems, detail="; ".join(problems or fine)[:2000] or "nothing to check"
    )


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """An HTTP endpoint on loopback that accepts connections and never answers (its `…/mcp` URL)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        for w in held:
            w.close()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@dataclass
class AgentChecks:
    """The checks above. `gateway`: the worker's tool gateway (None: the guardrail checks fail and
    say so); `temporal` and `task_queue`: where routing requests are started (None: the router
    check fails and says so)."""

    kube: KubeClient
    gateway: ToolActivities | None = None
    temporal: Client | None = None
    task_queue: str | None = None
    _clients: dict[str, Client] = field(default_factory=dict)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.check_router,
            self.check_agents,
            self.check_allowlists,
            self.check_timeouts,
            self.check_unauthorized,
            self.check_guardrail_events,
        ]

    # -- router selects the correct agent ---------------------------------------------------------

    async def _client(self, params: dict[str, Any]) -> Client | None:
        address = params.get("temporal_address")
        if not address:
            return self.temporal
        key = f"{address}/{params.get('temporal_namespace', 'default')}"
        if key not in self._clients:
            from temporalio.contrib.pydantic import pydantic_data_converter

            self._clients[key] = await Client.connect(
                str(address),
                namespace=str(params.get("temporal_namespace", "default")),
                data_converter=pydantic_data_converter,
            )
        return self._clients[key]

    async def _deployed(self, params: dict[str, Any], problems: list[str], fine: list[str]) -> None:
        ns = str(params.get("namespace", "ai-agents"))
        for name in [str(d) for d in params.get("deployments", ["worker"])]:
            dep = await self.kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
            if dep is None:
                problems.append(f"Deployment {ns}/{name} not found")
                continue
            want = int((dep.get("spec") or {}).get("replicas", 1) or 0)
            ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
            if ready < 1 or ready < want:
                problems.append(f"Deployment {ns}/{name}: {ready}/{want} replicas ready")
            else:
                fine.append(f"{ns}/{name} {ready}/{want} ready")
        for name in [str(s) for s in params.get("services", [])]:
            if await self.kube.get_or_none(f"/api/v1/namespaces/{ns}/services/{name}") is None:
                problems.append(f"Service {ns}/{name} not found")
            else:
                fine.append(f"Service {ns}/{name}")

    @activity.defn(name="rollout.check_router")
    async def check_router(self, inp: CheckInput) -> CheckResult:
        p = inp.check.params
        problems: list[str] = []
        fine: list[str] = []
        await self._deployed(p, problems, fine)
        cases = [(str(c["text"]), str(c["agent"])) for c in p.get("cases", [])]
        if not cases:
            problems.append("no routing cases in the check's params (cases: [{text, agent}])")
        client = await self._client(p)
        queue = str(p.get("task_queue") or self.task_queue or "")
        if client is None or not queue:
            problems.append("cannot route: the worker running the rollout has no Temporal client to start requests")
            return _result(inp, problems, fine)
        timeout = timedelta(seconds=float(p.get("timeout_s", 60)))
        right = 0
        for i, (text, agent) in enumerate(cases):
            try:
                async with _beating(f"routing case {i + 1}/{len(cases)}"):
                    route = await client.execute_workflow(
                        ROUTE_PROBE_WORKFLOW,
                        RouteInput(text=text),
                        id=f"rollout-route-w{inp.wave}-{uuid.uuid4().hex[:10]}",
                        task_queue=queue,
                        result_type=Route,
                        execution_timeout=timeout,
                    )
            except (WorkflowFailureError, RPCError) as exc:
                cause = getattr(exc, "cause", None) or exc
                problems.append(f"{text[:60]!r}: could not route ({cause})")
                continue
            if route.agent != agent:
                problems.append(
                    f"{text[:60]!r} went to {route.agent} ({route.method.value}, {route.score:.2f}), not {agent}"
                )
            else:
                right += 1
        fine.append(f"{right}/{len(cases)} requests routed to the expected agent through task queue {queue}")
        return _result(inp, problems, fine)

    # -- the agents answer -----------------------------------------------------------------------

    @activity.defn(name="rollout.check_agents")
    async def check_agents(self, inp: CheckInput) -> CheckResult:
        p = inp.check.params
        problems: list[str] = []
        fine: list[str] = []
        requests = list(p.get("requests", []))
        if not requests:
            problems.append("no requests in the check's params (requests: [{text, agent, status, explicit}])")
        client = await self._client(p)
        queue = str(p.get("task_queue") or self.task_queue or "")
        if client is None or not queue:
            problems.append("cannot run agents: the worker running the rollout has no Temporal client")
            return _result(inp, problems, fine)
        timeout = timedelta(seconds=float(p.get("timeout_s", 120)))
        for i, r in enumerate(requests):
            text, agent, status = str(r["text"]), str(r["agent"]), str(r.get("status", "done"))
            request_id = f"rollout-w{inp.wave}-{uuid.uuid4().hex[:10]}"
            request = AgentRequest(
                request_id=request_id,
                text=text,
                agent=agent if r.get("explicit") else None,
                requested_by="rollout",
                source="cli",
            )
            try:
                async with _beating(f"agent request {i + 1}/{len(requests)}"):
                    res = await client.execute_workflow(
                        AGENT_WORKFLOW,
                        request,
                        id=agent_run_id(request_id),
                        task_queue=queue,
                        result_type=AgentResult,
                        execution_timeout=timeout,
                    )
            except (WorkflowFailureError, RPCError) as exc:
                cause = getattr(exc, "cause", None) or exc
                problems.append(f"{text[:60]!r}: the agent run failed ({cause})")
                continue
            got = res.agent or (res.route.agent if res.route else None)
            if got != agent or res.status.value != status or not res.answer.strip():
                problems.append(
                    f"{text[:60]!r}: {res.status.value} on {got or 'no agent'}"
                    + ("" if res.answer.strip() else " with no answer")
                    + f", expected {status} on {agent}"
                )
            else:
                fine.append(f"{text[:40]!r}: {status} on {agent} ({res.answer[:80]})")
        return _result(inp, problems, fine)

    # -- the gateway's guardrails -----------------------------------------------------------------

    async def _screen_all(
        self, inp: CheckInput, calls: list[tuple[str, ToolCall]], allowed: bool, problems: list[str], fine: list[str]
    ) -> None:
        assert self.gateway is not None
        subject = _subject(inp.wave)
        for agent, call in calls:
            _heartbeat(f"screening {agent} {call.tool}")
            got = await self.gateway.screen(agent, call, subject=subject)
            what = f"{agent} → {call.tool}"
            if got.allowed == allowed:
                fine.append(f"{what}: {'allowed' if allowed else 'refused (' + (got.kind or '') + ')'}")
            elif allowed:
                problems.append(f"{what} should be allowed but was refused: {got.reason}")
            else:
                problems.append(f"{what} should be refused but the gateway allows it")

    @activity.defn(name="rollout.check_allowlists")
    async def check_allowlists(self, inp: CheckInput) -> CheckResult:
        if self.gateway is None:
            return CheckResult(name=inp.check.name, passed=False, detail=NO_GATEWAY)
        p = inp.check.params
        problems: list[str] = []
        fine: list[str] = []
        try:
            async with _beating("screening calls"):  # the first lists every MCP server's tools
                await self._screen_all(inp, _calls(p.get("refused")), False, problems, fine)
                await self._screen_all(inp, _calls(p.get("allowed")), True, problems, fine)
        except ApplicationError as exc:  # the catalogue could not be listed: no MCP server answered
            problems.append(f"the gateway could not list its tools: {exc.message}")
        return _result(inp, problems, fine)

    @activity.defn(name="rollout.check_timeouts")
    async def check_timeouts(self, inp: CheckInput) -> CheckResult:
        if self.gateway is None:
            return CheckResult(name=inp.check.name, passed=False, detail=NO_GATEWAY)
        p = inp.check.params
        problems: list[str] = []
        fine: list[str] = []
        limit = float(p.get("max_call_timeout_s", 120))
        timeout = self.gateway.call_timeout_s
        if not 0 < timeout <= limit:
            problems.append(f"the gateway's tool call timeout is {timeout:g}s, not within (0, {limit:g}]s")
        else:
            fine.append(f"tool calls time out after {timeout:g}s")
        probe = float(p.get("probe_timeout_s", 2))
        async with silent_server() as url, McpClient(None, probe) as prober:
            started = time.monotonic()
            try:
                await prober.list_tools("silent-probe", url, lambda t: t)
                problems.append("a server that never answers was answered?")
            except ServerError:
                took = time.monotonic() - started
                bound = 2 * probe + 5  # connect, the initialize request, and its read timeout
                if took > bound:
                    problems.append(f"a server that never answers held the MCP client {took:.1f}s (bound {bound:g}s)")
                else:
                    fine.append(f"a server that never answers was cut off after {took:.1f}s")
        try:
            info = activity.info()
        except RuntimeError:
            info = None
        if info is not None:
            rp = info.retry_policy
            if not info.start_to_close_timeout and not info.schedule_to_close_timeout:
                problems.append("this check runs without a timeout")
            if rp is None or not rp.maximum_attempts:
                problems.append("this check runs with unbounded retries")
            else:
                fine.append(f"activities run with a timeout and at most {rp.maximum_attempts} attempts")
        return _result(inp, problems, fine)

    @activity.defn(name="rollout.check_unauthorized")
    async def check_unauthorized(self, inp: CheckInput) -> CheckResult:
        if self.gateway is None:
            return CheckResult(name=inp.check.name, passed=False, detail=NO_GATEWAY)
        p = inp.check.params
        problems: list[str] = []
        fine: list[str] = []
        try:
            async with _beating("screening calls"):
                await self._screen_all(inp, _calls(p.get("calls")), False, problems, fine)
        except ApplicationError as exc:
            problems.append(f"the gateway could not list its tools: {exc.message}")
        if p.get("unauthenticated", True):
            if not self.gateway.servers:
                problems.append("no MCP server is configured: nothing to check")
            async with McpClient(None, 15.0) as anonymous:
                for name, url in self.gateway.servers.items():
                    _heartbeat(f"calling {name} without a token")
                    try:
                        await anonymous.list_tools(name, url, lambda t: t)
                        problems.append(f"MCP server {name!r} at {url} answered a call without a bearer token")
                    except ServerError as exc:
                        if "(401)" in str(exc) or "(403)" in str(exc):
                            fine.append(f"MCP server {name!r} refuses a call without its token")
                        else:
                            problems.append(f"MCP server {name!r}: {exc}")
        return _result(inp, problems, fine)

    @activity.defn(name="rollout.check_guardrail_events")
    async def check_guardrail_events(self, inp: CheckInput) -> CheckResult:
        if self.gateway is None:
            return CheckResult(name=inp.check.name, passed=False, detail=NO_GATEWAY)
        p = inp.check.params
        [(agent, call)] = _calls([p]) if "tool" in p else [("coding", ToolCall(tool="get_pods", arguments={}))]
        subject = _subject(inp.wave)
        try:
            info = activity.info()
            key = f"{subject}/{info.workflow_run_id}/{info.activity_id}"
        except RuntimeError:
            key = f"{subject}/{uuid.uuid4().hex}"
        try:
            got = await self.gateway.screen(agent, call, subject=subject, key=key)
        except ApplicationError as exc:
            return CheckResult(
                name=inp.check.name, passed=False, detail=f"the gateway could not list its tools: {exc.message}"
            )
        if got.allowed:
            return CheckResult(
                name=inp.check.name,
                passed=False,
                detail=f"the probe call {agent} → {call.tool} was allowed: choose a call the gateway refuses",
            )
        events = await self.gateway.ledger.list_guardrail_events(subject=subject, limit=1000)
        mine = next((e for e in events if e.key == key), None)
        if mine is None:
            return CheckResult(
                name=inp.check.name, passed=False, detail=f"{agent} → {call.tool} was refused but left no event"
            )
        return CheckResult(
            name=inp.check.name,
            passed=True,
            detail=f"{agent} → {call.tool} refused ({mine.kind}); event {mine.id} in the ledger ({mine.subject})",
        )
