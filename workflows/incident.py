"""`IncidentWorkflow`: one alert group, from the first alert to the recorded outcome.

Stages (each in `IncidentState.stages` with its start and finish times):

1. **triage** (`incident.triage`): severity, category, route, title; opens the ledger row.
2. **recall** (`incident.recall`): runbooks (label matches first) and past decisions. Right
   after it, before the model is asked, the QUESTION notification: the alert, the best
   runbook and its plan. It is sent once per incident, whatever the signals.
   **investigate** (`workflows.investigate`, `INVESTIGATE_PATCH`): the best runbook's read-only
   `evidence:` calls through the tool gateway (`tools.list_tools`, then `tools.execute` each,
   under its own ledger key), at most `investigate_max_calls` within `investigate_budget_s`;
   what cannot be gathered is said. The evidence goes to the state, the planner and the diagnosis.
   A GitOps action of the best runbook (`commit_edit`) is then bound to the commit its diff was
   shown against (`evidence.bind_bases`, `GITOPS_BASE_PATCH`); the diffs go with the DIAGNOSIS.
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
   asks (`PROTECTED_NAMESPACES_PATCH`). A plan the model made (with the alert's untrusted text
   in its context) that is not a runbook's own plan always asks (`policy.untrusted_plan`); in
   NORMAL mode, where that rule is what makes it ask, it is recorded as an `untrusted_plan`
   guardrail event (`guardrails.record`, `UNTRUSTED_PLAN_EVENT_PATCH`). The DIAGNOSIS
   notification edits the QUESTION message with the exact plan (and its hash) a human may approve.
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

Long because one incident is one workflow class: its stages (one method each), its signal and
query handlers and its endings share the run's state, and the order of the commands they issue
is the history every running incident replays; splitting the class would scatter that order
across files. The message texts are `agentic_core.incident_texts`, the proposal rules
`agentic_core.proposals`, the short-stage helper `workflows.stages`.

Every activity call has a start-to-close timeout and a bounded retry policy. The incident is
bounded in time (approval expiry + verify window), so it never continues-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    is_cancelled_exception,
)
from temporalio.workflow import ReadOnlyContextError

from workflows.investigate import Investigation
from workflows.stages import close_given_up, error_message, short_stage

with workflow.unsafe.imports_passed_through():
    from activities.incident.activities import IncidentActivities
    from activities.tools import ERR_REFUSED, EXECUTE, GUARD, LIST_TOOLS
    from activities.trust.activities import TrustActivities
    from agentic_core import policy, trust
    from agentic_core import search_attributes as sa
    from agentic_core.agents import GUARDRAIL_RECORD, GuardrailEvent, GuardrailRecorded
    from agentic_core.alerts import Alert, AlertGroup, AlertStatus
    from agentic_core.autonomy import (
        LEVEL_ROUTE,
        EvaluateTrustInput,
        EvaluateTrustResult,
        PromotionInput,
    )
    from agentic_core.evidence import bind_bases, evidence_diffs
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
        GiveUpInput,
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
        RecallResult,
        RecordInput,
        StageInput,
        StageRecord,
        ToolSpec,
        TriageResult,
        VerifyResult,
        approval_id_for,
        group_annotations,
        idempotency_key,
        occurrence,
        plan_hash,
        recall_input,
    )
    from agentic_core.incident_texts import (
        closing_text,
        diagnosis_text,
        done_with_outcome_text,
        executed_text,
        executing_text,
        nothing_to_run_reason,
        question_text,
        recommendation_text,
    )
    from agentic_core.models import ApprovalMode, AutomationLevel, ToolCall
    from agentic_core.proposals import fallback_proposal
    from workflows.approval import ApprovalWorkflow

LOCAL_STAGES_PATCH = "local-short-stages"  # the short stages became local activities
NOTHING_TO_DO_VERIFYING_PATCH = "nothing-to-do-verifying"  # a nothing-to-do incident shows `verifying` while it watches
AUTONOMY_TRUST_PATCH = "autonomy-trust"  # earned autonomy: the trust stage after the record
EXECUTING_NOTICE_PATCH = "executing-notice"  # the card is edited to "executing" before the actions run
# VERBOSE puts an incident with nothing to run to a human (acknowledge / ignore / modify). Decided
# once at the start of the run (the marker lands in the first workflow task, so replay finds it
# whatever the later workflow tasks look like).
ASK_NOTHING_TO_RUN_PATCH = "ask-nothing-to-run"
# every patch is decided in the run's first workflow task (`_decide_patches` says why)
PATCHES_AT_START_PATCH = "patches-at-start"
# run-then-notify rests on the runbook's evidence (labels, retrieval score), never on the model's own confidence
EVIDENCE_CONFIDENCE_PATCH = "evidence-confidence"
# an allowed action in a protected namespace (kube-system, ...) never runs without a human
PROTECTED_NAMESPACES_PATCH = "protected-namespaces"
# a model's own plan (alert text in its context) asked about in NORMAL mode is an `untrusted_plan` guardrail event
UNTRUSTED_PLAN_EVENT_PATCH = "untrusted-plan-event"
# the investigate stage: the runbook's read-only evidence gathered before the diagnosis
INVESTIGATE_PATCH = "investigate"
# a GitOps action (commit_edit) is bound to the commit its diff was shown against (evidence.bind_bases)
GITOPS_BASE_PATCH = "gitops-base"
# an action whose `tools.execute` gave up (retries exhausted, timed out, no result) is closed in
# the ledger by `tools.give_up`: its row ends `failed` with the reason, never `running` forever
ACTION_GIVE_UP_PATCH = "action-give-up"
# Every patch above, and `EVIDENCE_GIVE_UP_PATCH` (workflows/investigate.py), at once: a run that
# has this one took all of them, and records one marker instead of twelve. Each marker comes with
# an upsert of `TemporalChangeVersion` (the SDK's core adds it), so a new incident's first workflow
# task carried eleven of each, which the server writes as events and as visibility updates: in an
# alert burst on the embedded stack, its SQLite (benchmarks/alert_burst.py). Runs from before it
# replay through the single patches as they recorded them. A later change adds its own patch
# after this one; the next consolidation folds it in.
PATCHES_V10_PATCH = "incident-patches-v10"
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
# An approved action whose MCP server cannot be reached (nothing was sent: `ERR_UNAVAILABLE`)
# waits for it: 10 attempts, 2 s doubling to 30 s between them, about 3 minutes in all, longer
# than the supervisor takes to bring a killed server back even at its longest back-off (60 s).
# Three attempts (6 s) failed the incident while a killed server restarted (benchmarks/chaos.py).
# Only the retry policy changed: the same commands, so replay-safe without a patch.
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=10, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)
)

_ACTIVE = {IncidentStatus.OPEN, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.EXECUTING, IncidentStatus.VERIFYING}


@dataclass(frozen=True)
class _Ask:
    """What the policy stage decided and what a human is asked, if anything."""

    verdict: PolicyVerdict
    asking: bool
    choices: list[Choice]
    recommendation: str
    diagnosis: str


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
        self._at_start = False  # PATCHES_AT_START_PATCH (set when the run starts)
        self._executing_notice = False  # EXECUTING_NOTICE_PATCH, when decided at the start
        self._trust_patch = False  # AUTONOMY_TRUST_PATCH, when decided at the start
        self._evidence_rule = False  # EVIDENCE_CONFIDENCE_PATCH (set when the run starts)
        self._protected_rule = False  # PROTECTED_NAMESPACES_PATCH (set when the run starts)
        self._untrusted_event = False  # UNTRUSTED_PLAN_EVENT_PATCH (set when the run starts)
        self._investigate = False  # INVESTIGATE_PATCH (set when the run starts)
        self._v10 = False  # PATCHES_V10_PATCH: every patch before it, one marker (set when the run starts)
        self._gitops_base = False  # GITOPS_BASE_PATCH (set when the run starts)
        self._give_up = False  # ACTION_GIVE_UP_PATCH (set when the run starts)
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

    def _begin_watching(self, cfg: IncidentConfig) -> StageRecord:
        """The verify stage, saying while it waits what for and until when (`incidents show`, the
        console): state only, no command, so histories replay as before."""
        rec = self._begin("verify")
        until = workflow.now() + timedelta(seconds=cfg.verify_window_s)
        rec.detail = f"watching for the alert to resolve, until {until:%H:%M:%S} UTC"
        return rec

    @staticmethod
    def _end(rec: StageRecord, detail: str = "") -> None:
        rec.finished_at = workflow.now()
        if detail:
            rec.detail = detail

    async def _set_status(self, status: IncidentStatus) -> None:
        """The status in state and search attributes; active statuses go to the ledger now,
        final ones with the record."""
        self._state.status = status
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(status.value)])
        if status not in _ACTIVE:
            return
        alerts, self._unrecorded = list(self._unrecorded.values()), {}
        try:
            await short_stage(
                self._local,
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
            res = await short_stage(
                self._local,
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
            return await short_stage(
                self._local,
                GUARD,
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
            reason = f"guard unavailable: {error_message(exc)}"
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
        """The stages in order; each is its own method and says, by returning the closed state,
        when the incident ends early. The commands they issue, and their order, are the run's
        history: change them only behind `workflow.patched`."""
        cfg = inp.config
        self._decide_patches()
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(self._state.status.value)])
        tri = await self._triage(inp)
        recall = await self._recall(inp, tri)
        if self._resolved:
            return await self._close_resolved_early()
        await self._question(tri, recall)
        if self._investigate:
            await self._investigate_stage(inp, tri, recall)
            if self._gitops_base:
                recall = self._bind_gitops_bases(recall)
        tools, prop = await self._propose(inp, tri, recall)
        allowed, protected = await self._guard_proposal(recall, prop)
        ask = await self._policy(cfg, recall, prop, tools, allowed, protected)
        if self._resolved:
            return await self._close_resolved_early()
        if ask.verdict == PolicyVerdict.NOTHING_TO_DO:
            return await self._close_nothing_to_do()
        plan = allowed
        if ask.asking:
            answered = await self._answer(cfg, ask)
            if isinstance(answered, IncidentState):
                return answered
            plan = answered
        ended = await self._run_plan(plan, ask.verdict)
        if ended is not None:
            return ended
        return await self._verify(cfg)

    def _decide_patches(self) -> None:
        """Patches decided once, in the run's first workflow task, before any local activity.

        A `workflow.patched` call right after a local activity is not replay-safe: when the
        worker was slow, the activity's marker closes one workflow task and the code after it
        (with its patch marker) runs in the next, but a replay resumes that code inside the
        first task, before the patch is known, and fails ("patch marker encountered … but there
        is no corresponding change command"; reproduced under CPU load). So every patch is
        decided here, where its marker is in the first task. Runs from before
        `PATCHES_AT_START_PATCH` decide `autonomy-trust` and `executing-notice` where they did.
        Runs from `PATCHES_V10_PATCH` on record that one marker for all of them."""
        self._v10 = workflow.patched(PATCHES_V10_PATCH)
        if self._v10:  # all of the ones below, one marker (`PATCHES_V10_PATCH`)
            self._local = self._at_start = self._ask_nothing = self._evidence_rule = True
            self._protected_rule = self._untrusted_event = self._investigate = self._gitops_base = True
            self._give_up = self._trust_patch = self._executing_notice = True
            return
        self._local = workflow.patched(LOCAL_STAGES_PATCH)
        self._at_start = workflow.patched(PATCHES_AT_START_PATCH)
        self._ask_nothing = workflow.patched(ASK_NOTHING_TO_RUN_PATCH)
        self._evidence_rule = workflow.patched(EVIDENCE_CONFIDENCE_PATCH)
        self._protected_rule = workflow.patched(PROTECTED_NAMESPACES_PATCH)
        self._untrusted_event = workflow.patched(UNTRUSTED_PLAN_EVENT_PATCH)
        self._investigate = workflow.patched(INVESTIGATE_PATCH)
        self._gitops_base = workflow.patched(GITOPS_BASE_PATCH)
        self._give_up = workflow.patched(ACTION_GIVE_UP_PATCH)
        if self._at_start:
            self._trust_patch = workflow.patched(AUTONOMY_TRUST_PATCH)
            self._executing_notice = workflow.patched(EXECUTING_NOTICE_PATCH)

    # -- 1. triage -------------------------------------------------------------------------------

    async def _triage(self, inp: IncidentInput) -> TriageResult:
        st = self._state
        rec = self._begin("triage")
        self._occurrence = occurrence(rec.started_at)
        try:
            tri = await short_stage(
                self._local, IncidentActivities.triage, inp, start_to_close_timeout=_SHORT, retry_policy=_RETRY
            )
            detail = ""
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            tri = policy.triage(inp.group.labels, group_annotations(inp.group))
            detail = f"not recorded in the ledger: {error_message(exc)}"
        st.title, st.severity, st.category, self._route = tri.title, tri.severity, tri.category, tri.route
        workflow.upsert_search_attributes(
            [
                sa.INCIDENT_SEVERITY.value_set(tri.severity.value),
                sa.INCIDENT_CATEGORY.value_set(tri.category.value),
                *([sa.ALERT_NAME.value_set(sa.keyword(tri.alertname))] if tri.alertname else []),
            ]
        )
        self._end(rec, detail or f"{tri.severity.value}/{tri.category.value} → {tri.route}")
        return tri

    # -- 2. recall, then the question (before the model: people see the alert at once) ------------

    async def _recall(self, inp: IncidentInput, tri: TriageResult) -> RecallResult:
        rec = self._begin("recall")
        try:
            recall = await short_stage(
                self._local,
                IncidentActivities.recall,
                recall_input(inp.incident_id, tri, inp.group, inp.config.recall_limit),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY_FEW,
            )
            detail = ", ".join(f"{r.id} ({r.score:.2f})" for r in recall.runbooks) or "no runbook"
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            recall, detail = RecallResult(), f"recall failed: {error_message(exc)}"
        if recall.runbooks:
            self._set_runbook(recall.runbooks[0].id)
        self._end(rec, detail)
        return recall

    async def _question(self, tri: TriageResult, recall: RecallResult) -> None:
        best = recall.runbooks[0] if recall.runbooks else None
        self._message_ref = await self._notify(
            NotifyKind.QUESTION,
            question_text(tri, self._merged_group(), best),
            plan=list(best.actions) if best is not None else [],
            approval_id=approval_id_for(self._state.incident_id, self._occurrence),
            runbook_id=best.id if best is not None else None,
        )

    # -- 2b. investigate (workflows/investigate.py) ------------------------------------------------

    async def _investigate_stage(self, inp: IncidentInput, tri: TriageResult, recall: RecallResult) -> None:
        """The best runbook's read-only evidence, within the budget, into the state."""
        rec = self._begin("investigate")
        best = recall.runbooks[0] if recall.runbooks else None
        stage = Investigation(inp.incident_id, self._occurrence, inp.config, local=self._local, give_up=self._v10)
        self._state.evidence, detail = await stage.run(best, tri.title)
        self._end(rec, detail)

    def _bind_gitops_bases(self, recall: RecallResult) -> RecallResult:
        """The best runbook's GitOps actions (`commit_edit`) bound to the commit their diff was
        shown against (`evidence.bind_bases`): its plan, and so the plan hash a human approves,
        then names that very diff."""
        if not recall.runbooks or not self._state.evidence:
            return recall
        best = recall.runbooks[0]
        bound = bind_bases(best.actions, self._state.evidence)
        if bound == best.actions:
            return recall
        runbooks = [best.model_copy(update={"actions": bound}), *recall.runbooks[1:]]
        return recall.model_copy(update={"runbooks": runbooks})

    # -- 3. propose ------------------------------------------------------------------------------

    async def _propose(
        self, inp: IncidentInput, tri: TriageResult, recall: RecallResult
    ) -> tuple[list[ToolSpec], ProposeResult]:
        st, iid = self._state, inp.incident_id
        rec = self._begin("propose")
        try:
            tools = (
                await short_stage(
                    self._local,
                    LIST_TOOLS,
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
            incident_id=iid,
            title=tri.title,
            labels=inp.group.labels,
            annotations=group_annotations(inp.group),
            recall=recall,
            tools=tools,
            evidence=list(st.evidence),
        )
        try:
            prop = await workflow.execute_activity_method(
                IncidentActivities.propose,
                pinp,
                task_queue=inp.config.model_queue,  # None: this run's queue (runs from before the split)
                start_to_close_timeout=PROPOSE_TIMEOUT,
                retry_policy=PROPOSE_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            prop = fallback_proposal(pinp, f"propose failed: {error_message(exc)}")
        st.proposal, st.proposal_source = prop.proposal, prop.source
        st.proposal_redactions = dict(prop.redactions)  # state only: no command, replay-safe
        if prop.proposal.runbook_id:
            self._set_runbook(prop.proposal.runbook_id)
        self._end(rec, prop.note or f"{prop.source}: confidence {prop.proposal.confidence:.2f}")
        return tools, prop

    # -- 4. guard --------------------------------------------------------------------------------

    async def _guard_proposal(self, recall: RecallResult, prop: ProposeResult) -> tuple[list[ToolCall], list[str]]:
        """The actions that passed the guard, and the protected namespaces they change (their
        runbook allows them)."""
        st = self._state
        rec = self._begin("guard")
        allowed: list[ToolCall] = []
        protected: list[str] = []
        if prop.proposal.actions:
            if self._protected_rule:  # runs from before it get no allowance: protected namespaces are refused
                self._allow_namespaces = policy.namespace_allowance(recall, st.runbook_id, list(prop.proposal.actions))
            guarded = await self._guard(list(prop.proposal.actions))
            st.refused.extend(guarded.refused)
            allowed = guarded.allowed
            protected = sorted({ns for a in guarded.actions if a.allowed for ns in a.protected})
        self._end(rec, f"{len(allowed)} allowed, {len(st.refused)} refused")
        return allowed, protected

    # -- 5. policy -------------------------------------------------------------------------------

    async def _policy(
        self,
        cfg: IncidentConfig,
        recall: RecallResult,
        prop: ProposeResult,
        tools: list[ToolSpec],
        allowed: list[ToolCall],
        protected: list[str],
    ) -> _Ask:
        """The verdict (`policy.decide`) and the DIAGNOSIS notification with the exact plan."""
        st = self._state
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
        if self._untrusted_event and cfg.approval_mode == ApprovalMode.NORMAL and allowed:
            await self._untrusted_plan_event(prop, runbook, level)
        st.verdict, st.plan = verdict, allowed
        self._level = level
        # earned autonomy applies from here on (an incident closed before its policy has no trust stage)
        self._trust = self._trust_patch if self._at_start else workflow.patched(AUTONOMY_TRUST_PATCH)
        nothing_to_run = verdict == PolicyVerdict.ASK_ACKNOWLEDGE
        st.plan_hash = plan_hash(allowed) if allowed or nothing_to_run else None  # the empty plan is asked about
        self._end(rec, f"{verdict.value} ({level.value}, {cfg.approval_mode.value})")
        asking = verdict in (PolicyVerdict.ASK, PolicyVerdict.ASK_RECOMMEND, PolicyVerdict.ASK_ACKNOWLEDGE)
        choices = list(NOTHING_TO_RUN_CHOICES) if nothing_to_run else []
        recommendation = recommendation_text(verdict, runbook, level, confidence)
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
                approval_id=approval_id_for(st.incident_id, self._occurrence) if asking else None,
                runbook_id=st.runbook_id,
                confidence=prop.proposal.confidence,
                choices=choices,
                diffs=evidence_diffs(st.evidence, st.incident_id, self._occurrence),
            )
            or self._message_ref
        )
        return _Ask(verdict, asking, choices, recommendation, diagnosis)

    async def _untrusted_plan_event(
        self, prop: ProposeResult, runbook: RecalledRunbook | None, level: AutomationLevel
    ) -> None:
        """Record that the model's own plan (made with the alert's untrusted text in its context)
        goes to a human whatever the runbook's level (`policy.untrusted_plan`). A failure to record
        is logged: the incident asks either way."""
        if prop.source == "fallback" or not policy.untrusted_plan(
            list(prop.proposal.actions), list(runbook.actions) if runbook is not None else None
        ):
            return
        st = self._state
        named = (
            f"not runbook {runbook.id}'s own plan (level {runbook.automation_level.value})"
            if runbook is not None
            else "no runbook's plan"
        )
        event = GuardrailEvent(
            key=f"{st.incident_id}/{self._occurrence}/untrusted_plan",
            kind="untrusted_plan",
            agent=AGENT,
            subject=st.incident_id,
            detail=f"the {prop.source} model's plan ({len(prop.proposal.actions)} action(s)) was made with the alert's "
            f"text in its context and is {named}: a human approves it (level {level.value})",
            at=workflow.now(),
        )
        try:
            await short_stage(
                self._local,
                GUARDRAIL_RECORD,
                event,
                result_type=GuardrailRecorded,
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY_FEW,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("incident %s: guardrail event not recorded: %s", st.incident_id, exc)

    # -- 6. approval -----------------------------------------------------------------------------

    async def _answer(self, cfg: IncidentConfig, ask: _Ask) -> list[ToolCall] | IncidentState:
        """A human's answer: the plan to run (approved, or modified and guarded again), or the
        incident's closed state (ignored, expired, acknowledged and watched, resolved first, a
        modified plan refused)."""
        st = self._state
        decision = await self._approve(cfg, ask.diagnosis, ask.recommendation, ask.choices)
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
                    VerifyResult(outcome="failure", detail=f"the modified plan was refused, nothing ran: {reasons}"),
                )
        if self._resolved:
            return await self._close_resolved_early()
        return plan

    # -- 7. execute (the card says so first: a human watching sees the approval taken up) --------

    async def _run_plan(self, plan: list[ToolCall], verdict: PolicyVerdict) -> IncidentState | None:
        """Run the plan; the closed state when an action did not succeed, None to go on."""
        st = self._state
        await self._set_status(IncidentStatus.EXECUTING)
        notice = (
            self._executing_notice
            if self._at_start
            else bool(self._message_ref and plan) and workflow.patched(EXECUTING_NOTICE_PATCH)
        )
        if self._message_ref and plan and notice:
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
            # An action the platform could not run is an error, not a failure of the remedy.
            detail = f"action {failed.index} ({failed.tool}): {failed.error}"
            return await self._close(
                IncidentStatus.FAILED,
                VerifyResult(outcome="error", detail=detail)
                if failed.infrastructure
                else VerifyResult(outcome="failure", detail=detail),
            )
        return None

    # -- 8. verify -------------------------------------------------------------------------------

    async def _verify(self, cfg: IncidentConfig) -> IncidentState:
        await self._set_status(IncidentStatus.VERIFYING)
        rec = self._begin_watching(cfg)
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
            self._end(rec, f"approval failed: {error_message(exc)}")
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
                    EXECUTE,
                    ExecuteInput(
                        incident_id=st.incident_id,
                        index=i,
                        call=call,
                        idempotency_key=key,
                        agent=AGENT,
                        allow_namespaces=self._allow_namespaces,
                    ),
                    result_type=ActionResult,
                    task_queue=self._inp.config.tools_queue,
                    start_to_close_timeout=EXECUTE_TIMEOUT,
                    heartbeat_timeout=EXECUTE_HEARTBEAT,  # the gateway heartbeats during the call
                    retry_policy=EXECUTE_RETRY,
                )
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise
                refused = isinstance(exc.cause, ApplicationError) and exc.cause.type == ERR_REFUSED
                res = ActionResult(
                    index=i,
                    tool=call.tool,
                    idempotency_key=key,
                    status="refused" if refused else "failed",
                    error=error_message(exc),
                    # no result from the tool: the platform could not run it (not the remedy failing)
                    infrastructure=not refused,
                )
                if not refused and self._give_up:
                    res = await self._give_up_action(i, call, key, res)
            st.actions.append(res)
            if res.status == "refused":
                st.refused.append(GuardedAction(index=i, call=call, allowed=False, reason=res.error or "refused"))
            if res.status != "succeeded":
                return res
        return None

    async def _give_up_action(self, index: int, call: ToolCall, key: str, res: ActionResult) -> ActionResult:
        """`tools.execute` gave up on this action: close its ledger row (`tools.give_up`, on this
        run's own queue: the tools workers may be what is gone). The recorded result comes back
        (another attempt may have finished it meanwhile); if the ledger cannot be reached, `res`."""
        closed = await close_given_up(
            GiveUpInput(
                incident_id=self._state.incident_id, index=index, call=call, idempotency_key=key, reason=res.error
            ),
            what=f"incident {self._state.incident_id}: action {key}",
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        return res if closed is None else closed

    # -- endings ---------------------------------------------------------------------------------

    async def _close_resolved_early(self) -> IncidentState:
        return await self._close(
            IncidentStatus.RESOLVED,
            VerifyResult(outcome="unknown", detail="the alert resolved before any action ran"),
        )

    async def _close_nothing_to_do(self) -> IncidentState:
        """No action survived: wait for the alert to resolve (so repeats join this incident)."""
        cfg = self._inp.config
        rec = self._begin_watching(cfg)
        if self._v10 or workflow.patched(NOTHING_TO_DO_VERIFYING_PATCH):
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
            self._end(rec, f"record failed: {error_message(exc)}")
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
        failed = [a for a in st.actions if a.status == "failed"]
        if failed and all(a.infrastructure for a in failed):
            return self._level, None  # the platform could not run it: no evidence about the remedy
        if failed:
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
            self._end(rec, f"trust not evaluated: {error_message(exc)}")
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
