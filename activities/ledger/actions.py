"""The ledger's actions (one row per idempotency key: the exactly-once claim) and outcomes."""

from __future__ import annotations

from typing import Any

from activities.ledger.base import LedgerBase, _ensure_agent_run, _ensure_incident, _normalise
from activities.ledger.db import (
    ConflictError,
    NotFound,
)
from activities.ledger.models import (
    ActionRow,
    ActionStatus,
    OutcomeResult,
    OutcomeRow,
)


class ActionStore(LedgerBase):
    """The ledger's actions (one row per idempotency key: the exactly-once claim) and outcomes. (a part of `Ledger`)."""

    # --- actions and outcomes ----------------------------------------------------------------

    async def start_action(
        self,
        incident_id: str,
        index: int,
        tool: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        *,
        agent_run: bool = False,
    ) -> ActionRow:
        """Claim an action before running it. `agent_run`: `incident_id` is an agent run's id
        (the action is the run's, `actions.run_id`; no incident row is made for it).

        The first call inserts a `running` row (`existed=False`): go ahead and run the tool.
        Any later call with the same key returns the stored row with `existed=True` (maybe still
        `running` if a worker died mid-call): do not run the tool again blindly. A key reused for
        a different incident, index, tool or arguments raises `ConflictError`.
        """
        async with self._conn(transaction=True) as conn:
            if agent_run:
                await _ensure_agent_run(conn, incident_id)
            else:
                await _ensure_incident(conn, incident_id)
            row = await conn.fetchrow(
                """
                INSERT INTO actions (incident_id, run_id, action_index, tool, arguments, idempotency_key)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING *
                """,
                None if agent_run else incident_id,
                incident_id if agent_run else None,
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
        theirs = (existing.subject, existing.action_index, existing.tool, existing.arguments)
        if mine != theirs:
            raise ConflictError(
                f"idempotency key {idempotency_key!r} already belongs to action {existing.action_index} "
                f"({existing.tool}) of {'agent run' if existing.run_id else 'incident'} {existing.subject} "
                "with other arguments"
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
        """The actions of an incident, or of an agent run (its id)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM actions WHERE incident_id = $1 OR run_id = $1 ORDER BY action_index, started_at, id",
                incident_id,
            )
        return [ActionRow.model_validate(dict(r)) for r in rows]

    async def running_actions(self, older_than_s: float, limit: int = 20) -> tuple[int, list[ActionRow]]:
        """Rows still `running` that were claimed more than `older_than_s` seconds ago (no execute
        lasts that long: the claim was left behind), oldest first: how many, and at most `limit`."""
        async with self._conn() as conn:
            where = "status = 'running' AND started_at < now() - make_interval(secs => $1)"
            count = await conn.fetchval(f"SELECT count(*) FROM actions WHERE {where}", older_than_s)
            rows = await conn.fetch(
                f"SELECT * FROM actions WHERE {where} ORDER BY started_at LIMIT $2", older_than_s, limit
            )
        return int(count), [ActionRow.model_validate(dict(r)) for r in rows]

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
