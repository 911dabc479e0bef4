"""The weekly digest: ISO weeks, rendering, the chart, and the ledger queries on real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pgserver
import pytest

from activities.ledger.repository import Ledger
from activities.reports.activities import ReportActivities
from activities.reports.chart import render_chart
from activities.reports.queries import compute_digest
from agentic_core.reports import (
    CAPTION_LIMIT,
    DayDecisions,
    DigestFiles,
    DigestQuery,
    RunbookCreated,
    SourceCount,
    WeeklyDigest,
    WeeklyDigestInput,
    WeekShare,
    parse_week,
    previous_week,
    render_markdown,
    render_summary,
    render_text,
    shift_week,
    week_bounds,
    week_of,
)
from tests.support.pg import create_database, pg_server
from tests.support.report_helpers import check_png, seed_week

WEEK = "2026-W10"  # Monday 2 March .. Sunday 8 March 2026


# --------------------------------------------------------------------------- ISO weeks


def test_week_bounds_and_parsing() -> None:
    start, end = week_bounds(WEEK)
    assert start == datetime(2026, 3, 2, tzinfo=UTC) and end == datetime(2026, 3, 9, tzinfo=UTC)
    assert week_of(start) == WEEK and week_of(end) == "2026-W11"
    # ISO years: 2026-01-01 is a Thursday, so its week 1 starts on Monday 29 December 2025
    assert week_bounds("2026-W01")[0] == datetime(2025, 12, 29, tzinfo=UTC)
    assert week_of(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"  # 2026 has 53 ISO weeks
    assert parse_week("2026-W53") == (2026, 53)
    for bad in ("2026-53", "2026-W54", "2025-W53", "2026-W00", "26-W01", "2026-w01x", ""):
        with pytest.raises(ValueError, match="bad week"):
            parse_week(bad)


def test_previous_week_is_the_week_that_just_ended() -> None:
    assert previous_week(datetime(2026, 3, 9, 6, 0, tzinfo=UTC)) == WEEK  # Monday 06:00, the schedule's time
    assert previous_week(datetime(2026, 3, 15, 23, 59, tzinfo=UTC)) == WEEK  # Sunday night still says W10
    assert previous_week(datetime(2026, 1, 1, tzinfo=UTC)) == "2025-W52"
    assert shift_week("2026-W01", -1) == "2025-W52" and shift_week("2026-W53", 1) == "2027-W01"


def test_input_shape_is_week_or_null() -> None:
    assert WeeklyDigestInput.model_validate({"week": None}).week is None
    assert WeeklyDigestInput.model_validate_json('{"week": "2026-W47"}').week == "2026-W47"
    assert WeeklyDigestInput().model_dump() == {"week": None}
    with pytest.raises(ValueError, match="bad week"):
        WeeklyDigestInput.model_validate({"week": "last week"})


# --------------------------------------------------------------------------- rendering


def _digest(**kw: object) -> WeeklyDigest:
    start, end = week_bounds(WEEK)
    base: dict[str, object] = {
        "week": WEEK,
        "start": start,
        "end": end,
        "generated_at": datetime(2026, 3, 9, 6, tzinfo=UTC),
        "alerts_processed": 12,
        "incidents_opened": 4,
        "decisions": {"approved": 3, "modified": 1, "ignored": 2, "expired": 0, "automatic": 4},
        "top_sources": [
            SourceCount(label="alertname", value="KubePodCrashLooping", count=7),
            SourceCount(label="namespace", value="<script>&", count=5),
        ],
        "runbooks_created": [RunbookCreated(id="learned/x", title="Restart <x>", source="approval")],
        "runbooks_created_total": 1,
        "local_proposals": 5,
        "local_confidence_avg": 0.734,
        "fallback_proposals": 1,
        "cloud_escalations": 2,
        "pii_detections": 3,
        "secrets_redacted": 1,
        "automatic_decisions": 4,
        "automated_actions": 5,
        "automated_succeeded": 4,
        "automated_failed": 1,
        "guardrail_events": {"tool_refused": 4, "protected_namespace": 1, "untrusted_plan": 2, "limit": 0},
        "daily": [DayDecisions(day=date(2026, 3, 2 + i), counts={"approved": i % 2, "automatic": i}) for i in range(7)],
        "trend": [WeekShare(week=shift_week(WEEK, -i), automatic=i, total=2 * i + 1) for i in range(7, -1, -1)],
    }
    base.update(kw)
    return WeeklyDigest.model_validate(base)


def test_text_has_every_section_and_exact_numbers() -> None:
    d = _digest()
    text = render_text(d)
    for section in ("Alerts", "Decisions", "Top alert sources", "Runbooks created: 1", "Confidence", "Automation"):
        assert section in text
    assert "alerts processed: 12" in text and "incidents opened: 4" in text
    assert "approved: 3 (30%)" in text and "automatic: 4 (40%)" in text and "total: 10" in text
    assert "average confidence 0.73" in text
    assert "cloud escalations: 2 (25% of 8 proposals)" in text
    assert "PII detections (personal data redacted before cloud calls): 3" in text
    assert "secrets redacted before cloud calls: 1" in text
    assert "5 succeeded" not in text and "4 succeeded, 1 failed (success 80%)" in text
    assert (
        "Guardrails\n  events: 7\n  tool_refused: 4\n  protected_namespace: 1\n  untrusted_plan: 2\n  limit: 0" in text
    )
    # label values cannot inject HTML into a Telegram message
    assert "<" not in text and ">" not in text and "&" not in text
    assert "‹script›" in text


def test_summary_fits_a_caption_and_names_the_headlines() -> None:
    d = _digest()
    s = render_summary(d)
    assert len(s) <= CAPTION_LIMIT
    assert s.startswith("📊 Weekly digest 2026-W10 (02 Mar – 08 Mar 2026)")
    assert "Alerts processed: 12 in 4 incidents" in s
    assert "approved 3, modified 1, ignored 2, expired 0, automatic 4" in s
    assert "cloud escalations 2 (25%)" in s and "PII detections 3, secrets redacted 1" in s
    assert "success 80%" in s
    assert "Guardrail events: 7 (tool_refused 4, protected_namespace 1, untrusted_plan 2)" in s
    assert "Guardrail events: 0" in render_summary(_digest(guardrail_events={"tool_refused": 0}))


def test_summary_counts_in_the_singular_when_there_is_one() -> None:
    s = render_summary(_digest(incidents_opened=1, local_proposals=1, fallback_proposals=1, automatic_decisions=1))
    assert "Alerts processed: 12 in 1 incident\n" in s
    assert "(1 proposal, 1 fallback)" in s and "Automated: 1 run, 5 actions" in s
    assert "Cloud escalations: 0 (n/a of 0 proposals)" in render_markdown(
        _digest(local_proposals=0, fallback_proposals=0, cloud_escalations=0)
    )
    many = [SourceCount(label="alertname", value="X" * 200, count=1) for _ in range(10)]
    long = render_summary(_digest(top_sources=many))
    assert len(long) == CAPTION_LIMIT and long.endswith("…")


def test_a_digest_from_before_redactions_were_recorded_says_not_tracked() -> None:
    old = _digest(pii_detections=None, secrets_redacted=None)
    assert "PII detections (personal data redacted before cloud calls): not tracked" in render_text(old)
    assert "PII detections not tracked, secrets redacted not tracked" in render_summary(old)
    assert "- Secrets redacted before cloud calls: not tracked" in render_markdown(old)


def test_the_digest_names_every_guardrail_kind() -> None:
    from typing import get_args

    from agentic_core.agents import GuardrailKind
    from agentic_core.reports import GUARDRAIL_KINDS

    assert sorted(GUARDRAIL_KINDS) == sorted(get_args(GuardrailKind))


def test_a_digest_from_before_guardrail_events_says_not_tracked() -> None:
    old = WeeklyDigest.model_validate(
        {k: v for k, v in _digest().model_dump().items() if k != "guardrail_events"}
    )  # as a digest saved before the field existed reads back
    assert old.guardrail_events is None and old.guardrail_total is None
    assert "Guardrail events: not tracked" in render_summary(old)
    assert "Guardrails\n  events: not tracked\n" in render_text(old)
    assert "Guardrail events: not tracked." in render_markdown(old)


def test_empty_week_renders_without_division_by_zero() -> None:
    start, end = week_bounds(WEEK)
    d = WeeklyDigest(week=WEEK, start=start, end=end, generated_at=end)
    assert d.total_decisions == 0 and d.cloud_share is None and d.automated_success_rate is None
    text = render_text(d)
    assert "total: 0" in text and "success n/a" in text and "Top alert sources\n  none" in text
    assert "Cloud escalations: 0 (n/a of 0 proposals)" in render_markdown(d)
    check_png(render_chart(d.model_copy(update={"daily": [], "trend": []})))


def test_markdown_is_a_document_with_tables() -> None:
    md = render_markdown(_digest(), chart_name="2026-W10.png")
    assert md.startswith("# Weekly digest 2026-W10\n")
    assert "![decisions and automation share](2026-W10.png)" in md
    assert "| approved | 3 | 30% |" in md
    assert "| alertname | KubePodCrashLooping | 7 |" in md
    assert "| 2026-W10 | 0 | 1 | 0% |" in md and "| 2026-W03 | 7 | 15 | 47% |" in md
    assert "## Guardrails" in md and "| untrusted_plan | 2 |" in md and "| **total** | **7** |" in md


def test_chart_is_a_valid_png() -> None:
    w, h = check_png(render_chart(_digest()))
    assert (w, h) == (1100, 450)


# --------------------------------------------------------------------------- ledger queries


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-reports-pg-")


@pytest.fixture
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "reports"))
    try:
        yield led
    finally:
        await led.close()


async def test_digest_counts_from_a_seeded_week(ledger: Ledger) -> None:
    exp = await seed_week(ledger, WEEK)
    d = await compute_digest(ledger, WEEK, trend_weeks=4)
    assert d.alerts_processed == exp.alerts
    assert d.incidents_opened == exp.incidents
    assert d.decisions == exp.decisions
    by = {(s.label, s.value): s.count for s in d.top_sources}
    assert [(s.value, s.count) for s in d.top_sources if s.label == "alertname"] == exp.alertnames
    assert [(s.value, s.count) for s in d.top_sources if s.label == "namespace"] == exp.namespaces
    assert [(s.value, s.count) for s in d.top_sources if s.label == "job"] == exp.jobs
    assert ("namespace", "") not in by and ("alertname", "OldAlert") not in by and ("alertname", "NextAlert") not in by
    assert [r.id for r in d.runbooks_created] == exp.runbooks_created and d.runbooks_created_total == 2
    assert d.local_proposals == exp.local_proposals
    assert d.local_confidence_avg == pytest.approx(exp.local_avg)
    assert d.fallback_proposals == exp.fallback_proposals and d.cloud_escalations == exp.cloud_escalations
    assert d.cloud_share == pytest.approx(0.25)
    assert (d.pii_detections, d.secrets_redacted) == (exp.pii_detections, exp.secrets_redacted)
    assert d.automatic_decisions == exp.decisions["automatic"]
    assert (d.automated_actions, d.automated_succeeded, d.automated_failed) == (
        exp.automated_actions,
        exp.automated_succeeded,
        exp.automated_failed,
    )
    assert (d.actions_total, d.actions_succeeded, d.actions_failed) == (
        exp.actions_total,
        exp.actions_succeeded,
        exp.actions_failed,
    )
    assert d.outcomes == exp.outcomes
    assert [day.day.weekday() for day in d.daily] == list(range(7))
    assert {i: day.counts for i, day in enumerate(d.daily) if day.counts} == exp.daily
    assert [w.week for w in d.trend] == ["2026-W07", "2026-W08", "2026-W09", "2026-W10"]
    assert [(w.automatic, w.total) for w in d.trend] == [(0, 0), (0, 0), exp.previous_week_share, (2, 8)]
    assert d.guardrail_events == exp.guardrail_events


async def test_the_digest_counts_the_events_the_gateway_and_workflows_record(ledger: Ledger) -> None:
    """Recorded through the ledger's own write (as `guardrails.record` and the gateway do), at the
    time they happen: this week's digest counts them."""
    from agentic_core.agents import GuardrailEvent
    from agentic_core.reports import week_of

    now = datetime.now(UTC)
    for n, kind in enumerate(["tool_refused", "untrusted_plan", "tool_refused"]):
        await ledger.record_guardrail_event(
            GuardrailEvent(key=f"now/{n}", kind=kind, agent="incident", subject="inc-now")  # type: ignore[arg-type]
        )
    d = await compute_digest(ledger, week_of(now))
    assert d.guardrail_events is not None
    assert (d.guardrail_events["tool_refused"], d.guardrail_events["untrusted_plan"]) == (2, 1)
    assert d.guardrail_total == 3


