"""The ledger's small key-value settings (`kv`): the Telegram bot's cards, links and topics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from activities.ledger.base import LedgerBase


@dataclass
class KvSlot:
    """A locked key's value (`KvStore.kv_locked`): set `value` to write it when the block ends."""

    value: Any
    changed: bool = False

    def set(self, value: Any) -> None:
        self.value, self.changed = value, True


class KvStore(LedgerBase):
    """Small key-value settings (`kv`), a part of `Ledger`."""

    # --- small settings ----------------------------------------------------------------------

    async def kv_get(self, key: str, default: Any = None) -> Any:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT value FROM kv WHERE key = $1", key)
        return row["value"] if row is not None else default

    async def kv_update(self, key: str, update: Callable[[Any], Any]) -> Any:
        """Read-modify-write `key` atomically: `update(current value or None)` runs while the
        row is locked, so two writers never lose each other's change. Returns the new value."""
        async with self._conn(transaction=True) as conn:
            await conn.execute(
                "INSERT INTO kv (key, value) VALUES ($1, 'null'::jsonb) ON CONFLICT (key) DO NOTHING", key
            )
            current = await conn.fetchval("SELECT value FROM kv WHERE key = $1 FOR UPDATE", key)
            new = update(current)
            await conn.execute("UPDATE kv SET value = $2, updated_at = now() WHERE key = $1", key, new)
        return new

    @contextlib.asynccontextmanager
    async def kv_locked(self, key: str) -> AsyncIterator[KvSlot]:
        """Read-modify-write an existing `key` with awaits in between (a message edited between
        the read and the write): its row stays locked until the block ends, so a second writer
        waits for the first one's whole change, sent message included, and then sees it. The
        value set on the slot is written when the block ends; nothing is when it raises. A key
        that does not exist yields None and locks nothing. The block holds one pooled connection:
        it must not wait for another (no other ledger call inside it)."""
        async with self._conn(transaction=True) as conn:
            value = await conn.fetchval("SELECT value FROM kv WHERE key = $1 FOR UPDATE", key)
            slot = KvSlot(value)
            yield slot
            if slot.changed and value is not None:
                await conn.execute("UPDATE kv SET value = $2, updated_at = now() WHERE key = $1", key, slot.value)

    async def kv_purge(self, prefix: str, older_than: timedelta) -> int:
        """Delete the keys under `prefix` not written for `older_than`; return how many went."""
        if not prefix:
            raise ValueError("kv_purge needs a prefix: it never empties the whole table")
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM kv WHERE starts_with(key, $1) AND updated_at < now() - $2::interval",
                prefix,
                older_than,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def kv_set(self, key: str, value: Any) -> None:
        """Store any JSON value under `key`; None deletes the key (kv_get then returns its default)."""
        async with self._conn() as conn:
            if value is None:
                await conn.execute("DELETE FROM kv WHERE key = $1", key)
                return
            await conn.execute(
                """
                INSERT INTO kv (key, value) VALUES ($1, $2)
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
                """,
                key,
                value,
            )
