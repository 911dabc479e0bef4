"""The client side of the knowledge-base commands: parse locally, act through Temporal."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from agentic_core.knowledge import (
    IngestDocsInput,
    ListRunbooksInput,
    RunbookSummary,
    SearchInput,
    UpsertReport,
    UpsertRunbooksInput,
)
from agentic_core.models import Collection, Runbook, SearchHit
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import platform_client
from workflows.knowledge import (
    IngestDocsWorkflow,
    ListRunbooksWorkflow,
    SearchKnowledgeWorkflow,
    UpsertRunbooksWorkflow,
)

IMPORT_BATCH = 16
IMPORT_PARALLEL = 2


def _failure(exc: WorkflowFailureError) -> AgenticError:
    cause: BaseException | None = exc.cause
    while getattr(cause, "cause", None) is not None:
        cause = getattr(cause, "cause", None)
    return AgenticError(f"the platform could not do it: {cause}")


async def start_docs_ingest(settings: Settings, src: Path) -> str | None:
    """Start the docs ingestion for this exact content once; None when it already ran."""
    from activities.knowledge.chunks import load_docs

    chunks = await asyncio.to_thread(load_docs, src)
    if not chunks:
        return None
    digest = hashlib.sha256("".join(sorted(c.content_hash or c.text for c in chunks)).encode()).hexdigest()
    wf_id = f"docs-ingest-{digest[:16]}"
    client, queue = await platform_client(settings)
    try:
        await client.start_workflow(
            IngestDocsWorkflow.run,
            IngestDocsInput(chunks=chunks),
            id=wf_id,
            task_queue=queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError:
        return None
    return wf_id


async def ingest_docs(settings: Settings, src: Path) -> UpsertReport:
    from activities.knowledge.chunks import load_docs

    if not await asyncio.to_thread(src.exists):
        raise AgenticError(f"no such file or directory: {src}")
    chunks = await asyncio.to_thread(load_docs, src)
    if not chunks:
        raise AgenticError(f"no markdown sections found under {src}")
    client, queue = await platform_client(settings)
    try:
        return await client.execute_workflow(
            IngestDocsWorkflow.run,
            IngestDocsInput(chunks=chunks),
            id=f"docs-ingest-cli-{uuid.uuid4()}",
            task_queue=queue,
        )
    except WorkflowFailureError as exc:
        raise _failure(exc) from exc


async def import_runbooks(
    settings: Settings,
    runbooks: list[Runbook],
    progress: Callable[[int], None] | None = None,
) -> UpsertReport:
    """Send runbooks to the platform in batches (a short workflow each), a few at a time."""
    client, queue = await platform_client(settings)
    batches = [runbooks[i : i + IMPORT_BATCH] for i in range(0, len(runbooks), IMPORT_BATCH)]
    sem = asyncio.Semaphore(IMPORT_PARALLEL)
    report = UpsertReport()

    async def one(batch: list[Runbook]) -> UpsertReport:
        async with sem:
            try:
                res = await client.execute_workflow(
                    UpsertRunbooksWorkflow.run,
                    UpsertRunbooksInput(runbooks=batch),
                    id=f"runbooks-import-{uuid.uuid4()}",
                    task_queue=queue,
                )
            except WorkflowFailureError as exc:
                raise _failure(exc) from exc
            if progress:
                progress(len(batch))
            return res

    for part in await asyncio.gather(*(one(b) for b in batches)):
        report = report.merge(part)
    return report


@dataclass(frozen=True)
class IngestRunning:
    """A documentation ingest still under way (`IngestDocsWorkflow`): a search sees only the
    sections it has indexed so far."""

    workflow_id: str
    started_at: datetime | None


async def docs_ingests_running(client: Client) -> list[IngestRunning]:
    """The documentation ingests still running (a fresh stack's first start ingests docs/ for
    about half a minute without `agentic up` waiting for it). Best effort: none when visibility
    cannot say (a note, never a search's failure)."""
    query = "WorkflowType = 'IngestDocsWorkflow' AND ExecutionStatus = 'Running'"
    try:
        return [IngestRunning(wf.id, wf.start_time) async for wf in client.list_workflows(query, limit=5)]
    except RPCError:
        return []


def ingest_note(running: list[IngestRunning], *, any_hits: bool) -> str:
    """What a docs search says beside its hits while an ingest still runs ("" when none does):
    the CLI's note on stderr, the knowledge MCP server's `note` field."""
    if not running:
        return ""
    ingest = running[0]
    since = f", started {ingest.started_at:%H:%M:%S} UTC" if ingest.started_at else ""
    hits = "these hits come from the sections indexed so far"
    so_far = hits if any_hits else "nothing in the sections indexed so far matches"
    return (
        f"the documentation is still being ingested (workflow {ingest.workflow_id}{since}): "
        f"{so_far}; search again in a moment for all of them"
    )


async def search_docs(settings: Settings, text: str, limit: int) -> tuple[list[SearchHit], list[IngestRunning]]:
    """The documentation's best sections for `text`, and the ingests still running beside it
    (the caller says the hits may be incomplete)."""
    client, queue = await platform_client(settings)
    hits, running = await asyncio.gather(
        _search(client, queue, Collection.DOCUMENTATION, text, limit, None), docs_ingests_running(client)
    )
    return hits, running


async def search(
    settings: Settings, collection: Collection, text: str, limit: int, labels: dict[str, str] | None = None
) -> list[SearchHit]:
    client, queue = await platform_client(settings)
    return await _search(client, queue, collection, text, limit, labels)


async def _search(
    client: Client, queue: str, collection: Collection, text: str, limit: int, labels: dict[str, str] | None
) -> list[SearchHit]:
    try:
        out = await client.execute_workflow(
            SearchKnowledgeWorkflow.run,
            SearchInput(collection=collection, text=text, limit=limit, labels=labels),
            id=f"search-{uuid.uuid4()}",
            task_queue=queue,
        )
    except WorkflowFailureError as exc:
        raise _failure(exc) from exc
    return out.hits


async def list_runbooks(settings: Settings) -> list[RunbookSummary]:
    client, queue = await platform_client(settings)
    try:
        out = await client.execute_workflow(
            ListRunbooksWorkflow.run, ListRunbooksInput(), id=f"runbooks-list-{uuid.uuid4()}", task_queue=queue
        )
    except WorkflowFailureError as exc:
        raise _failure(exc) from exc
    return out.runbooks
