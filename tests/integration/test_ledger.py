"""The ledger against a real PostgreSQL 16 (pgserver), started once for this module."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pgserver
import pytest

from activities.ledger.db import (
    ConflictError,
    LedgerIntegrityError,
    LedgerUnavailable,
    Migration,
    MigrationChecksumError,
    MigrationError,
    NotFound,
    connect,
    create_pool,
    current_version,
    list_migrations,
    mark_stateful,
    migrate,
)
from activities.ledger.models import MessageIn
from activities.ledger.repository import Ledger
from agentic_core.models import AutomationLevel, Proposal, Risk, Runbook, ToolCall
from tests.support.pg import ledger_on, pg_server

EXPECTED_TABLES = {
    "schema_migrations",
    "alerts",
    "incidents",
    "proposals",
    "decisions",
    "actions",
    "outcomes",
    "notifications",
    "runbooks",
    "runbook_stats",
    "runbook_stat_events",
    "runbook_level_history",
    "kv",
    "weekly_digests",
}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-ledger-pg-")


@pytest.fixture
async def fresh_dsn(pg: pgserver.PostgresServer) -> AsyncIterator[str]:
    """A DSN for a new, empty database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.get_uri())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg.get_uri(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    """One migrated database shared by the repository tests (they use unique ids)."""
    async with ledger_on(pg, "ledger_shared", max_size=8) as led:
        yield led


def make_runbook(rid: str, **changes: object) -> Runbook:
    base: dict[str, object] = {
        "id": rid,
        "title": "Restart a crash-looping deployment",
        "body": "Check the logs first.",
        "source": "runbooks/crashloop.md",
        "match": ["alertname=KubePodCrashLooping", "namespace=~prod-.*"],
        "actions": [{"tool": "kubernetes.restart_deployment", "arguments": {"name": "{{ labels.deployment }}"}}],
    }
    base.update(changes)
    return Runbook.model_validate(base)


# --- migrations --------------------------------------------------------------------------------


async def test_migrations_apply_on_empty_db_then_nothing(fresh_dsn: str) -> None:
    shipped = list_migrations()
    assert shipped and shipped[0].version == "0001"
    conn = await connect(fresh_dsn)
    try:
        assert await current_version(conn) is None
        assert await migrate(conn) == [m.version for m in shipped]
        assert await current_version(conn) == shipped[-1].version
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
            (m.version, m.name, m.checksum) for m in shipped
        ]
        assert all(r["applied_at"] is not None for r in rows)
    finally:
        await conn.close()


async def test_every_table_exists(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn)
    try:
        await migrate(pool)
        names = {
            r["table_name"]
            for r in await pool.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        }
    finally:
        await pool.close()
    assert names >= EXPECTED_TABLES, EXPECTED_TABLES - names


async def test_changed_checksum_is_detected(fresh_dsn: str) -> None:
    conn = await connect(fresh_dsn)
    try:
        await migrate(conn)
        first = list_migrations()[0]
        edited = Migration.from_text(first.version, first.name, first.sql + "\n-- an innocent edit\n")
        with pytest.raises(MigrationChecksumError, match=rf"{first.version}_{first.name}.*must not change"):
            await migrate(conn, migrations=[edited])
        # Line endings alone do not count as a change.
        crlf = Migration.from_text(first.version, first.name, first.sql.replace("\n", "\r\n"))
        assert await migrate(conn, migrations=[crlf, *list_migrations()[1:]]) == []
    finally:
        await conn.close()


async def test_later_migrations_apply_in_order_and_a_failing_one_rolls_back(fresh_dsn: str) -> None:
    shipped = list_migrations()
    extra = [
        Migration.from_text("9001", "add_widgets", "CREATE TABLE widgets (id int PRIMARY KEY);"),
        Migration.from_text("9002", "broken", "CREATE TABLE gadgets (id int); SELECT no_such_function();"),
    ]
    conn = await connect(fresh_dsn)
    try:
        with pytest.raises(MigrationError, match="9002_broken failed"):
            await migrate(conn, migrations=[*shipped, *extra])
        assert await current_version(conn) == "9001"
        assert await conn.fetchval("SELECT to_regclass('widgets') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('gadgets') IS NOT NULL")  # rolled back
        # The lock was released on failure: a fixed list applies.
        assert await migrate(conn, migrations=[*shipped, extra[0]]) == []
    finally:
        await conn.close()


