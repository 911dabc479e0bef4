"""The platform's Temporal Schedules, and starting a weekly digest by hand.

Three schedules, with stable IDs:

| schedule id             | workflow               | input               | when (settings)                    |
|-------------------------|------------------------|---------------------|------------------------------------|
| `agentic-weekly-digest` | `WeeklyDigestWorkflow` | `{"week": null}`    | `digest_cron` (Monday 06:00)        |
| `agentic-trust-review`  | `TrustReviewWorkflow`  | `{"quarter": null}` | `trust_review_cron` (1st of quarter) |
| `agentic-nightly-backup` | `BackupWorkflow`      | `{"scheduled": true}` | `backup_cron` (02:30)             |

`apply_schedules` is idempotent: it creates what is missing, updates a schedule whose
definition differs, and leaves an identical one alone. The definition's fingerprint is kept
in the schedule's note (`[agentic config <hash>]`), so "identical" does not depend on how the
server re-encodes a cron expression. A paused schedule stays paused when it is updated.
Both skip a run while the previous one is still going (overlap policy SKIP).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowFailureError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.backup import BACKUP_WORKFLOW
from agentic_core.reports import (
    TRUST_REVIEW_WORKFLOW,
    WEEKLY_DIGEST_WORKFLOW,
    WeeklyDigestInput,
    WeeklyDigestResult,
    parse_week,
    previous_week,
)
from workers.errors import AgenticError
from workers.settings import Settings

WEEKLY_DIGEST_SCHEDULE = "agentic-weekly-digest"
TRUST_REVIEW_SCHEDULE = "agentic-trust-review"
NIGHTLY_BACKUP_SCHEDULE = "agentic-nightly-backup"
CATCHUP_WINDOW = timedelta(days=1)  # a worker or server down at 06:00 still runs the digest when back that day
_NOTE_PREFIX = "managed by `agentic schedules apply`"

ApplyResult = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ScheduleDef:
    schedule_id: str
    workflow_type: str
    workflow_input: dict[str, Any]
    workflow_id: str  # the schedule appends the run's time to it
    cron: str
    timezone: str
    task_queue: str
    description: str

    def fingerprint(self) -> str:
        doc = {
            "type": self.workflow_type,
            "input": self.workflow_input,
            "id": self.workflow_id,
            "cron": self.cron,
            "tz": self.timezone,
            "queue": self.task_queue,
            "overlap": "skip",
            "catchup_s": CATCHUP_WINDOW.total_seconds(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]

    def marker(self) -> str:
        return f"[agentic config {self.fingerprint()}]"

    def build(self, *, paused: bool = False, pause_note: str = "") -> Schedule:
        note = (
            f"{pause_note} {self.marker()}".strip() if paused else f"{_NOTE_PREFIX}: {self.description} {self.marker()}"
        )
        return Schedule(
            action=ScheduleActionStartWorkflow(
                self.workflow_type,
                self.workflow_input,
                id=self.workflow_id,
                task_queue=self.task_queue,
                execution_timeout=timedelta(hours=12),
            ),
            spec=ScheduleSpec(cron_expressions=[self.cron], time_zone_name=self.timezone),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
            state=ScheduleState(note=note, paused=paused),
        )


def desired_schedules(settings: Settings, task_queue: str | None = None) -> list[ScheduleDef]:
    queue = task_queue or settings.task_queue
    backup: list[ScheduleDef] = []
    if settings.backup_cron.strip().lower() not in ("", "off"):  # "off": the chart's CronJobs back up instead
        backup.append(  # docs/disaster-recovery.md: retention is AGENTIC_BACKUP_KEEP, failures open an incident
            ScheduleDef(
                schedule_id=NIGHTLY_BACKUP_SCHEDULE,
                workflow_type=BACKUP_WORKFLOW,
                workflow_input={"to": None, "name": None, "scheduled": True},
                workflow_id="nightly-backup",
                cron=settings.backup_cron,
                timezone=settings.schedule_timezone,
                task_queue=queue,
                description="nightly backup of the ledger, Temporal, Qdrant and the runbooks",
            )
        )
    return [
        ScheduleDef(
            schedule_id=WEEKLY_DIGEST_SCHEDULE,
            workflow_type=WEEKLY_DIGEST_WORKFLOW,
            workflow_input={"week": None},
            workflow_id="weekly-digest",
            cron=settings.digest_cron,
            timezone=settings.schedule_timezone,
            task_queue=queue,
            description="weekly digest of the week that just ended",
        ),
        ScheduleDef(
            schedule_id=TRUST_REVIEW_SCHEDULE,
            workflow_type=TRUST_REVIEW_WORKFLOW,
            workflow_input={"quarter": None},
            workflow_id="trust-review",
            cron=settings.trust_review_cron,
            timezone=settings.schedule_timezone,
            task_queue=queue,
            description="quarterly trust review of the quarter that just ended",
        ),
        *backup,
    ]


def _not_found(exc: RPCError) -> bool:
    return exc.status == RPCStatusCode.NOT_FOUND


def _rpc_error(what: str, exc: RPCError) -> AgenticError:
    return AgenticError(f"{what}: {exc.message or exc.status.name}")


async def apply_schedule(client: Client, d: ScheduleDef) -> ApplyResult:
    """Create `d`, update it if its definition changed, or leave it: which one happened."""
    handle = client.get_schedule_handle(d.schedule_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if not _not_found(exc):
            raise _rpc_error(f"cannot read schedule {d.schedule_id}", exc) from exc
        try:
            await client.create_schedule(d.schedule_id, d.build())
            return "created"
        except ScheduleAlreadyRunningError:
            desc = await handle.describe()  # created meanwhile by another apply: compare with it
        except RPCError as exc2:
            raise _rpc_error(f"cannot create schedule {d.schedule_id}", exc2) from exc2
    if d.marker() in (desc.schedule.state.note or ""):
        return "unchanged"

    def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        state = inp.description.schedule.state
        note = state.note or ""
        if note.startswith(_NOTE_PREFIX):
            note = ""
        return ScheduleUpdate(schedule=d.build(paused=state.paused, pause_note=note.split(" [agentic config")[0]))

    try:
        await handle.update(updater)
    except RPCError as exc:
        raise _rpc_error(f"cannot update schedule {d.schedule_id}", exc) from exc
    return "updated"


async def apply_schedules(client: Client, settings: Settings, task_queue: str | None = None) -> dict[str, ApplyResult]:
    return {d.schedule_id: await apply_schedule(client, d) for d in desired_schedules(settings, task_queue)}


@dataclass(frozen=True)
class ScheduleInfo:
    schedule_id: str
    exists: bool
    workflow_type: str = ""
    cron: str = ""
    paused: bool = False
    next_runs: tuple[datetime, ...] = ()
    recent_runs: tuple[str, ...] = ()  # workflow ids
    in_step: bool = False  # its definition is the one these settings want
    note: str = ""


async def describe_schedules(client: Client, settings: Settings, task_queue: str | None = None) -> list[ScheduleInfo]:
    """The platform's schedules as the server has them (read by ID, not from eventually consistent lists)."""
    out: list[ScheduleInfo] = []
    for d in desired_schedules(settings, task_queue):
        try:
            desc = await client.get_schedule_handle(d.schedule_id).describe()
        except RPCError as exc:
            if not _not_found(exc):
                raise _rpc_error(f"cannot read schedule {d.schedule_id}", exc) from exc
            out.append(ScheduleInfo(schedule_id=d.schedule_id, exists=False, workflow_type=d.workflow_type))
            continue
        action = desc.schedule.action
        wtype = action.workflow if isinstance(action, ScheduleActionStartWorkflow) else type(action).__name__
        crons = list(desc.schedule.spec.cron_expressions)
        out.append(
            ScheduleInfo(
                schedule_id=d.schedule_id,
                exists=True,
                workflow_type=str(wtype),
                cron=", ".join(crons) if crons else d.cron,
                paused=desc.schedule.state.paused,
                next_runs=tuple(desc.info.next_action_times[:3]),
                recent_runs=tuple(
                    getattr(a.action, "workflow_id", "") for a in desc.info.recent_actions[-3:] if a.action is not None
                ),
                in_step=d.marker() in (desc.schedule.state.note or ""),
                note=desc.schedule.state.note or "",
            )
        )
    return out


