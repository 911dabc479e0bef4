"""The ledger's runbooks and their trust: records, counters, levels and their history, promotion
requests, and the period figures reports read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from activities.ledger.base import LedgerBase
from activities.ledger.db import (
    ConflictError,
    LedgerIntegrityError,
    NotFound,
)
from activities.ledger.models import (
    AutomatedAction,
    DecisionChoice,
    LevelChange,
    PromotionRequestRow,
    PromotionStatus,
    RunbookPeriodStats,
    RunbookRow,
    RunbookStats,
    UpsertResult,
)
from agentic_core.models import AutomationLevel, Runbook

# Which runbook_stats counter each decision choice bumps.
_CHOICE_COUNTER: dict[str, str] = {
    "approved": "approvals",
    "ignored": "ignores",
    "modified": "modifications",
    "expired": "expirations",
    "automatic": "automatic_decisions",
}


class RunbookStore(LedgerBase):
    """Runbooks and their trust, a part of `Ledger`."""

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
        evidence = [e.model_dump(mode="json") for e in runbook.evidence]
        async with self._conn(transaction=True) as conn:
            current = await conn.fetchrow(
                "SELECT content_hash, source FROM runbooks WHERE id = $1 FOR UPDATE", runbook.id
            )
            if current is None:
                inserted = await conn.fetchval(
                    """
                    INSERT INTO runbooks (id, title, body, source, match, actions, automation_level, content_hash,
                                          allow_namespaces, evidence)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
                    evidence,
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
                                    content_hash = $7, allow_namespaces = $8, evidence = $9, updated_at = now()
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
                evidence,
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

    async def all_runbook_stats(self) -> list[tuple[AutomationLevel, RunbookStats]]:
        """Every runbook's level and counters (zeros if none yet), by id (`agentic runbooks stats`)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT r.id AS rid, r.automation_level AS level, s.*
                FROM runbooks r LEFT JOIN runbook_stats s ON s.runbook_id = r.id
                ORDER BY r.id
                """
            )
        out: list[tuple[AutomationLevel, RunbookStats]] = []
        for r in rows:
            counters = {k: v for k, v in dict(r).items() if k not in ("rid", "level", "runbook_id") and v is not None}
            out.append((AutomationLevel(r["level"]), RunbookStats.model_validate({**counters, "runbook_id": r["rid"]})))
        return out

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

    async def record_infra_error(self, runbook_id: str, *, event_key: str | None = None) -> RunbookStats:
        """Count one run of the runbook's plan that the platform could not carry out (its tool
        server unreachable or timed out): not an execution and not a failure of its remedy, so the
        trust policy never sees it. With `event_key`, counted at most once (migration 0012)."""
        return await self._bump(runbook_id, "error", "infra_errors = infra_errors + 1", event_key)

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