async def test_concurrent_migrate_is_safe(fresh_dsn: str) -> None:
    conns = [await connect(fresh_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        versions = [m.version for m in list_migrations()]
        assert sorted(results, key=len, reverse=True) == [versions, [], [], []]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(versions)
    finally:
        for c in conns:
            await c.close()


async def test_migrate_waits_for_the_advisory_lock(fresh_dsn: str) -> None:
    from activities.ledger.db import MIGRATION_LOCK_KEY

    holder, other = await connect(fresh_dsn), await connect(fresh_dsn)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
        with pytest.raises(MigrationError, match="migration lock"):
            await migrate(other, lock_timeout=0.3)
        assert await current_version(other) is None  # it did nothing while waiting
        await holder.fetchval("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        assert await migrate(other, lock_timeout=5) != []
    finally:
        await holder.close()
        await other.close()


async def test_unreachable_server_gives_one_clean_line(port: int) -> None:
    with pytest.raises(LedgerUnavailable) as info:
        await create_pool(f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/ledger", connect_timeout=5)
    message = str(info.value)
    assert message == f"cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused"
    assert "s3cret-pw" not in message and "\n" not in message

    with pytest.raises(LedgerUnavailable, match=r"unix socket /nonexistent/sock/\.s\.PGSQL\.5432"):
        await create_pool("postgresql://alice:s3cret-pw@/ledger?host=/nonexistent/sock", connect_timeout=5)


async def test_jsonb_round_trips_as_python_objects(ledger: Ledger) -> None:
    value = {"a": [1, 2.5, None, "x"], "nested": {"ok": True}}
    assert await ledger.pool.fetchval("SELECT $1::jsonb", value) == value


# --- incidents, alerts, proposals, decisions ---------------------------------------------------


async def test_incident_round_trip_and_closing(ledger: Ledger) -> None:
    iid = uid("inc")
    created = await ledger.upsert_incident(
        iid, group_key="g1", severity="critical", category="workload", title="Pods crash-looping"
    )
    assert (created.status, created.closed_at, created.title) == ("open", None, "Pods crash-looping")
    assert await ledger.get_incident(iid) == created

    resolved = await ledger.upsert_incident(iid, status="resolved")
    assert resolved.status == "resolved" and resolved.closed_at is not None
    assert (resolved.title, resolved.severity, resolved.group_key) == ("Pods crash-looping", "critical", "g1")
    assert resolved.updated_at >= created.updated_at

    again = await ledger.upsert_incident(iid, status="closed")
    assert again.closed_at == resolved.closed_at  # closing twice keeps the first time
    reopened = await ledger.upsert_incident(iid, status="open")
    assert reopened.closed_at is None

    assert await ledger.get_incident(uid("nope")) is None
    listed = await ledger.list_incidents(status=["open"], limit=1000)
    assert iid in {i.id for i in listed} and all(i.status == "open" for i in listed)
    assert iid not in {i.id for i in await ledger.list_incidents(status="resolved", limit=1000)}


async def test_alerts_dedupe_and_may_arrive_before_the_incident(ledger: Ledger) -> None:
    iid, fp = uid("inc"), uid("fp")
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = await ledger.record_alert(
        fp,
        starts_at=start,
        labels={"alertname": "X", "namespace": "prod"},
        annotations={"summary": "s"},
        incident_id=iid,
    )
    stub = await ledger.get_incident(iid)
    assert stub is not None and stub.status == "open"  # created so the FK holds

    resolved = await ledger.record_alert(
        fp,
        starts_at=start,
        labels={"alertname": "X", "namespace": "prod"},
        status="resolved",
        ends_at=start + timedelta(minutes=5),
    )
    assert resolved.id == first.id and resolved.status == "resolved"
    assert resolved.incident_id == iid  # kept when not given again
    assert resolved.ends_at == start + timedelta(minutes=5)
    alerts = await ledger.list_alerts(iid)
    assert [a.id for a in alerts] == [first.id]
    assert alerts[0].labels == {"alertname": "X", "namespace": "prod"}

    filled = await ledger.upsert_incident(iid, title="X in prod", group_key=fp)
    assert filled.title == "X in prod" and filled.opened_at == stub.opened_at


async def test_record_alerts_writes_a_batch_in_one_transaction(ledger: Ledger) -> None:
    from agentic_core.alerts import Alert, AlertStatus

    iid = uid("inc")
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    batch = [
        Alert(fingerprint=uid("fp"), status=AlertStatus.FIRING, labels={"alertname": "X", "i": str(i)}, starts_at=start)
        for i in range(5)
    ]
    assert await ledger.record_alerts(iid, []) == 0
    assert await ledger.get_incident(iid) is None  # an empty batch opens nothing
    assert await ledger.record_alerts(iid, batch) == 5
    assert (await ledger.get_incident(iid)) is not None
    # the same batch again (a retried activity), one of them now resolved: updated, not doubled
    batch[0] = batch[0].model_copy(update={"status": AlertStatus.RESOLVED, "ends_at": start + timedelta(minutes=1)})
    assert await ledger.record_alerts(iid, batch) == 5
    rows = await ledger.list_alerts(iid)
    assert len(rows) == 5
    assert {r.fingerprint: r.status for r in rows}[batch[0].fingerprint] == "resolved"
    # one bad row (a NUL byte PostgreSQL refuses in text) fails the whole batch: nothing half-written
    bad_iid = uid("inc")
    bad = [
        Alert(fingerprint=uid("fp"), status=AlertStatus.FIRING, labels={}, starts_at=start),
        Alert(fingerprint="bad\x00fp", status=AlertStatus.FIRING, labels={}, starts_at=start),
    ]
    with pytest.raises(Exception):  # noqa: B017 - asyncpg's error type for NUL bytes varies
        await ledger.record_alerts(bad_iid, bad)
    assert await ledger.list_alerts(bad_iid) == []
    assert await ledger.get_incident(bad_iid) is None


async def test_proposal_round_trip(ledger: Ledger) -> None:
    iid = uid("inc")
    proposal = Proposal(
        summary="Pod api-7f crash-looping",
        diagnosis="OOMKilled after the last deploy.",
        runbook_id="crashloop",
        actions=[ToolCall(tool="kubernetes.restart_deployment", arguments={"name": "api", "ns": "prod"})],
        confidence=0.82,
        risk=Risk.LOW,
    )
    row = await ledger.record_proposal(iid, proposal, model="smollm2", source="llm", fallback=True)
    assert row.to_proposal() == proposal
    assert (row.model, row.source, row.fallback, row.incident_id) == ("smollm2", "llm", True, iid)
    assert await ledger.list_proposals(iid) == [row]


async def test_decision_is_idempotent_on_approval_id(ledger: Ledger) -> None:
    iid, approval = uid("inc"), uid("appr")
    prop = await ledger.record_proposal(iid, Proposal(summary="s", diagnosis="d", confidence=0.5))
    first = await ledger.record_decision(
        iid,
        "modified",
        proposal_id=prop.id,
        approval_id=approval,
        runbook_id="rb",
        decided_by="tg:42",
        plan_hash="h1",
        arguments={"replicas": 3},
    )
    assert (first.choice, first.arguments, first.proposal_id) == ("modified", {"replicas": 3}, prop.id)
    again = await ledger.record_decision(iid, "modified", approval_id=approval, plan_hash="h1")
    assert again.id == first.id
    with pytest.raises(ConflictError, match="already answered"):
        await ledger.record_decision(iid, "approved", approval_id=approval, plan_hash="h1")
    assert [d.id for d in await ledger.list_decisions(incident_id=iid)] == [first.id]
    assert first.id in {d.id for d in await ledger.list_decisions(runbook_id="rb")}

    # Without an approval id (automatic), every call is a new decision.
    auto1 = await ledger.record_decision(iid, "automatic")
    auto2 = await ledger.record_decision(iid, "automatic")
    assert auto1.id != auto2.id


# --- actions and outcomes ------------------------------------------------------------------------


async def test_start_action_is_idempotent_on_the_key(ledger: Ledger) -> None:
    iid, key = uid("inc"), uid("key")
    args = {"name": "api", "namespace": "prod"}
    first = await ledger.start_action(iid, 0, "kubernetes.restart_deployment", args, key)
    assert first.existed is False and first.status == "running" and first.finished_at is None
    second = await ledger.start_action(iid, 0, "kubernetes.restart_deployment", dict(args), key)
    assert second.existed is True and second.id == first.id
    count = await ledger.pool.fetchval("SELECT count(*) FROM actions WHERE idempotency_key = $1", key)
    assert count == 1

    with pytest.raises(ConflictError, match="other arguments"):
        await ledger.start_action(iid, 0, "kubernetes.restart_deployment", {"name": "db"}, key)


async def test_concurrent_start_action_runs_once(ledger: Ledger) -> None:
    iid, key = uid("inc"), uid("key")
    rows = await asyncio.gather(*(ledger.start_action(iid, 1, "t.x", {"n": 1}, key) for _ in range(6)))
    assert sorted(r.existed for r in rows) == [False] + [True] * 5
    assert len({r.id for r in rows}) == 1


async def test_finish_action(ledger: Ledger) -> None:
    iid, key = uid("inc"), uid("key")
    await ledger.start_action(iid, 0, "t.x", {}, key)
    done = await ledger.finish_action(key, "succeeded", result={"restarted": ["api-1", "api-2"]})
    assert done.status == "succeeded" and done.finished_at is not None
    assert done.result == {"restarted": ["api-1", "api-2"]}
    assert (await ledger.start_action(iid, 0, "t.x", {}, key)).status == "succeeded"  # seen as done

    assert (await ledger.finish_action(key, "succeeded", result={"other": 1})).result == done.result  # first wins
    with pytest.raises(ConflictError):
        await ledger.finish_action(key, "failed", error="late")
    with pytest.raises(NotFound):
        await ledger.finish_action(uid("missing"), "failed")

    key2 = uid("key")
    await ledger.start_action(iid, 1, "t.y", {}, key2)
    with pytest.raises(LedgerIntegrityError):  # "running" is not an end state
        await ledger.finish_action(key2, "running")  # type: ignore[arg-type]
    failed = await ledger.finish_action(key2, "failed", error="boom")
    assert (failed.status, failed.error) == ("failed", "boom")
    assert [a.action_index for a in await ledger.list_actions(iid)] == [0, 1]
    assert (await ledger.get_action(key2)) == failed


async def test_an_open_agent_run_is_closed_once_and_a_closed_one_keeps_its_ending(ledger: Ledger) -> None:
    """`close_open_agent_run` (the reconciler's write) closes a row only while it is open: a run
    that closed its own row meanwhile keeps its ending; `open_agent_runs` hands out the open rows
    looked at longest ago (or never) first."""
    a, b, c = uid("agent-a"), uid("agent-b"), uid("agent-c")
    for rid in (a, b, c):
        await ledger.start_agent_run(rid, request_id=rid, request="why?", requested_by="bob", source="cli", agent="web")
    await ledger.finish_agent_run(c, "done", answer="fine", limit_hit=None, steps=2, tool_calls=1)
    ended = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    closed = await ledger.close_open_agent_run(a, "cancelled", answer="the agent run was cancelled", finished_at=ended)
    assert closed is not None and (closed.status, closed.answer, closed.finished_at) == (
        "cancelled",
        "the agent run was cancelled",
        ended,
    )
    assert closed.steps == 0 and closed.limit_hit is None  # None keeps the row's
    again = await ledger.close_open_agent_run(a, "failed", answer="late")
    assert again is not None and (again.status, again.answer) == ("cancelled", "the agent run was cancelled")
    kept = await ledger.close_open_agent_run(c, "failed", answer="late")
    assert kept is not None and (kept.status, kept.answer, kept.steps) == ("done", "fine", 2)
    assert await ledger.close_open_agent_run(uid("agent-none"), "failed", answer="x") is None

    first = [r.id for r in await ledger.open_agent_runs(limit=1000)]
    assert b in first and a not in first and c not in first
    await ledger.mark_agent_runs_checked([b])
    later = [r.id for r in await ledger.open_agent_runs(limit=1000)]
    assert later[-1] == b  # looked at now: the last in line


async def test_an_agent_run_starts_with_its_request_as_the_first_message_in_one_statement(ledger: Ledger) -> None:
    """`start_agent_run(first_message=…)` (the run's start, on the gateway's first-token path) writes
    the row and the request as the transcript's first message at once; a retried start adds
    neither a second row nor a second message; without it, the transcript stays empty."""
    rid, plain = uid("agent-first"), uid("agent-plain")
    first = MessageIn(key=f"{rid}/0/user", step=0, role="user", content="is sonarr ok?")
    for _ in range(2):
        row = await ledger.start_agent_run(
            rid, request_id=rid, request="is sonarr ok?", requested_by="bob", source="gateway", agent="web",
            first_message=first,
        )  # fmt: skip
        assert (row.id, row.request, row.status) == (rid, "is sonarr ok?", "running")
    rows = await ledger.transcript(rid)
    assert [(r.key, r.step, r.role, r.content) for r in rows] == [(first.key, 0, "user", "is sonarr ok?")]
    await ledger.start_agent_run(plain, request_id=plain, request="?", requested_by="bob", source="cli", agent="web")
    assert await ledger.transcript(plain) == []


async def test_the_writes_an_ended_agent_run_left_running_are_closed_as_unknown(ledger: Ledger) -> None:
    """A run terminated while an approved write ran leaves the write `running`: nothing records its
    outcome now. `close_orphaned_agent_actions` closes such rows (`failed`, outcome unknown, the
    run's ending named) once they are older than a write may take; a write of a run still open, a
    write that finished, and one younger than the bound are left alone."""
    ended, going = uid("agent-ended"), uid("agent-going")
    for rid in (ended, going):
        await ledger.start_agent_run(
            rid, request_id=rid, request="restart it", requested_by="bob", source="cli", agent="x"
        )
    orphan, done, young = uid("key"), uid("key"), uid("key")
    await ledger.start_action(ended, 0, "infra.restart", {"name": "sonarr"}, orphan, agent_run=True)
    await ledger.start_action(ended, 1, "infra.restart", {"name": "radarr"}, done, agent_run=True)
    await ledger.finish_action(done, "succeeded", {"ok": True})
    running = uid("key")
    await ledger.start_action(going, 0, "infra.restart", {"name": "lidarr"}, running, agent_run=True)
    await ledger.close_open_agent_run(ended, "failed", answer="the agent run was terminated")

    assert await ledger.close_orphaned_agent_actions(started_before_s=3600) == []  # too young yet
    await ledger.start_action(ended, 2, "infra.restart", {"name": "bazarr"}, young, agent_run=True)
    closed = await ledger.close_orphaned_agent_actions(started_before_s=0)
    assert sorted(closed) == sorted([(orphan, "failed"), (young, "failed")])
    row = await ledger.get_action(orphan)
    assert row is not None and row.status == "failed" and row.finished_at is not None
    assert row.error is not None and row.error.startswith("outcome unknown: the agent run ended (failed)")
    assert (await ledger.get_action(done)).status == "succeeded"  # type: ignore[union-attr]
    assert (await ledger.get_action(running)).status == "running"  # type: ignore[union-attr]
    assert await ledger.close_orphaned_agent_actions(started_before_s=0) == []


async def test_outcomes_and_notifications(ledger: Ledger) -> None:
    iid = uid("inc")
    outcome = await ledger.record_outcome(iid, "success", "alert resolved within 2m")
    assert await ledger.list_outcomes(iid) == [outcome]

    sent = await ledger.record_notification(
        "telegram", incident_id=iid, target="-100123", thread="7", message_id="555", kind="approval", text="Approve?"
    )
    assert sent.edited_at is None
    dup = await ledger.record_notification("telegram", incident_id=iid, target="-100123", message_id="555", text="x")
    assert dup.id == sent.id and dup.text == "Approve?"

    edited = await ledger.update_notification(sent.id, text="Approved by @ops")
    assert edited.text == "Approved by @ops" and edited.edited_at is not None and edited.kind == "approval"
    assert await ledger.find_notification("telegram", "-100123", "555") == edited
    assert await ledger.list_notifications(iid) == [edited]
    with pytest.raises(NotFound):
        await ledger.update_notification(-1, text="x")

    digest = await ledger.record_notification("telegram", target="-100123", kind="digest", text="weekly")
    assert digest.incident_id is None


# --- runbooks and trust ------------------------------------------------------------------------


async def test_upsert_runbook_added_unchanged_updated_keeps_level(ledger: Ledger) -> None:
    rid = uid("rb")
    rb = make_runbook(rid)
    assert await ledger.upsert_runbook(rb) == "added"
    assert await ledger.upsert_runbook(rb) == "unchanged"

    stored = await ledger.get_runbook(rid)
    assert stored is not None
    assert stored.to_runbook().model_dump(exclude={"content_hash"}) == rb.model_dump(exclude={"content_hash"})
    assert stored.content_hash == rb.compute_hash()
    assert [str(m) for m in stored.match] == ["alertname=KubePodCrashLooping", "namespace=~prod-.*"]

    await ledger.set_runbook_level(rid, AutomationLevel.PROMPTED, "5 clean runs", "alice")
    # The file says manual (the default) and carries a stale hash: the change is still seen,
    # and the level earned in the ledger stays.
    changed = make_runbook(rid, body="Check the logs, then restart.", content_hash=rb.compute_hash())
    assert await ledger.upsert_runbook(changed) == "updated"
    after = await ledger.get_runbook(rid)
    assert after is not None
    assert after.body == "Check the logs, then restart."
    assert after.automation_level == AutomationLevel.PROMPTED
    assert after.updated_at >= stored.updated_at and after.created_at == stored.created_at
    assert await ledger.upsert_runbook(changed) == "unchanged"
    assert await ledger.upsert_runbook(make_runbook(rid, body=changed.body, source="moved.md")) == "updated"

    assert rid in {r.id for r in await ledger.list_runbooks()}
    assert rid in {r.id for r in await ledger.list_runbooks(AutomationLevel.PROMPTED)}
    assert rid not in {r.id for r in await ledger.list_runbooks(AutomationLevel.MANUAL)}
    assert await ledger.get_runbook(uid("nope")) is None


async def test_a_runbooks_allowed_namespaces_are_kept(ledger: Ledger) -> None:
    # The ledger's copy is what re-indexes the runbook after a level change: it keeps them.
    rid = uid("rb")
    rb = make_runbook(rid).model_copy(update={"allow_namespaces": ["kube-system"]})
    assert await ledger.upsert_runbook(rb) == "added"
    stored = await ledger.get_runbook(rid)
    assert stored is not None and stored.to_runbook().allow_namespaces == ["kube-system"]
    assert stored.content_hash == rb.compute_hash()
    assert await ledger.upsert_runbook(rb.model_copy(update={"allow_namespaces": []})) == "updated"
    after = await ledger.get_runbook(rid)
    assert after is not None and after.allow_namespaces == []


async def test_a_runbooks_evidence_is_kept(ledger: Ledger) -> None:
    rid = uid("rb")
    logs = ToolCall(tool="get_pod_logs", arguments={"namespace": "{{ labels.namespace }}", "previous": True})
    rb = make_runbook(rid).model_copy(update={"evidence": [logs]})
    assert await ledger.upsert_runbook(rb) == "added"
    stored = await ledger.get_runbook(rid)
    assert stored is not None and stored.to_runbook().evidence == [logs]
    assert stored.content_hash == rb.compute_hash() != make_runbook(rid).compute_hash()
    assert await ledger.upsert_runbook(rb) == "unchanged"
    assert await ledger.upsert_runbook(rb.model_copy(update={"evidence": []})) == "updated"
    after = await ledger.get_runbook(rid)
    assert after is not None and after.evidence == [] and after.content_hash == make_runbook(rid).compute_hash()


async def test_set_runbook_level_writes_history(ledger: Ledger) -> None:
    rid = uid("rb")
    await ledger.upsert_runbook(make_runbook(rid), changed_by="import")
    change = await ledger.set_runbook_level(rid, AutomationLevel.STANDARD, "promoted after review", "bob")
    assert change is not None
    assert (change.from_level, change.to_level, change.changed_by) == ("manual", "standard", "bob")
    assert await ledger.set_runbook_level(rid, AutomationLevel.STANDARD, "again", "bob") is None

    with pytest.raises(ConflictError, match="not 'prompted'"):
        await ledger.set_runbook_level(
            rid, AutomationLevel.STANDARD, "x", "bot", expected_from=AutomationLevel.PROMPTED
        )
    demoted = await ledger.set_runbook_level(
        rid, AutomationLevel.MANUAL, "failed in prod", "agent", expected_from=AutomationLevel.STANDARD
    )
    assert demoted is not None

    history = await ledger.level_history(rid)
    assert [(h.from_level, h.to_level) for h in history] == [
        (None, "manual"),
        ("manual", "standard"),
        ("standard", "manual"),
    ]
    assert history[0].changed_by == "import" and history[2].reason == "failed in prod"
    runbook = await ledger.get_runbook(rid)
    assert runbook is not None and runbook.automation_level == AutomationLevel.MANUAL

    with pytest.raises(NotFound):
        await ledger.set_runbook_level(uid("nope"), AutomationLevel.PROMPTED, "x", "y")


async def test_set_runbook_level_is_atomic(ledger: Ledger) -> None:
    rid = uid("rb")
    await ledger.upsert_runbook(make_runbook(rid))
    with pytest.raises(LedgerIntegrityError):
        await ledger.set_runbook_level(rid, "bogus", "x", "y")  # type: ignore[arg-type]
    # The level update succeeds but the history row is refused (reason NOT NULL): both roll back.
    with pytest.raises(LedgerIntegrityError, match="reason"):
        await ledger.set_runbook_level(rid, AutomationLevel.STANDARD, None, "y")  # type: ignore[arg-type]
    runbook = await ledger.get_runbook(rid)
    assert runbook is not None and runbook.automation_level == AutomationLevel.MANUAL
    assert len(await ledger.level_history(rid)) == 1


async def test_level_counts_zero_filled(fresh_dsn: str) -> None:
    led = await Ledger.connect(fresh_dsn)
    try:
        assert await led.level_counts() == {"manual": 0, "prompted": 0, "standard": 0}
        await led.upsert_runbook(make_runbook("a"))
        await led.upsert_runbook(make_runbook("b"))
        await led.set_runbook_level("b", AutomationLevel.PROMPTED, "r", "u")
        assert await led.level_counts() == {"manual": 1, "prompted": 1, "standard": 0}
    finally:
        await led.close()


async def test_runbook_stats_counters(ledger: Ledger) -> None:
    rid = uid("rb")
    await ledger.upsert_runbook(make_runbook(rid))
    zero = await ledger.runbook_stats(rid)
    assert zero is not None and zero.executions == 0 and zero.last_executed_at is None

    await ledger.record_execution(rid, True)
    await ledger.record_execution(rid, True, event_key="inc-1/exec")
    await ledger.record_execution(rid, True, event_key="inc-1/exec")  # a retried activity: counted once
    stats = await ledger.record_execution(rid, False)
    assert (stats.executions, stats.successes, stats.failures) == (3, 2, 1)
    assert stats.last_failure_at is not None and stats.last_success_at is not None

    for choice in ("approved", "approved", "ignored", "modified", "expired", "automatic"):
        stats = await ledger.record_decision_stat(rid, choice)  # type: ignore[arg-type]
    assert (stats.approvals, stats.ignores, stats.modifications, stats.expirations, stats.automatic_decisions) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert await ledger.runbook_stats(rid) == stats

    assert await ledger.runbook_stats(uid("nope")) is None
    with pytest.raises(NotFound):
        await ledger.record_execution(uid("nope"), True)
    with pytest.raises(LedgerIntegrityError):
        await ledger.record_decision_stat(rid, "maybe")  # type: ignore[arg-type]


# --- constraints and settings --------------------------------------------------------------------


async def test_constraints_refuse_bad_values(ledger: Ledger) -> None:
    iid = uid("inc")
    with pytest.raises(asyncpg.CheckViolationError):
        await ledger.pool.execute("INSERT INTO incidents (id, status) VALUES ($1, 'bogus')", iid)
    with pytest.raises(asyncpg.CheckViolationError):
        await ledger.pool.execute(
            "INSERT INTO runbooks (id, title, automation_level, content_hash) VALUES ($1, 't', 'yolo', 'h')", iid
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # the FK is real; the repository adds stubs
        await ledger.pool.execute(
            "INSERT INTO actions (incident_id, action_index, tool, idempotency_key) VALUES ($1, 0, 't', $2)",
            uid("ghost"),
            uid("key"),
        )

    with pytest.raises(LedgerIntegrityError, match="incidents_status_check"):
        await ledger.upsert_incident(iid, status="bogus")  # type: ignore[arg-type]
    with pytest.raises(LedgerIntegrityError, match="check constraint"):
        await ledger.record_outcome(iid, "meh")  # type: ignore[arg-type]
    with pytest.raises(LedgerIntegrityError, match="check constraint"):
        await ledger.record_decision(iid, "perhaps")  # type: ignore[arg-type]
    with pytest.raises(LedgerIntegrityError, match="check constraint"):
        await ledger.record_alert(uid("fp"), starts_at=datetime.now(UTC), labels={}, status="pending")  # type: ignore[arg-type]
    # A refused write leaves nothing behind, not even the stub incident.
    assert await ledger.get_incident(iid) is None


async def test_kv(ledger: Ledger) -> None:
    key = uid("telegram.topics")
    assert await ledger.kv_get(key) is None
    assert await ledger.kv_get(key, {}) == {}
    await ledger.kv_set(key, {"incidents": 12, "rollout": 14})
    assert await ledger.kv_get(key) == {"incidents": 12, "rollout": 14}
    await ledger.kv_set(key, [1, "two"])
    assert await ledger.kv_get(key) == [1, "two"]
    await ledger.kv_set(key, None)
    assert await ledger.kv_get(key, "gone") == "gone"


async def test_kv_purge_drops_only_stale_keys_under_the_prefix(ledger: Ledger) -> None:
    prefix = uid("state") + ":"
    for name in ("old-a", "old-b", "fresh"):
        await ledger.kv_set(prefix + name, {"n": name})
    other = uid("other")
    await ledger.kv_set(other, 1)
    async with ledger.pool.acquire() as conn:  # age two of them, and the key outside the prefix
        await conn.execute(
            "UPDATE kv SET updated_at = now() - interval '40 days' WHERE key = ANY($1)",
            [prefix + "old-a", prefix + "old-b", other],
        )
    assert await ledger.kv_purge(prefix, timedelta(days=30)) == 2
    assert await ledger.kv_get(prefix + "old-a") is None and await ledger.kv_get(prefix + "old-b") is None
    assert await ledger.kv_get(prefix + "fresh") == {"n": "fresh"}
    assert await ledger.kv_get(other) == 1  # another prefix is never touched
    assert await ledger.kv_purge(prefix, timedelta(days=30)) == 0
    with pytest.raises(ValueError, match="prefix"):
        await ledger.kv_purge("", timedelta(days=1))


async def test_runbook_levels_in_one_query(ledger: Ledger) -> None:
    from agentic_core.models import AutomationLevel, Runbook

    a, b = uid("rb"), uid("rb")
    for rid in (a, b):
        await ledger.upsert_runbook(Runbook(id=rid, title=rid, body="x"))
    await ledger.set_runbook_level(b, AutomationLevel.PROMPTED, "test", "pytest")
    assert await ledger.runbook_levels([]) == {}
    assert await ledger.runbook_levels([a, b, uid("unknown")]) == {
        a: AutomationLevel.MANUAL,
        b: AutomationLevel.PROMPTED,
    }


async def test_kv_update_is_atomic_under_concurrent_writers(ledger: Ledger) -> None:
    key = uid("kv-update")

    def add(n: int) -> Callable[[Any], Any]:
        return lambda cur: [*(cur or []), n]

    results = await asyncio.gather(*(ledger.kv_update(key, add(n)) for n in range(20)))
    stored = await ledger.kv_get(key)
    assert sorted(stored) == list(range(20))  # no writer lost another's change
    assert max(len(r) for r in results) == 20


async def test_kv_locked_serialises_writers_that_await_between_read_and_write(ledger: Ledger) -> None:
    key = uid("kv-locked")
    await ledger.kv_set(key, [])

    async def append(n: int) -> None:
        async with ledger.kv_locked(key) as slot:
            current = list(slot.value)
            await asyncio.sleep(0.01)  # a message edited between the read and the write
            slot.set([*current, n])

    await asyncio.gather(*(append(n) for n in range(5)))
    assert sorted(await ledger.kv_get(key)) == list(range(5))  # no writer lost another's change

    with contextlib.suppress(RuntimeError):  # a block that raises writes nothing
        async with ledger.kv_locked(key) as slot:
            slot.set(["lost"])
            raise RuntimeError("the edit failed")
    assert sorted(await ledger.kv_get(key)) == list(range(5))

    missing = uid("kv-missing")
    async with ledger.kv_locked(missing) as slot:  # an unknown key: None, and nothing created
        assert slot.value is None
        slot.set(["x"])
    assert await ledger.kv_get(missing, "absent") == "absent"


async def test_the_pool_resets_only_connections_that_keep_session_state(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain use goes back to the pool without asyncpg's reset query (one round trip saved per
    use); a connection marked stateful (a LISTEN, a session advisory lock) is reset the full way,
    and an open transaction is rolled back either way."""
    full_resets: list[int] = []  # each time asyncpg's reset query is asked for, to be sent
    real_query = asyncpg.Connection.get_reset_query

    def counted(self: asyncpg.Connection) -> str:
        full_resets.append(self.get_server_pid())
        return real_query(self)

    monkeypatch.setattr(asyncpg.Connection, "get_reset_query", counted)
    pool = await create_pool(fresh_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert full_resets == []  # a plain use: no reset query

        async with pool.acquire() as conn:  # LISTEN and a session lock, marked
            mark_stateful(conn)
            await conn.execute("LISTEN some_channel")
            assert await conn.fetchval("SELECT pg_try_advisory_lock(4242)")
        assert len(full_resets) == 1
        async with pool.acquire() as conn:  # the same connection (one in the pool), clean again
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        assert len(full_resets) == 1  # and that use was plain again

        conn = await pool.acquire()  # a transaction left open (not through `transaction()`)
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (x int)")
        await pool.release(conn)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None  # rolled back
    finally:
        await pool.close()
