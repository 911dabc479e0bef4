"""The ledger's agent runs (one row per AgentWorkflow), their transcripts (one row per message)
and the blobs that hold large tool results (a part of `Ledger`). See 0007_agents.sql.

Every write an activity may retry is idempotent: a run is upserted on its id, a message inserted
once per key, a blob once per id. Large results stay here: readers take a bounded head of a blob
(`transcript(head=…)`, `read_blob(offset, limit)`), never the whole of it by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from activities.ledger.base import LedgerBase, _ensure_agent_run
from activities.ledger.db import NotFound
from activities.ledger.models import OPEN_AGENT_RUN_STATUSES, AgentRunRow, AgentRunStatus, MessageIn, MessageRow

MAX_READ_CHARS = 1_000_000  # one read of a blob, at most
# the open statuses as SQL, literally: the partial index agent_runs_open_idx (0014) serves the query
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_AGENT_RUN_STATUSES) + ")"


class AgentStore(LedgerBase):
    """Agent runs, transcripts and blobs (a part of `Ledger`)."""

    async def start_agent_run(
        self,
        run_id: str,
        *,
        request_id: str,
        request: str,
        requested_by: str,
        source: str,
        agent: str | None,
        route_method: str | None = None,
        route_score: float | None = None,
        incident_id: str | None = None,
        first_message: MessageIn | None = None,
    ) -> AgentRunRow:
        """Record (or complete a stub of) the run; a second call changes nothing that was set.
        With `first_message` (the request as the transcript's first message: role, step, key and
        text only), that message too, in the same statement: one round trip where `add_messages`
        after it took a transaction of its own (on the gateway's time-to-first-token path). A key
        already there is skipped, as in `add_messages`."""
        m = first_message
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """
                WITH run AS (
                INSERT INTO agent_runs (id, request_id, request, requested_by, source, agent, route_method,
                                        route_score, incident_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (id) DO UPDATE SET
                    request_id = CASE WHEN agent_runs.request_id = '' THEN EXCLUDED.request_id
                                      ELSE agent_runs.request_id END,
                    request = CASE WHEN agent_runs.request = '' THEN EXCLUDED.request ELSE agent_runs.request END,
                    requested_by = CASE WHEN agent_runs.requested_by = '' THEN EXCLUDED.requested_by
                                        ELSE agent_runs.requested_by END,
                    source = CASE WHEN agent_runs.source = '' THEN EXCLUDED.source ELSE agent_runs.source END,
                    agent = COALESCE(agent_runs.agent, EXCLUDED.agent),
                    route_method = COALESCE(agent_runs.route_method, EXCLUDED.route_method),
                    route_score = COALESCE(agent_runs.route_score, EXCLUDED.route_score),
                    incident_id = COALESCE(agent_runs.incident_id, EXCLUDED.incident_id)
                RETURNING *
                ), message AS (
                    INSERT INTO agent_messages (run_id, key, step, role, content)
                    SELECT run.id, $10::text, $11::integer, $12::text, $13::text FROM run WHERE $10::text IS NOT NULL
                    ON CONFLICT (key) DO NOTHING
                )
                SELECT * FROM run
                """,
                run_id,
                request_id,
                request,
                requested_by,
                source,
                agent,
                route_method,
                route_score,
                incident_id,
                m.key if m else None,
                m.step if m else 0,
                m.role if m else "user",
                m.content if m else "",
            )
        return AgentRunRow.model_validate(dict(row))

    async def finish_agent_run(
        self,
        run_id: str,
        status: AgentRunStatus,
        *,
        answer: str,
        limit_hit: str | None,
        steps: int,
        tool_calls: int,
    ) -> AgentRunRow:
        """Close the run (again: the same values, so a retried activity changes nothing)."""
        async with self._conn(transaction=True) as conn:
            await _ensure_agent_run(conn, run_id)
            row = await conn.fetchrow(
                """
                UPDATE agent_runs SET status = $2, answer = $3, limit_hit = $4, steps = $5, tool_calls = $6,
                       finished_at = COALESCE(finished_at, now())
                WHERE id = $1
                RETURNING *
                """,
                run_id,
                status,
                answer,
                limit_hit,
                steps,
                tool_calls,
            )
        return AgentRunRow.model_validate(dict(row))

    async def close_open_agent_run(
        self,
        run_id: str,
        status: AgentRunStatus,
        *,
        answer: str,
        finished_at: datetime | None = None,
        limit_hit: str | None = None,
        steps: int | None = None,
        tool_calls: int | None = None,
    ) -> AgentRunRow | None:
        """Close a row its run left open (the reconciler, `workers/agent_runs.py`): only while its
        status is still open, so a run that closed it meanwhile keeps its own ending. `None` for a
        counter or `limit_hit` keeps the row's. Returns the row as it is now (None: no such row)."""
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE agent_runs SET status = $2, answer = $3, finished_at = COALESCE($4, finished_at, now()),
                       limit_hit = COALESCE($5, limit_hit), steps = COALESCE($6, steps),
                       tool_calls = COALESCE($7, tool_calls), checked_at = now()
                WHERE id = $1 AND status IN {_OPEN_SQL}
                RETURNING *
                """,
                run_id,
                status,
                answer,
                finished_at,
                limit_hit,
                steps,
                tool_calls,
            )
            if row is None:
                row = await conn.fetchrow("SELECT * FROM agent_runs WHERE id = $1", run_id)
        return AgentRunRow.model_validate(dict(row)) if row else None

    async def close_orphaned_agent_actions(self, *, started_before_s: float, limit: int = 100) -> list[tuple[str, str]]:
        """Close the action rows still `running` whose agent run has ended (terminated, cancelled or
        failed while a write ran: nothing will record their outcome now) and that started more than
        `started_before_s` ago (longer than the write's own timeout, so an activity still finishing
        records its result first): `failed`, outcome unknown, the run's ending named. Returns
        (idempotency key, the run's status) of each row closed, at most `limit` a call."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""
                UPDATE actions a
                SET status = 'failed', finished_at = now(),
                    error = 'outcome unknown: the agent run ended (' || r.status || ') while this action ran, '
                            || 'and nothing recorded its result; it was not retried'
                FROM agent_runs r
                WHERE a.id IN (
                    SELECT a2.id FROM actions a2 JOIN agent_runs r2 ON r2.id = a2.run_id
                    WHERE a2.status = 'running' AND r2.status NOT IN {_OPEN_SQL}
                      AND a2.started_at < now() - make_interval(secs => $1)
                    ORDER BY a2.started_at LIMIT $2
                ) AND r.id = a.run_id AND a.status = 'running'
                RETURNING a.idempotency_key, r.status
                """,
                started_before_s,
                limit,
            )
        return [(row["idempotency_key"], row["status"]) for row in rows]

    async def open_agent_runs(self, *, limit: int) -> list[AgentRunRow]:
        """Open rows (`routing`, `running`, `awaiting_approval`), the ones looked at longest ago (or
        never) first: a bounded reconcile pass reaches each in turn."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""
                SELECT * FROM agent_runs WHERE status IN {_OPEN_SQL}
                ORDER BY checked_at NULLS FIRST, started_at, id LIMIT $1
                """,
                max(0, limit),
            )
        return [AgentRunRow.model_validate(dict(r)) for r in rows]

    async def mark_agent_runs_checked(self, run_ids: list[str]) -> None:
        """The reconciler found these rows' runs still running."""
        if not run_ids:
            return
        async with self._conn() as conn:
            await conn.execute("UPDATE agent_runs SET checked_at = now() WHERE id = ANY($1::text[])", run_ids)

    async def set_agent_run_status(self, run_id: str, status: AgentRunStatus) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE agent_runs SET status = $2 WHERE id = $1 AND finished_at IS NULL", run_id, status
            )

    async def get_agent_run(self, run_id: str) -> AgentRunRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM agent_runs WHERE id = $1", run_id)
        return AgentRunRow.model_validate(dict(row)) if row else None

    async def list_agent_runs(self, *, limit: int = 50) -> list[AgentRunRow]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT * FROM agent_runs ORDER BY started_at DESC, id LIMIT $1", limit)
        return [AgentRunRow.model_validate(dict(r)) for r in rows]

    # --- blobs --------------------------------------------------------------------------------

    async def put_blob(self, blob_id: str, run_id: str, content: str) -> int:
        """Store `content` under `blob_id` (once: a second put keeps the first); returns its size
        in characters."""
        async with self._conn(transaction=True) as conn:
            await _ensure_agent_run(conn, run_id)
            size = await conn.fetchval(
                """
                INSERT INTO agent_blobs (id, run_id, size, content) VALUES ($1, $2, $3, $4)
                ON CONFLICT (id) DO NOTHING
                RETURNING size
                """,
                blob_id,
                run_id,
                len(content),
                content,
            )
            if size is None:
                size = await conn.fetchval("SELECT size FROM agent_blobs WHERE id = $1", blob_id)
        return int(size)

    async def read_blob(self, blob_id: str, *, offset: int = 0, limit: int = MAX_READ_CHARS) -> tuple[str, int]:
        """`limit` characters of the blob from `offset` (0-based), and its whole size."""
        limit = max(0, min(limit, MAX_READ_CHARS))
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT substr(content, $2, $3) AS part, size FROM agent_blobs WHERE id = $1",
                blob_id,
                max(0, offset) + 1,
                limit,
            )
        if row is None:
            raise NotFound(f"no stored result {blob_id!r}")
        return str(row["part"]), int(row["size"])

    # --- the transcript -----------------------------------------------------------------------

    async def add_messages(self, run_id: str, messages: list[MessageIn]) -> int:
        """Append messages to the run's transcript in order; a key already there is skipped.
        Returns how many were added."""
        if not messages:
            return 0
        added = 0
        async with self._conn(transaction=True) as conn:
            await _ensure_agent_run(conn, run_id)
            for m in messages:
                status = await conn.execute(
                    """
                    INSERT INTO agent_messages (run_id, key, step, role, content, blob_id, tool_calls, tool_call_id,
                                                tool_name, arguments, status, model, tokens_in, tokens_out)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                    ON CONFLICT (key) DO NOTHING
                    """,
                    run_id,
                    m.key,
                    m.step,
                    m.role,
                    m.content,
                    m.blob_id,
                    m.tool_calls,
                    m.tool_call_id,
                    m.tool_name,
                    m.arguments,
                    m.status,
                    m.model,
                    m.tokens_in,
                    m.tokens_out,
                )
                added += int(status.rsplit(" ", 1)[-1])
        return added

    async def get_message(self, key: str) -> MessageRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT m.*, NULL::integer AS blob_size FROM agent_messages m WHERE key = $1", key
            )
        return MessageRow.model_validate(dict(row)) if row else None

    async def transcript(self, run_id: str, *, head: int = 8_000) -> list[MessageRow]:
        """The run's messages in order. A message whose text is a blob carries the blob's first
        `head` characters as its content (and `blob_size`): a 5 MB result never leaves the database
        whole."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                SELECT m.id, m.run_id, m.key, m.step, m.role, m.blob_id, m.tool_calls, m.tool_call_id, m.tool_name,
                       m.arguments, m.status, m.model, m.tokens_in, m.tokens_out, m.created_at,
                       CASE WHEN b.id IS NULL THEN m.content ELSE left(b.content, $2) END AS content,
                       b.size AS blob_size
                FROM agent_messages m LEFT JOIN agent_blobs b ON b.id = m.blob_id
                WHERE m.run_id = $1
                ORDER BY m.id
                """,
                run_id,
                max(0, head),
            )
        return [MessageRow.model_validate(dict(r)) for r in rows]

    async def agent_stats(self) -> dict[str, Any]:
        """Runs by status (for reports and checks)."""
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM agent_runs GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}
