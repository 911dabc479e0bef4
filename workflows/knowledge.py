"""Short workflows behind the knowledge-base commands of the `agentic` CLI.

The CLI is an edge: it never opens the stores itself (Qdrant Edge is owned by the worker
process, and on a cluster the stores are not reachable from a laptop). It starts these
workflows, which run one activity each, so every import and search shows in Temporal's
history and works the same against the embedded stack and a real cluster.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.knowledge.activities import KnowledgeActivities
    from agentic_core.knowledge import (
        IngestDocsInput,
        ListRunbooksInput,
        ListRunbooksOutput,
        SearchInput,
        SearchOutput,
        UpsertReport,
        UpsertRunbooksInput,
    )

_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn
class UpsertRunbooksWorkflow:
    @workflow.run
    async def run(self, inp: UpsertRunbooksInput) -> UpsertReport:
        return await workflow.execute_activity_method(
            KnowledgeActivities.upsert_runbooks,
            inp,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )


@workflow.defn
class IngestDocsWorkflow:
    @workflow.run
    async def run(self, inp: IngestDocsInput) -> UpsertReport:
        return await workflow.execute_activity_method(
            KnowledgeActivities.ingest_docs,
            inp,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )


@workflow.defn
class SearchKnowledgeWorkflow:
    @workflow.run
    async def run(self, inp: SearchInput) -> SearchOutput:
        return await workflow.execute_activity_method(
            KnowledgeActivities.search,
            inp,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=_RETRY,
        )


@workflow.defn
class ListRunbooksWorkflow:
    @workflow.run
    async def run(self, inp: ListRunbooksInput) -> ListRunbooksOutput:
        return await workflow.execute_activity_method(
            KnowledgeActivities.list_runbooks,
            inp,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=_RETRY,
        )


WORKFLOWS = [UpsertRunbooksWorkflow, IngestDocsWorkflow, SearchKnowledgeWorkflow, ListRunbooksWorkflow]
