"""What the knowledge MCP server talks to: Temporal (the searches run `SearchKnowledgeWorkflow` in
the platform's worker, which owns the vector store) and the ledger (trust records), each opened
on first use; a backend that cannot be used is a tool error that says what to check."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.service import RPCError

from activities.ledger.db import LedgerError
from activities.ledger.repository import Ledger
from agentic_core.knowledge import SearchInput, SearchOutput
from agentic_core.models import Collection
from workers.errors import AgenticError
from workers.settings import Settings
from workers.toolservers.common import tool_errors

if TYPE_CHECKING:
    from workers.knowledge_client import IngestRunning


__all__ = ["SEARCH_TIMEOUT", "KnowledgeBackends"]

SEARCH_TIMEOUT = timedelta(seconds=30)


class KnowledgeBackends:
    """Temporal (for the searches) and the ledger (for trust records), opened on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: Client | None = None,
        ledger: Ledger | None = None,
        task_queue: str | None = None,
        search_timeout: timedelta = SEARCH_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.task_queue = task_queue or settings.task_queue
        self.search_timeout = search_timeout
        self._client = client
        self._ledger = ledger
        self._owns_ledger = ledger is None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                from workers.temporal import connect

                with tool_errors({AgenticError: str}):
                    self._client = await connect(self.settings.temporal_target, self.settings.temporal_namespace)
            return self._client

    async def ledger(self) -> Ledger:
        async with self._lock:
            if self._ledger is None:
                with tool_errors({LedgerError: lambda exc: f"the ledger is unavailable: {exc}"}):
                    self._ledger = await Ledger.connect(
                        self.settings.postgres_target(), max_size=4, apply_migrations=False
                    )
            return self._ledger

    async def close(self) -> None:
        if self._ledger is not None and self._owns_ledger:
            await self._ledger.close()
            self._ledger = None

    async def docs_ingests_running(self) -> list[IngestRunning]:
        """The documentation ingests still running (`workers.knowledge_client.docs_ingests_running`)."""
        from workers.knowledge_client import docs_ingests_running

        return await docs_ingests_running(await self.client())

    async def search(
        self, collection: Collection, query: str, limit: int, labels: dict[str, str] | None
    ) -> SearchOutput:
        from workflows.knowledge import SearchKnowledgeWorkflow

        client = await self.client()
        errors = {
            WorkflowFailureError: lambda exc: self._search_failure(collection, exc),
            RPCError: lambda exc: (
                f"Temporal refused the search ({exc.message or exc.status.name}) at {self.settings.temporal_target}"
            ),
        }
        with tool_errors(errors):
            return await client.execute_workflow(
                SearchKnowledgeWorkflow.run,
                SearchInput(collection=collection, text=query, limit=limit, labels=labels or None),
                id=f"mcp-search-{uuid.uuid4()}",
                task_queue=self.task_queue,
                execution_timeout=self.search_timeout,
            )

    def _search_failure(self, collection: Collection, exc: WorkflowFailureError) -> str:
        cause: BaseException | None = exc.cause
        if isinstance(cause, TemporalTimeoutError) or "timed out" in str(cause).lower():
            return (
                f"no answer from the platform's worker within {self.search_timeout.total_seconds():g}s: "
                f"is the worker running and polling task queue {self.task_queue!r}? (`agentic status`)"
            )
        while getattr(cause, "cause", None) is not None:
            cause = getattr(cause, "cause", None)
        return f"the {collection.value} search failed in the worker: {cause}"
