"""Guardrail events on the real ledger (PostgreSQL): the store, the `guardrails.record` activity
(idempotent by key), and `agentic guardrails list` run as a subprocess against that ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pgserver
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.guardrails.activities import GuardrailActivities
from activities.ledger.guardrails import MAX_DETAIL_CHARS
from activities.ledger.repository import Ledger
from agentic_core.agents import GuardrailEvent
from tests.support.env import REPO
from tests.support.pg import create_database, pg_server
from workers.guardrails_client import parse_since

T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-guardrails-pg-")


@pytest.fixture(scope="module")
async def dsn(pg: pgserver.PostgresServer) -> str:
    return await create_database(pg, "guardrails")


@pytest.fixture(scope="module")
async def ledger(dsn: str) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(dsn, max_size=4)
    yield led
    await led.close()


def event(subject: str, n: int, kind: str = "tool_refused", **kw: object) -> GuardrailEvent:
    base: dict[str, object] = {
        "key": f"{subject}/{n}",
        "kind": kind,
        "agent": "incident",
        "subject": subject,
        "tool": "scale_deployment",
        "detail": f"refusal {n}",
        "at": T0 + timedelta(minutes=n),
    }
    base.update(kw)
    return GuardrailEvent.model_validate(base)


# --------------------------------------------------------------------------- the store and the activity


async def test_record_activity_is_idempotent_by_key(ledger: Ledger) -> None:
    acts = GuardrailActivities(ledger)
    env = ActivityEnvironment()
    subject = uid("run")
    first = await env.run(acts.record, event(subject, 1))
    again = await env.run(acts.record, event(subject, 1, detail="a retry says it again"))
    assert first.created and not again.created and again.id == first.id
    [row] = await ledger.list_guardrail_events(subject=subject)
    assert (row.key, row.kind, row.agent, row.tool, row.detail, row.at) == (
        f"{subject}/1",
        "tool_refused",
        "incident",
        "scale_deployment",
        "refusal 1",  # the first recorded wins
        T0 + timedelta(minutes=1),
    )
    with pytest.raises(ApplicationError, match="needs a key") as info:
        await env.run(acts.record, event(subject, 2, key="  "))
    assert info.value.non_retryable


async def test_events_list_newest_first_with_filters_and_long_details_are_cut(ledger: Ledger) -> None:
    subject = uid("inc")
    kinds = ["tool_refused", "protected_namespace", "untrusted_plan", "limit"]
    for n, kind in enumerate(kinds):
        await ledger.record_guardrail_event(event(subject, n, kind, agent="observability" if n == 3 else "incident"))
    rows = await ledger.list_guardrail_events(subject=subject)
    assert [r.kind for r in rows] == list(reversed(kinds))
    assert [r.kind for r in await ledger.list_guardrail_events(subject=subject, kinds=["limit", "untrusted_plan"])] == [
        "limit",
        "untrusted_plan",
    ]
    since = await ledger.list_guardrail_events(subject=subject, since=T0 + timedelta(minutes=2))
    assert [r.kind for r in since] == ["limit", "untrusted_plan"]
    assert [r.kind for r in await ledger.list_guardrail_events(subject=subject, agent="observability")] == ["limit"]
    assert len(await ledger.list_guardrail_events(subject=subject, limit=1)) == 1
    row, created = await ledger.record_guardrail_event(event(subject, 9, detail="x" * 10_000, at=None))
    assert created and len(row.detail) == MAX_DETAIL_CHARS and row.detail.endswith("… [cut]")
    assert abs((row.at - datetime.now(UTC)).total_seconds()) < 60  # no time given: now


async def test_counts_by_kind_in_a_window(ledger: Ledger) -> None:
    start = datetime(2030, 1, 7, tzinfo=UTC)
    subject = uid("week")
    for n, kind in enumerate(["tool_refused", "tool_refused", "write_denied", "limit"]):
        await ledger.record_guardrail_event(event(subject, n, kind, at=start + timedelta(days=n)))
    await ledger.record_guardrail_event(event(subject, 99, "limit", at=start + timedelta(days=7)))  # next week
    counts = await ledger.guardrail_counts(start, start + timedelta(days=7))
    assert counts == {
        "tool_refused": 2,
        "limit": 1,
        "write_denied": 1,
        "untrusted_plan": 0,
        "protected_namespace": 0,
        "egress_refused": 0,
    }


async def test_a_bad_kind_is_refused_by_the_table(ledger: Ledger) -> None:
    async with ledger.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO guardrail_events (key, kind) VALUES ($1, 'made_up')", uid("bad"))


# --------------------------------------------------------------------------- agentic guardrails list


def agentic(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(AGENTIC_POSTGRES_DSN=dsn, COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "guardrails", "list", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_lists_events_as_json_and_as_a_table(ledger: Ledger, dsn: str) -> None:
    subject = uid("cli")
    recent = datetime.now(UTC) - timedelta(minutes=5)
    await ledger.record_guardrail_event(event(subject, 1, "tool_refused", at=recent - timedelta(days=3)))
    await ledger.record_guardrail_event(
        event(subject, 2, "protected_namespace", at=recent, detail="namespace 'kube-system' is protected")
    )
    await ledger.record_guardrail_event(event(subject, 3, "untrusted_plan", at=recent, tool=None))

    res = agentic("--subject", subject, "--json", dsn=dsn)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert [e["kind"] for e in got] == ["untrusted_plan", "protected_namespace", "tool_refused"]
    assert got[1] | {"id": 0, "at": ""} == {
        "id": 0,
        "at": "",
        "key": f"{subject}/2",
        "kind": "protected_namespace",
        "agent": "incident",
        "subject": subject,
        "tool": "scale_deployment",
        "detail": "namespace 'kube-system' is protected",
    }
    assert got[0]["tool"] is None

    res = agentic("--subject", subject, "--since", "1d", "--kind", "protected_namespace", "--json", dsn=dsn)
    assert res.returncode == 0, res.stderr
    assert [e["key"] for e in json.loads(res.stdout)] == [f"{subject}/2"]

    res = agentic("--subject", subject, dsn=dsn)
    assert res.returncode == 0, res.stderr
    assert "guardrail events (3)" in res.stdout
    assert "protected_namespace" in res.stdout and "namespace 'kube-system' is protected" in res.stdout

    res = agentic("--subject", uid("nothing"), dsn=dsn)
    assert res.returncode == 0 and "no guardrail events" in res.stdout


async def test_cli_bad_options_are_one_line_and_exit_2(dsn: str) -> None:
    res = agentic("--kind", "tool_refusd", dsn=dsn)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: unknown guardrail kind 'tool_refusd': the kinds are tool_refused, limit, write_denied, "
        "untrusted_plan, protected_namespace, egress_refused"
    )
    res = agentic("--since", "last tuesday", dsn=dsn)
    assert res.returncode == 2 and "--since 'last tuesday' is neither a duration" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


async def test_cli_on_a_ledger_from_before_the_events(pg: pgserver.PostgresServer) -> None:
    """A ledger whose migrations stop before 0009 (an older worker still runs): the CLI says what
    to do instead of failing with a database error."""
    empty = await create_database(pg, "old")
    conn = await asyncpg.connect(empty)
    await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
    await conn.close()
    res = agentic(dsn=empty)
    assert res.returncode == 2
    assert "the ledger has no guardrail events yet: start this version's worker" in res.stderr


def test_since_accepts_durations_and_iso_times() -> None:
    now = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-03-02", now) == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_since("2026-03-02T06:00+01:00", now) == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    assert parse_since(None, now) is None
