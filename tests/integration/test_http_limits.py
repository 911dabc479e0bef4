"""Slow and malformed clients against the platform's HTTP servers (workers/http_limits.py), over
raw sockets: each is answered or closed within seconds, and ordinary clients are served as before.

Before the bounds, every one of these held its connection for as long as the client liked (20 s
and more measured: uvicorn bounds neither headers nor bodies)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.env import free_port
from tests.support.intake import TOKEN, process_env, spawn, stop, wait_health
from tests.support.kmock_helpers import McpProcess, start_server
from tests.support.raw_http import assert_bounded, head, probe, slow_clients
from workers.http_limits import HEADER_TIMEOUT_S

MCP_TOKEN = "mcp-limits-token"


@pytest.fixture(scope="module")
async def intake() -> AsyncIterator[int]:
    """The real intake process (Temporal down: the POST routes are never reached in full here)."""
    port = free_port()
    proc = await spawn(
        process_env(
            intake_token=TOKEN, intake_port=str(port), host="127.0.0.1", temporal_address=f"127.0.0.1:{free_port()}"
        )
    )
    try:
        await wait_health(port, proc, want=503)
        yield port
    finally:
        code, log = await stop(proc) if proc.returncode is None else (proc.returncode, "")
        assert code == 0, log
        assert "Traceback" not in log, log


async def test_intake_bounds_header_and_body_reads(intake: int) -> None:
    outcomes = await slow_clients(intake, "/alerts", f"Authorization: Bearer {TOKEN}")
    assert_bounded(outcomes)
    assert b"did not arrive" in outcomes["body shorter than Content-Length"].raw


async def test_intake_keep_alive_still_serves_several_requests(intake: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", intake)
    try:
        for _ in range(3):  # one connection, three requests, some time apart
            writer.write(head("GET", "/"))
            await writer.drain()
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            await asyncio.sleep(HEADER_TIMEOUT_S / 3)
        # Then idle: closed at the header deadline, with no answer.
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), HEADER_TIMEOUT_S + 3) == b""
        assert time.monotonic() - started <= HEADER_TIMEOUT_S + 1
    finally:
        writer.close()
    # A body sent slowly but within the deadline is read whole.
    body = b'{"version": "3"}'
    data = head(
        "POST",
        "/alerts",
        f"Authorization: Bearer {TOKEN}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )
    outcome = await probe(intake, "slow but in time", data + body, trickle_s=0.02)
    assert outcome.status == 422 and b"version" in outcome.raw, outcome


@pytest.fixture
async def mcp() -> AsyncIterator[McpProcess]:
    """A real MCP server process (Home Assistant's; its Home Assistant is not needed here)."""
    server = await start_server(
        free_port(),
        None,
        MCP_TOKEN,
        module="workers.toolservers.homeassistant",
        extra_args=["--ha-url", f"http://127.0.0.1:{free_port()}"],
        env={"AGENTIC_HA_TOKEN": "ha-token"},
    )
    try:
        yield server
    finally:
        await server.stop()
    assert not any("Traceback" in line for line in server.stderr), server.stderr


async def test_mcp_server_bounds_header_and_body_reads(mcp: McpProcess) -> None:
    headers = (f"Authorization: Bearer {MCP_TOKEN}", "Accept: application/json, text/event-stream")
    assert_bounded(await slow_clients(mcp.port, "/mcp", *headers))
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{mcp.port}/healthz")).status_code == 200
