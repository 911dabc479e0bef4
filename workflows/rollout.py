"""`RolloutWorkflow`: the platform's staged rollout, wave by wave (plan: deploy/waves.yaml).

For each wave from `from_wave` to `to_wave`:

1. **record** (`rollout.record`): each Application's deployed revision (`status.sync.revision`)
   and the chart values the wave toggles, kept in the wave's state for a rollback;
2. **apply** (`rollout.apply`): the values toggles, then an ArgoCD sync per Application,
   waiting for Synced + Healthy (heartbeats);
3. **validate**: the wave's checklist, one activity per check (`CHECK_ACTIVITIES`). A failed
   check (or a failed sync) **rolls the wave back** (`rollout.rollback`: targetRevision and
   values back to the recorded ones, and a sync) and stops the rollout with the reasons;
4. **gate** (not after the last wave): a child `ApprovalWorkflow`, id `gate_id(rollout, N+1)`,
   asking "wave N validated: go to wave N+1?" with the next wave's apply steps as its plan, so
   the answer's `plan_hash` binds it to exactly those steps. Anything but "approved" stops.

The state lives in the workflow (`RolloutState`, query `rollout`), so a worker that dies
anywhere resumes where it was: finished waves are in history and never applied again. The
`RolloutWave` search attribute follows the wave being worked on. `dry_run` reads the
Applications and shows the plan; nothing is patched, no check runs, no gate is asked.
The rollout is bounded (11 waves, each gate expires), so it never continues-as-new.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from agentic_core import search_attributes as sa
    from agentic_core.incident import ApprovalRequest, ApprovalResult, plan_hash
    from agentic_core.rollout import (
        CHECK_ACTIVITIES,
        LONG_CHECKS,
        QUERY_ROLLOUT,
        ApplyInput,
        ApplyResult,
        Check,
        CheckInput,
        CheckResult,
        LoadPlanInput,
        LoadPlanResult,
        RecordInput,
        RecordResult,
        RollbackInput,
        RolloutInput,
        RolloutState,
        RolloutStatus,
        Wave,
        WaveResult,
        gate_id,
    )
    from workflows.approval import ApprovalWorkflow

_SHORT = timedelta(seconds=60)
_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_RETRY_FEW = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)
)
HEARTBEAT = timedelta(seconds=60)
LONG_CHECK_TIMEOUT = timedelta(minutes=15)


def _error(exc: FailureError) -> str:
    cause = exc.cause
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return str(cause or exc)


@workflow.defn
class RolloutWorkflow:
    @workflow.init
    def __init__(self, inp: RolloutInput) -> None:
        self._state = RolloutState(from_wave=inp.from_wave, to_wave=inp.to_wave, dry_run=inp.dry_run)

    @workflow.query(name=QUERY_ROLLOUT)
    def rollout(self) -> RolloutState:
        return self._state

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutState:
        st = self._state
        problems = inp.problems()
        if problems:
            raise ApplicationError("; ".join(problems), type="InvalidRolloutInput", non_retryable=True)
        workflow.upsert_search_attributes([sa.ROLLOUT_WAVE.value_set(inp.from_wave)])
        plan = await workflow.execute_activity(
            "rollout.load_plan",
            LoadPlanInput(from_wave=inp.from_wave, to_wave=inp.to_wave),
            result_type=LoadPlanResult,
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY_FEW,
        )
        waves = plan.waves
        for i, wave in enumerate(waves):
            nxt = waves[i + 1] if i + 1 < len(waves) else None
            if not await self._wave(inp, plan.argocd_namespace, wave, nxt):
                return st
        st.status = RolloutStatus.SUCCEEDED
        st.gate_id = None
        return st

    async def _wave(self, inp: RolloutInput, ns: str, wave: Wave, nxt: Wave | None) -> bool:
        """One wave: record, apply, validate, gate. False when the rollout stops here."""
        st = self._state
        wr = WaveResult(wave=wave.wave, name=wave.name, phase="applying")
        st.waves.append(wr)
        st.current_wave = wave.wave
        st.status = RolloutStatus.RUNNING
        workflow.upsert_search_attributes([sa.ROLLOUT_WAVE.value_set(wave.wave)])
        apps = wave.synced_applications()
        apply_timeout = timedelta(seconds=inp.apply_timeout_s + 60)

        rec = await workflow.execute_activity(
            "rollout.record",
            RecordInput(wave=wave.wave, argocd_namespace=ns, applications=apps, toggled=wave.values),
            result_type=RecordResult,
            start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        wr.recorded = rec.applications
        try:
            applied = await workflow.execute_activity(
                "rollout.apply",
                ApplyInput(
                    wave=wave.wave,
                    argocd_namespace=ns,
                    applications=apps,
                    values=wave.values,
                    dry_run=inp.dry_run,
                    timeout_s=inp.apply_timeout_s,
                ),
                result_type=ApplyResult,
                start_to_close_timeout=apply_timeout,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=_RETRY_FEW,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            applied = ApplyResult(ok=False, reason=_error(exc))
        wr.applied = applied.applications
        if not applied.ok:
            wr.reasons.append(f"wave {wave.wave} apply failed: {applied.reason}")
            return await self._roll_back(inp, ns, wave, wr)

        # validate
        wr.phase = "validating"
        if inp.dry_run:
            wr.checks = [CheckResult(name=c.name, passed=True, detail="dry run: not run") for c in wave.checks]
        else:
            for check in wave.checks:
                wr.checks.append(await self._check(wave.wave, check))
        failed = [c for c in wr.checks if not c.passed]
        if failed:
            wr.reasons += [f"wave {wave.wave} check {c.name} failed: {c.detail}" for c in failed]
            return await self._roll_back(inp, ns, wave, wr)
        wr.phase = "validated"
        if nxt is None or inp.dry_run:
            wr.phase = "done"
            return True

        # gate
        result = await self._gate(inp, ns, wave, nxt)
        wr.gate = result
        wr.phase = "gated"
        if result.choice != "approved":
            why = "modified plans are not supported for a rollout" if result.choice == "modified" else result.choice
            st.reasons.append(f"gate to wave {nxt.wave}: {why} (by {result.by or 'nobody'})")
            st.status = RolloutStatus.STOPPED
            return False
        wr.phase = "done"
        return True

    async def _check(self, wave: int, check: Check) -> CheckResult:
        long = check.name in LONG_CHECKS
        try:
            return await workflow.execute_activity(
                CHECK_ACTIVITIES[check.name],
                CheckInput(wave=wave, check=check),
                result_type=CheckResult,
                start_to_close_timeout=LONG_CHECK_TIMEOUT if long else _SHORT,
                heartbeat_timeout=HEARTBEAT if long else None,
                retry_policy=_RETRY_FEW,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            return CheckResult(name=check.name, passed=False, detail=f"could not run: {_error(exc)}")

    async def _roll_back(self, inp: RolloutInput, ns: str, wave: Wave, wr: WaveResult) -> bool:
        st = self._state
        st.reasons += wr.reasons
        if inp.dry_run:
            wr.phase = "failed"
            st.status = RolloutStatus.FAILED
            return False
        try:
            res = await workflow.execute_activity(
                "rollout.rollback",
                RollbackInput(
                    wave=wave.wave,
                    argocd_namespace=ns,
                    recorded=wr.recorded,
                    toggled=wave.values,
                    timeout_s=inp.apply_timeout_s,
                ),
                result_type=ApplyResult,
                start_to_close_timeout=timedelta(seconds=inp.apply_timeout_s + 60),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=_RETRY_FEW,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            res = ApplyResult(ok=False, reason=_error(exc))
        wr.rollback = res.applications
        if res.ok:
            wr.phase = "rolled_back"
            st.status = RolloutStatus.ROLLED_BACK
        else:
            wr.phase = "failed"
            wr.reasons.append(f"rollback incomplete: {res.reason}")
            st.reasons.append(f"wave {wave.wave} rollback incomplete: {res.reason}")
            st.status = RolloutStatus.FAILED
        return False

    async def _gate(self, inp: RolloutInput, ns: str, wave: Wave, nxt: Wave) -> ApprovalResult:
        st = self._state
        rollout_id = workflow.info().workflow_id
        gid = gate_id(rollout_id, nxt.wave)
        steps = nxt.steps(ns)
        req = ApprovalRequest(
            approval_id=gid,
            incident_id=rollout_id,
            question=(
                f"wave {wave.wave} ({wave.name}) validated: go to wave {nxt.wave} ({nxt.name})?\n"
                + "\n".join(f"- {c.name}: {c.detail}" for wr in st.waves[-1:] for c in wr.checks)
            ),
            plan=steps,
            plan_hash=plan_hash(steps),
            route=inp.route,
            approvers=list(inp.approvers),
            remind_after_s=inp.gate_remind_after_s,
            escalate_after_s=inp.gate_escalate_after_s,
            expire_after_s=inp.gate_expire_after_s,
        )
        st.status = RolloutStatus.AWAITING_GATE
        st.gate_id = gid
        try:
            result = await workflow.execute_child_workflow(
                ApprovalWorkflow.run,
                req,
                id=gid,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
        except ChildWorkflowError as exc:
            if is_cancelled_exception(exc):
                raise
            result = ApprovalResult(approval_id=gid, choice="expired", decided_at=workflow.now(), comment=_error(exc))
        st.gate_id = None
        st.status = RolloutStatus.RUNNING
        return result
