"""The weekly digests (`weekly_digests`, migration 0013): one row per ISO week with every number
(the `WeeklyDigest` as JSON), the chart (PNG) and the Markdown report.

Written by `reports.write_digest` (an upsert: a retry or a re-run of the same week replaces the
row), read by the gateway's console (`/console/reports`), which in the chart cannot see the
worker's `DATA_DIR/reports`. The digest is kept as the JSON the worker wrote, not validated here:
the reader decides what it can read (a digest of an older or newer agentic may not be).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from activities.ledger.base import LedgerBase

DIGESTS_LISTED = 520  # ten years of weeks


class DigestRow(BaseModel):
    """A stored digest, without its chart (`weekly_digest_chart` reads that)."""

    model_config = ConfigDict(frozen=True)

    week: str
    digest: Any  # the JSON as stored (an object, when a digest)
    has_chart: bool
    markdown: str = ""
    written_at: datetime


class DigestStore(LedgerBase):
    """Weekly digests (`weekly_digests`), a part of `Ledger`."""

    async def put_weekly_digest(
        self, week: str, digest: dict[str, Any], chart_png: bytes | None, markdown: str
    ) -> None:
        """Store the digest of `week`, replacing what an earlier run of the same week stored."""
        async with self._conn() as conn:
            await conn.execute(
                """
                INSERT INTO weekly_digests (week, digest, chart_png, markdown) VALUES ($1, $2, $3, $4)
                ON CONFLICT (week) DO UPDATE SET digest = EXCLUDED.digest, chart_png = EXCLUDED.chart_png,
                    markdown = EXCLUDED.markdown, written_at = now()
                """,
                week,
                digest,
                chart_png,
                markdown,
            )

    async def list_weekly_digests(self, limit: int = DIGESTS_LISTED) -> list[DigestRow]:
        """The stored digests, newest week first (without their Markdown and charts)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT week, digest, chart_png IS NOT NULL AS has_chart, written_at FROM weekly_digests"
                " ORDER BY week DESC LIMIT $1",
                limit,
            )
        return [DigestRow.model_validate(dict(r)) for r in rows]

    async def weekly_digest(self, week: str) -> DigestRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT week, digest, chart_png IS NOT NULL AS has_chart, markdown, written_at FROM weekly_digests"
                " WHERE week = $1",
                week,
            )
        return DigestRow.model_validate(dict(row)) if row is not None else None

    async def weekly_digest_chart(self, week: str) -> bytes | None:
        """The chart (PNG) of `week`'s digest; None when there is no digest or it has no chart."""
        async with self._conn() as conn:
            png: bytes | None = await conn.fetchval("SELECT chart_png FROM weekly_digests WHERE week = $1", week)
        return png
