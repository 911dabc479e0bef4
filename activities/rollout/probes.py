"""The rollout's probes of the platform's stores: a key written and read back through Qdrant's
HTTP API and through PostgreSQL, for the stores wave's checks."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import httpx


class StoreProbe(Protocol):
    """A tiny key/value view of a data store, for the round-trip and persistence checks."""

    async def ping(self) -> str: ...

    async def put(self, scope: str, key: str, value: str) -> None: ...

    async def get(self, scope: str, key: str) -> str | None: ...


class QdrantHttpProbe:
    """Qdrant over its REST API: a 1-dimensional collection per scope, one point per key."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http  # base_url = Qdrant's URL, api-key header set by the caller

    async def ping(self) -> str:
        r = await self.http.get("/")
        r.raise_for_status()
        return str(r.json().get("version", "?"))

    async def _collection(self, scope: str) -> None:
        r = await self.http.get(f"/collections/{scope}")
        if r.status_code == 404:
            r = await self.http.put(f"/collections/{scope}", json={"vectors": {"size": 1, "distance": "Dot"}})
        r.raise_for_status()

    @staticmethod
    def _id(key: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agentic-rollout/{key}"))

    async def put(self, scope: str, key: str, value: str) -> None:
        await self._collection(scope)
        point = {"id": self._id(key), "vector": [1.0], "payload": {"key": key, "value": value}}
        r = await self.http.put(f"/collections/{scope}/points?wait=true", json={"points": [point]})
        r.raise_for_status()

    async def get(self, scope: str, key: str) -> str | None:
        r = await self.http.get(f"/collections/{scope}/points/{self._id(key)}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        value = ((r.json().get("result") or {}).get("payload") or {}).get("value")
        return None if value is None else str(value)


class PostgresProbe:
    """PostgreSQL through asyncpg: `SELECT version()` and a small `rollout_probe` table."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _conn(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn, timeout=10)

    async def ping(self) -> str:
        conn = await self._conn()
        try:
            return str(await conn.fetchval("SELECT version()"))
        finally:
            await conn.close()

    async def put(self, scope: str, key: str, value: str) -> None:
        conn = await self._conn()
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS rollout_probe (scope text, key text, value text, PRIMARY KEY (scope, key))"
            )
            await conn.execute(
                "INSERT INTO rollout_probe VALUES ($1, $2, $3) ON CONFLICT (scope, key) DO UPDATE SET value = $3",
                scope,
                key,
                value,
            )
        finally:
            await conn.close()

    async def get(self, scope: str, key: str) -> str | None:
        conn = await self._conn()
        try:
            v = await conn.fetchval("SELECT value FROM rollout_probe WHERE scope = $1 AND key = $2", scope, key)
            return None if v is None else str(v)
        finally:
            await conn.close()
