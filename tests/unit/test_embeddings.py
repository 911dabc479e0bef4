"""Embedders: the real local model (loaded once for the module) and the LiteLLM pool client
against a small fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from activities.knowledge.embeddings import (
    Embedder,
    EmbeddingError,
    LocalEmbedder,
    PoolEmbedder,
    build_embedder,
)
from tests.support.env import RUNBOOKS_CORPUS


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(a: list[float]) -> float:
    return math.sqrt(sum(x * x for x in a))


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalEmbedder]:
    e = LocalEmbedder()
    yield e
    e.close()


# --------------------------------------------------------------------------------------------
# LocalEmbedder (the real all-MiniLM-L6-v2)
# --------------------------------------------------------------------------------------------


async def test_local_embedder_gives_384_dim_normalized_vectors(local: LocalEmbedder) -> None:
    assert isinstance(local, Embedder) and local.dim == 384
    docs = await local.embed_documents(["Disk is almost full on node worker-1", "etcd has no leader"])
    assert len(docs) == 2
    for v in docs:
        assert len(v) == 384 and all(isinstance(x, float) for x in v)
        assert norm(v) == pytest.approx(1.0, abs=1e-4)
    q = await local.embed_query("etcd has no leader")
    assert len(q) == 384 and norm(q) == pytest.approx(1.0, abs=1e-4)
    assert cos(q, docs[1]) == pytest.approx(1.0, abs=1e-4)  # query and document paths agree
    assert await local.embed_documents([]) == []


async def test_local_embedder_scores_close_sentences_higher(local: LocalEmbedder) -> None:
    crash, crashloop, sales, weather = await local.embed_documents(
        [
            "The pod keeps crashing and restarting over and over.",
            "Container is stuck in CrashLoopBackOff.",
            "The quarterly sales report is due on Friday.",
            "It will be sunny with light winds tomorrow.",
        ]
    )
    related = cos(crash, crashloop)
    assert related > cos(crash, sales) + 0.2
    assert related > cos(crash, weather) + 0.2
    assert related > cos(crashloop, sales) + 0.2


async def test_local_embedder_retrieves_the_matching_runbook(local: LocalEmbedder) -> None:
    names = ["etcd/etcdNoLeader", "node/NodeFilesystemSpaceFillingUp", "kubernetes/KubePodCrashLooping"]
    names += ["alertmanager/AlertmanagerFailedToSendAlerts", "kubernetes/KubeMemoryOvercommit"]
    texts = [(RUNBOOKS_CORPUS / f"{n}.md").read_text()[:1500] for n in names]
    docs = await local.embed_documents(texts)
    for query, expected in [
        ("etcd cluster members cannot elect a leader", 0),
        ("the filesystem on a node will run out of disk space soon", 1),
        ("a pod is restarting again and again", 2),
    ]:
        q = await local.embed_query(query)
        best = max(range(len(docs)), key=lambda i: cos(q, docs[i]))
        assert best == expected, (query, names[best])


async def test_local_embedder_is_offline_single_threaded_and_off_the_loop(local: LocalEmbedder) -> None:
    import torch

    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    await local.embed_documents([f"alert number {i}: something is wrong with service {i}" for i in range(128)])
    done.set()
    await task
    assert ticks > 3  # the loop kept running while the model worked
    assert torch.get_num_threads() == 1
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


async def test_queries_go_before_a_bulk_of_documents(local: LocalEmbedder) -> None:
    """The router's ~1,200 exemplars are embedded in the background as the worker starts; an
    alert burst's recalls must not wait for all of them (one forward pass of the whole list held
    the model for seconds, every query behind it): documents go `batch_size` at a time and the
    queries waiting go first, so a query waits for one chunk at most."""
    order: list[str] = []
    encode = local._encode
    on_model = threading.Event()

    def recording(batch: list[str]) -> list[list[float]]:
        order.append("query" if batch[0].startswith("query") else "docs")
        on_model.set()
        return encode(batch)

    local._encode = recording  # type: ignore[method-assign]
    try:
        docs = [f"exemplar {i}: how many restarts did pod {i} have" for i in range(8 * local.batch_size)]
        bulk = asyncio.create_task(local.embed_documents(docs))
        assert await asyncio.to_thread(on_model.wait, 60)  # the first chunk is on the model
        queries = await asyncio.gather(*(local.embed_query(f"query {i}: disk full on node {i}") for i in range(5)))
        assert not bulk.done()  # answered while most documents still wait
        vectors = await bulk
    finally:
        local._encode = encode  # type: ignore[method-assign]
    assert len(vectors) == len(docs) and len(queries) == 5
    assert order.index("query") <= 2  # after the chunk that was running (and at most one more)
    assert order.count("docs") == 8  # batch_size per forward pass
    assert cos(vectors[3], (await local.embed_documents([docs[3]]))[0]) > 0.9999


@contextlib.contextmanager
def counted_passes(local: LocalEmbedder) -> Iterator[list[int]]:
    """The size of each forward pass `local` makes inside the block."""
    passes: list[int] = []
    encode = local._encode

    def counting(batch: list[str]) -> list[list[float]]:
        passes.append(len(batch))
        return encode(batch)

    local._encode = counting  # type: ignore[method-assign]
    try:
        yield passes
    finally:
        local._encode = encode  # type: ignore[method-assign]


async def test_long_documents_go_through_the_model_in_smaller_chunks(local: LocalEmbedder) -> None:
    with counted_passes(local) as passes:
        vectors = await local.embed_documents([f"section {i}: " + "the disk is full. " * 80 for i in range(7)])
    assert len(vectors) == 7 and passes == [2, 2, 2, 1]  # about 1,460 characters each: two per pass


def test_long_documents_go_in_smaller_chunks() -> None:
    """MiniLM's time grows with the text: 32 documentation chunks of 1,500 characters held the model
    3 s (a query behind them waited that long); chunks keep to about CHUNK_CHARS characters."""
    from activities.knowledge.embeddings import CHUNK_CHARS, _chunks

    short = [f"exemplar {i}" for i in range(70)]
    assert [len(c) for c in _chunks(short, 32)] == [32, 32, 6]
    long = ["x" * 1500] * 7
    chunks = _chunks(long, 32)
    assert [len(c) for c in chunks] == [2, 2, 2, 1] and all(sum(map(len, c)) <= CHUNK_CHARS for c in chunks)
    assert _chunks(["y" * 9000, "z"], 32) == [["y" * 9000], ["z"]]  # a long one alone, nothing lost
    assert [t for c in _chunks(long + short, 32) for t in c] == long + short  # order kept
    assert _chunks([], 32) == []


async def test_local_embedder_batches_concurrent_queries(local: LocalEmbedder) -> None:
    """A burst of queries (100 incidents recalling at once) goes through the model in a few
    forward passes, each caller gets its own text's vector, and a failed pass fails only its
    own callers."""
    texts = [f"pod {i} in namespace shop is crash looping" for i in range(40)]
    alone = [await local.embed_query(t) for t in texts[:3]]
    passes: list[int] = []
    encode = local._encode

    def counting(batch: list[str]) -> list[list[float]]:
        passes.append(len(batch))
        return encode(batch)

    local._encode = counting  # type: ignore[method-assign]
    try:
        vectors = await asyncio.gather(*(local.embed_query(t) for t in texts))
        assert sum(passes) == 40 and len(passes) <= 3  # the first alone, the rest together (32 max)
        assert max(passes) <= local.batch_size
        for v, a in zip(vectors[:3], alone, strict=True):
            assert cos(v, a) > 0.9999  # the same vector as embedded alone (padding aside)
        assert cos(vectors[0], vectors[1]) < 0.9999  # and not one vector for everyone

        def broken(batch: list[str]) -> list[list[float]]:
            passes.append(len(batch))
            raise RuntimeError("model fell over")

        local._encode = broken  # type: ignore[method-assign]
        results = await asyncio.gather(*(local.embed_query(t) for t in texts[:5]), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        local._encode = counting  # type: ignore[method-assign]
        assert len(await local.embed_query("after the failure")) == 384  # the queue still works
    finally:
        local._encode = encode  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# PoolEmbedder (LiteLLM against an OpenAI-compatible endpoint)
# --------------------------------------------------------------------------------------------


class _FakePool(BaseHTTPRequestHandler):
    dim = 4
    seen: list[dict[str, Any]] = []  # noqa: RUF012 (test double, one per module)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakePool.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        # Unnormalized vectors, returned in reverse order: the client must sort by index.
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0] + [0.0] * (self.dim - 2)}
            for i, t in enumerate(inputs)
        ][::-1]
        out = json.dumps(
            {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pool_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePool)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_pool_embedder_orders_and_normalizes_the_pool_answer(pool_url: str) -> None:
    _FakePool.seen.clear()
    e = build_embedder("pool", url=pool_url, model="bge-small", api_key="secret", dim=4)
    assert isinstance(e, PoolEmbedder) and isinstance(e, Embedder)
    texts = ["a", "bbb", "cc"]
    vectors = await e.embed_documents(texts)
    for t, v in zip(texts, vectors, strict=True):
        assert v == pytest.approx([len(t) / math.hypot(len(t), 1.0), 1.0 / math.hypot(len(t), 1.0), 0.0, 0.0])
    q = await e.embed_query("bbb")
    assert q == pytest.approx(vectors[1])
    request = _FakePool.seen[0]
    assert request["path"] == "/v1/embeddings" and request["model"] == "bge-small"
    assert request["auth"] == "Bearer secret"


async def test_pool_embedder_batches_large_inputs(pool_url: str) -> None:
    _FakePool.seen.clear()
    e = PoolEmbedder(pool_url, "m", dim=4, batch_size=10)
    vectors = await e.embed_documents([f"t{i}" for i in range(25)])
    assert len(vectors) == 25 and len(_FakePool.seen) == 3
    assert await e.embed_documents([]) == []


async def test_pool_embedder_errors_are_clear(pool_url: str, port: int) -> None:
    with pytest.raises(EmbeddingError, match="returns 4 dimensions, the knowledge base expects 384"):
        await PoolEmbedder(pool_url, "m").embed_query("x")
    down = PoolEmbedder(f"http://127.0.0.1:{port}/v1", "m", dim=4, timeout=5)  # nothing listens on `port`
    with pytest.raises(EmbeddingError, match=rf"embedding pool http://127\.0\.0\.1:{port}/v1 .*failed"):
        await down.embed_query("x")


def test_build_embedder_kinds() -> None:
    e = build_embedder("local")
    assert isinstance(e, LocalEmbedder) and e.dim == 384
    e.close()
    with pytest.raises(ValueError, match="embed_url"):
        build_embedder("pool")
    with pytest.raises(ValueError, match="unknown embedder"):
        build_embedder("magic")
