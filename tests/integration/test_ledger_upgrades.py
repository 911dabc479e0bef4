"""Upgrades of the ledger: migrations go forward from every earlier version's schema with the rows
intact, and a ledger newer than the code is refused (`migrate`, `check_schema`, the worker process)
with one clear line. Against a real PostgreSQL 16 (pgserver), started once for this module."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pgserver
import pytest

from activities.ledger.db import (
    Migration,
    SchemaTooNewError,
    check_schema,
    connect,
    current_version,
    list_migrations,
    migrate,
)
from activities.ledger.repository import Ledger
from tests.support.env import REPO, free_port
from tests.support.pg import pg_server

# Representative rows, keyed by the migration that introduced their table: each is inserted into
# a ledger at the schema of its version (or later) and must read back the same after the upgrade.
SEEDS: dict[str, list[str]] = {
    "0001": [
        "INSERT INTO incidents (id, group_key, status, severity, title) VALUES"
        " ('inc-1', 'g1', 'awaiting_approval', 'warning', 'Disk full'), ('inc-2', 'g2', 'resolved', 'critical', 'OOM')",
        "INSERT INTO alerts (fingerprint, labels, starts_at, status, incident_id) VALUES"
        " ('fp1', '{\"alertname\": \"DiskFull\"}', '2026-01-01T00:00:00Z', 'firing', 'inc-1')",
        "INSERT INTO proposals (incident_id, summary, actions, confidence, risk) VALUES"
        " ('inc-2', 'restart it', '[{\"tool\": \"rollout_restart\"}]', 0.8, 'low')",
        "INSERT INTO decisions (incident_id, approval_id, runbook_id, choice, decided_by) VALUES"
        " ('inc-2', 'appr-2', 'rb-1', 'approved', 'alice')",
        "INSERT INTO actions (incident_id, action_index, tool, idempotency_key, status, finished_at) VALUES"
        " ('inc-2', 0, 'rollout_restart', 'inc-2/0', 'succeeded', now())",
        "INSERT INTO outcomes (incident_id, result, detail) VALUES ('inc-2', 'success', 'healthy again')",
        "INSERT INTO notifications (incident_id, channel, target, message_id, kind) VALUES"
        " ('inc-1', 'telegram', '42', '7', 'question')",
        "INSERT INTO runbooks (id, title, body, match, actions, automation_level, content_hash) VALUES"
        " ('rb-1', 'Restart', 'Restart it.', '[\"alertname=OOM\"]', '[]', 'prompted', 'h1')",
        "INSERT INTO runbook_stats (runbook_id, executions, successes, approvals) VALUES ('rb-1', 3, 2, 3)",
        "INSERT INTO runbook_level_history (runbook_id, from_level, to_level) VALUES ('rb-1', 'manual', 'prompted')",
        "INSERT INTO kv (key, value) VALUES ('telegram.offset', '17')",
    ],
    "0003": [
        "INSERT INTO runbook_promotion_requests (request_key, runbook_id, from_level, to_level) VALUES"
        " ('run-1', 'rb-1', 'prompted', 'standard')",
    ],
    "0004": ["UPDATE proposals SET redactions = '{\"secrets\": 1}'"],
    "0005": [
        "INSERT INTO decisions (incident_id, approval_id, choice, decided_by) VALUES"
        " ('inc-1', 'appr-1b', 'acknowledged', 'bob')"
    ],
    "0006": ["UPDATE runbooks SET allow_namespaces = '[\"media\"]'"],
    "0007": [
        "INSERT INTO agent_runs (id, request, status) VALUES ('agent-1', 'why is it slow', 'done')",
        "INSERT INTO agent_messages (run_id, key, step, role, content) VALUES ('agent-1', 'k1', 0, 'user', 'hi')",
    ],
    "0008": ['UPDATE runbooks SET evidence = \'[{"tool": "get_logs"}]\''],
    "0009": ["INSERT INTO guardrail_events (key, kind, subject) VALUES ('g-1', 'limit', 'agent-1')"],
    "0010": [
        "INSERT INTO api_keys (name, prefix, key_hash, agents) VALUES ('ops', 'abc123', '\\x00ff'::bytea, '{web}')",
        "INSERT INTO gateway_audit (key_name, method, path, status) VALUES ('ops', 'POST', '/v1/models', 200)",
    ],
    "0012": [
        "UPDATE runbook_stats SET infra_errors = 1",
        "INSERT INTO outcomes (incident_id, result, detail) VALUES ('inc-1', 'error', 'tool server unreachable')",
    ],
    "0013": [
        "INSERT INTO weekly_digests (week, digest, chart_png, markdown) VALUES"
        " ('2026-W10', '{\"week\": \"2026-W10\"}', '\\x89504e47'::bytea, '# Weekly digest 2026-W10')",
    ],
    "0014": [
        "INSERT INTO agent_runs (id, request, status, answer, checked_at) VALUES ('agent-2', 'stop it', 'cancelled',"
        " 'Cancelled after 1 model turn(s) (from outside the run); it did not finish.', now())",
    ],
}


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-upgrades-pg-")


@pytest.fixture
async def fresh_dsn(pg: pgserver.PostgresServer) -> AsyncIterator[str]:
    name = f"u_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.get_uri())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg.get_uri(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _snapshot(conn: asyncpg.Connection, tables: list[str]) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = {}
    for t in tables:
        rows = await conn.fetch(f"SELECT * FROM {t} ORDER BY 1")
        out[t] = [tuple(r.values()) for r in rows]
    return out


def _tables_of(sql: list[str]) -> list[str]:
    names: list[str] = []
    for stmt in sql:
        words = stmt.split()
        name = words[2] if words[0] == "INSERT" else words[1]
        if name not in names:
            names.append(name)
    return names


def test_every_seeded_migration_is_shipped() -> None:
    """The seeds keep up with the migrations: a new migration gets its representative rows here."""
    shipped = [m.version for m in list_migrations()]
    missing = sorted(set(shipped) - set(SEEDS))
    assert not missing, f"add representative rows (or an UPDATE) for migrations {missing} to SEEDS"
    assert set(SEEDS) <= set(shipped)


@pytest.mark.parametrize("upto", [m.version for m in list_migrations()])
async def test_migrates_forward_from_every_earlier_schema(fresh_dsn: str, upto: str) -> None:
    """A ledger at schema `upto` with rows of every table it has: `migrate()` brings it to the
    newest schema, and every row reads back as before (columns added since have their defaults)."""
    shipped = list_migrations()
    earlier = [m for m in shipped if m.version <= upto]
    conn = await connect(fresh_dsn)
    try:
        assert await migrate(conn, migrations=earlier) == [m.version for m in earlier]
        seeds = [stmt for v, stmts in sorted(SEEDS.items()) if v <= upto for stmt in stmts]
        for stmt in seeds:
            await conn.execute(stmt)
        tables = _tables_of(seeds)
        before = await _snapshot(conn, tables)

        applied = await migrate(conn)
        assert applied == [m.version for m in shipped if m.version > upto]
        assert await current_version(conn) == shipped[-1].version
        after = await _snapshot(conn, tables)
        for t in tables:  # new columns come last: the old ones are a prefix of each row
            assert [row[: len(old)] for row, old in zip(after[t], before[t], strict=True)] == before[t], t
    finally:
        await conn.close()
    # the repository reads the upgraded rows
    led = await Ledger.connect(fresh_dsn, max_size=2)
    try:
        inc = await led.get_incident("inc-1")
        assert inc is not None and inc.status == "awaiting_approval"
        assert [r.id for r in await led.list_runbooks()] == ["rb-1"]
    finally:
        await led.close()


async def test_runs_closed_failed_for_a_cancellation_say_cancelled_after_0014(fresh_dsn: str) -> None:
    """Before 0014 the ledger had no `cancelled` status: a run cancelled from outside closed its row
    `failed`, its answer saying it was cancelled (RUN_CANCEL_PATCH). The upgrade makes those rows
    `cancelled`, and only those: a run that failed, or a model's answer that happens to begin so,
    stays as it was."""
    conn = await connect(fresh_dsn)
    try:
        await migrate(conn, migrations=[m for m in list_migrations() if m.version <= "0013"])
        rows = {
            "agent-c1": ("failed", "Cancelled while it waited for an answer to agent-c1-approval-1-0 (from outside the "
                         "run); it did not finish."),
            "agent-c2": ("failed", "Cancelled after 2 model turn(s): wrong cluster; it did not finish.\n\n"
                         "Trimmed by a limit.\n- context"),
            "agent-f1": ("failed", "the run could not go on: Cancelled while it waited for an answer to x"),
            "agent-d1": ("done", "Cancelled after 3 model turn(s) is what the job log says."),
            "agent-r1": ("running", ""),
        }  # fmt: skip
        for rid, (status, answer) in rows.items():
            await conn.execute("INSERT INTO agent_runs (id, status, answer) VALUES ($1, $2, $3)", rid, status, answer)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE agent_runs SET status = 'cancelled' WHERE id = 'agent-r1'")
        await migrate(conn)
        now = {
            r["id"]: (r["status"], r["answer"]) for r in await conn.fetch("SELECT id, status, answer FROM agent_runs")
        }
        assert {k: v[0] for k, v in now.items()} == {
            "agent-c1": "cancelled",
            "agent-c2": "cancelled",
            "agent-f1": "failed",
            "agent-d1": "done",
            "agent-r1": "running",
        }
        assert {k: v[1] for k, v in now.items()} == {k: v[1] for k, v in rows.items()}  # the answers as they were
        await conn.execute("UPDATE agent_runs SET status = 'cancelled' WHERE id = 'agent-r1'")  # allowed now
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE agent_runs SET status = 'aborted' WHERE id = 'agent-r1'")
    finally:
        await conn.close()


FUTURE = Migration.from_text("9999", "from_the_future", "CREATE TABLE future_things (id int);")


async def test_a_ledger_newer_than_the_code_is_refused(fresh_dsn: str) -> None:
    conn = await connect(fresh_dsn)
    try:
        await migrate(conn, migrations=[*list_migrations(), FUTURE])
        newest = list_migrations()[-1].version
        expected = f"the ledger's schema is version 9999, this agentic understands up to {newest}: upgrade agentic"
        with pytest.raises(SchemaTooNewError, match=expected):
            await migrate(conn)
        with pytest.raises(SchemaTooNewError, match=expected):
            await check_schema(conn)
        assert await check_schema(conn, migrations=[*list_migrations(), FUTURE]) == "9999"
    finally:
        await conn.close()


async def test_the_worker_refuses_to_start_on_a_newer_ledger(fresh_dsn: str, tmp_path: object) -> None:
    """`python -m workers.worker` (what `agentic up` and the chart run) exits 2 with one line,
    before it connects to Temporal or takes any work."""
    conn = await connect(fresh_dsn)
    try:
        await migrate(conn, migrations=[*list_migrations(), FUTURE])
    finally:
        await conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_POSTGRES_DSN=fresh_dsn,
        AGENTIC_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",  # nothing listens: never reached
        AGENTIC_DATA_DIR=str(tmp_path),
        PYTHONPATH=str(REPO),
    )
    res = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    newest = list_migrations()[-1].version
    assert f"error: the ledger's schema is version 9999, this agentic understands up to {newest}" in res.stderr
    assert "upgrade agentic" in res.stderr and "Traceback" not in res.stderr
