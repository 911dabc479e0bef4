"""WeeklyDigestWorkflow with its real activities on a real ledger (PostgreSQL), and the schedules.

- time-skipping server: a seeded week passes (`env.sleep(7 days)`), then the workflow started
  by type name with `{"week": null}` reports exactly that week, writes a valid PNG, and posts
  one REPORT to route "weekly" with the PNG as photo and no incident; its history replays.
- dev server (`temporal server start-dev`: the time-skipping server has no schedules):
  `apply_schedules` creates both schedules, a second apply changes nothing, a changed cron
  updates (a paused schedule stays paused); triggering the weekly schedule runs the digest of
  the week that just ended through the worker; `agentic schedules apply` from the command line
  twice; `agentic report weekly --week` runs and prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.incident.activities import IncidentActivities
from activities.incident.notifier import LedgerNotifier
from activities.ledger.repository import Ledger
from activities.reports.activities import ReportActivities
from agentic_core.incident import NotifyInput, NotifyKind, NotifyResult
from agentic_core.reports import WeeklyDigestResult, previous_week, week_of
from tests.support.env import REPO
from tests.support.pg import create_database, pg_server
from tests.support.report_helpers import Expected, check_png, seed_week
from tests.support.temporal import temporal_bin, time_skipping_server
from workers.sandbox import workflow_runner
from workers.schedules import (
    TRUST_REVIEW_SCHEDULE,
    WEEKLY_DIGEST_SCHEDULE,
    apply_schedules,
    describe_schedules,
    run_weekly_digest,
)
from workers.settings import Settings
from workflows.digest import WeeklyDigestWorkflow


class RecordingNotifier(LedgerNotifier):
    """The ledger notifier, remembering what it was asked to send (the photo included)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.sent: list[NotifyInput] = []

    async def notify(self, inp: NotifyInput, key: str | None = None) -> NotifyResult:
        self.sent.append(inp)
        return await super().notify(inp, key)


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-digest-pg-")


@pytest.fixture
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "digest"))
    try:
        yield led
    finally:
        await led.close()


def digest_worker(client: Client, queue: str, ledger: Ledger, data_dir: Path) -> tuple[Worker, RecordingNotifier]:
    notifier = RecordingNotifier(ledger)
    incident = IncidentActivities(None, ledger, None, notifier)  # type: ignore[arg-type]  # notify only
    reports = ReportActivities(ledger, data_dir)
    worker = Worker(
        client,
        task_queue=queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[WeeklyDigestWorkflow],
        activities=[reports.compute_digest, reports.write_digest, incident.notify],
    )
    return worker, notifier


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def check_result(res: WeeklyDigestResult, exp: Expected, ledger: Ledger, notifier: RecordingNotifier) -> None:
    assert res.week == exp.week
    assert res.counts["alerts"] == exp.alerts and res.counts["incidents"] == exp.incidents
    assert {k.removeprefix("decisions_"): v for k, v in res.counts.items() if k.startswith("decisions_")} == (
        exp.decisions
    )
    assert res.counts["runbooks_created"] == len(exp.runbooks_created)
    assert res.counts["automated_actions"] == exp.automated_actions
    assert res.counts["guardrail_events"] == sum(exp.guardrail_events.values())
    assert "Guardrail events: 7 (tool_refused 3, protected_namespace 1, untrusted_plan 2, limit 1)" in res.summary
    assert f"Alerts processed: {exp.alerts} in {exp.incidents} incidents" in res.summary
    assert "approved 2, modified 1, acknowledged 1, ignored 1, expired 1, automatic 2" in res.summary
    assert len(res.summary) <= 1024
    assert res.files.png.endswith(f"reports/{exp.week}.png")
    png = await asyncio.to_thread(_read, res.files.png)
    check_png(png)
    # the same digest and chart in the ledger, for the gateway's console (docs/gateway.md#console)
    stored = await ledger.weekly_digest(exp.week)
    assert stored is not None and stored.digest["alerts_processed"] == exp.alerts
    assert await ledger.weekly_digest_chart(exp.week) == png
    # one REPORT, no incident, route "weekly", the chart as photo, the summary as text
    assert len(notifier.sent) == 1
    sent = notifier.sent[0]
    assert (sent.kind, sent.route, sent.incident_id, sent.photo, sent.text) == (
        NotifyKind.REPORT,
        "weekly",
        None,
        res.files.png,
        res.summary,
    )
    async with ledger.pool.acquire() as c:
        rows = await c.fetch("SELECT incident_id, target, kind, text FROM notifications")
    assert [dict(r) for r in rows] == [{"incident_id": None, "target": "weekly", "kind": "report", "text": res.summary}]
    assert res.message_ref is not None and res.message_ref.startswith("ledger:")


