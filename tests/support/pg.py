"""A throwaway PostgreSQL 16 (pgserver) for tests that need the real ledger.

Use it from a test module with `from tests.support.pg import pg_server` and a module-scoped fixture:

    @pytest.fixture(scope="module")
    def pg() -> Iterator[pgserver.PostgresServer]:
        yield from pg_server("agentic-incident-pg-")
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pgserver

from activities.ledger.repository import Ledger


def pg_server(prefix: str = "agentic-pg-") -> Iterator[pgserver.PostgresServer]:
    """Start PostgreSQL in a fresh data dir, yield it, stop it and remove the dir."""
    # Under /tmp so the `pgserver` system user (used when we run as root) can reach it.
    data_dir = tempfile.mkdtemp(prefix=prefix)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    # A throwaway cluster: durability only costs time here.
    server.psql(
        "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
        " ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();"
    )
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def create_database(server: pgserver.PostgresServer, prefix: str = "t") -> str:
    """A new empty database on `server`; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.get_uri())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return str(server.get_uri(name))


@contextlib.asynccontextmanager
async def ledger_on(server: pgserver.PostgresServer, prefix: str = "t", max_size: int = 4) -> AsyncIterator[Ledger]:
    """A migrated ledger in a new database on `server` (a module's `ledger` fixture), closed after."""
    led = await Ledger.connect(await create_database(server, prefix), max_size=max_size)
    try:
        yield led
    finally:
        await led.close()
