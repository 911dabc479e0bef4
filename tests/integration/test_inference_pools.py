"""The inference pools (docs/scaling.md): LiteLLM's least-busy routing across a pool's replicas,
the per-replica bound with its queue timeout, and the settings that describe them.

Replicas are tiny OpenAI-compatible endpoints served with asyncio in the test; each answers a
chat completion after `delay_s` and counts the requests it got and the most it held at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from activities.inference.router import GroupConfig, InferenceRouter, InferenceUnavailable
from workers.settings import Settings
from workers.wiring import inference_router

POOL_IN_FLIGHT = [0, 0]  # now, most: across the replicas of a test


@dataclass
class Replica:
    delay_s: float = 0.3
    requests: int = 0
    in_flight: int = 0
    most: int = 0
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(h.split(":", 1)[1])
                    for h in head.decode().split("\r\n")
                    if h.lower().startswith("content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests += 1
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            POOL_IN_FLIGHT[0] += 1
            POOL_IN_FLIGHT[1] = max(POOL_IN_FLIGHT)
            await asyncio.sleep(self.delay_s)
            self.in_flight -= 1
            POOL_IN_FLIGHT[0] -= 1
            data = json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }
            ).encode()
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    reps = [Replica(), Replica()]
    async with AsyncExitStack() as stack:
        for r in reps:
            server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
            r.port = server.sockets[0].getsockname()[1]
            await stack.enter_async_context(server)
        yield reps


def pool(reps: list[Replica], **kw: float) -> InferenceRouter:
    return InferenceRouter(
        [GroupConfig(name="planner", model="openai/fake", api_bases=tuple(r.base_url for r in reps), **kw)]
    )


def waited(queue: str = "pool") -> float:
    return REGISTRY.get_sample_value("agentic_model_slot_wait_seconds_count", {"pool": "planner", "queue": queue}) or 0


async def test_calls_spread_over_the_replicas_within_their_bound(replicas: list[Replica]) -> None:
    router = pool(replicas, max_parallel=1)
    hi = [{"role": "user", "content": "hi"}]
    await router.complete("planner", hi)  # LiteLLM's first call imports and builds its clients
    for r in replicas:
        r.requests = 0
    POOL_IN_FLIGHT[:] = [0, 0]
    before = waited()
    replies = await asyncio.gather(*(router.complete("planner", hi) for _ in range(8)))
    assert [r.text for r in replies] == ["ok"] * 8
    # two at a time, not one after another (counted, not timed: a loaded CI machine once took
    # 2.5 s for what is 1.2 s quiet) and never more: max_parallel per replica, two replicas
    assert POOL_IN_FLIGHT[1] == 2
    assert all(r.requests >= 2 for r in replicas)  # least busy: both replicas took calls
    assert waited() - before == 8  # every call's wait for a slot is measured
    assert router.describe()[0]["replicas"] == 2


async def test_a_call_that_finds_no_slot_in_time_is_unavailable(replicas: list[Replica]) -> None:
    replicas[0].delay_s = 1.0
    router = pool(replicas[:1], max_parallel=1, queue_timeout_s=0.2)
    first = asyncio.create_task(router.complete("planner", [{"role": "user", "content": "hi"}]))
    await asyncio.sleep(0.05)
    with pytest.raises(InferenceUnavailable, match=r"no slot within 0\.2s"):
        await router.complete("planner", [{"role": "user", "content": "again"}])
    assert (await first).text == "ok"
    assert replicas[0].requests == 1  # the one that waited never reached the pool


def test_pools_from_settings() -> None:
    s = Settings(
        planner_replicas="http://vllm-planner-0:8000/v1, http://vllm-planner-1:8000/v1",
        embed_replicas="http://vllm-embed-0:8000/v1",
        pool_max_parallel=4,
        pool_queue_timeout_s=5,
    )
    assert not s.llm_embedded and s.planner_base_url == "http://vllm-planner-0:8000/v1"
    by_group = {d["group"]: d for d in inference_router(s).describe()}
    assert (by_group["planner"]["replicas"], by_group["planner"]["max_parallel"]) == (2, 4)
    assert by_group["embed"]["replicas"] == 1 and by_group["code"]["replicas"] == 1
    with pytest.raises(ValueError, match="pool_max_parallel"):
        Settings(pool_max_parallel=-1)
