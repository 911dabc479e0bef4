"""A Starlette app served by uvicorn inside the test's own event loop, on 127.0.0.1: what the
fakes of outside services (Bot API, OpenAI-compatible models, Home Assistant, the arr apps)
stand on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


class LoopServer:
    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: ASGIApp, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.02)

    async def stop(self, on_exit: Callable[[], None] | None = None) -> None:
        """Stop serving; `on_exit` runs once the server was told to exit (e.g. to wake long polls
        that would otherwise hold the shutdown)."""
        if self._server is not None:
            self._server.should_exit = True
            if on_exit is not None:
                on_exit()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
