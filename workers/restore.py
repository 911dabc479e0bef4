"""`agentic backup restore`: put a backup back into the data dir, offline.

1. Refuse while a stack runs on the data dir (its `stack.lock` is held), and hold that lock
   for the whole restore so no `agentic up` starts meanwhile.
2. Verify the backup: the manifest, then every file's size and sha256; the secrets decrypt with
   AGENTIC_BACKUP_KEY. Anything wrong stops here, before the data dir is touched.
3. Stage it next to the data dir's parts (`DATA_DIR/.restore-<ts>/`, same file system): the
   secrets (or new ones, when the backup has none), a fresh PostgreSQL cluster (initdb with the
   restored password, started for a moment on a free loopback port, `pg_restore`, stopped), the
   Temporal database and the Qdrant Edge collections unpacked.
4. Swap: the current `postgres/`, `temporal/`, `qdrant/` and `secrets/` move to
   `DATA_DIR/before-restore-<ts>/`, the staged ones into place. `agentic up` then starts on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from activities.backup.activities import libpq_env, pg_tool
from activities.backup.archive import (
    PACKED,
    SECRETS_FILE,
    BackupError,
    Manifest,
    copy_tree_sparse,
    decrypt_secrets,
    disk_usage,
    human_size,
    unpack_tree,
    verify,
    write_secrets,
)
from agentic_core.wording import counted
from workers.errors import AgenticError
from workers.settings import Settings
from workers.stack.env import EmbeddedSecrets
from workers.stack.postgres import PG_USER, init_postgres, postgres_bin

PARTS = ("postgres", "temporal", "qdrant", "secrets")


@contextlib.contextmanager
def offline(data: Path) -> Iterator[None]:
    """Hold the data dir's stack lock: refused while `agentic up` runs there."""
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgenticError(
                f"a stack is running on {data}: stop it with `agentic down` first (a restore replaces its data, "
                "so it runs offline); nothing was changed"
            ) from None
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def restore_qdrant(src: Path, dest: Path) -> None:
    """The backup's Qdrant Edge collections into `dest`: each `<collection>.tar.gz` unpacked
    (holes kept), or, in a backup of manifest format 1, each collection's directory copied."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.is_dir():
            copy_tree_sparse(entry, dest / entry.name)
        elif entry.name.endswith(PACKED):
            try:
                unpack_tree(entry, dest / entry.name.removesuffix(PACKED))
            except BackupError as exc:
                raise AgenticError(f"{exc}; nothing was restored") from None


def find_backup(name: str, folder: Path) -> Path:
    """NAME in the backup folder, or NAME as a path to a backup directory."""
    as_path = Path(name).expanduser()
    if as_path.is_dir() and (as_path / "manifest.json").exists():
        return as_path.resolve()
    found = folder / name
    if not found.is_dir():
        raise AgenticError(f"no backup {name!r} in {folder}: see `agentic backup list` (or --from DIR)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-2:] if log.exists() else []
            raise AgenticError(f"the staging PostgreSQL exited (code {proc.returncode}): {' / '.join(tail)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AgenticError(f"the staging PostgreSQL did not accept connections within {timeout:.0f}s (log: {log})")


def restore_ledger(staging: Path, dump: Path, password: str, settings: Settings, out: Callable[[str], None]) -> None:
    """initdb a fresh cluster in staging/postgres, start it on a free loopback port, pg_restore
    the dump into it, stop it."""
    init_postgres(settings.model_copy(update={"data_dir": staging}), password)
    port = _free_port()
    pg = staging / "postgres"
    log = staging / "postgres-restore.log"
    user = PG_USER if os.geteuid() == 0 else None
    argv = [
        str(postgres_bin() / "postgres"),
        "-D",
        str(pg),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "listen_addresses=127.0.0.1",
    ]
    with log.open("ab") as lf:
        proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=user)
    try:
        _wait_for_port(port, proc, 60, log)
        if user:
            os.chmod(dump, 0o644)  # pg_restore runs as us, but keep it readable either way
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
            **libpq_env(f"postgresql://postgres@127.0.0.1:{port}/postgres"),
            "PGPASSWORD": password,
        }
        t0 = time.monotonic()
        res = None
        while True:  # "the database system is starting up": retry for a few seconds
            res = subprocess.run(
                [
                    pg_tool(postgres_bin(), "pg_restore"),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "-d",
                    "postgres",
                    str(dump),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if res.returncode == 0 or "starting up" not in res.stderr or time.monotonic() - t0 > 30:
                break
            time.sleep(0.5)
        if res.returncode != 0:
            tail = res.stderr.strip().splitlines()[-2:]
            raise AgenticError(f"pg_restore of the ledger failed: {' / '.join(tail)}; nothing was changed")
        out(f"  ✓ ledger    restored into a fresh PostgreSQL cluster ({time.monotonic() - t0:.1f}s)")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.unlink(missing_ok=True)


def restore(settings: Settings, backup: Path, out: Callable[[str], None] = print) -> Path:
    """Restore `backup` into the settings' data dir; returns where the previous data went."""
    if not settings.postgres_embedded:
        raise AgenticError(
            "AGENTIC_POSTGRES_DSN points at an external PostgreSQL: restore its ledger with "
            "`pg_restore -d <dsn> ledger.dump` from the backup (docs/disaster-recovery.md); "
            "`agentic backup restore` restores the embedded stack's data dir"
        )
    data = settings.data_path
    key = settings.backup_key.get_secret_value() if settings.backup_key else None
    try:
        manifest = verify(backup)
    except BackupError as exc:
        raise AgenticError(f"{exc}; nothing was restored and {data} is untouched") from None
    size = human_size(disk_usage(backup))
    out(f"verified {backup.name}: {counted(len(manifest.files), 'file')}, {size} on disk, checksums match")
    secrets = _secrets_of(backup, manifest, key, data, out)
    if "ledger.dump" not in {f.path for f in manifest.files}:
        raise AgenticError(f"{backup.name} holds no ledger.dump: not a backup of this platform; {data} is untouched")
    with offline(data):
        ts = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        staging = data / f".restore-{ts}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            write_secrets(staging / "secrets", secrets)
            password = EmbeddedSecrets(staging).postgres_password()  # the restored one, or a new one
            restore_ledger(staging, backup / "ledger.dump", password, settings, out)
            (staging / "temporal").mkdir()
            if (backup / "temporal.db").exists():
                shutil.copy2(backup / "temporal.db", staging / "temporal" / "temporal.db")
                out("  ✓ temporal  database copied (open incidents and schedules come back with it)")
            else:
                out("  ! temporal  not in the backup (an external Temporal): its incidents are not restored here")
            if (backup / "qdrant").is_dir():
                restore_qdrant(backup / "qdrant", staging / "qdrant")
                out("  ✓ qdrant    collections restored")
            else:
                out("  ! qdrant    not in the backup: run `agentic knowledge rebuild` after `agentic up`")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        before = data / f"before-restore-{ts}"
        before.mkdir()
        for part in PARTS:
            if (data / part).exists():
                (data / part).rename(before / part)
        for part in PARTS:
            if (staging / part).exists():
                (staging / part).rename(data / part)
        shutil.rmtree(staging, ignore_errors=True)
        (data / "stack.json").unlink(missing_ok=True)
    return before


def _secrets_of(
    backup: Path, manifest: Manifest, key: str | None, data: Path, out: Callable[[str], None]
) -> dict[str, str]:
    if manifest.secrets == "encrypted":
        if key is None:
            raise AgenticError(
                f"{backup.name} holds encrypted secrets: set AGENTIC_BACKUP_KEY to the key it was made with; "
                f"{data} is untouched"
            )
        if manifest.kdf_salt is None:
            raise AgenticError(
                f"{backup.name}'s manifest has no key salt for its secrets: damaged; {data} is untouched"
            )
        try:
            files = decrypt_secrets((backup / SECRETS_FILE).read_bytes(), key, manifest.kdf_salt)
        except BackupError as exc:
            raise AgenticError(f"{exc}; {data} is untouched") from None
        out(f"  ✓ secrets   decrypted ({counted(len(files), 'file')})")
        return files
    out(
        "  ! secrets   not in the backup: new ones are generated (the intake token and MCP token change: "
        "update Alertmanager's receiver and MCP clients)"
    )
    return {}
