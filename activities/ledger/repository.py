"""The ledger's repository: typed reads and writes over the pool. Activities call these.

Conventions:
- Every method returns pydantic models (`activities.ledger.models`), never records or dicts.
- Writes that belong to an incident first insert a stub incident row (`ON CONFLICT DO NOTHING`)
  in the same transaction, so the foreign keys hold whatever order rows arrive in;
  `upsert_incident` fills the stub in later.
- Writes an activity may retry are idempotent where a natural key exists: alerts on
  (fingerprint, starts_at), decisions on approval_id, actions on idempotency_key,
  notifications on (channel, target, message_id), runbook counters on an optional event_key.
- Errors are `LedgerError`s: `LedgerUnavailable` (connection; retry), `LedgerIntegrityError`
  (a constraint refused the write; don't), `NotFound`, `ConflictError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg

from activities.ledger.db import (
    ConflictError,
    LedgerIntegrityError,
    NotFound,
    create_pool,
    describe_dsn,
    migrate,
    unavailable,
)
from activities.ledger.models import (
    CLOSED_STATUSES,
    ActionRow,
    ActionStatus,
    AlertRow,
    AlertStatus,
    AutomatedAction,
    DecisionChoice,
    DecisionRow,
    IncidentRow,
    IncidentStatus,
    LevelChange,
    NotificationRow,
    OutcomeResult,
    OutcomeRow,
    PromotionRequestRow,
    PromotionStatus,
    ProposalRow,
    RunbookPeriodStats,
    RunbookRow,
    RunbookStats,
    UpsertResult,
)
from agentic_core.models import AutomationLevel, Proposal, Runbook

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

# Which runbook_stats counter each decision choice bumps.
_CHOICE_COUNTER: dict[str, str] = {
    "approved": "approvals",
    "ignored": "ignores",
    "modified": "modifications",
    "expired": "expirations",
    "automatic": "automatic_decisions",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _normalise(value: Any) -> Any:
    """`value` as it comes back from a jsonb column (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


_ALERT_UPSERT = """
INSERT INTO alerts AS a (fingerprint, labels, annotations, starts_at, ends_at, status, incident_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    labels = EXCLUDED.labels,
    annotations = EXCLUDED.annotations,
    ends_at = EXCLUDED.ends_at,
    status = EXCLUDED.status,
    incident_id = COALESCE(EXCLUDED.incident_id, a.incident_id),
    updated_at = now()
"""


class AlertIn(Protocol):
    """What `record_alerts` reads of an alert (`agentic_core.alerts.Alert` fits)."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def annotations(self) -> dict[str, str]: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime | None: ...
    @property
    def status(self) -> str: ...


async def _ensure_incident(conn: asyncpg.Connection, incident_id: str) -> None:
    await conn.execute("INSERT INTO incidents (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", incident_id)


class Ledger:
    """The PostgreSQL ledger. Holds a pool; `close()` it when done."""

    def __init__(self, pool: asyncpg.Pool, *, where: str = "the ledger database") -> None:
        self._pool = pool
        self._where = where

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10, apply_migrations: bool = True) -> Ledger:
        """Open a pool on `dsn` and (by default) bring the schema up to date."""
        pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            if apply_migrations:
                await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, where=describe_dsn(dsn))

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise LedgerIntegrityError(_first_line(exc)) from exc
        except _UNAVAILABLE_ERRORS as exc:
            raise unavailable(self._where, exc) from exc

    # --- incidents and alerts ----------------------------------------------------------------

    async def upsert_incident(
        self,
        incident_id: str,
        *,
        group_key: str | None = None,
        status: IncidentStatus | None = None,
        severity: str | None = None,
        category: str | None = None,
        title: str | None = None,
        opened_at: datetime | None = None,
    ) -> IncidentRow:
        """Create the incident or update the fields given (None leaves a field as it is).

        Moving into a closed status (see `CLOSED_STATUSES`) sets closed_at once; moving out clears it.
        """
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO incidents AS i (id, group_key, status, severity, category, title, opened_at, closed_at)
                VALUES ($1, COALESCE($2, ''), COALESCE($3, 'open'), COALESCE($4, ''), COALESCE($5, ''),
                        COALESCE($6, ''), COALESCE($7, now()),
                        CASE WHEN COALESCE($3, 'open') = ANY($8::text[])
                             THEN greatest(now(), COALESCE($7, now())) END)
                ON CONFLICT (id) DO UPDATE SET
                    group_key = COALESCE($2, i.group_key),
                    status = COALESCE($3, i.status),
                    severity = COALESCE($4, i.severity),
                    category = COALESCE($5, i.category),
                    title = COALESCE($6, i.title),
                    opened_at = COALESCE($7, i.opened_at),
                    updated_at = now(),
                    closed_at = CASE WHEN COALESCE($3, i.status) = ANY($8::text[])
                                     THEN COALESCE(i.closed_at, greatest(now(), COALESCE($7, i.opened_at)))
                                     END
                RETURNING *
                """,
                incident_id,
                group_key,
                status,
                severity,
                category,
                title,
                opened_at,
                sorted(CLOSED_STATUSES),
            )
        return IncidentRow.model_validate(dict(row))

    async def get_incident(self, incident_id: str) -> IncidentRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
        return IncidentRow.model_validate(dict(row)) if row else None

    async def list_incidents(
        self,
        status: IncidentStatus | Sequence[IncidentStatus] | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[IncidentRow]:
        """Newest first; `status` may be one status or several."""
        statuses = None if status is None else [status] if isinstance(status, str) else list(status)
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM incidents
                WHERE $1::text[] IS NULL OR status = ANY($1::text[])
                ORDER BY opened_at DESC, id
                LIMIT $2 OFFSET $3
                """,
                statuses,
                limit,
                offset,
            )
        return [IncidentRow.model_validate(dict(r)) for r in rows]

    async def record_alert(
        self,
        fingerprint: str,
        *,
        starts_at: datetime,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        status: AlertStatus = "firing",
        ends_at: datetime | None = None,
        incident_id: str | None = None,
    ) -> AlertRow:
        """Record an alert; a re-sent alert (same fingerprint and start) updates its row."""
        async with self._conn(transaction=True) as conn:
            if incident_id is not None:
                await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                _ALERT_UPSERT + " RETURNING *",
                fingerprint,
                labels,
                annotations or {},
                starts_at,
                ends_at,
                status,
                incident_id,
            )
        return AlertRow.model_validate(dict(row))

    async def record_alerts(self, incident_id: str, alerts: Sequence[AlertIn]) -> int:
        """Record an incident's alerts, and open the incident row if it is new, in ONE
        transaction (one commit, not one per alert: a burst of incidents shares the pool)."""
        if not alerts:
            return 0
        async with self._conn(transaction=True) as conn:
            await _ensure_incident(conn, incident_id)
            await conn.executemany(
                _ALERT_UPSERT,
                [
                    (a.fingerprint, a.labels, a.annotations or {}, a.starts_at, a.ends_at, a.status, incident_id)
                    for a in alerts
                ],
            )
        return len(alerts)

    async def list_alerts(self, incident_id: str) -> list[AlertRow]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT * FROM alerts WHERE incident_id = $1 ORDER BY starts_at, id", incident_id)
        return [AlertRow.model_validate(dict(r)) for r in rows]

    # --- proposals and decisions -------------------------------------------------------------

    async def record_proposal(
        self,
        incident_id: str,
        proposal: Proposal,
        *,
        model: str = "",
        source: str = "llm",
        fallback: bool = False,
        redactions: Mapping[str, int] | None = None,
    ) -> ProposalRow:
        """`redactions`: items redacted from what was sent to the cloud for it, by kind (counts only)."""
        counts = {str(k): int(v) for k, v in (redactions or {}).items() if int(v) > 0}
        async with self._conn(transaction=True) as conn:
            await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                """
                INSERT INTO proposals (incident_id, model, source, summary, diagnosis, runbook_id, actions,
                                       confidence, risk, fallback, redactions)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                RETURNING *
                """,
                incident_id,
                model,
                source,
                proposal.summary,
                proposal.diagnosis,
                proposal.runbook_id,
                [a.model_dump(mode="json") for a in proposal.actions],
                proposal.confidence,
                proposal.risk.value,
                fallback,
                counts,
            )
        return ProposalRow.model_validate(dict(row))

    async def list_proposals(self, incident_id: str) -> list[ProposalRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM proposals WHERE incident_id = $1 ORDER BY created_at, id", incident_id
            )
        return [ProposalRow.model_validate(dict(r)) for r in rows]

    async def record_decision(
        self,
        incident_id: str | None,
        choice: DecisionChoice,
        *,
        proposal_id: int | None = None,
        approval_id: str | None = None,
        runbook_id: str | None = None,
        decided_by: str | None = None,
        plan_hash: str | None = None,
        arguments: Any = None,
        decided_at: datetime | None = None,
    ) -> DecisionRow:
        """Record a decision. Idempotent on `approval_id`: recording the same answer again returns
        the first row; a different answer to the same approval raises `ConflictError`.
        It does not touch runbook_stats: call `record_decision_stat` for that."""
        async with self._conn(transaction=True) as conn:
            if incident_id is not None:
                await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                """
                INSERT INTO decisions (incident_id, proposal_id, approval_id, runbook_id, choice, decided_by,
                                       plan_hash, arguments, decided_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now()))
                ON CONFLICT (approval_id) DO NOTHING
                RETURNING *
                """,
                incident_id,
                proposal_id,
                approval_id,
                runbook_id,
                choice,
                decided_by,
                plan_hash,
                arguments,
                decided_at,
            )
            if row is None:
                row = await conn.fetchrow("SELECT * FROM decisions WHERE approval_id = $1", approval_id)
                assert row is not None
                if row["choice"] != choice or row["plan_hash"] != plan_hash:
                    raise ConflictError(
                        f"approval {approval_id} was already answered {row['choice']!r}"
                        f" (plan {row['plan_hash']}); refusing {choice!r} (plan {plan_hash})"
                    )
        return DecisionRow.model_validate(dict(row))

    async def list_decisions(
        self, *, incident_id: str | None = None, runbook_id: str | None = None, limit: int = 100
    ) -> list[DecisionRow]:
        """Newest first, filtered by incident and/or runbook."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM decisions
                WHERE ($1::text IS NULL OR incident_id = $1) AND ($2::text IS NULL OR runbook_id = $2)
                ORDER BY decided_at DESC, id DESC
                LIMIT $3
                """,
                incident_id,
                runbook_id,
                limit,
            )
        return [DecisionRow.model_validate(dict(r)) for r in rows]

    # --- actions and outcomes ----------------------------------------------------------------

    async def start_action(
        self,
        incident_id: str,
        index: int,
        tool: str,
        arguments: dict[str, Any],
        idempotency_key: str,
    ) -> ActionRow:
        """Claim an action before running it.

        The first call inserts a `running` row (`existed=False`): go ahead and run the tool.
        Any later call with the same key returns the stored row with `existed=True` (maybe still
        `running` if a worker died mid-call): do not run the tool again blindly. A key reused for
        a different incident, index, tool or arguments raises `ConflictError`.
        """
        async with self._conn(transaction=True) as conn:
            await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                """
                INSERT INTO actions (incident_id, action_index, tool, arguments, idempotency_key)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING *
                """,
                incident_id,
                index,
                tool,
                arguments,
                idempotency_key,
            )
            if row is not None:
                return ActionRow.model_validate(dict(row))
            row = await conn.fetchrow("SELECT * FROM actions WHERE idempotency_key = $1", idempotency_key)
        assert row is not None
        existing = ActionRow.model_validate({**dict(row), "existed": True})
        mine = (incident_id, index, tool, _normalise(arguments))
        theirs = (existing.incident_id, existing.action_index, existing.tool, existing.arguments)
        if mine != theirs:
            raise ConflictError(
                f"idempotency key {idempotency_key!r} already belongs to action {existing.action_index} "
                f"({existing.tool}) of incident {existing.incident_id} with other arguments"
            )
        return existing

    async def finish_action(
        self,
        idempotency_key: str,
        status: ActionStatus,
        result: Any = None,
        error: str | None = None,
    ) -> ActionRow:
        """Close a running action. Finishing it again with the same status returns the stored row
        (the first result wins); with another status it raises `ConflictError`."""
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(
                """
                UPDATE actions SET status = $2, result = $3, error = $4, finished_at = now()
                WHERE idempotency_key = $1 AND status = 'running'
                RETURNING *
                """,
                idempotency_key,
                status,
                result,
                error,
            )
            if row is None:
                row = await conn.fetchrow("SELECT * FROM actions WHERE idempotency_key = $1", idempotency_key)
                if row is None:
                    raise NotFound(f"no action with idempotency key {idempotency_key!r}")
                if row["status"] != status:
                    raise ConflictError(
                        f"action {idempotency_key!r} already finished as {row['status']!r}; refusing {status!r}"
                    )
        return ActionRow.model_validate(dict(row))

    async def get_action(self, idempotency_key: str) -> ActionRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM actions WHERE idempotency_key = $1", idempotency_key)
        return ActionRow.model_validate(dict(row)) if row else None

    async def list_actions(self, incident_id: str) -> list[ActionRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM actions WHERE incident_id = $1 ORDER BY action_index, started_at, id", incident_id
            )
        return [ActionRow.model_validate(dict(r)) for r in rows]

    async def record_outcome(self, incident_id: str, result: OutcomeResult, detail: str = "") -> OutcomeRow:
        async with self._conn(transaction=True) as conn:
            await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                "INSERT INTO outcomes (incident_id, result, detail) VALUES ($1, $2, $3) RETURNING *",
                incident_id,
                result,
                detail,
            )
        return OutcomeRow.model_validate(dict(row))

    async def list_outcomes(self, incident_id: str) -> list[OutcomeRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM outcomes WHERE incident_id = $1 ORDER BY verified_at, id", incident_id
            )
        return [OutcomeRow.model_validate(dict(r)) for r in rows]

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

    # --- runbooks and trust ------------------------------------------------------------------

    async def upsert_runbook(self, runbook: Runbook, *, changed_by: str = "import") -> UpsertResult:
        """Add or update a runbook by content.

        The hash is recomputed (`Runbook.compute_hash`), so a stale `content_hash` cannot hide
        a change. "unchanged" when the hash and source match the stored ones. An update never
        touches `automation_level`: the level belongs to the trust record (`set_runbook_level`).
        A new runbook starts at `runbook.automation_level`, written to the level history.
        """
        content_hash = runbook.compute_hash()
        match = [m.model_dump(mode="json") for m in runbook.match]
        actions = [a.model_dump(mode="json") for a in runbook.actions]
        async with self._conn(transaction=True) as conn:
            current = await conn.fetchrow(
                "SELECT content_hash, source FROM runbooks WHERE id = $1 FOR UPDATE", runbook.id
            )
            if current is None:
                inserted = await conn.fetchval(
                    """
                    INSERT INTO runbooks (id, title, body, source, match, actions, automation_level, content_hash,
                                          allow_namespaces)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (id) DO NOTHING
                    RETURNING id
                    """,
                    runbook.id,
                    runbook.title,
                    runbook.body,
                    runbook.source,
                    match,
                    actions,
                    runbook.automation_level.value,
                    content_hash,
                    list(runbook.allow_namespaces),
                )
                if inserted is not None:
                    await conn.execute("INSERT INTO runbook_stats (runbook_id) VALUES ($1)", runbook.id)
                    await conn.execute(
                        """
                        INSERT INTO runbook_level_history (runbook_id, from_level, to_level, reason, changed_by)
                        VALUES ($1, NULL, $2, $3, $4)
                        """,
                        runbook.id,
                        runbook.automation_level.value,
                        f"added from {runbook.source}" if runbook.source else "added",
                        changed_by,
                    )
                    return "added"
                # Someone added it between our SELECT and INSERT: compare with theirs.
                current = await conn.fetchrow(
                    "SELECT content_hash, source FROM runbooks WHERE id = $1 FOR UPDATE", runbook.id
                )
                assert current is not None
            if current["content_hash"] == content_hash and current["source"] == runbook.source:
                return "unchanged"
            await conn.execute(
                """
                UPDATE runbooks SET title = $2, body = $3, source = $4, match = $5, actions = $6,
                                    content_hash = $7, allow_namespaces = $8, updated_at = now()
                WHERE id = $1
                """,
                runbook.id,
                runbook.title,
                runbook.body,
                runbook.source,
                match,
                actions,
                content_hash,
                list(runbook.allow_namespaces),
            )
            return "updated"

    async def get_runbook(self, runbook_id: str) -> RunbookRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM runbooks WHERE id = $1", runbook_id)
        return RunbookRow.model_validate(dict(row)) if row else None

    async def runbook_levels(self, runbook_ids: Sequence[str]) -> dict[str, AutomationLevel]:
        """The automation level of each known runbook among `runbook_ids`, in one query (recall
        needs only the levels, not the bodies)."""
        if not runbook_ids:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, automation_level FROM runbooks WHERE id = ANY($1::text[])", list(runbook_ids)
            )
        return {r["id"]: AutomationLevel(r["automation_level"]) for r in rows}

    async def list_runbooks(self, level: AutomationLevel | None = None) -> list[RunbookRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM runbooks WHERE $1::text IS NULL OR automation_level = $1 ORDER BY id",
                level.value if level is not None else None,
            )
        return [RunbookRow.model_validate(dict(r)) for r in rows]

    async def runbook_stats(self, runbook_id: str) -> RunbookStats | None:
        """The runbook's counters (zeros if none yet), or None if there is no such runbook."""
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM runbook_stats WHERE runbook_id = $1", runbook_id)
            if row is None:
                exists = await conn.fetchval("SELECT true FROM runbooks WHERE id = $1", runbook_id)
                return RunbookStats(runbook_id=runbook_id) if exists else None
        return RunbookStats.model_validate(dict(row))

    async def _bump(self, runbook_id: str, kind: str, assignments: str, event_key: str | None) -> RunbookStats:
        """Apply `assignments` (SQL over runbook_stats) once; once per `event_key` when given."""
        async with self._conn(transaction=True) as conn:
            exists = await conn.fetchval("SELECT true FROM runbooks WHERE id = $1 FOR SHARE", runbook_id)
            if not exists:
                raise NotFound(f"no runbook {runbook_id!r}")
            await conn.execute(
                "INSERT INTO runbook_stats (runbook_id) VALUES ($1) ON CONFLICT (runbook_id) DO NOTHING", runbook_id
            )
            fresh = True
            if event_key is not None:
                fresh = (
                    await conn.fetchval(
                        """
                        INSERT INTO runbook_stat_events (event_key, runbook_id, kind) VALUES ($1, $2, $3)
                        ON CONFLICT (event_key) DO NOTHING
                        RETURNING true
                        """,
                        event_key,
                        runbook_id,
                        kind,
                    )
                    is not None
                )
            if fresh:
                row = await conn.fetchrow(
                    f"UPDATE runbook_stats SET {assignments} WHERE runbook_id = $1 RETURNING *", runbook_id
                )
            else:
                row = await conn.fetchrow("SELECT * FROM runbook_stats WHERE runbook_id = $1", runbook_id)
        return RunbookStats.model_validate(dict(row))

    async def record_execution(self, runbook_id: str, success: bool, *, event_key: str | None = None) -> RunbookStats:
        """Count one execution of a runbook and its result. With `event_key`, counted at most once."""
        if success:
            sets = "executions = executions + 1, successes = successes + 1, last_executed_at = now(), "
            sets += "last_success_at = now()"
        else:
            sets = "executions = executions + 1, failures = failures + 1, last_executed_at = now(), "
            sets += "last_failure_at = now()"
        return await self._bump(runbook_id, "success" if success else "failure", sets, event_key)

    async def record_decision_stat(
        self, runbook_id: str, choice: DecisionChoice, *, event_key: str | None = None
    ) -> RunbookStats:
        """Count one human (or automatic) decision on a runbook. With `event_key`, at most once."""
        column = _CHOICE_COUNTER.get(choice)
        if column is None:
            raise LedgerIntegrityError(
                f"unknown decision choice {choice!r} (expected one of {sorted(_CHOICE_COUNTER)})"
            )
        return await self._bump(runbook_id, choice, f"{column} = {column} + 1", event_key)

    async def set_runbook_level(
        self,
        runbook_id: str,
        to_level: AutomationLevel,
        reason: str,
        changed_by: str,
        *,
        expected_from: AutomationLevel | None = None,
    ) -> LevelChange | None:
        """Change a runbook's level and write the history row in the same transaction.

        Returns None (and writes nothing) when the runbook is already at `to_level`.
        With `expected_from`, raises `ConflictError` if the level moved meanwhile (e.g. a failure
        demoted it while a promotion waited for a human).
        """
        async with self._conn(transaction=True) as conn:
            current = await conn.fetchval("SELECT automation_level FROM runbooks WHERE id = $1 FOR UPDATE", runbook_id)
            if current is None:
                raise NotFound(f"no runbook {runbook_id!r}")
            if expected_from is not None and current != expected_from:
                raise ConflictError(
                    f"runbook {runbook_id!r} is {current!r}, not {str(expected_from)!r}: level not changed"
                )
            if current == to_level:
                return None
            await conn.execute("UPDATE runbooks SET automation_level = $2 WHERE id = $1", runbook_id, to_level)
            row = await conn.fetchrow(
                """
                INSERT INTO runbook_level_history (runbook_id, from_level, to_level, reason, changed_by)
                VALUES ($1, $2, $3, $4, $5)
                RETURNING *
                """,
                runbook_id,
                current,
                to_level,
                reason,
                changed_by,
            )
        return LevelChange.model_validate(dict(row))

    async def level_history(self, runbook_id: str) -> list[LevelChange]:
        """Oldest first, starting with the level the runbook was added at."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM runbook_level_history WHERE runbook_id = $1 ORDER BY changed_at, id", runbook_id
            )
        return [LevelChange.model_validate(dict(r)) for r in rows]

    async def level_counts(self) -> dict[str, int]:
        """How many runbooks sit at each level; every level present, zero if none."""
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT automation_level, count(*) AS n FROM runbooks GROUP BY automation_level")
        counts = {level.value: 0 for level in AutomationLevel}
        counts.update({r["automation_level"]: int(r["n"]) for r in rows})
        return counts

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

    # --- Telegram (#4) -------------------------------------------------------------------------

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

    # --- earned autonomy (0003_autonomy.sql) -------------------------------------------------

    async def record_promotion_request(
        self,
        request_key: str,
        runbook_id: str,
        from_level: AutomationLevel,
        to_level: AutomationLevel,
        *,
        executions: int,
        workflow_id: str = "",
    ) -> PromotionRequestRow:
        """A promotion question asked; asking again with the same key returns the first row."""
        async with self._conn() as conn:
            await conn.execute(
                """
                INSERT INTO runbook_promotion_requests
                    (request_key, workflow_id, runbook_id, from_level, to_level, executions)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (request_key) DO NOTHING
                """,
                request_key,
                workflow_id,
                runbook_id,
                from_level.value,
                to_level.value,
                executions,
            )
            row = await conn.fetchrow("SELECT * FROM runbook_promotion_requests WHERE request_key = $1", request_key)
        return PromotionRequestRow.model_validate(dict(row))

    async def finish_promotion_request(
        self, request_key: str, status: PromotionStatus, *, decided_by: str | None, reason: str
    ) -> PromotionRequestRow:
        """The answer to a promotion question (idempotent: the first answer stays)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                UPDATE runbook_promotion_requests
                SET status = $2, decided_by = $3, reason = $4, decided_at = now()
                WHERE request_key = $1 AND status = 'pending'
                RETURNING *
                """,
                request_key,
                status,
                decided_by,
                reason,
            )
            if row is None:
                row = await conn.fetchrow(
                    "SELECT * FROM runbook_promotion_requests WHERE request_key = $1", request_key
                )
        if row is None:
            raise NotFound(f"no promotion request {request_key!r}")
        return PromotionRequestRow.model_validate(dict(row))

    async def promotion_requests(self, runbook_id: str) -> list[PromotionRequestRow]:
        """Every promotion question about a runbook, oldest first."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM runbook_promotion_requests WHERE runbook_id = $1 ORDER BY created_at, id", runbook_id
            )
        return [PromotionRequestRow.model_validate(dict(r)) for r in rows]

    async def runbook_period_stats(self, since: datetime, until: datetime) -> list[RunbookPeriodStats]:
        """Per runbook, the counted events in [since, until) (successes, failures, decisions)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT runbook_id,
                       count(*) FILTER (WHERE kind = 'success') AS successes,
                       count(*) FILTER (WHERE kind = 'failure') AS failures,
                       count(*) FILTER (WHERE kind = 'automatic') AS automatic,
                       count(*) FILTER (WHERE kind = 'approved') AS approvals,
                       count(*) FILTER (WHERE kind = 'ignored') AS ignores,
                       count(*) FILTER (WHERE kind = 'modified') AS modifications
                FROM runbook_stat_events
                WHERE created_at >= $1 AND created_at < $2
                GROUP BY runbook_id ORDER BY runbook_id
                """,
                since,
                until,
            )
        return [RunbookPeriodStats.model_validate(dict(r)) for r in rows]

    async def automated_actions(self, since: datetime, until: datetime) -> list[AutomatedAction]:
        """Every decision the agent took alone in [since, until), with the incident's outcome."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT d.incident_id, d.runbook_id, d.decided_at, i.title,
                       (SELECT o.result FROM outcomes o WHERE o.incident_id = d.incident_id
                        ORDER BY o.verified_at DESC, o.id DESC LIMIT 1) AS outcome
                FROM decisions d LEFT JOIN incidents i ON i.id = d.incident_id
                WHERE d.choice = 'automatic' AND d.decided_at >= $1 AND d.decided_at < $2
                ORDER BY d.decided_at, d.id
                """,
                since,
                until,
            )
        return [AutomatedAction.model_validate({**dict(r), "title": r["title"] or ""}) for r in rows]