# --------------------------------------------------------------------------- report weekly


def digest_workflow_id(week: str) -> str:
    return f"weekly-digest-{week}"


async def run_weekly_digest(
    client: Client, task_queue: str, week: str | None = None, *, now: datetime | None = None
) -> WeeklyDigestResult:
    """Run the digest of `week` (default: the week that just ended) and wait for it.

    The workflow ID is `weekly-digest-<week>`. A digest of that week still running is joined
    (conflict policy USE_EXISTING), not started twice; a finished one may run again (reuse
    policy ALLOW_DUPLICATE): the files are rewritten and the report is posted again.
    """
    if week is not None:
        try:
            parse_week(week)
        except ValueError as exc:
            raise AgenticError(str(exc)) from exc
    resolved = week or previous_week(now or datetime.now(UTC))
    try:
        handle = await client.start_workflow(
            WEEKLY_DIGEST_WORKFLOW,
            WeeklyDigestInput(week=resolved),
            id=digest_workflow_id(resolved),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            execution_timeout=timedelta(hours=1),
            result_type=WeeklyDigestResult,
        )
        return await handle.result()
    except WorkflowFailureError as exc:
        cause: BaseException | None = exc.cause
        while getattr(cause, "cause", None) is not None:
            cause = getattr(cause, "cause", None)
        raise AgenticError(f"the weekly digest of {resolved} failed: {cause}") from exc
    except RPCError as exc:
        raise _rpc_error(f"cannot start the weekly digest of {resolved}", exc) from exc
