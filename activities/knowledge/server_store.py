"""`ServerStore`: the vector store on `qdrant-client`, against a Qdrant server or cluster.

`ServerStore(url, api_key)` talks to a server with `AsyncQdrantClient`; the server builds
its HNSW indexes in the background, so there is no `optimize()` to call.

`ServerStore(location=":memory:")` or `ServerStore(path=DIR)` uses qdrant-client's *local
mode* (pure Python and numpy, brute force: fine for tests and small sets, slow above ~20K
points). Local mode does its work synchronously even through `AsyncQdrantClient`, so here it
runs on the synchronous `QdrantClient` in one dedicated worker thread: the event loop is
never blocked, calls are serialized (local mode is not thread-safe), and SQLite always sees
the same thread.

Ids, payloads, search modes and errors behave exactly as in `EdgeStore` (same helpers).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.version_check import is_compatible
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

__all__ = ["ServerStore", "StoreError"]

log = logging.getLogger(__name__)

_UPSERT_BATCH = 256  # keeps each request well under the server's 32 MB default body limit
_SCROLL_PAGE = 1024


class ServerStore:
    """`VectorStore` on qdrant-client. Give exactly one of `url`, `location` or `path`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        location: str | None = None,
        path: str | None = None,
        dim: int = 384,
        timeout: int = 10,
        hnsw_ef: int | None = None,
    ) -> None:
        """No I/O here: the client is made on first use.

        `hnsw_ef` is the search-time candidate list size (None: the server's default).
        """
        given = [name for name, v in (("url", url), ("location", location), ("path", path)) if v]
        if len(given) != 1:
            raise ValueError(
                "ServerStore needs exactly one of url= (a Qdrant server), location=':memory:' or path= "
                f"(qdrant-client local mode); got {', '.join(given) or 'none'}"
            )
        if dim <= 0:
            raise ValueError(f"dim must be positive, not {dim}")
        self.url = url
        self.api_key = api_key
        self.location = location
        self.path = path
        self.dim = dim
        self.timeout = timeout
        self.hnsw_ef = hnsw_ef
        self._where = url or (f"local mode at {path}" if path else f"local mode ({location})")
        self._aclient: AsyncQdrantClient | None = None
        self._sclient: QdrantClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        return self.url is None

    async def __aenter__(self) -> ServerStore:
        await self.ensure_collections()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, collection: str | None = None, **kwargs: Any) -> Any:
        """Run one client method: awaited on the async client, or in the local-mode thread."""
        if self._closed:
            raise StoreError(f"vector store ({self._where}) is closed")
        try:
            if not self.local:
                if self._aclient is None:
                    # check_compatibility would make a blocking HTTP request in the constructor;
                    # ensure_collections() checks the server version asynchronously instead.
                    self._aclient = AsyncQdrantClient(
                        url=self.url, api_key=self.api_key, timeout=self.timeout, check_compatibility=False
                    )
                return await getattr(self._aclient, method)(**kwargs)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(self._call_local, method, kwargs))
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(method, collection, exc) from exc

    def _call_local(self, method: str, kwargs: dict[str, Any]) -> Any:
        if self._sclient is None:
            self._sclient = QdrantClient(location=self.location, path=self.path)
        return getattr(self._sclient, method)(**kwargs)

    def _error(self, method: str, collection: str | None, exc: Exception) -> StoreError:
        what = f"collection {collection}" if collection else "the store"
        if isinstance(exc, UnexpectedResponse):
            if exc.status_code == 404 and collection:
                return StoreError(
                    f"collection {collection} does not exist on {self._where}: call ensure_collections() first"
                )
            if exc.status_code in (401, 403):
                return StoreError(f"Qdrant at {self._where} refused the API key ({exc.status_code}): check it")
            return StoreError(f"Qdrant at {self._where} answered {method} on {what} with {exc.status_code}: {exc}")
        if isinstance(exc, ResponseHandlingException | httpx.HTTPError | ConnectionError | TimeoutError):
            return StoreError(
                f"cannot reach Qdrant at {self._where} ({exc!r}): check the URL and that the server is running"
            )
        msg = str(exc)
        if isinstance(exc, ValueError) and "not found" in msg and collection:
            return StoreError(
                f"collection {collection} does not exist in {self._where}: call ensure_collections() first"
            )
        if "already accessed" in msg:
            return StoreError(
                f"{self._where} is already open in another client or process: close it, or use another path"
            )
        return StoreError(f"Qdrant {method} on {what} failed ({self._where}): {exc}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def ensure_collections(self) -> None:
        if not self.local:
            await self._check_version()
        for c in Collection:
            name = str(c)
            if await self._call("collection_exists", name, collection_name=name):
                await self._check_dim(name)
                continue
            try:
                await self._call(
                    "create_collection",
                    name,
                    collection_name=name,
                    vectors_config={DENSE: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            except StoreError:
                # Another worker may have created it between the check and the create.
                if not await self._call("collection_exists", name, collection_name=name):
                    raise

    async def _check_version(self) -> None:
        server = (await self._call("info")).version
        client = importlib.metadata.version("qdrant-client")
        if not is_compatible(client, server):
            log.warning(
                "qdrant-client %s and Qdrant server %s at %s differ by more than one minor version: "
                "upgrade one of them if calls fail",
                client,
                server,
                self._where,
            )

    async def _check_dim(self, name: str) -> None:
        info = await self._call("get_collection", name, collection_name=name)
        vectors = info.config.params.vectors
        params = vectors.get(DENSE) if isinstance(vectors, dict) else None
        if params is None or params.size != self.dim:
            size = None if params is None else params.size
            raise StoreError(
                f"collection {name} on {self._where} has no {DENSE!r} vector of {self.dim} dimensions "
                f"(found {size}): it was built with another embedder; use that one, or drop the collection and re-index"
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._aclient is not None:
            await self._aclient.close()
        if self._executor is not None:
            if self._sclient is not None:
                sclient = self._sclient
                await asyncio.get_running_loop().run_in_executor(self._executor, sclient.close)
            self._executor.shutdown(wait=False)
        self._aclient = self._sclient = self._executor = None

    async def optimize(self, collection: Collection | None = None) -> bool:
        """Nothing to do: a server indexes in the background, local mode never indexes.

        Here so that code written for `EdgeStore.optimize()` runs on either adapter.
        """
        return False

    # -- writes ------------------------------------------------------------------------------

    async def upsert(self, collection: Collection, points: list[Point]) -> None:
        if not points:
            return
        check_points(points, self.dim)
        name = str(Collection(collection))
        for i in range(0, len(points), _UPSERT_BATCH):
            structs = []
            for p in points[i : i + _UPSERT_BATCH]:
                vector: dict[str, Any] = {DENSE: p.dense}
                if p.sparse.indices:
                    vector[SPARSE] = models.SparseVector(indices=p.sparse.indices, values=p.sparse.values)
                structs.append(models.PointStruct(id=point_uuid(name, p.id), vector=vector, payload=to_payload(p)))
            await self._call("upsert", name, collection_name=name, points=structs, wait=True)

    async def delete(self, collection: Collection, ids: list[str]) -> None:
        if not ids:
            return
        name = str(Collection(collection))
        selector = models.PointIdsList(points=[point_uuid(name, i) for i in ids])
        await self._call("delete", name, collection_name=name, points_selector=selector, wait=True)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, collection: Collection, ids: list[str]) -> list[ScoredPoint]:
        if not ids:
            return []
        name = str(Collection(collection))
        records = await self._call(
            "retrieve",
            name,
            collection_name=name,
            ids=[point_uuid(name, i) for i in ids],
            with_payload=True,
            with_vectors=False,
        )
        return in_request_order(ids, (from_payload(r.id, r.payload, 0.0) for r in records))

    async def count(self, collection: Collection) -> int:
        name = str(Collection(collection))
        result = await self._call("count", name, collection_name=name, exact=True)
        return int(result.count)

    async def scroll(self, collection: Collection) -> list[ScoredPoint]:
        name = str(Collection(collection))
        out: list[ScoredPoint] = []
        offset: Any = None
        while True:
            records, offset = await self._call(
                "scroll",
                name,
                collection_name=name,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            out.extend(from_payload(r.id, r.payload, 0.0) for r in records)
            if offset is None or not records:
                break
        return sorted(out, key=lambda sp: sp.id)

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
        name = str(Collection(collection))
        params: models.SearchParams | None = None  # local mode is always exact and warns about params
        if not self.local:
            params = models.SearchParams(exact=True) if exact else models.SearchParams(hnsw_ef=self.hnsw_ef)
        q_sparse = models.SparseVector(indices=sparse.indices, values=sparse.values) if sparse is not None else None
        kwargs: dict[str, Any]
        if kind == "hybrid":
            n = max((mode or QueryMode()).prefetch, limit)
            kwargs = {
                "prefetch": [
                    models.Prefetch(query=list(dense or []), using=DENSE, limit=n, params=params),
                    models.Prefetch(query=q_sparse, using=SPARSE, limit=n, params=params),
                ],
                "query": models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            }
        elif kind == "dense":
            kwargs = {"query": list(dense or []), "using": DENSE, "search_params": params}
        else:
            kwargs = {"query": q_sparse, "using": SPARSE, "search_params": params}
        response = await self._call(
            "query_points", name, collection_name=name, limit=limit, with_payload=True, with_vectors=False, **kwargs
        )
        return [from_payload(h.id, h.payload, h.score) for h in response.points]
