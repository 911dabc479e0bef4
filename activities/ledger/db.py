"""PostgreSQL plumbing for the ledger: the pool, the errors, and the migration runner.

Migrations are the files `activities/ledger/migrations/NNNN_name.sql`, shipped as package
data. `migrate()` applies the pending ones in version order, each in its own transaction,
and records it in `schema_migrations`. Migrations only go forward: a ledger that has a
migration newer than this code's newest is refused (`SchemaTooNewError`, also `check_schema`,
which the worker calls at start), so an older agentic never runs on a newer schema. A
session-level advisory lock serialises concurrent runners (two workers starting at once), and
a migration that was applied but whose file has since changed is refused with
`MigrationChecksumError`: released migrations are immutable, add a new one instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

log = logging.getLogger(__name__)

# pg_advisory_lock key: the first 8 bytes of sha256("agentic-platform/ledger/migrate"), signed.
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"agentic-platform/ledger/migrate").digest()[:8], "big", signed=True)

_MIGRATION_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class LedgerError(Exception):
    """Anything the ledger refuses or cannot do. The message is one line and holds no secrets."""


class LedgerUnavailable(LedgerError):
    """PostgreSQL cannot be reached (or the connection was lost). Worth retrying."""


class LedgerIntegrityError(LedgerError):
    """A constraint refused the write (bad enum value, missing reference, ...). Not worth retrying."""


class NotFound(LedgerError):
    """The row the operation needs does not exist."""


class ConflictError(LedgerError):
    """The write contradicts what the ledger already holds (e.g. one idempotency key, two plans)."""


class MigrationError(LedgerError):
    """A migration could not be applied."""


class MigrationChecksumError(MigrationError):
    """An applied migration's file no longer matches what was applied."""


class SchemaTooNewError(MigrationError):
    """The ledger has migrations newer than this code knows: a newer agentic ran on it."""


def too_new_message(ledger_version: str, known: str | None) -> str:
    return (
        f"the ledger's schema is version {ledger_version}, this agentic understands up to {known or 'none'}: "
        "upgrade agentic (migrations only go forward; a backup taken before the upgrade can be restored "
        "with `agentic backup restore`)"
    )


async def check_schema(
    conn: asyncpg.Connection | asyncpg.Pool, migrations: Sequence[Migration] | None = None
) -> str | None:
    """Refuse a ledger whose schema is newer than this code's migrations (`SchemaTooNewError`);
    return its version (None: never migrated). A worker calls it before it takes any work."""
    known = [m.version for m in (migrations if migrations is not None else list_migrations())]
    version = await current_version(conn)
    newest = max(known) if known else None
    if version is not None and (newest is None or version > newest):
        raise SchemaTooNewError(too_new_message(version, newest))
    return version


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "init"
    sql: str
    checksum: str  # sha256 of the file's text, line endings normalised

    @classmethod
    def from_text(cls, version: str, name: str, sql: str) -> Migration:
        return cls(version=version, name=name, sql=sql, checksum=checksum(sql))


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.replace("\r\n", "\n").encode()).hexdigest()


