"""The weekly digest's reads from the ledger (PostgreSQL). Read-only; one snapshot per digest.

Which rows count for a week [start, end) (UTC):
- alerts processed: alert rows received in the week (Alertmanager re-sends of one alert, same
  fingerprint and start, are one row);
- incidents opened: incidents whose `opened_at` is in the week;
- decisions: by `decided_at`, one per answered approval (or automatic run), by choice;
- top alert sources: the week's alerts by their `alertname`, `namespace` and `job` labels;
- runbooks created: runbook rows created in the week (imports and runbooks learned from approvals);
- confidence: proposals made in the week; source "llm" is the local model, "fallback" the best
  runbook's plan when the model could not help, "cloud" (or a `cloud/…` model) the cloud model;
- PII detections and secrets redacted: the proposals' `redactions` (items redacted from what was
  sent to the cloud, by kind) for proposals made in the week; PII is the personal-data kinds
  (email addresses, phone numbers);
- automated actions: the actions of runs decided "automatic" in the week: actions of that
  incident started between the run's start (the occurrence in the decision's approval id
  `<incident>-automatic-<epoch ms>`) and the decision;
- all actions and outcomes: finished / verified in the week;
- guardrail events: recorded (`at`) in the week, by kind (every kind, 0 when none).
- all actions and outcomes: finished / verified in the week.

An incident's evidence calls (the investigate stage: read-only tools it looked with, ledger keys
`<incident>/evidence/…`) are not actions: neither count counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from activities.ledger.db import LedgerIntegrityError, unavailable
from agentic_core.redaction import PERSONAL_KINDS, SECRET
from agentic_core.reports import (
    DECISION_KINDS,
    GUARDRAIL_KINDS,
    RUNBOOKS_LISTED,
    TOP_SOURCES,
    DayDecisions,
    RunbookCreated,
    SourceCount,
    WeeklyDigest,
    WeekShare,
    shift_week,
    week_bounds,
    week_of,
)

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger

SOURCE_LABELS: tuple[str, ...] = ("alertname", "namespace", "job")

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


@asynccontextmanager
async def _snapshot(ledger: Ledger) -> AsyncIterator[asyncpg.Connection]:
    """One read-only, repeatable-read transaction: every number of a digest from one snapshot."""
    try:
        async with ledger.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn
    except asyncpg.PostgresError as exc:
        if isinstance(exc, _UNAVAILABLE):
            raise unavailable("the ledger database", exc) from exc
        raise LedgerIntegrityError(f"digest query failed: {str(exc).splitlines()[0]}") from exc
    except _UNAVAILABLE as exc:
        raise unavailable("the ledger database", exc) from exc


async def compute_digest(
    ledger: Ledger, week: str, *, trend_weeks: int = 8, now: datetime | None = None
) -> WeeklyDigest:
    """The digest of ISO `week` from the ledger."""
    start, end = week_bounds(week)
    first_trend, _ = week_bounds(shift_week(week, -(trend_weeks - 1)))
    async with _snapshot(ledger) as conn:
        alerts = await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE received_at >= $1 AND received_at < $2", start, end
        )
        incidents = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE opened_at >= $1 AND opened_at < $2", start, end
        )
        decisions = dict.fromkeys(DECISION_KINDS, 0)
        for r in await conn.fetch(
            "SELECT choice, count(*) AS n FROM decisions WHERE decided_at >= $1 AND decided_at < $2 GROUP BY choice",
            start,
            end,
        ):
            decisions[r["choice"]] = int(r["n"])

        sources: list[SourceCount] = []
        for label in SOURCE_LABELS:
            rows = await conn.fetch(
                """
                SELECT value, n FROM (
                    SELECT labels->>$3 AS value, count(*) AS n FROM alerts
                    WHERE received_at >= $1 AND received_at < $2 AND labels ? $3 AND labels->>$3 <> ''
                    GROUP BY 1
                ) s ORDER BY n DESC, value COLLATE "C" LIMIT $4
                """,
                start,
                end,
                label,
                TOP_SOURCES,
            )
            sources += [SourceCount(label=label, value=r["value"], count=int(r["n"])) for r in rows]

        rb_total = await conn.fetchval(
            "SELECT count(*) FROM runbooks WHERE created_at >= $1 AND created_at < $2", start, end
        )
        rb_rows = await conn.fetch(
            """
            SELECT id, title, source, automation_level FROM runbooks
            WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id LIMIT $3
            """,
            start,
            end,
            RUNBOOKS_LISTED,
        )

        prop = await conn.fetchrow(
            """
            WITH p AS (
                SELECT confidence,
                       CASE WHEN source = 'cloud' OR model LIKE 'cloud/%' THEN 'cloud'
                            WHEN source = 'fallback' OR fallback THEN 'fallback'
                            ELSE 'local' END AS kind
                FROM proposals WHERE created_at >= $1 AND created_at < $2
            )
            SELECT count(*) FILTER (WHERE kind = 'local') AS local_n,
                   avg(confidence) FILTER (WHERE kind = 'local') AS local_avg,
                   count(*) FILTER (WHERE kind = 'fallback') AS fallback_n,
                   count(*) FILTER (WHERE kind = 'cloud') AS cloud_n
            FROM p
            """,
            start,
            end,
        )

        redacted = {
            r["kind"]: int(r["n"])
            for r in await conn.fetch(
                """
                SELECT r.key AS kind, sum(r.value::int) AS n
                FROM proposals p, jsonb_each_text(p.redactions) r
                WHERE p.created_at >= $1 AND p.created_at < $2
                GROUP BY r.key
                """,
                start,
                end,
            )
        }

        auto = await conn.fetchrow(
            r"""
            WITH runs AS (
                SELECT incident_id, decided_at,
                       COALESCE(to_timestamp(substring(approval_id FROM '-automatic-(\d+)$')::bigint / 1000.0),
                                decided_at - interval '1 day') AS run_start
                FROM decisions
                WHERE choice = 'automatic' AND decided_at >= $1 AND decided_at < $2 AND incident_id IS NOT NULL
            )
            SELECT count(*) AS n,
                   count(*) FILTER (WHERE a.status = 'succeeded') AS ok,
                   count(*) FILTER (WHERE a.status = 'failed') AS failed
            FROM (SELECT DISTINCT a.id, a.status FROM runs r
                  JOIN actions a ON a.incident_id = r.incident_id
                                AND a.started_at >= r.run_start AND a.started_at <= r.decided_at
                  WHERE a.idempotency_key NOT LIKE '%/evidence/%') a
            """,
            start,
            end,
        )
        acts = await conn.fetchrow(
            """
            SELECT count(*) AS n,
                   count(*) FILTER (WHERE status = 'succeeded') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS failed
            FROM actions WHERE finished_at >= $1 AND finished_at < $2 AND idempotency_key NOT LIKE '%/evidence/%'
            """,
            start,
            end,
        )
        outcomes = {"success": 0, "failure": 0, "unknown": 0}
        for r in await conn.fetch(
            "SELECT result, count(*) AS n FROM outcomes WHERE verified_at >= $1 AND verified_at < $2 GROUP BY result",
            start,
            end,
        ):
            outcomes[r["result"]] = int(r["n"])

        guardrails = dict.fromkeys(GUARDRAIL_KINDS, 0)
        for r in await conn.fetch(
            "SELECT kind, count(*) AS n FROM guardrail_events WHERE at >= $1 AND at < $2 GROUP BY kind",
            start,
            end,
        ):
            guardrails[r["kind"]] = int(r["n"])

        days: dict[date, dict[str, int]] = {(start + timedelta(days=i)).date(): {} for i in range(7)}
        for r in await conn.fetch(
            """
            SELECT (decided_at AT TIME ZONE 'UTC')::date AS day, choice, count(*) AS n FROM decisions
            WHERE decided_at >= $1 AND decided_at < $2 GROUP BY 1, 2
            """,
            start,
            end,
        ):
            days[r["day"]][r["choice"]] = int(r["n"])

        shares = {shift_week(week, -i): WeekShare(week=shift_week(week, -i)) for i in range(trend_weeks - 1, -1, -1)}
        for r in await conn.fetch(
            """
            SELECT date_trunc('week', decided_at AT TIME ZONE 'UTC') AS wk,
                   count(*) FILTER (WHERE choice = 'automatic') AS auto, count(*) AS n
            FROM decisions WHERE decided_at >= $1 AND decided_at < $2 GROUP BY 1
            """,
            first_trend,
            end,
        ):
            key = week_of(r["wk"].replace(tzinfo=UTC))
            if key in shares:
                shares[key] = WeekShare(week=key, automatic=int(r["auto"]), total=int(r["n"]))

    return WeeklyDigest(
        week=week,
        start=start,
        end=end,
        generated_at=now or datetime.now(UTC),
        alerts_processed=int(alerts),
        incidents_opened=int(incidents),
        decisions=decisions,
        top_sources=sources,
        runbooks_created=[
            RunbookCreated(id=r["id"], title=r["title"], source=r["source"], level=r["automation_level"])
            for r in rb_rows
        ],
        runbooks_created_total=int(rb_total),
        local_proposals=int(prop["local_n"]),
        local_confidence_avg=float(prop["local_avg"]) if prop["local_avg"] is not None else None,
        fallback_proposals=int(prop["fallback_n"]),
        cloud_escalations=int(prop["cloud_n"]),
        pii_detections=sum(redacted.get(kind, 0) for kind in PERSONAL_KINDS),
        secrets_redacted=redacted.get(SECRET, 0),
        automatic_decisions=decisions["automatic"],
        automated_actions=int(auto["n"]),
        automated_succeeded=int(auto["ok"]),
        automated_failed=int(auto["failed"]),
        actions_total=int(acts["n"]),
        actions_succeeded=int(acts["ok"]),
        actions_failed=int(acts["failed"]),
        outcomes=outcomes,
        guardrail_events=guardrails,
        daily=[DayDecisions(day=d, counts=c) for d, c in sorted(days.items())],
        trend=list(shares.values()),
    )
