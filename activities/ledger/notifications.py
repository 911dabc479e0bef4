"""The ledger's notifications: every message sent to a channel, and its edits."""

from __future__ import annotations

from activities.ledger.base import LedgerBase, _ensure_incident
from activities.ledger.db import (
    NotFound,
)
from activities.ledger.models import (
    NotificationRow,
)


class NotificationStore(LedgerBase):
    """The ledger's notifications: every message sent to a channel, and its edits. (a part of `Ledger`)."""

    # --- notifications -----------------------------------------------------------------------

    async def record_notification(
        self,
        channel: str,
        *,
        incident_id: str | None = None,
        target: str = "",
        thread: str | None = None,
        message_id: str | None = None,
        kind: str = "",
        text: str = "",
    ) -> NotificationRow:
        """Record a sent message. Recording the same (channel, target, message_id) again returns
        the first row unchanged."""
        async with self._conn(transaction=True) as conn:
            if incident_id is not None:
                await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                """
                INSERT INTO notifications (incident_id, channel, target, thread, message_id, kind, text)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (channel, target, message_id) DO NOTHING
                RETURNING *
                """,
                incident_id,
                channel,
                target,
                thread,
                message_id,
                kind,
                text,
            )
            if row is None:
                row = await conn.fetchrow(
                    "SELECT * FROM notifications WHERE channel = $1 AND target = $2 AND message_id = $3",
                    channel,
                    target,
                    message_id,
                )
        return NotificationRow.model_validate(dict(row))

    async def update_notification(
        self,
        notification_id: int,
        *,
        text: str | None = None,
        message_id: str | None = None,
        kind: str | None = None,
    ) -> NotificationRow:
        """Record an edit of a sent message (sets edited_at); None leaves a field as it is."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                UPDATE notifications SET
                    text = COALESCE($2, text),
                    message_id = COALESCE($3, message_id),
                    kind = COALESCE($4, kind),
                    edited_at = now()
                WHERE id = $1
                RETURNING *
                """,
                notification_id,
                text,
                message_id,
                kind,
            )
        if row is None:
            raise NotFound(f"no notification {notification_id}")
        return NotificationRow.model_validate(dict(row))

    async def find_notification(self, channel: str, target: str, message_id: str) -> NotificationRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM notifications WHERE channel = $1 AND target = $2 AND message_id = $3",
                channel,
                target,
                message_id,
            )
        return NotificationRow.model_validate(dict(row)) if row else None

    async def list_notifications(self, incident_id: str) -> list[NotificationRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM notifications WHERE incident_id = $1 ORDER BY sent_at, id", incident_id
            )
        return [NotificationRow.model_validate(dict(r)) for r in rows]

    # --- reads for the channels (the Telegram bot's refused presses) ---------------------------

    async def recent_notifications(
        self, channel: str, *, kind: str | None = None, incident_id: str | None = None, limit: int = 50
    ) -> list[NotificationRow]:
        """The latest rows of a channel, newest first (e.g. Telegram's refused presses)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM notifications
                WHERE channel = $1 AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR incident_id = $3)
                ORDER BY sent_at DESC, id DESC LIMIT $4
                """,
                channel,
                kind,
                incident_id,
                limit,
            )
        return [NotificationRow.model_validate(dict(r)) for r in rows]
