"""`IncidentWorkflow`: one alert group, from the first alert to the recorded outcome.

Stages (each in `IncidentState.stages` with its start and finish times):

1. **triage** (`incident.triage`): severity, category, route, title; opens the ledger row.
2. **recall** (`incident.recall`): runbooks (label matches first) and past decisions. Right
   after it, before the model is asked, the QUESTION notification: the alert, the best
   runbook and its plan. It is sent once per incident, whatever the signals.
3. **propose** (`tools.list_tools`, `incident.propose`): the planner's diagnosis; the plan is
   the runbook's when one fits (the one the model names, else a label match), the model's own
   only when none does; the best runbook's plan when the model is down or answers badly
   (`proposal_source="fallback"`, the note says why). With a cloud model configured the
   activity may escalate, redacted, within the same activity timeout
   (`proposal_source="cloud"`; `proposal_redactions` counts what was redacted).
4. **guard** (`tools.guard`): refused actions go to `state.refused` with their reasons and
   never run. If the guard cannot be reached nothing runs (every action is refused). The
   protected namespaces a runbook allows (`namespace_allowance`) count only for its own plan.
5. **policy** (`policy.plan_level`, `policy.run_confidence`, `policy.decide`): the runbook's
   level counts only for the runbook's own plan, and runs it alone only on the runbook's
   evidence (`EVIDENCE_CONFIDENCE_PATCH`); a plan that changes a protected namespace always
   asks (`PROTECTED_NAMESPACES_PATCH`). The DIAGNOSIS notification edits the QUESTION message
   with the exact plan (and its hash) a human may approve.
6. **approval**: child `ApprovalWorkflow` (id `approval_id_for(incident, occurrence)`, cancelled if
   the incident closes first). Skipped for RUN_THEN_NOTIFY and NOTHING_TO_DO.
7. **execute** (`tools.execute`): the approved plan in order, one idempotency key per action
   (`idempotency_key(incident, index, occurrence)`); stops at the first action that does not succeed.
   A plan modified by the human is guarded again first; if any of it is refused, none runs.
8. **verify**: wait up to `verify_window_s` for the group to resolve: success when it does,
   "unknown" when the window ends (there is no check tool yet).
9. **record** (`incident.record`; a novel approved plan becomes a new manual runbook here).
10. **trust** (`trust.evaluate`, earned autonomy, docs/autonomy.md): a failure of a runbook that
   ran at standard demotes it at once (NOTICE); a record that earns prompted promotes it
   (NOTICE); one that earns standard starts a `RunbookPromotionWorkflow` through
   `trust.ask_promotion` (it outlives this incident). A standard runbook's DONE notification,
   with the outcome, comes here. Then the closing notification (RESOLVED, or an UPDATE).
   Histories from before this stage replay without it (`workflow.patched("autonomy-trust")`).

Alerts (`SIGNAL_ALERTS`) are merged by fingerprint at any time. A repeat of what the incident
already holds only counts (`state.signals`). At most `MAX_ALERTS` distinct alerts are kept.
The group counts as resolved when a signal says the group is resolved and every alert held is
resolved. Resolution before anything ran ends the incident as RESOLVED
(`resolved_by_alertmanager`): a pending approval is cancelled (its ApprovalState becomes
"cancelled"), and nothing runs, even if the answer and the resolution cross.

An incident id belongs to an alert group, so a group that fires again after its incident
closed starts a new run with the same id. Each run is one *occurrence* (`occurrence()`: the
run's start in epoch milliseconds, from history, so replay and reset keep it); approval ids,
action idempotency keys and the record's keys include it, so a recurrence never collides with
(or is answered by) an earlier run's rows.

Alert text is untrusted and may be any size: the title is one line of at most 300 characters
and search attribute values from outside (AlertName, RunbookId) are cut below Temporal's 2 KiB
limit, with a marker. A run that hits an error the code did not expect ends FAILED (recorded,
notified, the error in its outcome) instead of retrying its workflow task forever.

Every activity call has a start-to-close timeout and a bounded retry policy. The incident is
bounded in time (approval expiry + verify window), so it never continues-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.workflow import ReadOnlyContextError

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from activities.trust.activities import TrustActivities
    from agentic_core import policy, trust
    from agentic_core import search_attributes as sa
    from agentic_core.alerts import Alert, AlertGroup, AlertStatus
    from agentic_core.autonomy import (
        LEVEL_ROUTE,
        EvaluateTrustInput,
        EvaluateTrustResult,
        PromotionInput,
    )
    from agentic_core.incident import (
        NOTHING_TO_RUN_CHOICES,
        PLAN_CHOICES,
        QUERY_STATE,
        SIGNAL_ALERTS,
        ActionResult,
        AlertsSignal,
        ApprovalRequest,
        ApprovalResult,
        Choice,
        ExecuteInput,
        GuardedAction,
        GuardInput,
        GuardResult,
        IncidentConfig,
        IncidentInput,
        IncidentState,
        IncidentStatus,
        ListToolsInput,
        ListToolsResult,
        NotifyInput,
        NotifyKind,
        PolicyVerdict,
        ProposeInput,
        ProposeResult,
        RecalledRunbook,
        RecallInput,
        RecallResult,
        RecordInput,
        StageInput,
        StageRecord,
        TriageResult,
        VerifyResult,
        approval_id_for,
        group_annotations,
        idempotency_key,
        occurrence,
        plan_hash,
    )
    from agentic_core.models import AutomationLevel, ToolCall
    from agentic_core.proposals import fallback_proposal
    from agentic_core.tools import configure_hints
    from workflows.approval import ApprovalWorkflow
    from workflows.promotion import RunbookPromotionWorkflow

LOCAL_STAGES_PATCH = "local-short-stages"  # the short stages became local activities
NOTHING_TO_DO_VERIFYING_PATCH = "nothing-to-do-verifying"  # a nothing-to-do incident shows `verifying` while it watches
EXECUTING_NOTICE_PATCH = "executing-notice"  # the card is edited to "executing" before the actions run
# VERBOSE puts an incident with nothing to run to a human (acknowledge / ignore / modify). Decided
# once at the start of the run (the marker lands in the first workflow task, so replay finds it
# whatever the later workflow tasks look like).
ASK_NOTHING_TO_RUN_PATCH = "ask-nothing-to-run"
# run-then-notify rests on the runbook's evidence (labels, retrieval score), never on the model's own confidence
EVIDENCE_CONFIDENCE_PATCH = "evidence-confidence"
# an allowed action in a protected namespace (kube-system, ...) never runs without a human
PROTECTED_NAMESPACES_PATCH = "protected-namespaces"
MAX_ALERTS = 200  # distinct alerts held in state; more are counted, not kept
MAX_ERROR_CHARS = 500  # of an unexpected error, in the incident's outcome
AGENT = "incident"

_SHORT = timedelta(seconds=30)
_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_RETRY_FEW = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
# incident.propose: one local model call of at most 25 s per attempt (after at most 12.5 s for a
# slot), then perhaps the cloud with what is left (at most 20 s); the second attempt falls back.
PROPOSE_TIMEOUT = timedelta(seconds=60)
PROPOSE_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=5)
)
EXECUTE_TIMEOUT = timedelta(minutes=5)
EXECUTE_HEARTBEAT = timedelta(seconds=30)  # a killed worker's call is retried within this
TOOL_REFUSED = "ToolRefused"  # the gateway's non-retryable error type for a refused action
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)
)

_ACTIVE = {IncidentStatus.OPEN, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.EXECUTING, IncidentStatus.VERIFYING}


def _error(exc: BaseException) -> str:
    """The innermost message of an activity or child error."""
    while exc.__cause__ is not None and isinstance(exc, (ActivityError, ChildWorkflowError)):
        exc = exc.__cause__
    message = exc.message if isinstance(exc, FailureError) else str(exc)
    return message or type(exc).__name__


@workflow.defn
class IncidentWorkflow:
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self._inp = inp
        self._state = IncidentState(incident_id=inp.incident_id)
        self._group: AlertGroup = inp.group
        self._alerts: dict[str, Alert] = {}
        self._unrecorded: dict[str, Alert] = {}  # arrived or changed since the ledger last saw them
        self._dropped = 0
        self._resolved = False
        self._route = "infrastructure"
        self._message_ref: str | None = None
        self._occurrence = 0  # set when the run starts
        self._local = False  # short stages as local activities (set when the run starts)
        self._level = AutomationLevel.MANUAL  # the level the plan may run at (policy stage)
        self._trust = False  # earned autonomy (patched in: histories from before it replay without)
        self._ask_nothing = False  # VERBOSE asks about a plan with nothing to run (set when the run starts)
        self._failing = False  # the run hit an unexpected error and is closing as FAILED
        self._evidence_rule = False  # EVIDENCE_CONFIDENCE_PATCH (set when the run starts)
        self._protected_rule = False  # PROTECTED_NAMESPACES_PATCH (set when the run starts)
        self._allow_namespaces: list[str] = []  # protected namespaces the plan's runbook allows (guard stage)
        self._merge(inp.group, record=False)  # incident.triage records the first alerts

    # -- signals and queries ---------------------------------------------------------------------

    @workflow.signal(name=SIGNAL_ALERTS)
    def alerts(self, sig: AlertsSignal) -> None:
        self._state.signals += 1
        if sig.group.incident_id != self._state.incident_id:
            workflow.logger.warning(
                "incident %s: ignored alerts of group %s", self._state.incident_id, sig.group.incident_id
            )
            return
        self._merge(sig.group)

    @workflow.query(name=QUERY_STATE)
    def state(self) -> IncidentState:
        return self._state

    def _merge(self, group: AlertGroup, *, record: bool = True) -> None:
        """Merge alerts by fingerprint; a repeat changes nothing."""
        for a in group.alerts:
            old = self._alerts.get(a.fingerprint)
            if old is None and len(self._alerts) >= MAX_ALERTS:
                self._dropped += 1
                continue
            if old is not None and (old.status, old.starts_at, old.ends_at) == (a.status, a.starts_at, a.ends_at):
                continue
            self._alerts[a.fingerprint] = a
            if record:
                self._unrecorded[a.fingerprint] = a
        self._group = group
        self._state.alerts_seen = len(self._alerts) + self._dropped
        if (
            group.status == AlertStatus.RESOLVED
            and all(a.status == AlertStatus.RESOLVED for a in self._alerts.values())
            and not self._resolved
        ):
            self._resolved = True
            self._state.resolved_by_alertmanager = True

    def _merged_group(self) -> AlertGroup:
        return self._group.model_copy(update={"alerts": list(self._alerts.values())})

    # -- helpers ---------------------------------------------------------------------------------

    def _begin(self, name: str) -> StageRecord:
        rec = StageRecord(name=name, started_at=workflow.now())
        self._state.stages.append(rec)
        return rec

    @staticmethod
    def _end(rec: StageRecord, detail: str = "") -> None:
        rec.finished_at = workflow.now()
        if detail:
            rec.detail = detail

    async def _short(
        self,
        activity: Any,
        arg: Any,
        *,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy,
        result_type: type | None = None,
    ) -> Any:
        """A short stage (triage, recall, stage, notify, list_tools, guard) as a LOCAL activity:
        it runs in this worker inside the workflow task, with no task-queue round trip and no
        extra workflow task per stage, so the question reaches people sooner (a burst of
        incidents spends less time in workflow tasks). Retries and timeouts are the same; the
        result is recorded in history as a marker, so a replay never runs it again. Runs that
        started before this change (no `LOCAL_STAGES_PATCH` marker) keep regular activities."""
        if self._local:
            try:
                if isinstance(activity, str):
                    return await workflow.execute_local_activity(
                        activity,
                        arg,
                        result_type=result_type,
                        start_to_close_timeout=start_to_close_timeout,
                        schedule_to_close_timeout=start_to_close_timeout * 4,
                        retry_policy=retry_policy,
                    )
                return await workflow.execute_local_activity_method(
                    activity,
                    arg,
                    start_to_close_timeout=start_to_close_timeout,
                    schedule_to_close_timeout=start_to_close_timeout * 4,
                    retry_policy=retry_policy,
                )
            except ActivityError:
                raise
            except FailureError as exc:
                # A local activity's last failure can arrive unwrapped (its ApplicationError or
                # TimeoutError): wrap it, so callers handle both kinds of stage alike.
                if is_cancelled_exception(exc):
                    raise
                name = activity if isinstance(activity, str) else getattr(activity, "__name__", "activity")
                raise ActivityError(
                    f"local activity {name} failed",
                    scheduled_event_id=0,
                    started_event_id=0,
                    identity="",
                    activity_type=name,
                    activity_id="",
                    retry_state=None,
                ) from exc
        if isinstance(activity, str):
            return await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=start_to_close_timeout,
                retry_policy=retry_policy,
            )
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy
        )

    async def _set_status(self, status: IncidentStatus) -> None:
        """The status in state and search attributes; active statuses go to the ledger now,
        final ones with the record."""
        self._state.status = status
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(status.value)])
        if status not in _ACTIVE:
            return
        alerts, self._unrecorded = list(self._unrecorded.values()), {}
        try:
            await self._short(
                IncidentActivities.stage,
                StageInput(incident_id=self._state.incident_id, status=status, alerts=alerts),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("incident %s: stage %s not recorded: %s", self._state.incident_id, status, exc)

    async def _notify(self, kind: NotifyKind, text: str, **extra: Any) -> str | None:
        try:
            res = await self._short(
                IncidentActivities.notify,
                NotifyInput(incident_id=self._state.incident_id, kind=kind, route=self._route, text=text, **extra),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("incident %s: %s notification failed: %s", self._state.incident_id, kind, exc)
            return None
        return res.message_ref

    async def _guard(self, actions: list[ToolCall]) -> GuardResult:
        """The guard's verdict; if it cannot be reached, everything is refused (fail closed)."""
        try:
            return await self._short(
                "tools.guard",
                GuardInput(
                    incident_id=self._state.incident_id,
                    actions=actions,
                    agent=AGENT,
                    allow_namespaces=self._allow_namespaces,
                ),
                result_type=GuardResult,
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY_FEW,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            reason = f"guard unavailable: {_error(exc)}"
            return GuardResult(
                actions=[GuardedAction(index=i, call=c, allowed=False, reason=reason) for i, c in enumerate(actions)]
            )

    # -- the run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentState:
        """The stages (`_stages`). A run that cannot go on (a bug, data the code did not expect)
        ends visibly: FAILED in the ledger, with the error, and a notification; never a workflow
        task retried forever while the incident looks open."""
        try:
            return await self._stages(inp)
        except (workflow.NondeterminismError, ReadOnlyContextError):
            raise  # replay problems are the worker's to report, not the incident's
        except Exception as exc:
            if is_cancelled_exception(exc) or self._failing:
                raise
            return await self._end_visibly(exc)

    async def _end_visibly(self, exc: Exception) -> IncidentState:
        self._failing = True
        detail = f"the incident could not proceed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        workflow.logger.error("incident %s: %s", self._state.incident_id, detail)
        self._end_open_stages(detail)
        return await self._close(IncidentStatus.FAILED, VerifyResult(outcome="failure", detail=detail))

    def _end_open_stages(self, detail: str) -> None:
        for rec in self._state.stages:
            if rec.finished_at is None:
                self._end(rec, detail)

    async def _stages(self, inp: IncidentInput) -> IncidentState:
        st, cfg = self._state, inp.config
        iid = inp.incident_id
        self._local = workflow.patched(LOCAL_STAGES_PATCH)
        self._ask_nothing = workflow.patched(ASK_NOTHING_TO_RUN_PATCH)
        # Decided here, before any local activity (a patch marker right behind a local activity's
        # marker in one workflow task once failed a query's replay), and used at the policy stage.
        self._evidence_rule = workflow.patched(EVIDENCE_CONFIDENCE_PATCH)
        self._protected_rule = workflow.patched(PROTECTED_NAMESPACES_PATCH)
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(st.status.value)])

        # 1. triage
        rec = self._begin("triage")
        self._occurrence = occurrence(rec.started_at)
        try:
            tri = await self._short(IncidentActivities.triage, inp, start_to_close_timeout=_SHORT, retry_policy=_RETRY)
            detail = ""
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            tri = policy.triage(inp.group.labels, group_annotations(inp.group))
            detail = f"not recorded in the ledger: {_error(exc)}"
        st.title, st.severity, st.category, self._route = tri.title, tri.severity, tri.category, tri.route
        workflow.upsert_search_attributes(
            [
                sa.INCIDENT_SEVERITY.value_set(tri.severity.value),
                sa.INCIDENT_CATEGORY.value_set(tri.category.value),
                *([sa.ALERT_NAME.value_set(sa.keyword(tri.alertname))] if tri.alertname else []),
            ]
        )
        self._end(rec, detail or f"{tri.severity.value}/{tri.category.value} → {tri.route}")

        # 2. recall, then the question (before the model: people see the alert at once)
        rec = self._begin("recall")
        labels = inp.group.labels
        annotations = group_annotations(inp.group)
        text = "\n".join(
            t for t in (tri.title, tri.alertname, annotations.get("description", "")) if t and t.strip()
        ) or (tri.alertname or tri.title)
        try:
            recall = await self._short(
                IncidentActivities.recall,
                RecallInput(incident_id=iid, text=text, labels=labels, limit=cfg.recall_limit),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY_FEW,
            )
            detail = ", ".join(f"{r.id} ({r.score:.2f})" for r in recall.runbooks) or "no runbook"
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            recall, detail = RecallResult(), f"recall failed: {_error(exc)}"
        best = recall.runbooks[0] if recall.runbooks else None
        if best is not None:
            self._set_runbook(best.id)
        self._end(rec, detail)
        if self._resolved:
            return await self._close_resolved_early()

        self._message_ref = await self._notify(
            NotifyKind.QUESTION,
            question_text(tri, self._merged_group(), best),
            plan=list(best.actions) if best is not None else [],
            approval_id=approval_id_for(iid, self._occurrence),
            runbook_id=best.id if best is not None else None,
        )

        # 3. propose
        rec = self._begin("propose")
        try:
            tools = (
                await self._short(
                    "tools.list_tools",
                    ListToolsInput(agent=AGENT),
                    result_type=ListToolsResult,
                    start_to_close_timeout=_SHORT,
                    retry_policy=_RETRY_FEW,
                )
            ).tools
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("incident %s: no tool list: %s", iid, exc)
            tools = []
        pinp = ProposeInput(
            incident_id=iid, title=tri.title, labels=labels, annotations=annotations, recall=recall, tools=tools
        )
        try:
            prop = await workflow.execute_activity_method(
                IncidentActivities.propose, pinp, start_to_close_timeout=PROPOSE_TIMEOUT, retry_policy=PROPOSE_RETRY
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            prop = fallback_proposal(pinp, f"propose failed: {_error(exc)}")
        st.proposal, st.proposal_source = prop.proposal, prop.source
        st.proposal_redactions = dict(prop.redactions)  # state only: no command, replay-safe
        if prop.proposal.runbook_id:
            self._set_runbook(prop.proposal.runbook_id)
        self._end(rec, prop.note or f"{prop.source}: confidence {prop.proposal.confidence:.2f}")

        # 4. guard
        rec = self._begin("guard")
        allowed: list[ToolCall] = []
        protected: list[str] = []  # protected namespaces the allowed plan changes (its runbook allows them)
        if prop.proposal.actions:
            if self._protected_rule:  # runs from before it get no allowance: protected namespaces are refused
                self._allow_namespaces = namespace_allowance(recall, st.runbook_id, list(prop.proposal.actions))
            guarded = await self._guard(list(prop.proposal.actions))
            st.refused.extend(guarded.refused)
            allowed = guarded.allowed
            protected = sorted({ns for a in guarded.actions if a.allowed for ns in a.protected})
        self._end(rec, f"{len(allowed)} allowed, {len(st.refused)} refused")

        # 5. policy
        rec = self._begin("policy")
        runbook = next((r for r in recall.runbooks if r.id == st.runbook_id), None)
        level = policy.plan_level(
            runbook.automation_level if runbook is not None else None,
            runbook.actions if runbook is not None else [],
            allowed,
        )
        confidence = prop.proposal.confidence
        if self._evidence_rule:
            # The model's confidence can make the agent ask, never make it run (policy.run_confidence).
            confidence = policy.run_confidence(runbook, confidence)
        # A protected namespace a runbook allows: a human approves every run, whatever its level.
        protected_asks = bool(protected) and self._protected_rule
        verdict = policy.decide(
            level, cfg.approval_mode, confidence, cfg.confidence_threshold, bool(allowed), protected=protected_asks
        )
        if verdict == PolicyVerdict.ASK_ACKNOWLEDGE and not self._ask_nothing:
            verdict = PolicyVerdict.NOTHING_TO_DO  # a run from before VERBOSE asked about it
        st.verdict, st.plan = verdict, allowed
        self._level = level
        self._trust = workflow.patched("autonomy-trust")
        nothing_to_run = verdict == PolicyVerdict.ASK_ACKNOWLEDGE
        st.plan_hash = plan_hash(allowed) if allowed or nothing_to_run else None  # the empty plan is asked about
        self._end(rec, f"{verdict.value} ({level.value}, {cfg.approval_mode.value})")
        asking = verdict in (PolicyVerdict.ASK, PolicyVerdict.ASK_RECOMMEND, PolicyVerdict.ASK_ACKNOWLEDGE)
        choices = list(NOTHING_TO_RUN_CHOICES) if nothing_to_run else []
        recommendation = _recommendation(verdict, runbook, level, confidence)
        why_nothing = (
            nothing_to_run_reason(st, prop, len(tools), runbook)
            if verdict in (PolicyVerdict.ASK_ACKNOWLEDGE, PolicyVerdict.NOTHING_TO_DO)
            else ""
        )
        diagnosis = diagnosis_text(
            st,
            prop,
            verdict,
            recommendation,
            run_confidence=confidence if runbook is not None else None,
            protected=protected if protected_asks else [],
            why_nothing=why_nothing,
        )
        self._message_ref = (
            await self._notify(
                NotifyKind.DIAGNOSIS,
                diagnosis,
                edit_of=self._message_ref,
                plan=allowed,
                plan_hash=st.plan_hash,
                approval_id=approval_id_for(iid, self._occurrence) if asking else None,
                runbook_id=st.runbook_id,
                confidence=prop.proposal.confidence,
                choices=choices,
            )
            or self._message_ref
        )
        if self._resolved:
            return await self._close_resolved_early()

        # 6. approval
        plan = allowed
        if verdict == PolicyVerdict.NOTHING_TO_DO:
            return await self._close_nothing_to_do()
        if asking:
            decision = await self._approve(cfg, diagnosis, recommendation, choices)
            if decision is None:  # the alert resolved first
                return await self._close_resolved_early()
            st.decision = decision
            if decision.choice == "acknowledged":  # a human saw it: nothing runs, watch for resolution
                return await self._close_nothing_to_do()
            if decision.choice in ("ignored", "expired"):
                status = IncidentStatus.IGNORED if decision.choice == "ignored" else IncidentStatus.EXPIRED
                return await self._close(status, None)
            plan = list(decision.plan)
            if decision.choice == "modified":
                rec = self._begin("guard")
                guarded = await self._guard(plan)
                st.refused.extend(guarded.refused)
                st.plan, st.plan_hash = plan, plan_hash(plan)
                refused = guarded.refused
                self._end(rec, f"modified plan: {len(refused)} refused")
                if refused:
                    reasons = "; ".join(f"{r.call.tool}: {r.reason}" for r in refused)
                    return await self._close(
                        IncidentStatus.FAILED,
                        VerifyResult(
                            outcome="failure", detail=f"the modified plan was refused, nothing ran: {reasons}"
                        ),
                    )
            if self._resolved:
                return await self._close_resolved_early()

        # 7. execute (the card says so first: a human watching sees the approval taken up)
        await self._set_status(IncidentStatus.EXECUTING)
        if self._message_ref and plan and workflow.patched(EXECUTING_NOTICE_PATCH):
            self._message_ref = (
                await self._notify(NotifyKind.UPDATE, executing_text(st, plan), edit_of=self._message_ref)
                or self._message_ref
            )
        rec = self._begin("execute")
        failed = await self._execute(plan)
        self._end(rec, failed.error if failed is not None else f"{len(plan)} action(s) succeeded")
        done_text = executed_text(st)
        if verdict == PolicyVerdict.RUN_THEN_NOTIFY:
            if not self._trust:  # with earned autonomy, DONE follows the outcome (in `_close`)
                await self._notify(NotifyKind.DONE, done_text, plan=plan, plan_hash=plan_hash(plan))
        else:
            self._message_ref = (
                await self._notify(NotifyKind.UPDATE, done_text, edit_of=self._message_ref) or self._message_ref
            )
        if failed is not None:
            return await self._close(
                IncidentStatus.FAILED,
                VerifyResult(outcome="failure", detail=f"action {failed.index} ({failed.tool}): {failed.error}"),
            )

        # 8. verify
        await self._set_status(IncidentStatus.VERIFYING)
        rec = self._begin("verify")
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=cfg.verify_window_s))
        if self._resolved:
            outcome = VerifyResult(outcome="success", detail="the alert resolved after the actions ran")
            self._end(rec, outcome.detail)
            return await self._close(IncidentStatus.RESOLVED, outcome)
        outcome = VerifyResult(
            outcome="unknown", detail=f"the alert did not resolve within {cfg.verify_window_s // 60} min; no check ran"
        )
        self._end(rec, outcome.detail)
        return await self._close(IncidentStatus.UNKNOWN, outcome)

    def _set_runbook(self, runbook_id: str) -> None:
        if self._state.runbook_id != runbook_id:
            self._state.runbook_id = runbook_id
            workflow.upsert_search_attributes([sa.RUNBOOK_ID.value_set(sa.keyword(runbook_id))])

    async def _approve(
        self, cfg: IncidentConfig, question: str, recommendation: str, choices: list[Choice]
    ) -> ApprovalResult | None:
        """Ask a human (child workflow); None when the alert resolved before the answer.
        `choices`: the answers offered (empty: approve, ignore, modify)."""
        st = self._state
        aid = approval_id_for(st.incident_id, self._occurrence)
        rec = self._begin("approval")
        req = ApprovalRequest(
            approval_id=aid,
            incident_id=st.incident_id,
            question=question,
            plan=st.plan,
            plan_hash=st.plan_hash or plan_hash(st.plan),
            route=self._route,
            recommendation=recommendation,
            approvers=list(cfg.approvers),
            remind_after_s=cfg.remind_after_s,
            escalate_after_s=cfg.escalate_after_s,
            expire_after_s=cfg.expire_after_s,
            message_ref=self._message_ref,
            choices=choices or list(PLAN_CHOICES),
        )
        handle = await workflow.start_child_workflow(
            ApprovalWorkflow.run,
            req,
            id=aid,
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
        )
        st.approval_id = aid
        await self._set_status(IncidentStatus.AWAITING_APPROVAL)
        await workflow.wait_condition(lambda: handle.done() or self._resolved)
        if not handle.done():
            handle.cancel()
            with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
                await handle
            self._end(rec, "cancelled: the alert resolved before an answer")
            return None
        try:
            result = handle.result()
        except ChildWorkflowError as exc:
            self._end(rec, f"approval failed: {_error(exc)}")
            return ApprovalResult(approval_id=aid, choice="expired", decided_at=workflow.now())
        self._end(rec, f"{result.choice} by {result.by or 'nobody'}")
        return result

    async def _execute(self, plan: list[ToolCall]) -> ActionResult | None:
        """Run the plan in order; the first action that does not succeed stops it (and is returned)."""
        st = self._state
        for i, call in enumerate(plan):
            key = idempotency_key(st.incident_id, i, self._occurrence)
            try:
                res = await workflow.execute_activity(
                    "tools.execute",
                    ExecuteInput(
                        incident_id=st.incident_id,
                        index=i,
                        call=call,
                        idempotency_key=key,
                        agent=AGENT,
                        allow_namespaces=self._allow_namespaces,
                    ),
                    result_type=ActionResult,
                    start_to_close_timeout=EXECUTE_TIMEOUT,
                    heartbeat_timeout=EXECUTE_HEARTBEAT,  # the gateway heartbeats during the call
                    retry_policy=EXECUTE_RETRY,
                )
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                refused = isinstance(exc.cause, ApplicationError) and exc.cause.type == TOOL_REFUSED
                res = ActionResult(
                    index=i,
                    tool=call.tool,
                    idempotency_key=key,
                    status="refused" if refused else "failed",
                    error=_error(exc),
                )
            st.actions.append(res)
            if res.status == "refused":
                st.refused.append(GuardedAction(index=i, call=call, allowed=False, reason=res.error or "refused"))
            if res.status != "succeeded":
                return res
        return None

    # -- endings ---------------------------------------------------------------------------------

    async def _close_resolved_early(self) -> IncidentState:
        return await self._close(
            IncidentStatus.RESOLVED,
            VerifyResult(outcome="unknown", detail="the alert resolved before any action ran"),
        )

    async def _close_nothing_to_do(self) -> IncidentState:
        """No action survived: wait for the alert to resolve (so repeats join this incident)."""
        cfg = self._inp.config
        rec = self._begin("verify")
        if workflow.patched(NOTHING_TO_DO_VERIFYING_PATCH):
            # watching for the alert to resolve, nothing to run: `verifying`, not a bare `open`
            await self._set_status(IncidentStatus.VERIFYING)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=cfg.verify_window_s))
        if self._resolved:
            self._end(rec, "resolved; nothing ran")
            return await self._close_resolved_early()
        outcome = VerifyResult(outcome="unknown", detail="nothing to run; the alert is still firing")
        self._end(rec, outcome.detail)
        return await self._close(IncidentStatus.UNKNOWN, outcome)

    async def _close(self, status: IncidentStatus, outcome: VerifyResult | None) -> IncidentState:
        st = self._state
        st.outcome = outcome
        await self._set_status(status)
        rec = self._begin("record")
        try:
            res = await workflow.execute_activity_method(
                IncidentActivities.record,
                RecordInput(state=st, group=self._merged_group()),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
            )
            self._end(rec, "decision indexed" if res.decision_indexed else "recorded")
            if res.learned_runbook_id:
                self._set_runbook(res.learned_runbook_id)
                rec.detail += f"; new runbook {res.learned_runbook_id}"
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self._end(rec, f"record failed: {_error(exc)}")
        # A run closing on its own error says nothing about the runbook: no trust evaluation.
        evaluation = await self._evaluate_trust() if self._trust and not self._failing else None
        if self._trust and st.verdict == PolicyVerdict.RUN_THEN_NOTIFY and st.actions:
            # Standard runbooks run first and tell after, with the outcome.
            await self._notify(
                NotifyKind.DONE, done_with_outcome_text(st, evaluation), plan=st.plan, plan_hash=st.plan_hash
            )
        if evaluation is not None:
            await self._announce_levels(evaluation)
        text = closing_text(st)
        if status == IncidentStatus.RESOLVED:
            await self._notify(NotifyKind.RESOLVED, text)
        else:
            await self._notify(NotifyKind.UPDATE, text, edit_of=self._message_ref)
        if evaluation is not None and evaluation.ask_promotion is not None:
            await self._start_promotion(evaluation)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return st

    # -- earned autonomy -------------------------------------------------------------------------

    def _evidence(self) -> tuple[AutomationLevel | None, bool | None]:
        """The level the runbook's own plan ran at (None: it did not run as approved or
        automatic) and whether it worked (None: no evidence, e.g. the outcome is unknown)."""
        st = self._state
        ran = [a for a in st.actions if a.status in ("succeeded", "failed")]
        choice = st.decision.choice if st.decision is not None else ("automatic" if ran else None)
        if not ran or choice not in ("approved", "automatic"):
            return None, None
        if any(a.status == "failed" for a in st.actions):
            return self._level, False
        outcome = st.outcome.outcome if st.outcome is not None else "unknown"
        return self._level, (None if outcome == "unknown" else outcome == "success")

    async def _evaluate_trust(self) -> EvaluateTrustResult | None:
        """After the record: demote a standard runbook that failed here (at once, inside this
        incident), promote manual → prompted, and learn whether to ask for standard."""
        st = self._state
        if not st.runbook_id:
            return None
        ran_at, success = self._evidence()
        rec = self._begin("trust")
        try:
            res = await workflow.execute_activity_method(
                TrustActivities.evaluate,
                EvaluateTrustInput(
                    runbook_id=st.runbook_id, incident_id=st.incident_id, ran_at=ran_at, success=success
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self._end(rec, f"trust not evaluated: {_error(exc)}")
            return None
        change = res.demoted or res.promoted
        detail = f"{change.from_level.value} → {change.to_level.value}" if change else res.level.value
        if res.ask_promotion is not None:
            detail += f"; asking for {res.ask_promotion.value}"
        self._end(rec, detail)
        return res

    async def _announce_levels(self, res: EvaluateTrustResult) -> None:
        for change, verb in ((res.demoted, "demoted"), (res.promoted, "promoted")):
            if change is None:
                continue
            text = (
                f"Runbook {change.runbook_id} {verb}: {change.from_level.value} → {change.to_level.value}"
                f" (incident {self._state.incident_id}). {change.reason}"
            )
            try:
                await workflow.execute_activity_method(
                    IncidentActivities.notify,
                    NotifyInput(incident_id=None, kind=NotifyKind.NOTICE, route=LEVEL_ROUTE, text=text),
                    start_to_close_timeout=_SHORT,
                    retry_policy=_RETRY,
                )
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                workflow.logger.warning("incident %s: level notice failed: %s", self._state.incident_id, exc)

    async def _start_promotion(self, res: EvaluateTrustResult) -> None:
        """Ask a human before the runbook becomes standard: `trust.ask_promotion` starts a
        `RunbookPromotionWorkflow` that outlives this incident; its id makes it one question per
        runbook and level."""
        assert res.ask_promotion is not None
        try:
            started = await workflow.execute_activity_method(
                TrustActivities.ask_promotion,
                PromotionInput(
                    runbook_id=res.runbook_id,
                    from_level=res.level,
                    to_level=res.ask_promotion,
                    reason=f"its record after incident {self._state.incident_id}: {trust.record_text(res.record)}",
                ),
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("incident %s: promotion not asked: %s", self._state.incident_id, exc)
            return
        if not started.started:
            workflow.logger.info(
                "incident %s: promotion %s already asked", self._state.incident_id, started.workflow_id
            )


def namespace_allowance(recall: RecallResult, runbook_id: str | None, plan: list[ToolCall]) -> list[str]:
    """The protected namespaces `plan` may change: those its runbook lists under
    `allow_namespaces`, and only when the plan is that runbook's own (rendered) plan; none for a
    model's own plan or any other."""
    runbook = next((r for r in recall.runbooks if r.id == runbook_id), None)
    if runbook is None or not runbook.allow_namespaces or not plan:
        return []
    if plan_hash(plan) != plan_hash(list(runbook.actions)):
        return []
    return list(runbook.allow_namespaces)


# --------------------------------------------------------------------------- message texts


def _call(c: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(c.arguments.items()))
    return f"{c.tool}({args})"


def _plan_lines(plan: list[ToolCall]) -> list[str]:
    return [f"  {i + 1}. {_call(c)}" for i, c in enumerate(plan)] or ["  (none)"]


def question_text(tri: TriageResult, group: AlertGroup, best: RecalledRunbook | None) -> str:
    firing = sum(1 for a in group.alerts if a.status == AlertStatus.FIRING)
    lines = [f"{tri.title}", f"{tri.severity.value} · {tri.category.value} · {firing} alert(s) firing"]
    if best is not None:
        lines.append(f"Runbook: {best.id}: {best.title} ({best.automation_level.value})")
        lines += ["Runbook plan:", *_plan_lines(list(best.actions))]
    else:
        lines.append("No runbook found for this alert.")
    lines.append("The diagnosis follows; then approve, ignore or modify.")
    return "\n".join(lines)


def _recommendation(
    verdict: PolicyVerdict, runbook: RecalledRunbook | None, level: AutomationLevel, confidence: float
) -> str:
    if verdict != PolicyVerdict.ASK_RECOMMEND or runbook is None:
        return ""
    return f"approve: {level.value} runbook {runbook.id}, confidence {confidence:.2f}"


def nothing_to_run_reason(
    st: IncidentState, prop: ProposeResult, tools_offered: int, runbook: RecalledRunbook | None
) -> str:
    """Why a plan has nothing to run, in the operator's words: every action refused (each with
    the guard's reason, which says what to configure when no server offers a tool), no tool
    server configured, no runbook and no action from the model, or a runbook without actions."""
    if st.refused:
        n = len(st.refused)
        return f"Nothing can run: {'the only action was' if n == 1 else f'all {n} actions were'} refused (see above)."
    if tools_offered == 0:
        return "Nothing can run: no MCP tool server offers the incident agent a tool. " + " ".join(
            f"{hint[:1].upper()}{hint[1:]}." for hint in configure_hints()
        )
    if runbook is None:
        model = "the model proposed no action" if prop.source != "fallback" else "the model gave no usable plan"
        return f"Nothing to run: no runbook matches this alert and {model}."
    return f"Nothing to run: runbook {runbook.id} has no action that can run for this alert."


def diagnosis_text(
    st: IncidentState,
    prop: ProposeResult,
    verdict: PolicyVerdict,
    recommendation: str,
    run_confidence: float | None = None,
    protected: list[str] | None = None,
    why_nothing: str = "",
) -> str:
    """`run_confidence`: the confidence the policy used (`policy.run_confidence`); shown when it
    is below the model's own (the runbook's evidence, not the model, set it). `protected`: the
    protected namespaces the plan changes (its runbook allows them; a human decides).
    `why_nothing`: why there is nothing to run (`nothing_to_run_reason`)."""
    p = prop.proposal
    lines = [st.title, f"Diagnosis: {p.summary}", p.diagnosis]
    if prop.source == "fallback":
        lines.append(f"(model fallback: {prop.note})")
    elif prop.source == "cloud":
        lines.append(f"(cloud model: {prop.note})")
    confidence = f"Confidence {p.confidence:.2f}"
    if run_confidence is not None and run_confidence < p.confidence:
        confidence += f" (the model's; the runbook's evidence gives {run_confidence:.2f})"
    lines += [f"{confidence}, risk {p.risk.value}.", "Plan:", *_plan_lines(st.plan)]
    for r in st.refused:
        lines.append(f"Refused: {_call(r.call)}: {r.reason}")
    if protected:
        names = ", ".join(protected)
        lines.append(f"Changes protected namespace(s) {names} (runbook {st.runbook_id} allows it): a human decides.")
    if why_nothing:
        lines.append(why_nothing)
    if verdict == PolicyVerdict.RUN_THEN_NOTIFY:
        lines.append("Standard runbook: running it now; the result follows.")
    elif verdict == PolicyVerdict.ASK_ACKNOWLEDGE:
        lines.append(
            "Acknowledge (you saw it; the incident watches for the alert to resolve), ignore, "
            "or modify (give a plan: it is checked like any other)?"
        )
    elif verdict == PolicyVerdict.NOTHING_TO_DO:
        lines.append("Nothing to run." if not why_nothing else "Watching for the alert to resolve; nothing will run.")
    elif recommendation:
        lines.append(f"Recommended: {recommendation}. Approve, ignore or modify?")
    else:
        lines.append("Approve, ignore or modify?")
    return "\n".join(line for line in lines if line)


def executing_text(st: IncidentState, plan: list[ToolCall]) -> str:
    who = f" (approved by {st.decision.by})" if st.decision is not None and st.decision.by else ""
    return "\n".join([st.title, f"Executing {len(plan)} action(s){who}:", *_plan_lines(plan)])


def executed_text(st: IncidentState) -> str:
    lines = [st.title, "Ran:"]
    for a in st.actions:
        tail = f": {a.error}" if a.error else ""
        lines.append(f"  {a.index + 1}. {a.tool}: {a.status}{tail}")
    return "\n".join(lines)


def done_with_outcome_text(st: IncidentState, evaluation: EvaluateTrustResult | None) -> str:
    """What a standard runbook did, told after it ran: its actions, the outcome, any demotion."""
    lines = [executed_text(st)]
    if st.outcome is not None:
        lines.append(f"Outcome: {st.outcome.outcome}" + (f": {st.outcome.detail}" if st.outcome.detail else ""))
    if evaluation is not None and evaluation.demoted is not None:
        d = evaluation.demoted
        lines.append(f"Runbook {d.runbook_id} demoted {d.from_level.value} → {d.to_level.value}: it will ask again.")
    return "\n".join(lines)


def closing_text(st: IncidentState) -> str:
    detail = f": {st.outcome.detail}" if st.outcome is not None and st.outcome.detail else ""
    who = f" ({st.decision.choice} by {st.decision.by})" if st.decision is not None and st.decision.by else ""
    return f"{st.status.value}{who}: {st.title}{detail}"


WORKFLOWS = [IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow]
