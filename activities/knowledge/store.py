"""The vector store interface: one protocol, two adapters.

- `activities.knowledge.edge_store.EdgeStore`: Qdrant Edge (`qdrant-edge-py`), in-process,
  on a directory. The embedded default.
- `activities.knowledge.server_store.ServerStore`: `qdrant-client` against a Qdrant server
  (or its local mode in tests).

Both hold three collections (`agentic_core.models.Collection`), each with one named dense
vector `dense` (cosine) and one named sparse vector `sparse` (BM25 term weights; the store
applies IDF at query time). Both pass `tests/test_store_adapters.py` unchanged.

Point ids are our string ids (runbook ids, chunk ids); adapters map them to the UUIDs Qdrant
needs with `point_uuid` and keep the string in the payload under `_id`.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentic_core.models import Collection

DENSE = "dense"
SPARSE = "sparse"
_NAMESPACE = uuid.UUID("5b1c8a57-7a4e-4c3b-9d0e-3f1f5f0d8a11")


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
        """Create the three collections if missing (idempotent)."""

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

    async def close(self) -> None: ...
