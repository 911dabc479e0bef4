"""BackupWorkflow: one backup of the platform's data, on the worker that owns it.

Started by `agentic backup create` and by the nightly `agentic-nightly-backup` Temporal Schedule
(`agentic schedules apply`). Steps: `backup.create` (the ledger, the embedded Temporal's
database, the Qdrant Edge collections, the runbooks, the secrets encrypted or left out; then the
manifest and retention). When it fails, `backup.report_failure` posts a generic event to the
intake, so a failed backup is an incident like any other (notified, approved, recorded), and the
workflow fails with the cause.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.backup.activities import BackupActivities
    from activities.backup.rebuild import RebuildActivities
    from agentic_core.backup import (
        BACKUP_WORKFLOW,
        BackupFailure,
        BackupInput,
        BackupResult,
        RebuildInput,
        RebuildResult,
    )

_CREATE_RETRY = RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=5))
_REPORT_RETRY = RetryPolicy(
    maximum_attempts=10, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)
)


def _cause(exc: BaseException) -> str:
    while getattr(exc, "cause", None) is not None:
        exc = exc.cause  # type: ignore[attr-defined]
    return str(exc) or type(exc).__name__


@workflow.defn(name=BACKUP_WORKFLOW)
class BackupWorkflow:
    @workflow.run
    async def run(self, inp: BackupInput) -> BackupResult:
        # The name is fixed here, once: a retried activity (or the run a restored Temporal resumes)
        # finds the backup it already made instead of making another.
        if inp.name is None:
            inp = inp.model_copy(update={"name": "backup-" + workflow.now().strftime("%Y%m%dT%H%M%SZ")})
        try:
            return await workflow.execute_activity_method(
                BackupActivities.create,
                inp,
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=_CREATE_RETRY,
            )
        except ActivityError as exc:
            error = _cause(exc)
            workflow.logger.warning("backup failed: %s", error)
            try:
                await workflow.execute_activity_method(
                    BackupActivities.report_failure,
                    BackupFailure(name=inp.name, error=error, scheduled=inp.scheduled),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=_REPORT_RETRY,
                )
            except ActivityError as report_exc:
                workflow.logger.error("could not report the failed backup: %s", _cause(report_exc))
            raise ApplicationError(f"backup failed: {error}", type="BackupFailed", non_retryable=True) from None


@workflow.defn(name="KnowledgeRebuildWorkflow")
class KnowledgeRebuildWorkflow:
    """`agentic knowledge rebuild`: the runbooks and decisions re-indexed from the ledger."""

    @workflow.run
    async def run(self, inp: RebuildInput) -> RebuildResult:
        return await workflow.execute_activity_method(
            RebuildActivities.rebuild,
            inp,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
        )
