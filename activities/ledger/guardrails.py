"""The ledger's guardrail events (`guardrail_events`, migration 0009): every refusal or limit hit
of an agent (the tool gateway's refusals, protected namespaces, a plan made with untrusted content
in context sent to a human, a run's limits), recorded once per key.

Written by the tool gateway (in its own activities) and by the `guardrails.record` activity;
read by `agentic guardrails list` and counted in the weekly digest.
"""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from pydantic import BaseModel, ConfigDict

from activities.ledger.base import LedgerBase
from activities.telemetry import metrics
from agentic_core.agents import GuardrailEvent, GuardrailKind

GUARDRAIL_KINDS: tuple[str, ...] = get_args(GuardrailKind)
MAX_DETAIL_CHARS = 2000  # an event's detail (a refusal's reason), cut with a marker
MAX_FIELD_CHARS = 500  # agent, subject, tool, key


class GuardrailEventRow(BaseModel):
    """One recorded guardrail event."""

    model_config = ConfigDict(frozen=True)

    id: int
    key: str
    at: datetime
    kind: GuardrailKind
    agent: str
    subject: str
    tool: str | None = None
    detail: str = ""


def _cut(text: str, limit: int) -> str:
    marker = "… [cut]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


class GuardrailStore(LedgerBase):
    """Guardrail events (`guardrail_events`), a part of `Ledger`."""

    async def record_guardrail_event(self, event: GuardrailEvent) -> tuple[GuardrailEventRow, bool]:
        """Record `event`; recording the same key again returns the first row unchanged.
        Returns the row and whether this call created it. `event.at` None: now."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO guardrail_events (key, at, kind, agent, subject, tool, detail)
                VALUES ($1, COALESCE($2, now()), $3, $4, $5, $6, $7)
                ON CONFLICT (key) DO NOTHING
                RETURNING *
                """,
                _cut(event.key, MAX_FIELD_CHARS),
                event.at,
                event.kind,
                _cut(event.agent, MAX_FIELD_CHARS),
                _cut(event.subject, MAX_FIELD_CHARS),
                _cut(event.tool, MAX_FIELD_CHARS) if event.tool is not None else None,
                _cut(event.detail, MAX_DETAIL_CHARS),
            )
            created = row is not None
            if created:
                with metrics.safely():
                    metrics.GUARDRAIL_EVENTS.labels(metrics.label(event.kind)).inc()
            if row is None:
                row = await conn.fetchrow(
                    "SELECT * FROM guardrail_events WHERE key = $1", _cut(event.key, MAX_FIELD_CHARS)
                )
        return GuardrailEventRow.model_validate(dict(row)), created

    async def list_guardrail_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: list[str] | None = None,
        agent: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[GuardrailEventRow]:
        """Events newest first: at or after `since`, before `until`, of one of `kinds`, of one
        agent or subject (None: any)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM guardrail_events
                WHERE ($1::timestamptz IS NULL OR at >= $1)
                  AND ($2::timestamptz IS NULL OR at < $2)
                  AND ($3::text[] IS NULL OR kind = ANY($3))
                  AND ($4::text IS NULL OR agent = $4)
                  AND ($5::text IS NULL OR subject = $5)
                ORDER BY at DESC, id DESC
                LIMIT $6
                """,
                since,
                until,
                kinds or None,
                agent,
                subject,
                limit,
            )
        return [GuardrailEventRow.model_validate(dict(r)) for r in rows]

    async def guardrail_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Events in [start, end) by kind (every kind present, 0 when none)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT kind, count(*) AS n FROM guardrail_events WHERE at >= $1 AND at < $2 GROUP BY kind",
                start,
                end,
            )
        counts = dict.fromkeys(GUARDRAIL_KINDS, 0)
        counts.update({r["kind"]: int(r["n"]) for r in rows})
        return counts
