"""WeeklyDigestWorkflow: the week's numbers from the ledger, a chart, files, one report message.

Started by the `weekly-digest` Temporal Schedule (`agentic schedules apply`), by
`agentic report weekly [--week 2026-W47]`, or by hand:

    temporal workflow start --type WeeklyDigestWorkflow --task-queue agentic-platform \\
        --workflow-id weekly-digest-manual --input '{"week": null}'

Input `{"week": "2026-W47" | null}`; null is the ISO week that ended before `workflow.now()`.
Steps: `reports.compute_digest` (one ledger snapshot) → `reports.write_digest` (PNG, Markdown,
JSON under the data dir) → `incident.notify` (kind REPORT, route "weekly", the PNG as photo,
the summary as caption).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from activities.reports.activities import ReportActivities
    from agentic_core.incident import NotifyInput, NotifyKind
    from agentic_core.reports import (
        REPORT_ROUTE,
        DigestQuery,
        WeeklyDigestInput,
        WeeklyDigestResult,
        previous_week,
        render_summary,
    )

_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
TREND_WEEKS = 8


@workflow.defn(name="WeeklyDigestWorkflow")
class WeeklyDigestWorkflow:
    @workflow.run
    async def run(self, inp: WeeklyDigestInput) -> WeeklyDigestResult:
        week = inp.week or previous_week(workflow.now())
        digest = await workflow.execute_activity_method(
            ReportActivities.compute_digest,
            DigestQuery(week=week, trend_weeks=TREND_WEEKS),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        files = await workflow.execute_activity_method(
            ReportActivities.write_digest,
            digest,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        summary = render_summary(digest)
        sent = await workflow.execute_activity_method(
            IncidentActivities.notify,
            NotifyInput(incident_id=None, kind=NotifyKind.REPORT, route=REPORT_ROUTE, text=summary, photo=files.png),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        workflow.logger.info("weekly digest %s posted (%s)", week, sent.message_ref)
        return WeeklyDigestResult(
            week=week,
            summary=summary,
            files=files,
            message_ref=sent.message_ref,
            counts={
                "alerts": digest.alerts_processed,
                "incidents": digest.incidents_opened,
                **{f"decisions_{k}": v for k, v in digest.decisions.items()},
                "runbooks_created": digest.runbooks_created_total,
                "automated_actions": digest.automated_actions,
                "guardrail_events": digest.guardrail_total or 0,
            },
        )
