"""`ApprovalWorkflow`: one question put to a human, answered once, or expired.

- The answer is the update `UPDATE_DECIDE` (`DecideInput` → `DecideResult`). Its validator
  rejects, before anything is written to history: an answerer not in `approvers` (when the
  list is not empty), a choice the question does not offer (`request.choices`: a question with
  nothing to run offers acknowledged, ignored and modified), a `plan_hash` other than the
  request's ("plan changed"), a second answer ("already decided by X"), an answer after
  expiry, and "modified" without a plan.
- Unanswered, it notifies a REMINDER after `remind_after_s`, an ESCALATION on the
  "critical" route after `escalate_after_s` and EXPIRED after `expire_after_s`, then
  returns choice "expired". A delay of 0 or less skips that notification.
- `QUERY_APPROVAL` returns `ApprovalState`; the `ApprovalState` search attribute follows it
  (pending, approved, acknowledged, ignored, modified, expired; "cancelled" when the asker withdrew the
  question, e.g. the incident's alert resolved before anyone answered).

Notifications go through the `incident.notify` activity; a notification that cannot be
sent is logged and never blocks the answer or the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from agentic_core import search_attributes as sa
    from agentic_core.incident import (
        QUERY_APPROVAL,
        UPDATE_DECIDE,
        ApprovalRequest,
        ApprovalResult,
        ApprovalState,
        DecideInput,
        DecideResult,
        NotifyInput,
        NotifyKind,
        plan_hash,
    )

NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20)
)
ESCALATION_ROUTE = "critical"
REJECTED = "ApprovalRejected"


def _reject(message: str) -> ApplicationError:
    return ApplicationError(message, type=REJECTED, non_retryable=True)


@workflow.defn
class ApprovalWorkflow:
    @workflow.init
    def __init__(self, req: ApprovalRequest) -> None:
        self._state = ApprovalState(request=req)

    # -- the answer ----------------------------------------------------------------------------

    @workflow.update(name=UPDATE_DECIDE)
    def decide(self, inp: DecideInput) -> DecideResult:
        req = self._state.request
        plan = list(inp.modified_plan or []) if inp.choice == "modified" else list(req.plan)
        self._state.result = ApprovalResult(
            approval_id=req.approval_id,
            choice=inp.choice,
            by=inp.by,
            plan=plan,
            plan_hash=plan_hash(plan),
            decided_at=workflow.now(),
            comment=inp.comment,
        )
        workflow.upsert_search_attributes([sa.APPROVAL_STATE.value_set(inp.choice)])
        return DecideResult(accepted=True, choice=inp.choice, by=inp.by, plan_hash=inp.plan_hash)

    @decide.validator
    def _validate_decide(self, inp: DecideInput) -> None:
        req = self._state.request
        done = self._state.result
        if done is not None:
            if done.choice == "expired":
                raise _reject(f"approval {req.approval_id} expired at {done.decided_at}")
            raise _reject(f"approval {req.approval_id} was already decided by {done.by} ({done.choice})")
        if self._expired():
            raise _reject(f"approval {req.approval_id} has expired")
        if req.approvers and inp.by not in req.approvers:
            raise _reject(f"{inp.by} may not answer approval {req.approval_id}")
        if inp.plan_hash != req.plan_hash:
            raise _reject(
                f"plan changed: the answer is for plan {inp.plan_hash[:12]}, the question is about {req.plan_hash[:12]}"
            )
        if inp.choice not in req.choices:
            offered = ", ".join(req.choices)
            why = " (there is nothing to run)" if not req.plan else ""
            raise _reject(f"{inp.choice} is not an answer to approval {req.approval_id}{why}: answer {offered}")
        if inp.choice == "modified" and not inp.modified_plan:
            raise _reject("modified needs the modified plan (modified_plan)")

    @workflow.query(name=QUERY_APPROVAL)
    def state(self) -> ApprovalState:
        return self._state

    # -- the run ---------------------------------------------------------------------------------

    def _expired(self) -> bool:
        req = self._state.request
        return workflow.now() >= workflow.info().start_time + timedelta(seconds=req.expire_after_s)

    def _decided(self) -> bool:
        return self._state.result is not None

    @workflow.run
    async def run(self, req: ApprovalRequest) -> ApprovalResult:
        workflow.upsert_search_attributes([sa.APPROVAL_STATE.value_set("pending")])
        started = workflow.info().start_time
        try:
            steps = sorted(
                (s, kind)
                for s, kind in (
                    (req.remind_after_s, NotifyKind.REMINDER),
                    (req.escalate_after_s, NotifyKind.ESCALATION),
                )
                if 0 < s < req.expire_after_s
            )
            for after_s, kind in [*steps, (req.expire_after_s, NotifyKind.EXPIRED)]:
                if await self._wait_until(started + timedelta(seconds=after_s)):
                    break
                if kind == NotifyKind.EXPIRED:
                    self._state.result = ApprovalResult(
                        approval_id=req.approval_id,
                        choice="expired",
                        plan=[],
                        plan_hash=req.plan_hash,
                        decided_at=workflow.now(),
                    )
                    workflow.upsert_search_attributes([sa.APPROVAL_STATE.value_set("expired")])
                elif kind == NotifyKind.REMINDER:
                    self._state.reminded = True
                else:
                    self._state.escalated = True
                await self._notify(kind)
            await workflow.wait_condition(workflow.all_handlers_finished)
        except asyncio.CancelledError:
            if self._state.result is None:
                workflow.upsert_search_attributes([sa.APPROVAL_STATE.value_set("cancelled")])
            raise
        assert self._state.result is not None
        return self._state.result

    async def _wait_until(self, deadline: datetime) -> bool:
        """Wait for an answer until `deadline`; True when answered."""
        left = (deadline - workflow.now()).total_seconds()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(self._decided, timeout=timedelta(seconds=left))
        return self._decided()

    async def _notify(self, kind: NotifyKind) -> None:
        req = self._state.request
        text = _text(kind, req)
        try:
            await workflow.execute_activity_method(
                IncidentActivities.notify,
                NotifyInput(
                    incident_id=req.incident_id if req.kind == "incident" else None,
                    kind=kind,
                    route=ESCALATION_ROUTE if kind == NotifyKind.ESCALATION else req.route,
                    text=text,
                    approval_id=req.approval_id,
                    plan=[] if kind == NotifyKind.EXPIRED else list(req.plan),
                    plan_hash=None if kind == NotifyKind.EXPIRED else req.plan_hash,
                    choices=[] if kind == NotifyKind.EXPIRED else list(req.choices),
                ),
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("approval %s: %s notification failed: %s", req.approval_id, kind.value, exc)


def _text(kind: NotifyKind, req: ApprovalRequest) -> str:
    if kind == NotifyKind.REMINDER:
        return f"Reminder: still waiting for an answer.\n{req.question}"
    if kind == NotifyKind.ESCALATION:
        return f"Escalation: no answer after {req.escalate_after_s // 60} min.\n{req.question}"
    return f"Expired after {req.expire_after_s // 60} min without an answer: nothing was run.\n{req.question}"
