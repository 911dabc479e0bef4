"""The intake process, `python -m workers.intake`, started by `run_service` like every platform
process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Generator

import uvicorn
from temporalio.client import Client

from workers.http_limits import bounded_config
from workers.intake.app import create_app
from workers.intake.delivery import Intake
from workers.process import bind_listener, run_service, settle_heap
from workers.settings import Settings

# --------------------------------------------------------------------------- the process


class _Server(uvicorn.Server):
    """uvicorn minus its own signal capture: `run_service`'s stop event stops it gracefully and
    the process exits 0 (uvicorn re-raises a captured SIGTERM after its shutdown, which would end
    us with -15)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """The intake process (run by `run_service`): refuse to start without a token, claim the port,
    serve until `stop` is set, then let the requests in flight finish."""
    from workers.temporal import connect

    async def factory() -> Client:
        return await connect(settings.temporal_target, settings.temporal_namespace)

    app = create_app(factory, settings)  # no token: refused before the port is claimed
    sock = bind_listener(settings.host, settings.intake_port, "AGENTIC_INTAKE_PORT")
    config = bounded_config(  # headers within 5 s, the body within 10 s (workers/http_limits.py)
        app,
        lifespan="off",
        log_config=None,  # run_service's logging; uvicorn's access log is replaced by AccessLog
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=15,
    )
    server = _Server(config)

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    intake: Intake = app.state.intake
    ok, detail = await intake.temporal_health()
    port = sock.getsockname()[1]
    print(
        f"intake: listening on http://{settings.host}:{port} (POST /alerts, POST /events, GET /healthz); "
        f"Temporal {settings.temporal_target} namespace {settings.temporal_namespace} "
        f"task queue {settings.task_queue}: " + ("reachable" if ok else f"NOT reachable yet, answering 503 ({detail})"),
        file=sys.stderr,
        flush=True,
    )
    stopping = asyncio.create_task(exit_on_stop())
    settle_heap(logging.getLogger("agentic.intake"))
    try:
        await server.serve(sockets=[sock])
    finally:
        stopping.cancel()
    print("intake: stopped", file=sys.stderr, flush=True)


def main() -> None:
    run_service("intake", serve)
