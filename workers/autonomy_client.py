"""The client side of the autonomy commands: a runbook's trust record and level history, and the
level counts, read from the ledger (PostgreSQL: the trust record's truth) directly, read-only
(`agentic runbooks show|stats`); the quarterly trust review started through Temporal, waiting for
its result (`agentic review run`: each proposal waits for a human, answered like any approval).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from agentic_core.autonomy import TRUST_REVIEW_WORKFLOW, TrustReviewInput, TrustReviewResult
from agentic_core.models import Runbook
from workers.errors import AgenticError
from workers.ledger_client import read_ledger
from workers.settings import Settings


class LevelChangeView(BaseModel):
    from_level: str | None
    to_level: str
    reason: str
    changed_by: str
    changed_at: datetime


class RunbookRecordView(BaseModel):
    """What `agentic runbooks show ID --json` prints."""

    runbook: Runbook
    record: dict[str, Any]
    smoothed_success: float
    eligible_for: str | None = None  # the next level the record supports
    level_history: list[LevelChangeView] = Field(default_factory=list)
    promotion_requests: list[dict[str, Any]] = Field(default_factory=list)


async def runbook_record(settings: Settings, runbook_id: str) -> RunbookRecordView:
    from activities.trust.activities import to_record
    from agentic_core import trust

    ledger = await read_ledger(settings, max_size=2)
    try:
        row = await ledger.get_runbook(runbook_id)
        if row is None:
            raise AgenticError(f"no runbook {runbook_id!r}: see `agentic runbooks list`")
        stats = await ledger.runbook_stats(runbook_id)
        history = await ledger.level_history(runbook_id)
        requests = await ledger.promotion_requests(runbook_id)
    finally:
        await ledger.close()
    record = to_record(stats)
    target = trust.promotion_target(row.automation_level, record)
    return RunbookRecordView(
        runbook=row.to_runbook(),
        record=stats.model_dump(mode="json", exclude={"runbook_id"}) if stats is not None else {},
        smoothed_success=round(trust.estimate(record), 4),
        eligible_for=target.value if target is not None else None,
        level_history=[
            LevelChangeView(
                from_level=h.from_level.value if h.from_level else None,
                to_level=h.to_level.value,
                reason=h.reason,
                changed_by=h.changed_by,
                changed_at=h.changed_at,
            )
            for h in history
        ],
        promotion_requests=[r.model_dump(mode="json") for r in requests],
    )


async def level_counts(settings: Settings) -> dict[str, int]:
    ledger = await read_ledger(settings, max_size=2)
    try:
        counts: dict[str, int] = await ledger.level_counts()
    finally:
        await ledger.close()
    return {k: counts.get(k, 0) for k in ("manual", "prompted", "standard")}


class RunbookRecordLine(BaseModel):
    """One runbook's record in `agentic runbooks stats --records --json`."""

    runbook_id: str
    level: str
    executions: int
    successes: int
    failures: int  # of its remedy
    infra_errors: int  # runs the platform could not carry out (tool server unreachable): not failures
    smoothed_success: float


async def runbook_records(settings: Settings) -> list[RunbookRecordLine]:
    from activities.trust.activities import to_record
    from agentic_core import trust

    ledger = await read_ledger(settings, max_size=2)
    try:
        rows = await ledger.all_runbook_stats()
    finally:
        await ledger.close()
    return [
        RunbookRecordLine(
            runbook_id=stats.runbook_id,
            level=level.value,
            executions=stats.executions,
            successes=stats.successes,
            failures=stats.failures,
            infra_errors=stats.infra_errors,
            smoothed_success=round(trust.estimate(to_record(stats)), 4),
        )
        for level, stats in rows
    ]


async def run_review(settings: Settings, quarter: str | None) -> TrustReviewResult:
    from temporalio.client import WorkflowFailureError

    from workers.temporal import platform_client

    client, queue = await platform_client(settings)
    wid = f"trust-review/{quarter or 'last-quarter'}/{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    try:
        return await client.execute_workflow(
            TRUST_REVIEW_WORKFLOW,
            TrustReviewInput(quarter=quarter),
            id=wid,
            task_queue=queue,
            result_type=TrustReviewResult,
        )
    except WorkflowFailureError as exc:
        raise AgenticError(f"the trust review failed: {exc.cause}") from exc
