"""The intake never answers 202 for an alert it has not handed to Temporal (issue 17, "Chaos").

The intake process is connected to a Temporal dev server on SQLite; the server is killed with
SIGKILL (no goodbye on the connection the intake holds). A POST then must be a 503 with
Retry-After (what makes Alertmanager send it again), and start nothing. When the server is back
on the same port and database, the resend (Alertmanager's retry) is accepted, and the group has
exactly one incident: one IncidentWorkflow run, whose first signal is the resent group. A group
accepted before the kill is still there after it, and its resend joins the same run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import httpx
from temporalio.client import Client

from tests.support.env import free_port
from tests.support.intake import TASK_QUEUE, TOKEN, incident_of, process_env, spawn, stop, uniq, wait_health, webhook
from tests.support.temporal import temporal_bin


async def start_temporal(port: int, db: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        temporal_bin(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--db-filename",
        str(db),
        "--log-level",
        "error",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
            await client.count_workflows()
            return proc
        except Exception:
            assert proc.returncode is None, "the Temporal dev server exited"
            await asyncio.sleep(0.2)
    raise AssertionError("the Temporal dev server did not come up")


async def runs(port: int, incident_id: str) -> int:
    client = await Client.connect(f"127.0.0.1:{port}")
    return len([w async for w in client.list_workflows(f"WorkflowId = '{incident_id}'")])


async def test_temporal_killed_is_503_never_202_and_the_resend_is_one_incident() -> None:
    with tempfile.TemporaryDirectory(prefix="agentic-intake-kill-") as tmp:
        db = Path(tmp) / "temporal.db"
        port, tport = free_port(), free_port()
        temporal = await start_temporal(tport, db)
        intake = await spawn(
            process_env(
                intake_token=TOKEN,
                intake_port=str(port),
                host="127.0.0.1",
                temporal_address=f"127.0.0.1:{tport}",
                task_queue=TASK_QUEUE,
            )
        )
        try:
            await wait_health(port, intake, want=200)
            url = f"http://127.0.0.1:{port}/alerts"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            before, during = webhook("agentic-" + uniq()), webhook("agentic-" + uniq())
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.post(url, json=before, headers=auth)
                assert r.status_code == 202, r.text

                os.kill(temporal.pid, signal.SIGKILL)  # kill -9: the connection is cut, no goodbye
                await temporal.wait()
                r = await http.post(url, json=during, headers=auth)  # while it is down: never a 202
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "10", r.headers
                assert r.json()["accepted"] is False

                temporal = await start_temporal(tport, db)  # back, same port, same database
                await wait_health(port, intake, want=200, within=60)
                r = await http.post(url, json=during, headers=auth)
                assert r.status_code == 202, r.text
                assert r.json()["incidents"] == [incident_of(during)]
                r = await http.post(url, json=before, headers=auth)  # a resend of the earlier group
                assert r.status_code == 202, r.text
            assert await runs(tport, incident_of(during)) == 1
            assert await runs(tport, incident_of(before)) == 1
        finally:
            if intake.returncode is None:
                await stop(intake)
            if temporal.returncode is None:
                temporal.send_signal(signal.SIGKILL)
                await temporal.wait()
