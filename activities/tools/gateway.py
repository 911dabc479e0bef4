"""The tool gateway: the only way the platform calls MCP tools. The worker builds one
`ToolActivities` (from the settings: `workers.wiring.tool_gateway`) and registers its four
activities.

    ToolActivities(ledger, servers={"infra": "http://127.0.0.1:8091/mcp"}, token=...,
                   allow=settings.agent_tool_lists, read_only_agents=settings.read_only_agent_list)

Allow-lists are per agent (`incident`, `observability`, `coding`, `web`): tool names or glob
patterns (`prom_*`); an agent without a list may call nothing. A read-only agent (observability,
and any in AGENTIC_READ_ONLY_AGENTS) may call only tools whose MCP annotations say `readOnlyHint`,
even when its list names others. Every refusal is also a guardrail event in the ledger
(`guardrail_events`: `protected_namespace` for a protected namespace, else `tool_refused`), beside
the refused action row; `screen` checks one call without an incident (the agent loop's
`tools.call`, the rollout's guardrail checks) and records its refusal the same way.

- `tools.list_tools`: the tools of every configured server that are on the agent's allow-list,
  with their JSON input schemas. The tool catalogue is cached for `cache_ttl_s` (30 s).
  One server down does not block the others: the catalogue holds the tools of the servers that
  answered (the down ones are logged, and listed again after `DOWN_RETRY_S`); only when no
  server answers is the listing a retryable `ToolServerUnavailable`. Fail closed: an action
  whose tool is not in the catalogue is never run; when a server is down the guard's refusal
  names it (and the server that last offered the tool), and `tools.execute` answers a retryable
  `ToolServerUnavailable` instead of refusing, so an approved action waits for its server.
- `tools.guard`: each proposed action must name a tool on the agent's allow-list that a server
  offers, with arguments valid under the tool's input schema (jsonschema; unknown arguments and
  unrendered `{{ templates }}` are refused too). A tool that is not read-only may not act in a
  protected namespace (`protected_namespaces`, AGENTIC_PROTECTED_NAMESPACES: kube-system, the
  platform's own ai-* namespaces, the operators it installs; glob patterns) unless the
  runbook whose plan it is allows that namespace (`GuardInput.allow_namespaces`); such an
  allowed action comes back with `protected` set, and the workflow then asks a human whatever
  the runbook's level. Read-only tools may look anywhere. Refusals carry a precise reason and
  are recorded in the ledger as `refused` actions under the key
  `idempotency_key(incident_id, index) + "/guard/" + <hash of tool and arguments>`, so they never
  clash with execution keys and refusing the same action twice records it once.
- `tools.execute`: runs one approved action exactly once (see below). An agent run's write
  (`ExecuteInput.agent_run`) is an action of the run (`actions.run_id`), not of an incident.
- `tools.give_up`: the workflow gave up on an action's `tools.execute` (its retries ran out, it
  timed out, or it failed without a result): the action's row ends `failed` with the reason,
  never `running` forever (a row that was never claimed is recorded `failed` too, so the ledger
  says what happened to every approved action). A row another attempt finished meanwhile keeps
  its result, which is returned. The failure is marked `infrastructure`: the platform could not
  run the action, which says nothing about the runbook's remedy. Runs on the orchestration
  queue (the tools workers may be what is gone).
- `tools.call`: an agent's read-only tool call (`AgentWorkflow`): the same checks as the guard,
  tools that change anything refused (they go through approval and `tools.execute`), the whole
  text result stored in the ledger as a blob, a `ResultRef` with a short preview returned, so a
  5 MB log never travels through workflow history. The guard of an agent run's calls
  (`GuardInput.agent_run`) records no refusals as actions: the agent workflow records each as a
  guardrail event. A tool error that begins `egress refused:` (the web server would not reach a
  URL: allow-list, SSRF, robots.txt, page budget) is recorded here as an `egress_refused`
  guardrail event of the run; the call's status stays `error`, its reason the refusal.

Exactly once. The ledger row of the action's idempotency key is the claim:

1. A finished row (succeeded/failed/refused/skipped) → its recorded result is returned with
   `already_ran=True`; the tool is not called (the MCP server need not even be up).
2. The allow-list, protected namespaces (`ExecuteInput.allow_namespaces`) and schema are
   checked again (defence in depth). A refusal is recorded under
   the action's key and raised as a non-retryable `ApplicationError` (type `ToolRefused`).
3. `Ledger.start_action` claims the key. A new row → call the tool. An existing `running` row
   means an earlier attempt died mid-call (worker crash, heartbeat timeout) and nobody knows
   whether the call reached the cluster:
   - tools that are safe to repeat are called again: read-only tools, tools annotated
     `idempotentHint` (absolute settings: `scale_deployment`, `set_memory_limit`), and tools
     whose `_meta` names an idempotency-timestamp argument (`rollout_restart`). The gateway
     fills that argument, when the plan left it out, with the time the row was first claimed
     (`started_at`, from the ledger), so every attempt sends the same `restartedAt` and the
     deployment restarts once; likewise tools whose `_meta` names an idempotency-key argument
     (`commit_edit`): the gateway always fills it with the action's key, and the tool returns
     what it did for that key (its commit) instead of acting again;
   - any other tool is not called again: the action is finished as `failed` with an error that
     says the outcome is unknown and a human must check, and that result is returned.
4. The call runs with a heartbeat every few seconds. A tool error (`isError`) → `failed`; a
   result → `succeeded`; both recorded with the tool's output. A server that cannot be reached
   before the call → retryable `ApplicationError` (type `ToolServerUnavailable`), nothing
   recorded. A connection lost during the call → retryable for tools that are safe to repeat
   (the retry resumes as in 3), else `failed` with "outcome unknown".

Results are recorded before they are returned, and the first recorded result wins: two
attempts racing on one key (a zombie and its retry) return the same result.

Long because the gateway is one object around one cached catalogue: listing, the checks (allow-
lists, read-only agents, protected namespaces, schemas) and exactly-once execution all read it and
the ledger claims, and the checks must be the same code at guard, screen and execute time. The
MCP client (`mcp_client`) and the argument wording (`arguments`) are already their own modules.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp_types import CallToolResult, TextContent
from mcp_types import Tool as ListedTool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import HEARTBEAT_EVERY_S, heartbeating
from activities.ledger.db import ConflictError, LedgerUnavailable
from activities.telemetry import metrics
from activities.tools import (
    ERR_CONFLICT,
    ERR_REFUSED,
    ERR_UNAVAILABLE,
    EXECUTE,
    GIVE_UP,
    GUARD,
    IDEMPOTENCY_KEY_META,
    IDEMPOTENCY_TIMESTAMP_META,
    LIST_TOOLS,
)
from activities.tools.arguments import argument_problems
from activities.tools.mcp_client import McpClient, ServerError
from agentic_core import policy
from agentic_core.agents import (
    ACTIVITY_TOOL_CALL,
    GuardrailEvent,
    GuardrailKind,
    ResultRef,
    ToolCallInput,
    ToolCallResult,
    agent_blob_id,
)
from agentic_core.incident import (
    ActionResult,
    ExecuteInput,
    GiveUpInput,
    GuardedAction,
    GuardInput,
    GuardResult,
    ListToolsInput,
    ListToolsResult,
    ToolSpec,
    idempotency_key,
)
from agentic_core.models import ToolCall
from agentic_core.tools import ALWAYS_READ_ONLY_AGENTS, EGRESS_REFUSED, allowed_tools, tool_allowed

if TYPE_CHECKING:
    from activities.ledger.models import ActionRow, ActionStatus
    from activities.ledger.repository import Ledger

__all__ = [
    "ERR_CONFLICT",
    "ERR_REFUSED",
    "ERR_UNAVAILABLE",
    "Screened",
    "ToolActivities",
    "guard_key",
]


CACHE_TTL_S = 30.0
DOWN_RETRY_S = 5.0  # a catalogue missing a down server is listed again this soon
CALL_TIMEOUT_S = 120.0
MAX_OUTPUT_CHARS = 8_000  # ActionResult.output / .error (travels through workflow history)
MAX_RECORD_CHARS = 64_000  # what the ledger keeps of a tool's text output
FINISH_ATTEMPTS = 4
PREVIEW_CHARS = 200  # of an agent's tool result, in workflow history (the ledger keeps all of it)
MAX_REASON_CHARS = 2_000  # of an agent's failed tool call's text, in workflow history


def guard_key(incident_id: str, index: int, call: ToolCall) -> str:
    """The ledger key of a guard refusal: apart from execution keys, one per distinct action."""
    doc = json.dumps({"tool": call.tool, "arguments": call.arguments}, sort_keys=True, separators=(",", ":"))
    return f"{idempotency_key(incident_id, index)}/guard/{hashlib.sha256(doc.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Screened:
    """One call checked against an agent's allow-list, read-only rule, protected namespaces and
    the tool's schema (`ToolActivities.screen`)."""

    allowed: bool
    reason: str = ""  # why not
    kind: GuardrailKind | None = None  # the guardrail event a refusal is
    mutating: bool = True  # the tool changes something (unknown tools count as changing)
    protected: tuple[str, ...] = ()  # protected namespaces an allowed call changes


