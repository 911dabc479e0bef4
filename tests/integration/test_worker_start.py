"""The worker polls before its embedding model has loaded (`workers.worker.run_worker`, as `agentic
up` runs it, against a real Temporal dev server and PostgreSQL): after a restart, approvals,
tool calls and agent runs resume while the model is still loading (5-7 s of imports and weights);
the first search waits for the model and then answers. A model that cannot load stops the worker
with the reason, as it did when the load came first."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.knowledge.embeddings import EmbeddingError, LocalEmbedder
from activities.ledger.repository import Ledger
from agentic_core.knowledge import SearchInput
from tests.support.env import free_port
from tests.support.pg import create_database, pg_server
from tests.support.temporal import temporal_bin
from workers.settings import Settings
from workers.stack.health import check_worker
from workers.temporal import ensure_search_attributes
from workers.worker import run_worker


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-worker-start-pg-")


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(), data_converter=pydantic_data_converter, dev_server_log_level="error"
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


async def _settings(pg: pgserver.PostgresServer, client: Client, data: Path) -> Settings:
    dsn = await create_database(pg, "wstart")
    await (await Ledger.connect(dsn, max_size=1)).close()  # migrated, as `agentic up` leaves it
    await ensure_search_attributes(client, "default")
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data,
        temporal_address=client.service_client.config.target_host,
        task_queue=f"wstart-{uuid.uuid4().hex[:8]}",
        postgres_dsn=SecretStr(dsn),
        planner_url=f"http://127.0.0.1:{free_port()}/v1",  # never asked here
        router_index_at_start=False,
    )


async def _polling(settings: Settings, worker: asyncio.Task[None], within_s: float = 90.0) -> None:
    import os

    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        assert not worker.done(), worker.exception() if not worker.cancelled() else "cancelled"
        ok, _ = await check_worker(settings.temporal_target, "default", settings.task_queue, pid=os.getpid())
        if ok:
            return
        assert asyncio.get_running_loop().time() < deadline, "the worker never polled"
        await asyncio.sleep(0.2)


async def test_the_worker_polls_while_the_model_loads_and_the_first_search_waits_for_it(
    pg: pgserver.PostgresServer,
    temporal: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    load = LocalEmbedder._load

    def slow_load(self: LocalEmbedder) -> Any:
        assert release.wait(120), "the test never let the model load"
        return load(self)

    monkeypatch.setattr(LocalEmbedder, "_load", slow_load)
    caplog.set_level(logging.INFO, logger="agentic.worker")
    settings = await _settings(pg, temporal, tmp_path / "data")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        await _polling(settings, worker)  # polling, though the model is still held back
        assert not release.is_set()
        search = asyncio.create_task(
            temporal.execute_workflow(
                "SearchKnowledgeWorkflow",
                SearchInput(text="disk full", limit=3),
                id=f"search-{uuid.uuid4().hex[:8]}",
                task_queue=settings.task_queue,
            )
        )
        await asyncio.sleep(1.0)
        assert not search.done()  # the search waits for the model …
        release.set()
        out = await asyncio.wait_for(search, 60)  # … and answers once it has loaded
        assert out is not None
        # once loaded, what the start made is left out of the collector's walks (workers/process.py)
        deadline = asyncio.get_running_loop().time() + 10
        while "heap settled" not in caplog.text and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert "heap settled" in caplog.text and gc.get_freeze_count() > 100_000
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(worker, 60)


async def test_a_model_that_cannot_load_stops_the_worker_with_the_reason(
    pg: pgserver.PostgresServer, temporal: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LocalEmbedder) -> Any:
        raise EmbeddingError("cannot load the local embedding model all-MiniLM-L6-v2 (weights missing)")

    monkeypatch.setattr(LocalEmbedder, "_load", broken)
    settings = await _settings(pg, temporal, tmp_path / "data")
    stop = asyncio.Event()
    try:
        with pytest.raises(EmbeddingError, match="weights missing"):
            await asyncio.wait_for(run_worker(settings, stop), 90)
    finally:
        stop.set()
