"""Heartbeating on a ticker while an activity's body runs.

A long activity that heartbeats (with a `heartbeat_timeout` on its call) is retried within that
timeout when its worker dies, instead of after the whole start-to-close timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity

HEARTBEAT_EVERY_S = 5.0


@contextlib.asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY_S, *details: Any) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            activity.heartbeat(*details)
            await asyncio.sleep(every)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