def list_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    folder = resources.files("activities.ledger").joinpath("migrations")
    found: dict[str, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _MIGRATION_FILE_RE.match(entry.name)
        if not m:
            raise MigrationError(f"bad migration file name {entry.name!r} (expected NNNN_name.sql)")
        version, name = m.groups()
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].name}, {name}")
        found[version] = Migration.from_text(version, name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


# --- connecting ---------------------------------------------------------------------------


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, for messages: `host:port` or the socket directory. Never the password."""
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = query.get("host", [None])[0] or parts.hostname or ""
        port = query.get("port", [None])[0] or (str(parts.port) if parts.port else "5432")
    except ValueError:
        return "the configured address"
    host = unquote(host)
    if not host:
        return f"localhost:{port}"
    if host.startswith("/"):
        return f"unix socket {host.rstrip('/')}/.s.PGSQL.{port}"
    return f"{host}:{port}"


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is the server running?)"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return "authentication failed"
    if isinstance(exc, asyncpg.PostgresError):
        # Server messages name users and databases, never passwords.
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def unavailable(dsn_where: str, exc: BaseException) -> LedgerUnavailable:
    return LedgerUnavailable(f"cannot reach PostgreSQL at {dsn_where}: {_reason(exc)}")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb and json columns go in and come out as Python objects.
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# The server pids of pooled connections that carry session state past their use: the gateway's
# LISTEN connection, the migration's session advisory lock (`mark_stateful`). The pool resets those
# the full way when they come back (asyncpg's reset query: unlock all advisory locks, close cursors,
# UNLISTEN *, RESET ALL); every other connection only as asyncpg always does first (an open
# transaction rolled back, listener callbacks dropped). The platform sets nothing else on a session,
# and the full reset was one more round trip after every use: 0.35 → 0.16 ms for a pooled
# `SELECT 1` on a quiet machine, and in a profile of the worker under `benchmarks/gateway_stack.py`
# about 1.8 ms of its event loop per request.
_STATEFUL: set[int] = set()


def mark_stateful(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """`conn` will carry session state (LISTEN, a session advisory lock) past its use: reset it the
    full way when it goes back to the pool."""
    _STATEFUL.add(conn.get_server_pid())


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """The pool's reset, after asyncpg's own (`Connection._reset`: rollback, listener callbacks)."""
    pid = conn.get_server_pid()
    if pid in _STATEFUL:
        _STATEFUL.discard(pid)
        await conn.execute(conn.get_reset_query())


_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = 10.0
) -> asyncpg.Pool:
    """A connection pool whose connections decode jsonb to Python objects.

    Raises `LedgerUnavailable` with a one-line message when the server cannot be reached.
    """
    where = describe_dsn(dsn)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_reset_connection,
            timeout=connect_timeout,
        )
    except _CONNECT_ERRORS as exc:
        raise unavailable(where, exc) from None
    except ValueError:
        # asyncpg's DSN parser errors may quote the DSN.
        raise LedgerError("invalid PostgreSQL DSN (expected postgresql://user:password@host:port/db)") from None
    assert pool is not None
    return pool


async def connect(dsn: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's (for tools and tests)."""
    where = describe_dsn(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    except _CONNECT_ERRORS as exc:
        raise unavailable(where, exc) from None
    except ValueError:
        raise LedgerError("invalid PostgreSQL DSN (expected postgresql://user:password@host:port/db)") from None
    await _init_connection(conn)
    return conn


# --- migrations ---------------------------------------------------------------------------

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def current_version(conn: asyncpg.Connection | asyncpg.Pool) -> str | None:
    """The highest applied migration version, or None on a database never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return None
    version: str | None = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    return version


async def _acquire_lock(conn: asyncpg.Connection, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
        if time.monotonic() >= deadline:
            raise MigrationError(f"timed out after {wait_s:g}s waiting for the migration lock (another migrate?)")
        await asyncio.sleep(0.05)


async def migrate(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    *,
    migrations: Sequence[Migration] | None = None,
    lock_timeout: float = 60.0,
) -> list[str]:
    """Apply the pending migrations in order; return the versions applied now ([] when up to date).

    `migrations` defaults to `list_migrations()` (tests pass their own).
    """
    todo = list(migrations) if migrations is not None else list_migrations()
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            mark_stateful(conn)  # the session advisory lock
            return await _migrate(conn, todo, lock_timeout)
    return await _migrate(pool_or_conn, todo, lock_timeout)


async def _migrate(conn: asyncpg.Connection, todo: list[Migration], lock_timeout: float) -> list[str]:
    versions = [m.version for m in todo]
    if versions != sorted(set(versions)):
        raise MigrationError(f"migrations must have distinct versions in order, got {versions}")
    await _acquire_lock(conn, lock_timeout)
    try:
        await conn.execute(_CREATE_MIGRATIONS_TABLE)
        applied = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        for m in todo:
            row = applied.get(m.version)
            if row is not None and row["checksum"] != m.checksum:
                raise MigrationChecksumError(
                    f"migration {m.version}_{m.name} was applied with checksum {row['checksum'][:12]} but its file "
                    f"now has {m.checksum[:12]}: applied migrations must not change; add a new migration instead"
                )
        newer = sorted(v for v in applied if not versions or v > versions[-1])
        if newer:  # a newer agentic migrated this ledger: never run old code on its schema
            raise SchemaTooNewError(too_new_message(newer[-1], versions[-1] if versions else None))
        unknown = sorted(set(applied) - set(versions))
        if unknown:
            log.warning("database has migrations this code does not know: %s (newer code ran here?)", unknown)
        done: list[str] = []
        for m in todo:
            if m.version in applied:
                continue
            log.info("applying migration %s_%s", m.version, m.name)
            try:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
            except asyncpg.PostgresError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise MigrationError(f"migration {m.version}_{m.name} failed: {first}") from exc
            done.append(m.version)
        return done
    finally:
        if not conn.is_closed():
            await conn.fetchval("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