# --------------------------------------------------------------------------- time-skipping


async def test_a_time_skipped_week_produces_the_digest(ledger: Ledger, tmp_path: Path) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    try:
        queue = f"digest-{uuid.uuid4().hex[:8]}"
        week = week_of(await env.get_current_time())
        exp = await seed_week(ledger, week)  # this week's incidents, decisions, actions, ...
        worker, notifier = digest_worker(env.client, queue, ledger, tmp_path)
        async with worker:
            await env.sleep(timedelta(days=7))  # the week ends
            assert week_of(await env.get_current_time()) != week
            handle = await env.client.start_workflow(
                "WeeklyDigestWorkflow",
                {"week": None},  # exactly what the schedule and `temporal workflow start` send
                id=f"weekly-digest-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                result_type=WeeklyDigestResult,
            )
            res = await handle.result()
        await check_result(res, exp, ledger, notifier)
        replayer = Replayer(
            workflow_runner=workflow_runner("strict"),
            workflows=[WeeklyDigestWorkflow],
            data_converter=pydantic_data_converter,
        )
        await replayer.replay_workflow(await handle.fetch_history())
    finally:
        await env.shutdown()


# --------------------------------------------------------------------------- schedules (dev server)


@pytest.fixture
async def dev() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_apply_is_idempotent_and_updates_a_changed_schedule(dev: WorkflowEnvironment) -> None:
    # the digest's and the review's schedules (the nightly backup's, off here, in test_backup*)
    settings = Settings(task_queue="agentic-test", backup_cron="off")
    assert await apply_schedules(dev.client, settings) == {
        WEEKLY_DIGEST_SCHEDULE: "created",
        TRUST_REVIEW_SCHEDULE: "created",
    }
    assert await apply_schedules(dev.client, settings) == {
        WEEKLY_DIGEST_SCHEDULE: "unchanged",
        TRUST_REVIEW_SCHEDULE: "unchanged",
    }
    infos = {i.schedule_id: i for i in await describe_schedules(dev.client, settings)}
    weekly, review = infos[WEEKLY_DIGEST_SCHEDULE], infos[TRUST_REVIEW_SCHEDULE]
    assert weekly.exists and weekly.workflow_type == "WeeklyDigestWorkflow" and weekly.in_step
    assert review.exists and review.workflow_type == "TrustReviewWorkflow" and review.in_step
    # Monday 06:00 UTC and the first day of a quarter at 07:00
    nxt = weekly.next_runs[0].astimezone(UTC)
    assert (nxt.weekday(), nxt.hour, nxt.minute) == (0, 6, 0)
    q = review.next_runs[0].astimezone(UTC)
    assert (q.month in (1, 4, 7, 10), q.day, q.hour) == (True, 1, 7)
    # the action: type by name, the input with exactly the JSON shape, the platform's queue
    desc = await dev.client.get_schedule_handle(TRUST_REVIEW_SCHEDULE).describe()
    action = desc.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.task_queue == "agentic-test"
    assert json.loads(action.args[0].data) == {"quarter": None}  # type: ignore[union-attr]
    assert desc.schedule.policy.overlap.name == "SKIP"

    # a human pauses the review; the digest moves to Tuesday: only the digest is rewritten
    await dev.client.get_schedule_handle(TRUST_REVIEW_SCHEDULE).pause(note="audit in progress")
    moved = Settings(task_queue="agentic-test", digest_cron="30 5 * * 2", backup_cron="off")
    assert await apply_schedules(dev.client, moved) == {
        WEEKLY_DIGEST_SCHEDULE: "updated",
        TRUST_REVIEW_SCHEDULE: "updated",  # its note lost the config marker when paused
    }
    assert await apply_schedules(dev.client, moved) == {
        WEEKLY_DIGEST_SCHEDULE: "unchanged",
        TRUST_REVIEW_SCHEDULE: "unchanged",
    }
    infos = {i.schedule_id: i for i in await describe_schedules(dev.client, moved)}
    nxt = infos[WEEKLY_DIGEST_SCHEDULE].next_runs[0].astimezone(UTC)
    assert (nxt.weekday(), nxt.hour, nxt.minute) == (1, 5, 30)
    assert infos[TRUST_REVIEW_SCHEDULE].paused
    assert infos[TRUST_REVIEW_SCHEDULE].note.startswith("audit in progress")
    ids = [s.id async for s in await dev.client.list_schedules()]
    assert len(ids) == len(set(ids))  # no duplicates (the list may lag: it is eventually consistent)


