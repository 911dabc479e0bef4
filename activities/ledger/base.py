"""What every area of the ledger shares: the pool, `connect`, and the connection helper that
turns driver errors into `LedgerError`s (see `activities.ledger.repository`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import asyncpg

from activities.ledger.db import (
    LedgerIntegrityError,
    create_pool,
    describe_dsn,
    migrate,
    unavailable,
)

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _normalise(value: Any) -> Any:
    """`value` as it comes back from a jsonb column (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


async def _ensure_incident(conn: asyncpg.Connection, incident_id: str) -> None:
    await conn.execute("INSERT INTO incidents (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", incident_id)


async def _ensure_agent_run(conn: asyncpg.Connection, run_id: str) -> None:
    """A stub agent run row (filled in by `start_agent_run`), so rows that belong to a run may
    arrive before it."""
    await conn.execute("INSERT INTO agent_runs (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", run_id)


class LedgerBase:
    """The pool, the connection helper that turns driver errors into `LedgerError`s, and
    `connect`. Each area of the ledger is a subclass; `Ledger` is all of them."""

    def __init__(self, pool: asyncpg.Pool, *, where: str = "the ledger database") -> None:
        self._pool = pool
        self._where = where

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10, apply_migrations: bool = True) -> Self:
        """Open a pool on `dsn` and (by default) bring the schema up to date."""
        pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            if apply_migrations:
                await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, where=describe_dsn(dsn))

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise LedgerIntegrityError(_first_line(exc)) from exc
        except _UNAVAILABLE_ERRORS as exc:
            raise unavailable(self._where, exc) from exc
