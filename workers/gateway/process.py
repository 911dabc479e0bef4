"""The gateway process, `python -m workers.gateway`, started by `run_service` like every platform
process: it connects to the ledger (API keys, audit), refuses to listen on an address that is not
loopback while no key exists, and serves until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
from collections.abc import Generator

import uvicorn
from temporalio.client import Client

from agentic_core.wording import counted
from workers.errors import AgenticError
from workers.gateway.app import create_app
from workers.http_limits import bounded_config
from workers.process import bind_listener, run_service, settle_heap
from workers.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (`run_service`'s stop event stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(host: str, active_keys: int) -> None:
    """Refuse to listen on an address others can reach while no API key exists."""
    if active_keys == 0 and not is_loopback(host):
        raise AgenticError(
            f"the gateway would listen on {host}, which is not a loopback address, and no API key exists: "
            "create one first with `agentic keys create NAME` (or listen on 127.0.0.1: AGENTIC_GATEWAY_HOST)"
        )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    from activities.ledger.db import LedgerError
    from activities.ledger.repository import Ledger
    from workers.temporal import connect

    host = settings.gateway_bind_host
    try:
        ledger = await Ledger.connect(settings.postgres_target(), min_size=1, max_size=5, apply_migrations=False)
    except LedgerError as exc:
        raise AgenticError(f"the gateway cannot reach the ledger (its API keys): {exc}") from None
    try:
        try:
            active = await ledger.active_api_keys()
        except LedgerError as exc:
            raise AgenticError(
                f"the gateway cannot read API keys: {exc} (the ledger's migrations are applied by the worker)"
            ) from None
        except Exception as exc:  # asyncpg.UndefinedTableError: an older schema
            raise AgenticError(
                f"the ledger has no API keys table yet ({type(exc).__name__}): start this version's worker first"
            ) from None
        check_exposure(host, active)

        async def factory() -> Client:
            return await connect(settings.temporal_target, settings.temporal_namespace)

        app = create_app(settings, ledger, factory, settings.task_queue)
        sock = bind_listener(host, settings.gateway_port, "AGENTIC_GATEWAY_PORT")
        config = bounded_config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)

        async def exit_on_stop() -> None:
            await stop.wait()
            server.should_exit = True

        port = sock.getsockname()[1]
        first = "" if active else "; no API key yet: create one with `agentic keys create NAME`"
        print(
            f"gateway: listening on http://{host}:{port} (OpenAI-compatible /v1/models, /v1/chat/completions; "
            f"GET /healthz); {counted(active, 'active API key')}{first}",
            file=sys.stderr,
            flush=True,
        )
        stopping = asyncio.create_task(exit_on_stop())
        settle_heap(logging.getLogger("agentic.gateway"))
        try:
            await server.serve(sockets=[sock])
        finally:
            stopping.cancel()
    finally:
        await ledger.close()
    print("gateway: stopped", file=sys.stderr, flush=True)


def main() -> None:
    run_service("gateway", serve)
