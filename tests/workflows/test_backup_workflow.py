"""BackupWorkflow's failure path on the time-skipping server, with the real activities: a backup
that cannot be made (the ledger is unreachable) fails the workflow with its cause, and the failure
is posted to the intake as a generic event (what makes it an incident like any other), with the
intake's bearer token; the event is one the intake's own parser accepts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.backup.activities import BackupActivities, BackupConfig
from agentic_core.alerts import GenericEvent, group_from_event
from agentic_core.backup import BACKUP_FAILED_ALERT, BackupInput
from tests.support.env import free_port
from tests.support.http_server import LoopServer
from tests.support.temporal import time_skipping_server
from workers.sandbox import workflow_runner
from workflows.backup import BackupWorkflow


class _Pool:
    """A pool whose server is gone: what `backup.create` meets when PostgreSQL is down."""

    def acquire(self) -> Any:
        raise ConnectionRefusedError("connection refused")


async def test_a_failed_backup_fails_the_workflow_and_opens_an_incident(tmp_path: Path) -> None:
    received: list[tuple[dict[str, Any], str]] = []

    async def events(request: Request) -> JSONResponse:
        received.append((await request.json(), request.headers.get("authorization", "")))
        return JSONResponse({"accepted": True, "incidents": ["x"], "events": 1}, status_code=202)

    port = free_port()
    server = LoopServer()
    await server.start(Starlette(routes=[Route("/events", events, methods=["POST"])]), port)
    config = BackupConfig(
        data_dir=tmp_path,
        backup_dir=tmp_path / "backups",
        postgres_dsn="postgresql://postgres:pw@127.0.0.1:1/postgres",
        pg_bin=None,
        temporal_db=None,
        key=None,
        keep=3,
        intake_events_url=f"http://127.0.0.1:{port}/events",
        intake_token="intake-token",
    )
    acts = BackupActivities(config, store=None, pool=_Pool())
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    try:
        queue = f"backup-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[BackupWorkflow],
            activities=[acts.create, acts.report_failure],
        ):
            with pytest.raises(WorkflowFailureError) as info:
                await env.client.execute_workflow(
                    "BackupWorkflow", BackupInput(scheduled=True), id=f"nightly-backup-{queue}", task_queue=queue
                )
    finally:
        await env.shutdown()
        await server.stop()
    assert "backup failed" in str(info.value.cause) and "connection refused" in str(info.value.cause)
    assert not any((tmp_path / "backups").glob("*.partial"))  # nothing half-made is left
    [(body, auth)] = received
    assert auth == "Bearer intake-token"
    assert body["labels"]["alertname"] == BACKUP_FAILED_ALERT and body["status"] == "firing"
    assert "the nightly backup failed" in body["description"] and "connection refused" in body["description"]
    group = group_from_event(GenericEvent.model_validate(body), datetime.now(UTC))  # the intake's own parser takes it
    assert group.common_labels["alertname"] == BACKUP_FAILED_ALERT
