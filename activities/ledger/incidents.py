"""The ledger's incidents, their alerts, proposals and decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from activities.ledger.base import LedgerBase, _ensure_incident
from activities.ledger.db import (
    ConflictError,
)
from activities.ledger.models import (
    CLOSED_STATUSES,
    AlertRow,
    AlertStatus,
    DecisionChoice,
    DecisionRow,
    IncidentRow,
    IncidentStatus,
    ProposalRow,
)
from agentic_core.models import Proposal

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


class IncidentStore(LedgerBase):
    """The ledger's incidents, their alerts, proposals, decisions and outcomes. (a part of `Ledger`)."""

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
        severity: str | None = None,
        category: str | None = None,
    ) -> list[IncidentRow]:
        """Newest first; `status` may be one status or several; `severity`, `category`: only those."""
        statuses = None if status is None else [status] if isinstance(status, str) else list(status)
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM incidents
                WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
                  AND ($4::text IS NULL OR severity = $4)
                  AND ($5::text IS NULL OR category = $5)
                ORDER BY opened_at DESC, id
                LIMIT $2 OFFSET $3
                """,
                statuses,
                limit,
                offset,
                severity,
                category,
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