@dataclass(frozen=True)
class _Tool:
    spec: ToolSpec
    url: str
    read_only: bool
    idempotent: bool
    timestamp_arg: str | None  # argument the gateway fills with the action's claim time
    key_arg: str | None = None  # argument the gateway fills with the action's idempotency key

    @property
    def safe_to_repeat(self) -> bool:
        return self.read_only or self.idempotent or self.timestamp_arg is not None or self.key_arg is not None


def _text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ToolActivities:
    """Tool listing, guarding and exactly-once execution over MCP servers (see the module doc)."""

    def __init__(
        self,
        ledger: Ledger,
        servers: dict[str, str],
        token: str | None,
        allow: dict[str, list[str]],
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
        heartbeat_every_s: float = HEARTBEAT_EVERY_S,
        hint: Callable[[str], str | None] | None = None,
        protected_namespaces: Sequence[str] = policy.DEFAULT_PROTECTED_NAMESPACES,
        read_only_agents: Sequence[str] = ALWAYS_READ_ONLY_AGENTS,
    ) -> None:
        self.ledger = ledger
        self.servers = dict(servers)
        self._mcp = McpClient(token, call_timeout_s)
        self.allow = {agent: list(tools) for agent, tools in allow.items()}
        self.cache_ttl_s = cache_ttl_s
        self.heartbeat_every_s = heartbeat_every_s
        self.hint = hint  # which server offers a tool and what configures it (for refusals)
        self.protected_namespaces = [p.strip().lower() for p in protected_namespaces if p.strip()]
        self.read_only_agents = {*ALWAYS_READ_ONLY_AGENTS, *read_only_agents}
        self._catalog: dict[str, _Tool] | None = None
        self._catalog_at = 0.0
        self._catalog_lock = asyncio.Lock()
        self._down: dict[str, str] = {}  # server -> why it could not be listed (last listing)
        self._offered_by: dict[str, str] = {}  # tool -> the server that last offered it

    @property
    def call_timeout_s(self) -> float:
        """How long one tool call (or listing) may take before it fails."""
        return self._mcp.call_timeout_s

    # --- the catalogue ------------------------------------------------------------------------

    async def _list_server(self, server: str, url: str) -> list[_Tool]:
        def entry(t: ListedTool) -> _Tool:
            ann = t.annotations
            meta = t.meta or {}
            stamp = meta.get(IDEMPOTENCY_TIMESTAMP_META)
            key_arg = meta.get(IDEMPOTENCY_KEY_META)
            read_only = bool(ann and ann.read_only_hint)
            return _Tool(
                spec=ToolSpec(
                    name=t.name,
                    description=t.description or t.title or "",
                    input_schema=dict(t.input_schema or {}),
                    server=server,
                    mutating=not read_only,
                ),
                url=url,
                read_only=read_only,
                idempotent=bool(ann and ann.idempotent_hint),
                timestamp_arg=stamp if isinstance(stamp, str) and stamp else None,
                key_arg=key_arg if isinstance(key_arg, str) and key_arg else None,
            )

        return await self._mcp.list_tools(server, url, entry)

    async def _tools(self) -> dict[str, _Tool]:
        """The catalogue of the reachable servers' tools by name (cached; the first server wins a
        name). Raises a retryable `ToolServerUnavailable` only when no server answers."""
        async with self._catalog_lock:
            ttl = DOWN_RETRY_S if self._down else self.cache_ttl_s
            if self._catalog is not None and time.monotonic() - self._catalog_at < min(ttl, self.cache_ttl_s):
                return self._catalog
            names = list(self.servers)
            answers = await asyncio.gather(
                *(self._list_server(s, self.servers[s]) for s in names), return_exceptions=True
            )
            lists: list[list[_Tool]] = []
            down: dict[str, str] = {}
            for name, answer in zip(names, answers, strict=True):
                if isinstance(answer, ServerError):
                    down[name] = str(answer)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    lists.append(answer)
            if names and len(down) == len(names):
                self._down = down
                raise ApplicationError("; ".join(down.values()), type=ERR_UNAVAILABLE)
            for name, why in down.items():
                if self._down.get(name) != why:
                    activity.logger.warning("MCP server %s is down; serving the other servers' tools: %s", name, why)
            self._down = down
            catalog: dict[str, _Tool] = {}
            for tools in lists:
                for tool in tools:
                    if tool.spec.name in catalog:
                        activity.logger.warning(
                            "tool %s is offered by MCP servers %s and %s; using %s",
                            tool.spec.name,
                            catalog[tool.spec.name].spec.server,
                            tool.spec.server,
                            catalog[tool.spec.name].spec.server,
                        )
                        continue
                    catalog[tool.spec.name] = tool
                    self._offered_by[tool.spec.name] = tool.spec.server
            self._catalog, self._catalog_at = catalog, time.monotonic()
            return catalog

    def _down_reason(self, tool: str) -> str | None:
        """Why `tool` may be missing from the catalogue because a server is down; None when every
        server answered (or the server that offered it answered and no longer does)."""
        if not self._down:
            return None
        owner = self._offered_by.get(tool)
        if owner is not None:
            why = self._down.get(owner)
            return f"its MCP server {owner!r} is down ({why})" if why is not None else None
        listed = "; ".join(f"{name!r}: {why}" for name, why in self._down.items())
        return f"it may belong to an MCP server that is down ({listed})"

    async def _call(self, tool: _Tool, arguments: dict[str, Any], *, reuse: bool) -> CallToolResult:
        """`reuse`: on the MCP client's pooled session (reads, sent again if a reused session's
        connection was lost); else on a session of its own (`execute`: what `sent` means for
        exactly-once stays that of one session per call)."""
        # telemetry: the call's outcome and latency by server (the mcp SDK makes the span)
        started, outcome = time.perf_counter(), "unreachable"
        try:
            result = await self._mcp.call_tool(
                tool.spec.server,
                tool.url,
                tool.spec.name,
                arguments,
                reuse=reuse,
                repeat_safe=reuse and tool.read_only,
            )
            outcome = "error" if result.is_error else "ok"
            return result
        finally:
            with metrics.safely():
                metrics.TOOL_CALLS.labels(metrics.label(tool.spec.server), outcome).inc()
                metrics.TOOL_LATENCY.labels(metrics.label(tool.spec.server)).observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        """Close the MCP client's pooled sessions (the worker does, on shutdown)."""
        await self._mcp.aclose()

    # --- checks ---------------------------------------------------------------------------------

    def _protected(self, call: ToolCall, catalog: dict[str, _Tool]) -> list[tuple[str, str]]:
        """`(namespace, pattern)` for each protected namespace the action would change (none for a
        read-only tool: looking is allowed anywhere)."""
        tool = catalog.get(call.tool)
        if tool is not None and tool.read_only:
            return []
        return policy.protected_namespaces(call, self.protected_namespaces)

    def _check(
        self, agent: str, call: ToolCall, catalog: dict[str, _Tool], allow_namespaces: Iterable[str] = ()
    ) -> str | None:
        """None when the action may run, else the precise reason it may not. `allow_namespaces`:
        protected namespaces the runbook whose plan this is allows."""
        refusal = self._refusal(agent, call, catalog, allow_namespaces)
        return refusal[1] if refusal is not None else None

    def _refusal(
        self, agent: str, call: ToolCall, catalog: dict[str, _Tool], allow_namespaces: Iterable[str] = ()
    ) -> tuple[GuardrailKind, str] | None:
        """None when the action may run, else the guardrail event it is and the precise reason."""
        allowed = self.allow.get(agent, [])
        if not tool_allowed(call.tool, allowed):
            listed = ", ".join(allowed) if allowed else "it is empty"
            return "tool_refused", f"tool {call.tool!r} is not on the {agent} agent's allow-list ({listed})"
        tool = catalog.get(call.tool)
        if tool is None:
            down = self._down_reason(call.tool)
            if down is not None:
                return "tool_refused", f"tool {call.tool!r} is not available now: {down}; not run (fail closed)"
            servers = ", ".join(self.servers) or "none configured"
            hint = self.hint(call.tool) if self.hint is not None else None
            return "tool_refused", (
                f"tool {call.tool!r} is on the {agent} agent's allow-list but no MCP server offers it "
                f"(servers: {servers}): " + (hint if hint else "check the server version or the allow-list")
            )
        if agent in self.read_only_agents and not tool.read_only:
            return "tool_refused", (
                f"tool {call.tool!r} changes something (its MCP annotations do not say readOnlyHint) and the "
                f"{agent} agent is read-only: it may only look"
            )
        allowed_ns = set(allow_namespaces)
        for ns, pattern in self._protected(call, catalog):
            if ns not in allowed_ns:
                return "protected_namespace", (
                    f"{call.tool}: namespace {ns!r} is protected (it matches {pattern!r} in "
                    f"AGENTIC_PROTECTED_NAMESPACES): the agent does not change it on its own. A runbook whose "
                    f"plan must act there lists it in its front matter (allow_namespaces: [{ns}]), and even then "
                    "a human approves every run"
                )
        problems = argument_problems(tool.spec, call.arguments)
        if problems:
            return "tool_refused", f"{call.tool}: " + "; ".join(problems)
        return None

    async def _event(self, key: str, kind: GuardrailKind, agent: str, subject: str, tool: str, detail: str) -> None:
        """Record a refusal as a guardrail event (once per key)."""
        await self.ledger.record_guardrail_event(
            GuardrailEvent(key=key, kind=kind, agent=agent, subject=subject, tool=tool, detail=detail)
        )

    async def screen(
        self, agent: str, call: ToolCall, *, subject: str, key: str | None = None, allow_namespaces: Iterable[str] = ()
    ) -> Screened:
        """Check one call as the guard does, without an incident: nothing is written for an allowed
        call; a refusal is recorded as a guardrail event under `key` (None: not recorded). For the
        agent loop's `tools.call` (subject: the run) and the rollout's guardrail checks."""
        catalog = await self._tools()
        tool = catalog.get(call.tool)
        mutating = tool is None or not tool.read_only
        refusal = self._refusal(agent, call, catalog, allow_namespaces)
        if refusal is None:
            protected = tuple(ns for ns, _ in self._protected(call, catalog))
            return Screened(allowed=True, mutating=mutating, protected=protected)
        kind, reason = refusal
        if key is not None:
            await self._event(key, kind, agent, subject, call.tool, reason)
        return Screened(allowed=False, reason=reason, kind=kind, mutating=mutating)

    async def _record_refusal(
        self, incident_id: str, index: int, call: ToolCall, key: str, reason: str, *, agent_run: bool = False
    ) -> None:
        row = await self.ledger.start_action(incident_id, index, call.tool, call.arguments, key, agent_run=agent_run)
        if row.status == "running":
            await self._finish(key, "refused", None, reason)

    async def _finish(self, key: str, status: ActionStatus, result: Any, error: str | None) -> ActionRow:
        """Record the outcome; retried while the ledger is unreachable (the tool already ran).
        The first recorded outcome wins (a racing attempt may have recorded it)."""
        for attempt in range(FINISH_ATTEMPTS):
            try:
                return await self.ledger.finish_action(key, status, result, error)
            except ConflictError:
                row = await self.ledger.get_action(key)
                assert row is not None
                return row
            except LedgerUnavailable:
                if attempt + 1 == FINISH_ATTEMPTS:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- activities -----------------------------------------------------------------------------

    @activity.defn(name=LIST_TOOLS)
    async def list_tools(self, inp: ListToolsInput) -> ListToolsResult:
        return ListToolsResult(tools=await self.offered(inp.agent))

    async def offered(self, agent: str) -> list[ToolSpec]:
        """The tools on `agent`'s allow-list that a reachable server offers, in allow-list order
        (from inside an activity: the agent's model turn takes the schemas from here)."""
        catalog = await self._tools()
        names = allowed_tools(self.allow.get(agent, []), catalog)
        if agent in self.read_only_agents:
            names = [n for n in names if catalog[n].read_only]
        return [catalog[name].spec for name in names]

    @activity.defn(name=GUARD)
    async def guard(self, inp: GuardInput) -> GuardResult:
        catalog = await self._tools()
        out: list[GuardedAction] = []
        for index, call in enumerate(inp.actions):
            refusal = self._refusal(inp.agent, call, catalog, inp.allow_namespaces)
            reason = refusal[1] if refusal is not None else None
            if refusal is not None and not inp.agent_run:  # an agent run records its own refusals
                key = guard_key(inp.incident_id, index, call)
                await self._record_refusal(inp.incident_id, index, call, key, refusal[1])
                await self._event(key, refusal[0], inp.agent, inp.incident_id, call.tool, refusal[1])
                activity.logger.info("refused action %d of %s: %s", index, inp.incident_id, refusal[1])
            protected = [ns for ns, _ in self._protected(call, catalog)] if reason is None else []
            out.append(
                GuardedAction(index=index, call=call, allowed=reason is None, reason=reason or "", protected=protected)
            )
        return GuardResult(actions=out)

    @activity.defn(name=EXECUTE)
    async def execute(self, inp: ExecuteInput) -> ActionResult:
        key, call = inp.idempotency_key, inp.call

        # 1. Already finished: the recorded result, without calling anything.
        existing = await self.ledger.get_action(key)
        if existing is not None:
            self._same_action(existing, inp)
            if existing.status != "running":
                return _recorded(existing)

        # 2. Defence in depth: the guard's checks again, on the current catalogue.
        catalog = await self._tools()
        refusal = self._refusal(inp.agent, call, catalog, inp.allow_namespaces)
        reason = refusal[1] if refusal is not None else None
        if reason is not None and call.tool not in catalog and tool_allowed(call.tool, self.allow.get(inp.agent, [])):
            down = self._down_reason(call.tool)
            if down is not None:  # not refused: the approved action waits (retries) for its server
                raise ApplicationError(f"tool {call.tool!r} cannot run now: {down}", type=ERR_UNAVAILABLE)
        if refusal is not None and reason is not None:
            await self._event(f"{key}/refused", refusal[0], inp.agent, inp.incident_id, call.tool, reason)
            if existing is not None:  # interrupted earlier, and now no longer allowed: not resumed
                row = await self._finish(key, "failed", _INFRA, f"outcome unknown: {_UNKNOWN}; not retried: {reason}")
                return _recorded(row, already_ran=False)
            await self._record_refusal(inp.incident_id, inp.index, call, key, reason, agent_run=inp.agent_run)
            refused = ActionResult(index=inp.index, tool=call.tool, idempotency_key=key, status="refused", error=reason)
            raise ApplicationError(reason, refused.model_dump(), type=ERR_REFUSED, non_retryable=True)
        tool = catalog[call.tool]

        # 3. Claim the key.
        try:
            row = await self.ledger.start_action(
                inp.incident_id, inp.index, call.tool, call.arguments, key, agent_run=inp.agent_run
            )
        except ConflictError as exc:
            raise ApplicationError(str(exc), type=ERR_CONFLICT, non_retryable=True) from None
        if row.existed and row.status != "running":
            return _recorded(row)  # another attempt finished it meanwhile
        if row.existed and not tool.safe_to_repeat:
            activity.logger.warning("action %s was interrupted mid-call; %s is not safe to repeat", key, call.tool)
            row = await self._finish(
                key, "failed", _INFRA, f"outcome unknown: {_UNKNOWN}; {call.tool} is not safe to repeat, so it was not"
            )
            return _recorded(row, already_ran=False)

        # 4. Call the tool.
        arguments = dict(call.arguments)
        if tool.timestamp_arg and arguments.get(tool.timestamp_arg) is None:
            arguments[tool.timestamp_arg] = _rfc3339(row.started_at)
        if tool.key_arg:  # the tool finds what it did for this key (a retry acts once)
            arguments[tool.key_arg] = key
        try:
            async with heartbeating(self.heartbeat_every_s, key):
                result = await self._call(tool, arguments, reuse=False)
        except ServerError as exc:
            if exc.sent and not tool.safe_to_repeat:
                row = await self._finish(key, "failed", _INFRA, f"outcome unknown: {exc}; check the cluster by hand")
                return _recorded(row, already_ran=False)
            # Not sent, or safe to repeat: the retry resumes from the running row.
            raise ApplicationError(str(exc), type=ERR_UNAVAILABLE) from None

        text = _text_of(result)
        prefix = f"Error executing tool {call.tool}: "
        if result.is_error and text.startswith(prefix):
            text = text[len(prefix) :]
        record: dict[str, Any] = {"text": text[:MAX_RECORD_CHARS], "server": tool.spec.server, "arguments": arguments}
        if result.structured_content is not None and len(json.dumps(result.structured_content)) <= MAX_RECORD_CHARS:
            record["structured"] = result.structured_content
        if result.is_error:
            row = await self._finish(
                key, "failed", record, text[:MAX_OUTPUT_CHARS] or "the tool failed without a message"
            )
        else:
            row = await self._finish(key, "succeeded", record, None)
        with metrics.safely():
            metrics.ACTIONS.labels(metrics.label(inp.agent), row.status).inc()
        return _recorded(row, already_ran=row.status != ("failed" if result.is_error else "succeeded"))

    @activity.defn(name=GIVE_UP)
    async def give_up(self, inp: GiveUpInput) -> ActionResult:
        """The execute activity of this action gave up: its row ends `failed` with the reason (a
        row never claimed is recorded `failed`); a row already finished keeps its result."""
        key, call = inp.idempotency_key, inp.call
        reason = f"gave up: {inp.reason}"[:MAX_OUTPUT_CHARS]
        try:
            row = await self.ledger.start_action(
                inp.incident_id, inp.index, call.tool, call.arguments, key, agent_run=inp.agent_run
            )
        except ConflictError as exc:
            raise ApplicationError(str(exc), type=ERR_CONFLICT, non_retryable=True) from None
        if row.status != "running":
            return _recorded(row)  # another attempt finished it: its result stands
        activity.logger.warning("action %s: execution gave up, recorded failed: %s", key, inp.reason)
        row = await self._finish(key, "failed", _INFRA, reason)
        return _recorded(row, already_ran=row.status != "failed" or row.error != reason)

    @activity.defn(name=ACTIVITY_TOOL_CALL)
    async def call(self, inp: ToolCallInput) -> ToolCallResult:
        """An agent's read-only tool call: the guard's checks, the call, the whole text result
        stored in the ledger as a blob (`agent_blob_id`), and a `ResultRef` with a short preview
        back. A tool that changes anything is refused (`mutating=True`): it goes through approval
        and `tools.execute`. A server that cannot be reached is retryable (reads are safe to repeat)."""
        call = ToolCall(tool=inp.call.tool, arguments=inp.call.arguments)
        catalog = await self._tools()
        reason = self._check(inp.agent, call, catalog)
        if reason is not None:
            return ToolCallResult(status="refused", reason=reason)
        tool = catalog[call.tool]
        if not tool.read_only:
            return ToolCallResult(
                status="refused",
                mutating=True,
                reason=f"{call.tool} changes something: it runs only after a human approves it (tools.execute)",
            )
        try:
            async with heartbeating(self.heartbeat_every_s, inp.run_id, inp.call.call_id):
                result = await self._call(tool, call.arguments, reuse=True)
        except ServerError as exc:
            raise ApplicationError(str(exc), type=ERR_UNAVAILABLE) from None
        text = _text_of(result)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        prefix = f"Error executing tool {call.tool}: "
        if result.is_error and text.startswith(prefix):
            text = text[len(prefix) :]
        blob = agent_blob_id(inp.run_id, inp.step, inp.call.call_id)
        size = await self.ledger.put_blob(blob, inp.run_id, text)
        ref = ResultRef(ref=blob, size=size, preview=text[:PREVIEW_CHARS], truncated=size > inp.max_result_chars)
        if result.is_error:
            if text.startswith(EGRESS_REFUSED + ":"):  # the web server refused to reach a URL: a guardrail event
                await self._event(
                    f"{inp.run_id}/egress_refused/{inp.step}/{inp.call.call_id}",
                    "egress_refused",
                    inp.agent,
                    inp.run_id,
                    call.tool,
                    text,
                )
            return ToolCallResult(status="error", result=ref, reason=text[:MAX_REASON_CHARS] or "the tool failed")
        return ToolCallResult(status="ok", result=ref)

    @staticmethod
    def _same_action(row: ActionRow, inp: ExecuteInput) -> None:
        mine = (inp.incident_id, inp.index, inp.call.tool, _normalise(inp.call.arguments))
        theirs = (row.subject, row.action_index, row.tool, row.arguments)
        if mine != theirs:
            raise ApplicationError(
                f"idempotency key {inp.idempotency_key!r} already belongs to action {row.action_index} "
                f"({row.tool}) of {'agent run' if row.run_id else 'incident'} {row.subject} with other arguments",
                type=ERR_CONFLICT,
                non_retryable=True,
            )


_INFRA: dict[str, Any] = {"infrastructure": True}  # a failed row's result: the platform could not run it
_UNKNOWN = "an earlier attempt was interrupted during the call and may or may not have changed the cluster"


def _recorded(row: ActionRow, *, already_ran: bool = True) -> ActionResult:
    result = row.result if isinstance(row.result, dict) else {}
    status = row.status if row.status != "running" else "failed"
    return ActionResult(
        index=row.action_index,
        tool=row.tool,
        idempotency_key=row.idempotency_key,
        status=status,
        output=str(result.get("text", ""))[:MAX_OUTPUT_CHARS],
        error=(row.error or "")[:MAX_OUTPUT_CHARS],
        already_ran=already_ran,
        infrastructure=status == "failed" and bool(result.get("infrastructure")),
    )