async def test_digest_of_an_empty_ledger_is_zeros(ledger: Ledger) -> None:
    d = await compute_digest(ledger, WEEK)
    assert d.alerts_processed == 0 and d.total_decisions == 0 and d.top_sources == []
    assert d.local_confidence_avg is None and len(d.daily) == 7 and len(d.trend) == 8
    assert d.guardrail_events is not None and d.guardrail_total == 0


def _read(files: DigestFiles) -> tuple[bytes, str, dict[str, object]]:
    return Path(files.png).read_bytes(), Path(files.markdown).read_text(), json.loads(Path(files.json_path).read_text())


def _resolved(p: Path) -> Path:
    return p.resolve()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_report_activities_write_three_files(ledger: Ledger, tmp_path: Path) -> None:
    await seed_week(ledger, WEEK)
    acts = ReportActivities(ledger, tmp_path)
    d = await acts.compute_digest(DigestQuery(week=WEEK))
    files = await acts.write_digest(d)
    png, md, saved = _read(files)
    assert files.png == str(_resolved(tmp_path) / "reports" / "2026-W10.png")
    check_png(png)
    assert "| approved | 2 | 25% |" in md and "| acknowledged | 1 | 12% |" in md and "- Alerts processed: **5**" in md
    assert saved["week"] == WEEK and saved["decisions"]["automatic"] == 2
    assert WeeklyDigest.model_validate(saved) == d
    # the same digest, chart and report in the ledger (what the gateway's console reads)
    stored = await ledger.weekly_digest(WEEK)
    assert stored is not None and stored.has_chart and stored.markdown == md
    assert WeeklyDigest.model_validate(stored.digest) == d
    assert await ledger.weekly_digest_chart(WEEK) == png
    # a retry (or a re-run of the week) rewrites the same files, leaves no temporaries behind and
    # replaces the week's one row in the ledger
    again = d.model_copy(update={"alerts_processed": 6})
    await acts.write_digest(again)
    assert _names(tmp_path / "reports") == ["2026-W10.json", "2026-W10.md", "2026-W10.png"]
    assert [r.week for r in await ledger.list_weekly_digests()] == [WEEK]
    stored = await ledger.weekly_digest(WEEK)
    assert stored is not None and WeeklyDigest.model_validate(stored.digest) == again
