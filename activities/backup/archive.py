"""A backup on disk: its manifest (versions, and each file's size and sha256), its secrets
(encrypted with a key the operator supplies), listing, verifying and retention. No Temporal, no
PostgreSQL here: `activities.backup.activities` writes backups (on the worker, which owns the
data), `workers.restore` reads them (offline).

Layout of one backup, DIR/<name>/::

    manifest.json       written last: a directory without it is not a backup
    ledger.dump         pg_dump -Fc of the ledger database
    temporal.db         the embedded Temporal's SQLite database (online backup API)
    qdrant/<collection>.tar.gz  a Qdrant Edge collection, copied while it was offline, then packed
                        (format 1 kept the copied directories, `qdrant/<collection>/…`: Qdrant
                        preallocates 32 MiB files holding a few KB, which only stay small on a
                        disk that keeps holes; a packed collection is small anywhere it is copied)
    runbooks.json       the runbooks as the ledger holds them (also inside ledger.dump; readable)
    secrets.enc         DATA_DIR/secrets, encrypted (Fernet, key derived with scrypt); absent
                        when no key was given (the manifest's warnings say so)

A backup is written to `<name>.partial` and renamed when complete, so a crash leaves no
half-backup that looks whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
FORMAT = 2  # manifest format; a restore refuses a newer one (1: the Qdrant collections as directories)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PARTIAL = ".partial"
SECRETS_FILE = "secrets.enc"


class BackupError(Exception):
    """A backup that cannot be made, found, verified or read. The message says what to do."""


class FileEntry(BaseModel):
    path: str  # relative to the backup's directory, with /
    size: int
    sha256: str


class Manifest(BaseModel):
    format: int = FORMAT
    name: str
    created_at: datetime
    versions: dict[str, str | None] = Field(default_factory=dict)  # agentic, postgresql, ledger_schema, …
    contents: dict[str, str] = Field(default_factory=dict)  # part → what it holds ("pg_dump -Fc", "omitted: …")
    warnings: list[str] = Field(default_factory=list)
    secrets: Literal["encrypted", "omitted"] = "omitted"
    kdf_salt: str | None = None  # base64, for the secrets' key
    workflow_id: str | None = None  # the BackupWorkflow that made it (a retry of it finds it done)
    files: list[FileEntry] = Field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def new_name(now: datetime | None = None) -> str:
    return "backup-" + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name.endswith(PARTIAL):
        raise BackupError(
            f"{name!r} is not a backup name (letters, digits, '.', '_', '-'; e.g. backup-20261206T020000Z)"
        )
    return name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path) -> list[FileEntry]:
    """Every file under `root` (but the manifest), with its size and checksum, in a stable order."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out.append(FileEntry(path=p.relative_to(root).as_posix(), size=p.stat().st_size, sha256=sha256_of(p)))
    return out


def copy_tree_sparse(src: Path, dst: Path) -> None:
    """Copy a directory keeping sparse files sparse (Qdrant Edge preallocates 32 MiB files that
    hold a few KB): GNU `cp --sparse=always`, else a plain copy."""
    import subprocess

    dst.parent.mkdir(parents=True, exist_ok=True)
    cp = shutil.which("cp")
    if cp is not None:
        res = subprocess.run([cp, "-a", "--sparse=always", str(src), str(dst)], capture_output=True, text=True)
        if res.returncode == 0:
            return
        shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


PACKED = ".tar.gz"
_BLOCK = 1 << 16


