"""A small MCP tool server for the agent tests, served over streamable HTTP from the test's own
event loop (the real `mcp` server stack, the real wire format): tools that return what a test
needs and that no real server would, with the platform's annotations.

- `big_log(chars)` (read-only): a log of `chars` characters (5 MB for the by-reference test);
- `slow_read(ms)` (read-only): answers after `ms` milliseconds (the wall-clock test, the
  benchmark's tool time);
- `note(text)` (read-only): echoes `text`, its calls counted in `calls`;
- `set_flag(value)` (changes something: a write, asked of a human first): sets `flag`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import uvicorn
from pydantic import Field

from tests.support.env import free_port
from workers.toolservers.common import MUTATING_IDEMPOTENT, READ_ONLY, new_server, tool

TOOLS = ("big_log", "slow_read", "note", "set_flag")


@dataclass
class FakeMcp:
    port: int = 0
    token: str | None = None
    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    tool_ms: list[float] = field(default_factory=list)  # how long each call took inside the tool
    flag: str | None = None  # what `set_flag` last set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@contextlib.asynccontextmanager
async def fake_mcp(token: str | None = None) -> AsyncIterator[FakeMcp]:
    state = FakeMcp(port=free_port(), token=token)

    async def big_log(chars: Annotated[int, Field(ge=1, le=20_000_000, description="characters")] = 1000) -> str:
        """A long log, line after line."""
        t0 = time.perf_counter()
        state.calls.append(("big_log", {"chars": chars}))
        line = '2026-12-06T10:00:00Z level=info msg="request served" path=/api/v3/queue status=200\n'
        text = (line * (chars // len(line) + 1))[:chars]
        state.tool_ms.append((time.perf_counter() - t0) * 1000)
        return text

    async def slow_read(ms: Annotated[int, Field(ge=0, le=600_000, description="milliseconds")] = 100) -> str:
        """Answers after `ms` milliseconds."""
        t0 = time.perf_counter()
        state.calls.append(("slow_read", {"ms": ms}))
        await asyncio.sleep(ms / 1000)
        state.tool_ms.append((time.perf_counter() - t0) * 1000)
        return f"waited {ms} ms"

    async def note(text: Annotated[str, Field(max_length=10_000)] = "") -> str:
        """Echoes the text."""
        state.calls.append(("note", {"text": text}))
        state.tool_ms.append(0.0)
        return f"noted: {text}"

    async def set_flag(value: Annotated[str, Field(max_length=200)]) -> str:
        """Sets the flag (a write: it changes something)."""
        state.calls.append(("set_flag", {"value": value}))
        state.flag = value
        return f"flag set to {value}"

    server = new_server(
        "fake-tools",
        title="Fake tools for tests",
        instructions="test tools",
        tools=[
            tool(big_log, "Big log", READ_ONLY),
            tool(slow_read, "Slow read", READ_ONLY),
            tool(note, "Note", READ_ONLY),
            tool(set_flag, "Set flag", MUTATING_IDEMPOTENT),
        ],
        token=token,
        issuer_url=f"http://127.0.0.1:{state.port}",
        health=lambda: {},
    )
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=state.port, log_level="warning", lifespan="on")
    userver = uvicorn.Server(config)
    task = asyncio.create_task(userver.serve())
    while not userver.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield state
    finally:
        userver.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
