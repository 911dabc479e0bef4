"""The supervisor's health check of the worker (workers/stack/health.py `check_worker`) against a
real Temporal dev server: a restarted worker is healthy only when its own process polls, not while
Temporal still lists its dead predecessor's poller (#17: chaos counted the worker "back in
1.5 s" while the new process polled 65 s later, and incidents waited all that time)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.worker import Worker

from tests.support.temporal import start_dev_server
from workers.sandbox import workflow_runner
from workers.stack.health import check_worker


@workflow.defn(name="HealthProbe")
class _Probe:
    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(seconds=1))


async def _healthy_within(target: str, queue: str, pid: int, within_s: float = 30.0) -> tuple[bool, str]:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        ok, detail = await check_worker(target, "default", queue, pid=pid)
        if ok or asyncio.get_running_loop().time() > deadline:
            return ok, detail
        await asyncio.sleep(0.2)


async def test_a_dead_workers_poller_does_not_make_its_successor_healthy() -> None:
    env = await start_dev_server()
    try:
        target = env.client.service_client.config.target_host
        queue = f"health-{uuid.uuid4().hex[:8]}"
        assert (await check_worker(target, "default", queue, pid=4242))[0] is False  # nobody polls
        async with Worker(
            env.client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[_Probe],
            identity="agentic-worker@host:4242",
        ):
            ok, detail = await _healthy_within(target, queue, 4242)  # as the supervisor waits
            assert ok, detail
        # The worker with pid 4242 is gone; Temporal still lists its poller for a while.
        stale, _ = await check_worker(target, "default", queue)
        assert stale  # what the old check (any poller) said: healthy
        ok, detail = await check_worker(target, "default", queue, pid=5151)  # its successor, not polling yet
        assert not ok and "5151 does not poll" in detail, detail
    finally:
        await env.shutdown()