def pack_tree(src: Path, dest: Path) -> None:
    """`src` (a directory) as one gzip'd tar at `dest`, its members relative to `src`. The zeros
    of a sparse file compress to almost nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=p.relative_to(src).as_posix(), recursive=False)


def unpack_tree(archive: Path, dest: Path) -> None:
    """A `pack_tree` archive into `dest` (created). Only directories and regular files inside
    `dest` are accepted (`BackupError` otherwise); runs of zeros are written as holes, so the
    restored collection takes on disk what the live one did."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                rel = Path(member.name)
                if rel.is_absolute() or ".." in rel.parts:
                    raise BackupError(f"{archive.name} names a path outside its collection ({member.name}): refused")
                target = dest / rel
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise BackupError(f"{archive.name} holds something that is not a file ({member.name}): refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with target.open("wb") as out:
                    while block := source.read(_BLOCK):
                        if block.count(0) == len(block):
                            out.seek(len(block), os.SEEK_CUR)
                        else:
                            out.write(block)
                    out.truncate(member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{archive.name} cannot be unpacked ({exc})") from exc


def human_size(n: int) -> str:
    """Bytes as people read them: `512 B`, `8.8 MiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def disk_usage(root: Path) -> int:
    """Bytes the files under `root` take on disk (sparse files count what they hold)."""
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def write_manifest(root: Path, manifest: Manifest) -> None:
    manifest.files = file_entries(root)
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(root / MANIFEST)


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not root.is_dir():
        raise BackupError(f"no backup at {root}")
    if not path.is_file():
        raise BackupError(f"{root} has no {MANIFEST}: not a complete backup (interrupted, or not a backup)")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise BackupError(f"{path} is damaged ({str(exc).splitlines()[0]}): this backup cannot be restored") from exc
    if manifest.format > FORMAT:
        raise BackupError(
            f"{root.name} was made by a newer agentic (manifest format {manifest.format}, this one reads {FORMAT}): "
            "restore it with that version"
        )
    return manifest


def verify(root: Path) -> Manifest:
    """The manifest, once every file it lists is present with its size and checksum; else
    `BackupError` naming the first file that is missing, truncated or altered."""
    manifest = read_manifest(root)
    if not manifest.files:
        raise BackupError(f"{root.name}: the manifest lists no files: not a usable backup")
    for entry in manifest.files:
        p = root / entry.path
        if ".." in Path(entry.path).parts or Path(entry.path).is_absolute():
            raise BackupError(f"{root.name}: the manifest names a file outside the backup ({entry.path}): refused")
        if not p.is_file():
            raise BackupError(f"{root.name} is incomplete: {entry.path} is missing")
        size = p.stat().st_size
        if size != entry.size:
            what = "truncated" if size < entry.size else "altered"
            raise BackupError(
                f"{root.name} is damaged: {entry.path} is {size} bytes, the manifest says {entry.size} ({what})"
            )
        if sha256_of(p) != entry.sha256:
            raise BackupError(f"{root.name} is damaged: {entry.path} does not match its checksum (altered or corrupt)")
    return manifest


# --------------------------------------------------------------------------- secrets


def _fernet(key: str, salt: bytes) -> Any:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    raw = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt_secrets(secrets_dir: Path, key: str) -> tuple[bytes, str]:
    """DATA_DIR/secrets as one encrypted blob, and the salt (base64) its key was derived with."""
    files = (
        {p.name: p.read_text() for p in sorted(secrets_dir.iterdir()) if p.is_file()} if secrets_dir.is_dir() else {}
    )
    salt = os.urandom(16)
    token = _fernet(key, salt).encrypt(json.dumps(files).encode())
    return token, base64.b64encode(salt).decode()


def decrypt_secrets(blob: bytes, key: str, salt_b64: str) -> dict[str, str]:
    from cryptography.fernet import InvalidToken

    try:
        data = _fernet(key, base64.b64decode(salt_b64)).decrypt(blob)
    except InvalidToken:
        raise BackupError(
            "the backup's secrets do not decrypt with AGENTIC_BACKUP_KEY: set the key the backup was made with"
        ) from None
    files = json.loads(data)
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise BackupError("the backup's secrets are not in the expected form: this backup cannot be restored")
    return {str(k): v for k, v in files.items()}


def write_secrets(target: Path, files: dict[str, str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)
    for name, value in files.items():
        if "/" in name or name.startswith("."):
            raise BackupError(f"the backup's secrets name an odd file ({name!r}): refused")
        fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)


# --------------------------------------------------------------------------- listing, retention


class BackupInfo(BaseModel):
    name: str
    path: str
    complete: bool
    created_at: datetime | None = None
    size: int = 0
    secrets: str = ""
    contents: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    versions: dict[str, str | None] = Field(default_factory=dict)
    problem: str = ""


def list_backups(folder: Path) -> list[BackupInfo]:
    """The backups in `folder`, newest first; incomplete ones (no manifest) listed as such."""
    if not folder.is_dir():
        return []
    out: list[BackupInfo] = []
    for d in folder.iterdir():
        if not d.is_dir():
            continue
        if d.name.endswith(PARTIAL):
            out.append(BackupInfo(name=d.name, path=str(d), complete=False, problem="in progress or interrupted"))
            continue
        try:
            m = read_manifest(d)
        except BackupError as exc:
            out.append(BackupInfo(name=d.name, path=str(d), complete=False, problem=str(exc)))
            continue
        out.append(
            BackupInfo(
                name=m.name,
                path=str(d),
                complete=True,
                created_at=m.created_at,
                size=disk_usage(d),
                secrets=m.secrets,
                contents=m.contents,
                warnings=m.warnings,
                versions=m.versions,
            )
        )
    far_past = datetime.min.replace(tzinfo=UTC)
    return sorted(out, key=lambda b: (b.created_at or far_past, b.name), reverse=True)


def prune(folder: Path, keep: int) -> list[str]:
    """Keep the `keep` newest complete backups in `folder`; delete the older complete ones and
    stale `.partial` directories older than the newest complete backup. Returns what went."""
    if keep <= 0:
        return []
    backups = list_backups(folder)
    complete = [b for b in backups if b.complete]
    doomed = [b for b in complete[keep:]]
    newest = complete[0].created_at if complete else None
    if newest is not None:
        for b in backups:
            p = Path(b.path)
            if not b.complete and b.name.endswith(PARTIAL) and p.stat().st_mtime < newest.timestamp():
                doomed.append(b)
    for b in doomed:
        shutil.rmtree(b.path, ignore_errors=True)
    return [b.name for b in doomed]
