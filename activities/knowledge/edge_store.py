"""`EdgeStore`: the vector store on Qdrant Edge (`qdrant-edge-py`), in-process, on a directory.

The embedded default. Each collection is one Edge shard in its own sub-directory:

    <path>/runbooks/        edge_config.json, segments/, wal/
    <path>/decisions/
    <path>/documentation/
    <path>/routes/          the router's exemplars (activities/agents/router.py)

Qdrant Edge is synchronous: every engine call runs in a worker thread (`asyncio.to_thread`).
Note that qdrant-edge 0.9 does *not* release the GIL inside its calls, so a call still stalls
the event loop for as long as it runs: under a millisecond for an indexed search, a few ms
for brute force (`exact=True`, or an unindexed segment of 100K points: ~6 ms), ~10 ms per
1,000-point upsert batch. The one long call, `optimize()`, runs in a child process.

**When to call `optimize()`.** Edge runs no background optimizer. New points land in an
appendable segment that is searched by brute force, and deleted points are only vacuumed by
the optimizer. Brute force stays in the low milliseconds up to about 10-20K points of 384
dims, so a knowledge base of a few thousand runbooks and decisions never needs it. Call
`optimize()` after a bulk load (a re-index, a documentation import of thousands of chunks)
or after deleting many points: it builds the HNSW index for segments above the indexing
threshold and merges small segments. It takes seconds to a minute (100K x 384: 30-45 s on
two shared cores, see `benchmarks/vector_search.py`), during which calls on *that*
collection wait; the event loop and the other collections keep working.

Durability: the write-ahead log is on, so an acknowledged upsert survives a crash; `close()`
flushes the segments and releases the directory lock (one process per directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from activities.knowledge.store import (
    DENSE,
    RRF_K,
    SPARSE,
    Point,
    QueryMode,
    ScoredPoint,
    SparseVector,
    StoreError,
    branches,
    check_points,
    check_query,
    from_payload,
    in_request_order,
    point_uuid,
    to_payload,
)
from agentic_core.models import Collection

T = TypeVar("T")

_UPSERT_BATCH = 1024
_SCROLL_PAGE = 1024
# Engine messages that tell which kind of failure a load hit.
_LOCKED_MARKERS = ("WouldBlock", "already accessed", "lock")


@dataclass(frozen=True)
class EdgeTuning:
    """Index build and search parameters (defaults tuned with `benchmarks/vector_search.py`)."""

    m: int = 16
    ef_construct: int = 128
    #: Segments with fewer vectors than this (in KB of vector data) are searched by brute force.
    full_scan_threshold_kb: int = 10_000
    #: Threads used by `optimize()` to build the graph (0 = one per core).
    max_indexing_threads: int = 0
    #: Candidate list size at search time (`hnsw_ef`); higher is slower and more accurate.
    ef: int = 96
    #: Segments above this size (KB of vector data) get an HNSW index from `optimize()`
    #: (None: the engine's default, 10 MB, about 6,500 vectors of 384 dims).
    indexing_threshold_kb: int | None = None
    #: Number of segments the optimizer aims for (None or 0: derived from the CPU count).
    default_segment_number: int | None = None


# --------------------------------------------------------------------------------------------
# Helpers shared with `server_store.py`
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


class _Gate:
    """Counts the calls using one collection's shard, and holds new ones back while the shard
    is taken offline (by `optimize()` or `close()`)."""

    def __init__(self) -> None:
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.open = asyncio.Event()
        self.open.set()


class EdgeStore:
    """`VectorStore` on Qdrant Edge shards under `path` (created if missing, reopened if present)."""

    def __init__(
        self,
        path: Path,
        dim: int = 384,
        *,
        tuning: EdgeTuning | None = None,
        max_search_threads: int | None = 1,
    ) -> None:
        """No I/O here: shards open in `ensure_collections()` (or on first use, if they exist).

        `max_search_threads=1` keeps one query on one core (the machine is shared); `None` lets
        the engine use one thread per core to search segments in parallel.
        """
        if dim <= 0:
            raise ValueError(f"dim must be positive, not {dim}")
        self.path = Path(path)
        self.dim = dim
        self.tuning = tuning or EdgeTuning()
        self.max_search_threads = max_search_threads
        self._shards: dict[Collection, qe.EdgeShard] = {}
        self._gates = {c: _Gate() for c in Collection}
        self._open_lock = asyncio.Lock()
        self._maintenance = asyncio.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> EdgeStore:
        await self.ensure_collections()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _config(self) -> qe.EdgeConfig:
        h = self.tuning
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(
                m=h.m,
                ef_construct=h.ef_construct,
                full_scan_threshold=h.full_scan_threshold_kb,
                max_indexing_threads=h.max_indexing_threads,
            ),
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=h.indexing_threshold_kb,
                default_segment_number=h.default_segment_number,
            ),
            max_search_threads=self.max_search_threads,
        )

    def _dir(self, collection: Collection) -> Path:
        return self.path / str(collection)

    @staticmethod
    def _has_data(d: Path) -> bool:
        return (d / "edge_config.json").exists() or (d / "segments").exists() or (d / "wal").exists()

    def _open_sync(self, collection: Collection, create: bool) -> qe.EdgeShard | None:
        """Load the shard if its directory holds one; create it if allowed; else None."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"vector store path {self.path} is a file, not a directory: point it at a directory")
        d = self._dir(collection)
        if d.exists() and not d.is_dir():
            raise StoreError(f"vector store collection path {d} is a file, not a directory: move it away")
        if d.is_dir() and self._has_data(d):
            try:
                return qe.EdgeShard.load(str(d), self._config())
            except Exception as exc:
                raise self._load_error(collection, d, exc) from exc
        if d.is_dir() and any(d.iterdir()):
            raise StoreError(
                f"vector store collection directory {d} holds files that are not a Qdrant Edge shard "
                f"(no edge_config.json, segments/ or wal/): move them away, or point the store at another directory"
            )
        if not create:
            return None
        try:
            d.mkdir(parents=True, exist_ok=True)
            return qe.EdgeShard.create(str(d), self._config())
        except Exception as exc:
            raise StoreError(f"cannot create vector store collection {collection!s} in {d}: {exc}") from exc

    def _load_error(self, collection: Collection, d: Path, exc: Exception) -> StoreError:
        msg = str(exc)
        if any(m in msg for m in _LOCKED_MARKERS):
            return StoreError(
                f"vector store {d} is already open in another process (its write-ahead log is locked): "
                f"stop the other worker, or give this one its own data directory"
            )
        if "incompatible" in msg.lower():
            return StoreError(
                f"vector store {d} was created with other vector settings than this one (dim={self.dim}): {msg}. "
                f"Use the embedder it was built with, or move the directory away and re-index"
            )
        return StoreError(
            f"vector store collection {collection!s} at {d} is damaged and cannot be opened ({msg}). "
            f"The knowledge base is only an index: stop the worker, move {self.path} aside (or delete it), "
            f"and re-index (import the runbooks and documents again) to rebuild it"
        )

    async def _shard(self, collection: Collection, create: bool = False) -> qe.EdgeShard:
        if self._closed:
            raise StoreError(f"vector store {self.path} is closed")
        shard = self._shards.get(collection)
        if shard is not None:
            return shard
        async with self._open_lock:
            if self._closed:
                raise StoreError(f"vector store {self.path} is closed")
            shard = self._shards.get(collection)
            if shard is None:
                shard = await asyncio.to_thread(self._open_sync, collection, create)
                if shard is None:
                    raise StoreError(
                        f"collection {collection!s} does not exist in {self.path}: call ensure_collections() first"
                    )
                self._shards[collection] = shard
            return shard

    @contextlib.asynccontextmanager
    async def _use(self, collection: Collection, create: bool = False) -> AsyncIterator[qe.EdgeShard]:
        """The collection's shard, held open (not closed under the caller) until the block ends."""
        gate = self._gates[Collection(collection)]
        while not gate.open.is_set():
            await gate.open.wait()
        gate.active += 1  # no await between the check and here: optimize()/close() see this call
        gate.idle.clear()
        try:
            yield await self._shard(Collection(collection), create)
        finally:
            gate.active -= 1
            if gate.active == 0:
                gate.idle.set()

    @contextlib.asynccontextmanager
    async def _offline(self, collection: Collection) -> AsyncIterator[qe.EdgeShard | None]:
        """Hold new calls back, wait for running ones, and hand over the shard (or None)."""
        gate = self._gates[collection]
        gate.open.clear()
        try:
            await gate.idle.wait()
            async with self._open_lock:
                shard = self._shards.pop(collection, None)
            yield shard
        finally:
            gate.open.set()

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError:
            raise
        except Exception as exc:  # the engine raises plain Exception("Service runtime error: ...")
            raise StoreError(f"Qdrant Edge {what} failed in {self.path}: {exc}") from exc

    @staticmethod
    def _close_shard(shard: qe.EdgeShard) -> None:
        shard.flush()
        shard.close()

    async def ensure_collections(self) -> None:
        for c in Collection:
            async with self._use(c, create=True):
                pass

    async def close(self) -> None:
        """Flush and close every shard (waiting for calls in progress); later calls raise StoreError."""
        if self._closed:
            return
        async with self._maintenance:
            if self._closed:
                return
            self._closed = True  # calls not yet holding a shard now raise StoreError
            for c in Collection:
                async with self._offline(c) as shard:
                    if shard is not None:
                        await self._run(f"close of {c!s}", self._close_shard, shard)

    async def optimize(self, collection: Collection | None = None) -> bool:
        """Build HNSW indexes and merge/vacuum segments (see the module docstring for when).

        qdrant-edge 0.9 holds the GIL while it optimizes, which would freeze the event loop (and
        every other thread of the process) for the whole build. So the shard is flushed and
        closed, optimized by a child Python process, and reopened. Meanwhile calls on that
        collection wait; other collections and the event loop keep working.

        Returns True if anything was optimized.
        """
        targets = [Collection(collection)] if collection is not None else list(Collection)
        changed = False
        async with self._maintenance:
            for c in targets:
                if self._closed:
                    raise StoreError(f"vector store {self.path} is closed")
                async with self._offline(c) as shard:
                    if shard is None:
                        if not self._has_data(self._dir(c)):
                            raise StoreError(
                                f"collection {c!s} does not exist in {self.path}: call ensure_collections() first"
                            )
                    else:
                        await self._run(f"close of {c!s}", self._close_shard, shard)
                    try:
                        changed = await self._optimize_in_child(c) or changed
                    finally:
                        reopened = await asyncio.to_thread(self._open_sync, c, False)
                        if reopened is not None:
                            self._shards[c] = reopened
        return changed

    async def _optimize_in_child(self, collection: Collection) -> bool:
        d = self._dir(collection)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OPTIMIZE_SCRIPT,
            str(d),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled: the engine's optimizers are crash-safe
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            raise StoreError(f"optimizing collection {collection!s} in {d} failed: {' / '.join(tail)}")
        return out.decode().strip().endswith("changed=1")

    async def info(self, collection: Collection) -> dict[str, int]:
        """Segments, points and indexed vectors of one collection (for status pages and benchmarks)."""
        async with self._use(collection) as shard:
            i = await self._run(f"info of {collection!s}", shard.info)
        return {"segments": i.segments_count, "points": i.points_count, "indexed_vectors": i.indexed_vectors_count}

    # -- writes ------------------------------------------------------------------------------

    async def upsert(self, collection: Collection, points: list[Point]) -> None:
        if not points:
            return
        check_points(points, self.dim)
        name = str(Collection(collection))

        def _upsert(shard: qe.EdgeShard, batch: list[Point]) -> None:
            edge_points = []
            for p in batch:
                vector: dict[str, Any] = {DENSE: p.dense}
                if p.sparse.indices:
                    vector[SPARSE] = qe.SparseVector(p.sparse.indices, p.sparse.values)
                edge_points.append(qe.Point(point_uuid(name, p.id), vector, to_payload(p)))
            shard.update(qe.UpdateOperation.upsert_points(edge_points))

        for i in range(0, len(points), _UPSERT_BATCH):
            async with self._use(collection) as shard:
                await self._run(f"upsert into {name}", _upsert, shard, points[i : i + _UPSERT_BATCH])

    async def delete(self, collection: Collection, ids: list[str]) -> None:
        if not ids:
            return
        name = str(Collection(collection))
        op = qe.UpdateOperation.delete_points([point_uuid(name, i) for i in ids])
        async with self._use(collection) as shard:
            await self._run(f"delete from {name}", shard.update, op)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, collection: Collection, ids: list[str]) -> list[ScoredPoint]:
        if not ids:
            return []
        name = str(Collection(collection))
        uuids = [point_uuid(name, i) for i in ids]
        async with self._use(collection) as shard:
            records = await self._run(f"get from {name}", shard.retrieve, uuids, True, False)
        return in_request_order(ids, (from_payload(r.id, r.payload, 0.0) for r in records))

    async def count(self, collection: Collection) -> int:
        async with self._use(collection) as shard:
            return await self._run(f"count of {collection!s}", shard.count, qe.CountRequest(exact=True))

    async def scroll(self, collection: Collection) -> list[ScoredPoint]:
        def _scroll_all(shard: qe.EdgeShard) -> list[ScoredPoint]:
            out: list[ScoredPoint] = []
            offset: Any = None
            while True:
                req = qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=False)
                records, offset = shard.scroll(req)
                out.extend(from_payload(r.id, r.payload, 0.0) for r in records)
                if offset is None or not records:
                    return out

        async with self._use(collection) as shard:
            points = await self._run(f"scroll of {collection!s}", _scroll_all, shard)
        return sorted(points, key=lambda sp: sp.id)

    async def search(
        self,
        collection: Collection,
        dense: list[float] | None,
        sparse: SparseVector | None,
        limit: int = 5,
        mode: QueryMode | None = None,
        exact: bool = False,
    ) -> list[ScoredPoint]:
        kind = branches(dense, sparse, mode)
        check_query(dense, self.dim)
        if limit <= 0:
            return []
        params = qe.SearchParams(exact=True) if exact else qe.SearchParams(hnsw_ef=max(self.tuning.ef, limit))

        def dense_query() -> Any:
            return qe.Query.Nearest(list(dense or []), using=DENSE)

        def sparse_query() -> Any:
            assert sparse is not None
            return qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE)

        if kind == "hybrid":
            n = max((mode or QueryMode()).prefetch, limit)
            params_n = params if exact else qe.SearchParams(hnsw_ef=max(self.tuning.ef, n))
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=n, query=dense_query(), params=params_n),
                    qe.Prefetch(limit=n, query=sparse_query(), params=params_n),
                ],
                query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub types Fusion.Rrf apart from Fusion
                with_payload=True,
                with_vector=False,
            )
        else:
            query = dense_query() if kind == "dense" else sparse_query()
            request = qe.QueryRequest(limit=limit, query=query, params=params, with_payload=True, with_vector=False)
        async with self._use(collection) as shard:
            hits = await self._run(f"search of {collection!s}", shard.query, request)
        return [from_payload(h.id, h.payload, h.score) for h in hits]


# Runs in a child process: qdrant-edge holds the GIL while it optimizes.
_OPTIMIZE_SCRIPT = """
import sys
import qdrant_edge as qe
shard = qe.EdgeShard.load(sys.argv[1])
try:
    changed = shard.optimize()
    shard.flush()
finally:
    shard.close()
print(f"changed={int(changed)}")
"""
