"""The gateway's API keys and its audit (`api_keys`, `gateway_audit`, migration 0010).

A key is `agk_<prefix>_<secret>` (`secrets.token_urlsafe`: 8 bytes of prefix, 32 of secret). Only
its SHA-256 is stored: `prefix` finds the row, then the hash of what the caller sent is compared
with the stored one in constant time (`hmac.compare_digest`). A key is shown once, when created.
Revoking it takes effect on the next request (the gateway looks every request's key up; nothing is
cached). `last_used_at` is written at most every `LAST_USED_EVERY_S` per key.

Written and read by `agentic keys …` and the gateway (`workers/gateway`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from activities.ledger.base import LedgerBase
from activities.ledger.db import ConflictError

KEY_PREFIX = "agk_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LAST_USED_EVERY_S = 10  # `last_used_at` is refreshed at most this often per key
MAX_AUDIT_CHARS = 1000


class ApiKey(BaseModel):
    """A key as the ledger holds it (never the key itself)."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    prefix: str
    agents: list[str]  # empty: every agent
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_use(self, agent: str | None) -> bool:
        """Whether the key may ask `agent` (None: the router, which may pick any agent, so only a
        key for every agent may use it)."""
        if not self.agents:
            return True
        return agent is not None and agent in self.agents


class AuditRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    key_name: str
    method: str
    path: str
    status: int
    action: str = ""
    subject: str = ""
    detail: str = ""


def key_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def split_key(token: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or len(secret) < 32:
        return None
    return prefix


def new_key() -> tuple[str, str]:
    """(key, prefix): a fresh random key. The prefix holds no underscore (the separator)."""
    prefix = secrets.token_hex(6)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def _cut(text: str, limit: int = MAX_AUDIT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 7] + "… [cut]"


class KeyStore(LedgerBase):
    """API keys and the gateway's audit, a part of `Ledger`."""

    async def create_api_key(self, name: str, *, agents: list[str], read_only: bool) -> tuple[ApiKey, str]:
        """A new key named `name`: the row and the key (shown once; only its hash is kept).
        A name already used (revoked keys included) is a ConflictError."""
        if not NAME_RE.match(name):
            raise ValueError(
                f"key name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        token, prefix = new_key()
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO api_keys (name, prefix, key_hash, agents, read_only) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (name) DO NOTHING
                RETURNING *
                """,
                name,
                prefix,
                key_hash(token),
                sorted(set(agents)),
                read_only,
            )
        if row is None:
            raise ConflictError(f"a key named {name!r} exists already (revoked keys keep their names)")
        return ApiKey.model_validate(dict(row)), token

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT * FROM api_keys ORDER BY name")
        return [ApiKey.model_validate(dict(r)) for r in rows]

    async def active_api_keys(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"))

    async def api_key_named(self, name: str) -> ApiKey | None:
        """The key named `name` (revoked or not), else None: a console session names its key."""
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM api_keys WHERE name = $1", name)
        return ApiKey.model_validate(dict(row)) if row is not None else None

    async def revoke_api_key(self, name: str) -> ApiKey | None:
        """Revoke the key named `name` (revoking it again changes nothing); None: no such key."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE name = $1 RETURNING *", name
            )
        return ApiKey.model_validate(dict(row)) if row is not None else None

    async def authenticate_api_key(self, token: str) -> ApiKey | None:
        """The active key `token` is, else None (malformed, unknown, wrong secret, revoked).
        Records its use (at most every LAST_USED_EVERY_S)."""
        prefix = split_key(token)
        if prefix is None:
            return None
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM api_keys WHERE prefix = $1", prefix)
            if row is None or not hmac.compare_digest(bytes(row["key_hash"]), key_hash(token)):
                return None
            if row["revoked_at"] is not None:
                return None
            used = row["last_used_at"]
            if used is not None and (datetime.now(UTC) - used).total_seconds() < LAST_USED_EVERY_S:
                # recorded lately: no second round trip on the request's path (the gateway's
                # time to first token); the WHERE below still guards concurrent writers
                return ApiKey.model_validate(dict(row))
            await conn.execute(
                """
                UPDATE api_keys SET last_used_at = now()
                WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))
                """,
                row["id"],
                LAST_USED_EVERY_S,
            )
        return ApiKey.model_validate(dict(row))

    async def record_gateway_audit(
        self,
        *,
        key_name: str,
        method: str,
        path: str,
        status: int,
        action: str = "",
        subject: str = "",
        detail: str = "",
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                """
                INSERT INTO gateway_audit (key_name, method, path, status, action, subject, detail)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                """,
                _cut(key_name, 200),
                method[:16],
                _cut(path, 500),
                status,
                _cut(action, 200),
                _cut(subject, 500),
                _cut(detail),
            )

    async def list_gateway_audit(self, *, key_name: str | None = None, limit: int = 100) -> list[AuditRow]:
        """Audit rows newest first (of one key's, or every key's)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM gateway_audit WHERE ($1::text IS NULL OR key_name = $1)
                ORDER BY at DESC, id DESC LIMIT $2
                """,
                key_name,
                limit,
            )
        return [AuditRow.model_validate(dict(r)) for r in rows]
