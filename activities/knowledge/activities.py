"""Knowledge-base activities: the worker builds one `KnowledgeActivities` with its clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from temporalio import activity

from activities.heartbeat import heartbeating
from agentic_core.knowledge import (
    IngestDocsInput,
    ListRunbooksInput,
    ListRunbooksOutput,
    RunbookSummary,
    SearchInput,
    SearchOutput,
    UpsertReport,
    UpsertRunbooksInput,
)
from agentic_core.models import Collection, Runbook

if TYPE_CHECKING:
    from activities.knowledge.kb import KnowledgeBase
    from activities.ledger.repository import Ledger


class KnowledgeActivities:
    """Runbooks live in the ledger (the truth) and in Qdrant (the index, rebuildable)."""

    def __init__(self, kb: KnowledgeBase, ledger: Ledger) -> None:
        self.kb = kb
        self.ledger = ledger

    @activity.defn(name="knowledge.upsert_runbooks")
    async def upsert_runbooks(self, inp: UpsertRunbooksInput) -> UpsertReport:
        # The ledger decides added/updated/unchanged; the index is brought in line either way,
        # so a wiped Qdrant is rebuilt by importing again.
        report = UpsertReport()
        async with heartbeating():
            for rb in inp.runbooks:
                state = await self.ledger.upsert_runbook(rb)
                getattr(report, state).append(rb.id)
            # The level belongs to the trust record in the ledger, not to the file.
            levels = {r.id: r.automation_level for r in await self.ledger.list_runbooks()}
            indexed = [
                rb.model_copy(update={"automation_level": levels.get(rb.id, rb.automation_level)})
                for rb in inp.runbooks
            ]
            await self.kb.upsert_runbooks(indexed)
        return report

    @activity.defn(name="knowledge.search")
    async def search(self, inp: SearchInput) -> SearchOutput:
        if inp.collection == Collection.RUNBOOKS:
            hits = await self.kb.search_runbooks(inp.text, limit=inp.limit, labels=inp.labels)
        elif inp.collection == Collection.DOCUMENTATION:
            hits = await self.kb.search_docs(inp.text, limit=inp.limit)
        else:
            hits = await self.kb.search_decisions(inp.text, limit=inp.limit)
        return SearchOutput(hits=hits)

    @activity.defn(name="knowledge.list_runbooks")
    async def list_runbooks(self, inp: ListRunbooksInput) -> ListRunbooksOutput:
        rbs: Sequence[Runbook]
        if inp.source == "knowledge":
            rbs = await self.kb.list_runbooks()
        else:
            rbs = await self.ledger.list_runbooks()
        return ListRunbooksOutput(
            runbooks=[
                RunbookSummary(id=r.id, title=r.title, automation_level=str(r.automation_level), source=r.source)
                for r in rbs
            ]
        )

    @activity.defn(name="knowledge.ingest_docs")
    async def ingest_docs(self, inp: IngestDocsInput) -> UpsertReport:
        async with heartbeating():
            return await self.kb.upsert_docs(inp.chunks)
