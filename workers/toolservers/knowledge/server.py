"""The MCP knowledge server: runbooks, past decisions, operator docs and trust records at /mcp.

    python -m workers.toolservers.knowledge --host 127.0.0.1 --port 8092 [--token-env AGENTIC_MCP_TOKEN]

The platform's knowledge base, offered to any agent or MCP client (all tools read-only):

  search_runbooks(query, limit?, labels?)   hybrid search over runbooks, best first
  search_decisions(query, limit?)           past decisions on similar alerts and their outcomes
  search_docs(query, limit?)                the operator documentation, by section
  runbook_stats(runbook_id?)                how many runbooks sit at each automation level, and
                                            one runbook's counters when an id is given
  runbook_record(runbook_id, decisions?)    one runbook: its definition, counters, level history
                                            and latest decisions

Where the answers come from: the three searches run the `SearchKnowledgeWorkflow` through
Temporal, like the `agentic` CLI (Qdrant Edge belongs to the worker process; no other process
opens it). The trust tools read the ledger (PostgreSQL) directly. Connections come from the
`AGENTIC_*` settings (temporal address, namespace, task queue, PostgreSQL DSN), completed from the
data dir like every part's (`workers.stack.env.platform_settings`: the embedded PostgreSQL's password,
the running stack's addresses), and open on the
first call that needs them, so the server starts, and answers /healthz, before its backends do.

Failures are MCP tool errors that say what to do (no worker polling the task queue, PostgreSQL
unreachable, an unknown runbook id). Authentication and start-up rules are the infrastructure
server's: a bearer token from `--token-env VAR`; without one, loopback only; `error:` lines and
exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from activities.ledger.db import LedgerError, LedgerUnavailable
from activities.ledger.repository import Ledger
from agentic_core.models import Collection
from agentic_core.trust import RunbookCounters
from workers.errors import AgenticError
from workers.process import StartupError
from workers.settings import Settings
from workers.stack.env import platform_settings
from workers.toolservers.common import (
    READ_ONLY,
    new_server,
    tool,
    tool_errors,
)
from workers.toolservers.knowledge.client import KnowledgeBackends
from workers.toolservers.knowledge.models import (
    DecisionHit,
    DecisionOut,
    DecisionSearchResult,
    DocHit,
    DocSearchResult,
    LevelChangeOut,
    RunbookHit,
    RunbookRecord,
    RunbookSearchResult,
    RunbookStatsResult,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["build_server", "main"]

SERVER_NAME = "agentic-knowledge"
SNIPPET = 600

log = logging.getLogger("workers.toolservers.knowledge")


async def _ledger_call(backends: KnowledgeBackends, what: str, fn: Any) -> Any:
    ledger = await backends.ledger()
    with tool_errors(
        {
            LedgerUnavailable: lambda exc: f"{what}: the ledger is unavailable: {exc}",
            LedgerError: lambda exc: f"{what}: {exc}",
        }
    ):
        return await fn(ledger)


# --------------------------------------------------------------------------- the server

Query = Annotated[
    str,
    Field(
        description="what is happening, in words or as an alert text, e.g. 'pod OOMKilled in namespace media'",
        min_length=1,
        max_length=2000,
    ),
]
Limit = Annotated[int, Field(description="how many results, best first", ge=1, le=50)]
RunbookId = Annotated[
    str,
    Field(
        description="a runbook id as search_runbooks returns it, e.g. 'kubernetes/KubePodCrashLooping'",
        min_length=1,
        max_length=300,
    ),
]


def _excerpt(text: str, n: int = SNIPPET) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _counters(stats: Any) -> RunbookCounters:
    return RunbookCounters.model_validate(stats.model_dump(exclude={"runbook_id"})) if stats else RunbookCounters()


def build_server(
    backends: KnowledgeBackends, *, token: str | None = None, issuer_url: str = "http://127.0.0.1"
) -> MCPServer:
    """The MCP server with the knowledge tools over `backends`."""

    async def search_runbooks(
        query: Query,
        limit: Limit = 5,
        labels: Annotated[
            dict[str, str] | None,
            Field(
                description="the alert's labels, e.g. {'alertname': 'KubePodCrashLooping', 'namespace': 'media'}: "
                "runbooks whose matchers fit them rank first",
                max_length=50,
            ),
        ] = None,
    ) -> RunbookSearchResult:
        """Find runbooks for an alert or a problem (hybrid dense + keyword search), best first, with
        each runbook's current automation level and its plan."""
        out = await backends.search(Collection.RUNBOOKS, query, limit, labels)
        hits: list[RunbookHit] = []
        for h in out.hits:
            rb = h.payload.get("runbook") or {}
            hits.append(
                RunbookHit(
                    id=h.id,
                    title=h.title,
                    score=h.score,
                    automation_level=str(rb.get("automation_level", "manual")),
                    matched_labels=bool(h.payload.get("matched_labels", False)),
                    source=str(rb.get("source", "")),
                    actions=list(rb.get("actions") or []),
                    excerpt=_excerpt(str(rb.get("body", ""))),
                )
            )
        return RunbookSearchResult(query=query, hits=hits)

    async def search_decisions(query: Query, limit: Limit = 5) -> DecisionSearchResult:
        """Past decisions on similar alerts: what was proposed, what the human (or the platform)
        decided, and how it turned out."""
        out = await backends.search(Collection.DECISIONS, query, limit, None)
        hits = [
            DecisionHit(
                id=h.id,
                incident_id=str(h.payload.get("incident_id", "")),
                summary=str(h.payload.get("summary", h.title)),
                score=h.score,
                decision=str(h.payload.get("decision", "")),
                decided_by=h.payload.get("decided_by"),
                outcome=str(h.payload.get("outcome", "pending")),
                runbook_id=h.payload.get("runbook_id"),
                actions=list(h.payload.get("actions") or []),
                labels=dict(h.payload.get("labels") or {}),
            )
            for h in out.hits
        ]
        return DecisionSearchResult(query=query, hits=hits)

    async def search_docs(query: Query, limit: Limit = 5) -> DocSearchResult:
        """Search the operator documentation (installation, configuration, runbook format, ...) by section."""
        from workers.knowledge_client import ingest_note

        out, running = await asyncio.gather(
            backends.search(Collection.DOCUMENTATION, query, limit, None), backends.docs_ingests_running()
        )
        hits = [
            DocHit(
                id=h.id,
                source=str(h.payload.get("source", "")),
                heading=str(h.payload.get("heading", h.title)),
                score=h.score,
                text=_excerpt(str(h.payload.get("text", "")), 2000),
            )
            for h in out.hits
        ]
        note = ingest_note(running, any_hits=bool(hits))
        return DocSearchResult(query=query, hits=hits, note=note)

    async def runbook_stats(
        runbook_id: Annotated[
            str | None,
            Field(description="a runbook id for its counters; leave out for the level counts only", max_length=300),
        ] = None,
    ) -> RunbookStatsResult:
        """How many runbooks sit at each automation level (manual, prompted, standard), and with a
        runbook id that runbook's level and counters (executions, successes, failures, approvals, ...)."""

        async def read(ledger: Ledger) -> RunbookStatsResult:
            counts = await ledger.level_counts()
            result = RunbookStatsResult(level_counts=counts, total=sum(counts.values()))
            if runbook_id is None:
                return result
            row = await ledger.get_runbook(runbook_id)
            if row is None:
                raise ToolError(
                    f"no runbook {runbook_id!r} in the ledger ({result.total} runbooks): "
                    "use search_runbooks to find runbook ids, or import it with `agentic runbooks import`"
                )
            stats = await ledger.runbook_stats(runbook_id)
            return result.model_copy(
                update={
                    "runbook_id": runbook_id,
                    "automation_level": row.automation_level.value,
                    "stats": _counters(stats),
                }
            )

        result: RunbookStatsResult = await _ledger_call(backends, "runbook_stats", read)
        return result

    async def runbook_record(
        runbook_id: RunbookId,
        decisions: Annotated[int, Field(description="how many of its latest decisions to include", ge=0, le=100)] = 10,
    ) -> RunbookRecord:
        """One runbook's trust record: its definition (matchers, plan, text), current automation
        level, counters, the history of its level changes (who, when, why) and its latest decisions."""

        async def read(ledger: Ledger) -> RunbookRecord:
            row = await ledger.get_runbook(runbook_id)
            if row is None:
                raise ToolError(
                    f"no runbook {runbook_id!r} in the ledger: use search_runbooks to find runbook ids "
                    "(ids look like 'kubernetes/KubePodCrashLooping')"
                )
            stats = await ledger.runbook_stats(runbook_id)
            history = await ledger.level_history(runbook_id)
            recent = await ledger.list_decisions(runbook_id=runbook_id, limit=decisions) if decisions else []
            return RunbookRecord(
                id=row.id,
                title=row.title,
                source=row.source,
                automation_level=row.automation_level.value,
                match=[str(m) for m in row.match],
                actions=[a.model_dump(mode="json") for a in row.actions],
                body=row.body,
                created_at=row.created_at,
                updated_at=row.updated_at,
                stats=_counters(stats),
                level_history=[
                    LevelChangeOut(
                        from_level=h.from_level.value if h.from_level else None,
                        to_level=h.to_level.value,
                        reason=h.reason,
                        changed_by=h.changed_by,
                        changed_at=h.changed_at,
                    )
                    for h in history
                ],
                recent_decisions=[
                    DecisionOut(
                        incident_id=d.incident_id, choice=d.choice, decided_by=d.decided_by, decided_at=d.decided_at
                    )
                    for d in recent
                ],
            )

        record: RunbookRecord = await _ledger_call(backends, "runbook_record", read)
        return record

    tools = [
        tool(search_runbooks, "Search runbooks", READ_ONLY),
        tool(search_decisions, "Search past decisions", READ_ONLY),
        tool(search_docs, "Search the operator docs", READ_ONLY),
        tool(runbook_stats, "Runbook levels and counters", READ_ONLY),
        tool(runbook_record, "A runbook's trust record", READ_ONLY),
    ]
    return new_server(
        SERVER_NAME,
        title="agentic-platform knowledge base",
        instructions="The platform's memory: runbooks, past decisions and their outcomes, operator docs, and each "
        "runbook's trust record (automation level, counters, level history). Every tool is read-only.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {"tools": len(tools), "task_queue": backends.task_queue},
    )


# --------------------------------------------------------------------------- the process


def configure(_args: argparse.Namespace) -> Launch:
    try:
        settings = platform_settings(Settings())  # the stack's secrets and addresses, as every part gets them
    except ValueError as exc:
        first = str(exc).splitlines()
        raise StartupError(f"error: bad configuration: {' '.join(first[1:3]).strip()}") from None
    except AgenticError as exc:
        raise StartupError(f"error: {exc}") from None

    def launch(token: str | None, issuer: str) -> Serving:
        backends = KnowledgeBackends(settings)
        server = build_server(backends, token=token, issuer_url=issuer)
        detail = f"temporal {settings.temporal_target} queue {settings.task_queue}"
        return Serving(server, detail, on_stop=backends.close)

    return launch


PROCESS = ToolServer(
    "mcp_knowledge",
    "knowledge-base",
    port=8092,
    port_setting="AGENTIC_MCP_KNOWLEDGE_PORT",
    serves="the knowledge base",
    configure=configure,
)
main = PROCESS.main
