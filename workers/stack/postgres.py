"""The embedded PostgreSQL: pgserver's binaries, and `initdb` on first start (SCRAM auth, the
generated password; as the `pgserver` system user when run as root, as pgserver does)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from workers.errors import AgenticError
from workers.settings import Settings

PG_USER = "pgserver"  # the system user PostgreSQL runs as when we are root (as pgserver does)


def postgres_bin() -> Path:
    try:
        with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR: noise for us
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise AgenticError(
            "PostgreSQL binaries are missing: install them with `pip install pgserver==0.1.4` "
            "(`make setup` does), or set AGENTIC_POSTGRES_DSN to an existing PostgreSQL"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def init_postgres(settings: Settings, password: str) -> None:
    """initdb on first start (SCRAM auth, generated password), as the pgserver user when root."""
    pg = settings.data_path / "postgres"
    if (pg / "PG_VERSION").exists():
        return
    import subprocess

    pg.mkdir(parents=True, exist_ok=True)
    user = None
    if os.geteuid() == 0:
        import pwd

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(PG_USER)
        ensure_prefix_permissions(pg)
        binp = postgres_bin()
        ensure_folder_permissions(binp, 0o055)
        ensure_folder_permissions(binp.parent / "lib", 0o044)
        ent = pwd.getpwnam(PG_USER)
        os.chown(pg, ent.pw_uid, ent.pw_gid)
        user = PG_USER
    pg.chmod(0o700)
    pwfile = pg.parent / ".pg-initdb-pw"
    pwfile.write_text(password)
    if user:
        import pwd

        ent = pwd.getpwnam(user)
        os.chown(pwfile, ent.pw_uid, ent.pw_gid)
    pwfile.chmod(0o600)
    try:
        result = subprocess.run(
            [
                str(postgres_bin() / "initdb"),
                "-D",
                str(pg),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
            ],
            capture_output=True,
            text=True,
            user=user,
            timeout=120,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise AgenticError(f"initdb failed for {pg}: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
