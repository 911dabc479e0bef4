"""Backups without a whole stack: `backup.create` (temporalio's ActivityEnvironment) against a real
PostgreSQL 16 (pgserver), a live SQLite database in WAL mode and a Qdrant Edge store; then
`agentic backup list` and `agentic backup restore` in a subprocess: a tampered or truncated backup,
or a wrong key, is refused with one line and the current data dir is left as it was."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pgserver
import pytest
from temporalio.testing import ActivityEnvironment

from activities.backup.activities import BackupActivities, BackupConfig
from activities.backup.archive import Manifest, disk_usage, verify, write_manifest
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.store import Point
from activities.ledger.db import create_pool, migrate
from agentic_core.backup import BackupInput, BackupResult
from agentic_core.models import Collection
from tests.support.env import REPO
from tests.support.pg import pg_server
from workers.errors import AgenticError
from workers.restore import restore, restore_qdrant
from workers.settings import Settings

KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-backup-pg-")


@pytest.fixture
async def world(
    pg: pgserver.PostgresServer, tmp_path: Path
) -> AsyncIterator[tuple[Path, str, asyncpg.Pool, EdgeStore]]:
    """A data dir with secrets, a live temporal.db (WAL, a writer holding it open), a Qdrant Edge
    store with points, and a migrated ledger with one incident."""
    name = f"b_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.get_uri())
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = pg.get_uri(name)
    pool = await create_pool(dsn, max_size=2)
    await migrate(pool)
    await pool.execute("INSERT INTO incidents (id, status, title) VALUES ('inc-1', 'awaiting_approval', 'Disk full')")
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "intake.token").write_text("intake-secret-1234")
    (data / "secrets" / "postgres.password").write_text("pg-secret-5678")
    (data / "temporal").mkdir()
    writer = sqlite3.connect(str(data / "temporal" / "temporal.db"))
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("CREATE TABLE executions (id text PRIMARY KEY, state text)")
    writer.execute("INSERT INTO executions VALUES ('incident-1', 'running')")
    writer.commit()
    store = EdgeStore(data / "qdrant", dim=4)
    await store.ensure_collections()
    await store.upsert(Collection.RUNBOOKS, [Point(id="rb-1", dense=[1, 0, 0, 0], payload={"title": "Restart"})])
    try:
        yield data, dsn, pool, store
    finally:
        writer.close()
        await store.close()
        await pool.close()


async def _backup(
    data: Path,
    dsn: str,
    pool: asyncpg.Pool,
    store: EdgeStore,
    to: Path,
    key: str | None,
    keep: int = 7,
    name: str | None = None,
) -> BackupResult:
    from workers.stack.postgres import postgres_bin

    cfg = BackupConfig(
        data_dir=data,
        backup_dir=data / "backups",
        postgres_dsn=dsn,
        pg_bin=postgres_bin(),
        temporal_db=data / "temporal" / "temporal.db",
        key=key,
        keep=keep,
    )
    acts = BackupActivities(cfg, store, pool)
    return await ActivityEnvironment().run(acts.create, BackupInput(to=str(to), name=name))


def agentic(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _fake_old_backup(folder: Path, name: str) -> None:
    """A complete backup made long ago (for retention)."""
    d = folder / name
    d.mkdir(parents=True)
    (d / "ledger.dump").write_bytes(b"old")
    write_manifest(d, Manifest(name=name, created_at=datetime(2020, 1, 1, tzinfo=UTC)))


async def test_backup_holds_everything_and_restore_refuses_what_does_not_verify(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One backup (with a key): its manifest and contents; `agentic backup list`; retention; then
    a wrong or missing key, and a truncated, altered, incomplete or unreadable backup, are refused
    with one line before the data dir is touched."""
    data, dsn, pool, store = world
    to = tmp_path / "backups"
    _fake_old_backup(to, "backup-20200101T000000Z")
    (to / "backup-old.partial").mkdir()  # an interrupted one: cleaned up too
    os.utime(to / "backup-old.partial", (1, 1))
    res = await _backup(data, dsn, pool, store, to, KEY, keep=1)
    root = Path(res.path)
    assert root == to / res.name and res.warnings == []
    assert sorted(res.pruned) == ["backup-20200101T000000Z", "backup-old.partial"]  # keep=1: only the new one
    m = verify(root)
    files = {f.path for f in m.files}
    assert {"ledger.dump", "temporal.db", "runbooks.json", "secrets.enc"} <= files
    assert "qdrant/runbooks.tar.gz" in files
    assert m.secrets == "encrypted" and m.versions["ledger_schema"] and m.versions["postgresql"].startswith("16")
    assert m.versions["agentic"] and m.versions["qdrant_edge"]
    # the secrets are not readable in the backup
    blob = (root / "secrets.enc").read_bytes()
    assert b"intake-secret-1234" not in blob and b"pg-secret-5678" not in blob
    # the Temporal copy is a consistent database with the writer's committed row
    copy = sqlite3.connect(str(root / "temporal.db"))
    assert copy.execute("SELECT state FROM executions WHERE id = 'incident-1'").fetchone() == ("running",)
    copy.close()
    # the store is open again after the copy
    assert [p.id for p in await store.get(Collection.RUNBOOKS, ["rb-1"])] == ["rb-1"]

    listed = agentic("backup", "list", "--from", str(to), "--json")
    assert listed.returncode == 0, listed.stderr
    [info] = json.loads(listed.stdout)
    assert info["name"] == res.name and info["complete"] and info["secrets"] == "encrypted"

    (data / "stack.lock").touch()  # as `agentic up` leaves it
    before = _tree(data)
    # through the CLI: a truncated dump, one line, exit 2
    damaged = tmp_path / "damaged"
    shutil.copytree(root, damaged / res.name)
    dump = damaged / res.name / "ledger.dump"
    dump.write_bytes(dump.read_bytes()[:-100])
    cli = agentic(
        "backup", "restore", res.name, "--from", str(damaged), "--data-dir", str(data),
        env_extra={"AGENTIC_BACKUP_KEY": KEY},
    )  # fmt: skip
    assert cli.returncode == 2, cli.stdout + cli.stderr
    line = cli.stderr.strip()
    assert line.startswith(f"error: {res.name} is damaged: ledger.dump is"), line
    assert "(truncated)" in line and "untouched" in line and "\n" not in line and "Traceback" not in line
    assert _tree(data) == before

    # the other refusals (the same code path, in process)
    def refused(backup: Path, key: str | None) -> str:
        settings = Settings(data_dir=data, backup_key=key)  # type: ignore[call-arg,arg-type]
        with pytest.raises(AgenticError) as info:
            restore(settings, backup, out=lambda _line: None)
        assert _tree(data) == before
        return str(info.value)

    with (data / "stack.lock").open("a+") as lock:  # a stack runs on the data dir: offline only
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        running = refused(root, KEY)
    assert "a stack is running on" in running and "agentic down" in running and "nothing was changed" in running
    assert "do not decrypt with AGENTIC_BACKUP_KEY" in refused(root, "not the key")
    assert "set AGENTIC_BACKUP_KEY to the key it was made with" in refused(root, None)
    for damage, expected in [
        ("altered", "ledger.dump does not match its checksum"),
        ("missing", "temporal.db is missing"),
        ("manifest", "manifest.json is damaged"),
    ]:
        copy_dir = tmp_path / damage / res.name
        shutil.copytree(root, copy_dir)
        if damage == "altered":
            raw = bytearray((copy_dir / "ledger.dump").read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            (copy_dir / "ledger.dump").write_bytes(bytes(raw))
        elif damage == "missing":
            (copy_dir / "temporal.db").unlink()
        else:
            (copy_dir / "manifest.json").write_text('{"format": 1, "name": ')
        message = refused(copy_dir, KEY)
        assert expected in message and "untouched" in message, message


async def test_without_a_key_the_secrets_are_left_out_with_a_warning(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, dsn, pool, store = world
    res = await _backup(data, dsn, pool, store, tmp_path / "b", None, name="nightly")
    assert any("secrets left out" in w and "AGENTIC_BACKUP_KEY" in w for w in res.warnings)
    # a retry of the same workflow (a crash after the rename; the run a restored Temporal resumes)
    # finds its backup made and makes no other
    again = await _backup(data, dsn, pool, store, tmp_path / "b", None, name="nightly")
    assert (
        again.path == res.path
        and again.seconds == 0.0
        and sorted(p.name for p in (tmp_path / "b").iterdir()) == ["nightly"]
    )
    m = verify(Path(res.path))
    assert m.secrets == "omitted" and "secrets.enc" not in {f.path for f in m.files}
    for f in Path(res.path).rglob("*"):  # noqa: ASYNC240
        if f.is_file():
            assert b"pg-secret-5678" not in f.read_bytes(), f


async def test_the_qdrant_collections_are_packed_small_and_restore_with_their_points(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Qdrant Edge preallocates 32 MiB files that hold a few KB. Copied as they are, a backup of
    an almost empty store was hundreds of MiB for anything that does not keep holes (rsync
    without -S, a USB disk, a share, a tarball). Packed, the backup is small in bytes, and a
    restore puts the collection back (holes kept) with its points; a backup of manifest format
    1 (the collections as directories) still restores."""
    data, dsn, pool, store = world
    res = await _backup(data, dsn, pool, store, tmp_path / "b", None)
    root = Path(res.path)
    m = verify(root)
    packed = [f for f in m.files if f.path.startswith("qdrant/")]
    assert packed and all(f.path.endswith(".tar.gz") and "/" not in f.path[len("qdrant/") :] for f in packed)
    assert m.size < 4 << 20, f"{m.size} bytes in the backup"  # every file's bytes, holes or not
    live = sum(p.stat().st_size for p in (data / "qdrant").rglob("*") if p.is_file())
    assert live > 16 << 20  # what it was before: the preallocated files
    assert not list(data.glob("qdrant/.backup-*")) and not list(data.glob(".backup-*"))  # the staging is gone

    restored = tmp_path / "restored"
    restore_qdrant(root / "qdrant", restored)
    assert disk_usage(restored) < 8 << 20  # holes kept: not the preallocated size on disk
    assert sum(p.stat().st_size for p in restored.rglob("*") if p.is_file()) > 16 << 20
    again = EdgeStore(restored, dim=4)
    try:
        [point] = await again.get(Collection.RUNBOOKS, ["rb-1"])
        assert point.payload["title"] == "Restart"
    finally:
        await again.close()

    # a format-1 backup: the collection's directory as it was copied
    await store.close()
    old = tmp_path / "old-qdrant"
    shutil.copytree(data / "qdrant" / str(Collection.RUNBOOKS), old / str(Collection.RUNBOOKS))
    restore_qdrant(old, tmp_path / "restored-1")
    from_old = EdgeStore(tmp_path / "restored-1", dim=4)
    try:
        assert [p.id for p in await from_old.get(Collection.RUNBOOKS, ["rb-1"])] == ["rb-1"]
    finally:
        await from_old.close()


def test_a_packed_collection_that_names_a_path_outside_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    bad = tmp_path / "qdrant" / "runbooks.tar.gz"
    bad.parent.mkdir()
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(AgenticError, match="outside its collection"):
        restore_qdrant(tmp_path / "qdrant", tmp_path / "out")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
