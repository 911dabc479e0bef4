"""The vector store interface: one protocol, two adapters.

- `activities.knowledge.edge_store.EdgeStore`: Qdrant Edge (`qdrant-edge-py`), in-process,
  on a directory. The embedded default.
- `activities.knowledge.server_store.ServerStore`: `qdrant-client` against a Qdrant server
  (or its local mode in tests).

Both hold the collections of `agentic_core.models.Collection` (the knowledge base's three and
the router's `routes`), each with one named dense vector `dense` (cosine) and one named sparse
vector `sparse` (BM25 term weights; the store applies IDF at query time). Both pass
`tests/integration/test_store_adapters.py` unchanged.

Point ids are our string ids (runbook ids, chunk ids); adapters map them to the UUIDs Qdrant
needs with `point_uuid` and keep the string in the payload under `_id`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentic_core.models import Collection

DENSE = "dense"
SPARSE = "sparse"
_NAMESPACE = uuid.UUID("5b1c8a57-7a4e-4c3b-9d0e-3f1f5f0d8a11")

#: RRF constant shared by both adapters (Cormack et al.'s 60; Qdrant's own default is 2).
RRF_K = 60
#: Payload key that keeps our string id.
ID_KEY = "_id"


class StoreError(RuntimeError):
    """A vector store failure, with a message that says what is wrong and what to do."""


def point_uuid(collection: str, point_id: str) -> str:
    """A stable UUID for a string id (Qdrant ids are integers or UUIDs)."""
    return str(uuid.uuid5(_NAMESPACE, f"{collection}/{point_id}"))


class SparseVector(BaseModel):
    indices: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class Point(BaseModel):
    id: str
    dense: list[float]
    sparse: SparseVector = Field(default_factory=SparseVector)
    payload: dict[str, Any] = Field(default_factory=dict)


class ScoredPoint(BaseModel):
    id: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)


class QueryMode(BaseModel):
    """Which retrieval to run. `hybrid` fuses dense and sparse with reciprocal rank fusion."""

    kind: str = "hybrid"  # "dense" | "sparse" | "hybrid"
    prefetch: int = 50  # candidates per branch before fusion


@runtime_checkable
class VectorStore(Protocol):
    """What the knowledge base needs from a vector store. All methods are async."""

    dim: int

    async def ensure_collections(self) -> None:
        """Create every collection if missing (idempotent)."""

    async def upsert(self, collection: Collection, points: list[Point]) -> None: ...

    async def delete(self, collection: Collection, ids: list[str]) -> None: ...

    async def get(self, collection: Collection, ids: list[str]) -> list[ScoredPoint]:
        """Points by id (score 0), in the order found; missing ids are left out."""

    async def count(self, collection: Collection) -> int: ...

    async def scroll(self, collection: Collection) -> list[ScoredPoint]:
        """Every point (payload only), for listing and rebuilds."""

    async def search(
        self,
        collection: Collection,
        dense: list[float] | None,
        sparse: SparseVector | None,
        limit: int = 5,
        mode: QueryMode | None = None,
        exact: bool = False,
    ) -> list[ScoredPoint]:
        """Best first. `exact=True` skips the HNSW index (for recall measurements)."""

    async def optimize(self) -> bool:
        """Index after a bulk load (Edge builds HNSW; a server indexes by itself). True if anything changed."""

    async def close(self) -> None: ...


# ----------------------------------------------------------------------- shared by the adapters


def branches(dense: list[float] | None, sparse: SparseVector | None, mode: QueryMode | None) -> str:
    """Which retrieval to run: "dense", "sparse" or "hybrid".

    A branch needs its query vector: when only one is given, that branch is searched whatever
    the mode says; when both are given, the mode decides.
    """
    has_dense = dense is not None and len(dense) > 0
    has_sparse = sparse is not None and len(sparse.indices) > 0
    if not has_dense and not has_sparse:
        raise ValueError("search needs a dense vector, a non-empty sparse vector, or both")
    if has_dense and not has_sparse:
        return "dense"
    if has_sparse and not has_dense:
        return "sparse"
    kind = (mode or QueryMode()).kind
    if kind not in ("dense", "sparse", "hybrid"):
        raise ValueError(f"unknown query mode {kind!r}: expected 'dense', 'sparse' or 'hybrid'")
    return kind


def check_points(points: Iterable[Point], dim: int) -> None:
    for p in points:
        if len(p.dense) != dim:
            raise ValueError(f"point {p.id!r}: dense vector has {len(p.dense)} dimensions, the store expects {dim}")
        if len(p.sparse.indices) != len(p.sparse.values):
            raise ValueError(f"point {p.id!r}: sparse vector has {len(p.sparse.indices)} indices but values differ")


def check_query(dense: list[float] | None, dim: int) -> None:
    if dense is not None and len(dense) and len(dense) != dim:
        raise ValueError(f"query vector has {len(dense)} dimensions, the store expects {dim}")


def to_payload(p: Point) -> dict[str, Any]:
    return {**p.payload, ID_KEY: p.id}


def from_payload(point_id: Any, payload: dict[str, Any] | None, score: float) -> ScoredPoint:
    """Our id comes back from `_id`; the returned payload leaves `_id` out."""
    data = dict(payload or {})
    sid = data.pop(ID_KEY, None)
    return ScoredPoint(id=str(sid if sid is not None else point_id), score=float(score), payload=data)


def in_request_order(ids: list[str], found: Iterable[ScoredPoint]) -> list[ScoredPoint]:
    by_id = {sp.id: sp for sp in found}
    out: list[ScoredPoint] = []
    seen: set[str] = set()
    for i in ids:
        if i in by_id and i not in seen:
            seen.add(i)
            out.append(by_id[i])
    return out