async def test_the_weekly_schedule_runs_the_digest_of_the_week_that_ended(
    dev: WorkflowEnvironment, ledger: Ledger, tmp_path: Path
) -> None:
    queue = f"digest-{uuid.uuid4().hex[:8]}"
    week = previous_week(datetime.now(UTC))
    exp = await seed_week(ledger, week)
    await apply_schedules(dev.client, Settings(task_queue=queue, backup_cron="off"))
    handle = dev.client.get_schedule_handle(WEEKLY_DIGEST_SCHEDULE)
    worker, notifier = digest_worker(dev.client, queue, ledger, tmp_path)
    async with worker:
        await handle.trigger()  # what Monday 06:00 does
        for _ in range(200):
            desc = await handle.describe()
            if desc.info.recent_actions:
                break
            await asyncio.sleep(0.05)
        started = desc.info.recent_actions[-1].action
        assert started is not None
        wf_id = started.workflow_id
        assert wf_id.startswith("weekly-digest-")
        res = await dev.client.get_workflow_handle(wf_id, result_type=WeeklyDigestResult).result()
    await check_result(res, exp, ledger, notifier)


# --------------------------------------------------------------------------- the command line


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )


@pytest.mark.slow
async def test_cli_schedules_apply_twice_and_report_weekly(
    dev: WorkflowEnvironment, ledger: Ledger, tmp_path: Path
) -> None:
    queue = f"digest-{uuid.uuid4().hex[:8]}"
    target = dev.client.service_client.config.target_host
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(AGENTIC_TEMPORAL_ADDRESS=target, AGENTIC_TASK_QUEUE=queue, AGENTIC_DATA_DIR=str(tmp_path / "data"))
    env["AGENTIC_BACKUP_CRON"] = "off"  # the nightly backup's schedule: tests/e2e/test_stack.py, test_reports
    first = await asyncio.to_thread(_cli, ["schedules", "apply"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["created", WEEKLY_DIGEST_SCHEDULE, "created", TRUST_REVIEW_SCHEDULE]
    second = await asyncio.to_thread(_cli, ["schedules", "apply", "--json"], env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {WEEKLY_DIGEST_SCHEDULE: "unchanged", TRUST_REVIEW_SCHEDULE: "unchanged"}
    listed = await asyncio.to_thread(_cli, ["schedules", "list", "--json"], env)
    doc = json.loads(listed.stdout)
    assert [(s["id"], s["exists"], s["in_step"]) for s in doc] == [
        (WEEKLY_DIGEST_SCHEDULE, True, True),
        (TRUST_REVIEW_SCHEDULE, True, True),
    ]

    exp = await seed_week(ledger, "2026-W10")
    worker, _ = digest_worker(dev.client, queue, ledger, tmp_path / "data")
    async with worker:
        out = await asyncio.to_thread(_cli, ["report", "weekly", "--week", "2026-W10"], env)
        assert out.returncode == 0, out.stderr
        assert "📊 Weekly digest 2026-W10" in out.stdout
        assert f"Alerts processed: {exp.alerts} in {exp.incidents} incidents" in out.stdout
        assert str(tmp_path / "data" / "reports" / "2026-W10.png") in out.stdout
        # again: the finished digest of that week may run again (same id, a new run)
        again = await run_weekly_digest(dev.client, queue, "2026-W10")
        assert again.week == "2026-W10"
    bad = await asyncio.to_thread(_cli, ["report", "weekly", "--week", "W10"], env)
    assert bad.returncode == 2 and "bad week 'W10'" in bad.stderr
