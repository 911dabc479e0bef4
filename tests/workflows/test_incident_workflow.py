"""`IncidentWorkflow` on the time-skipping test server, with fake activities under the real names.

Each test gets a fresh task queue and incident id. The fakes record what the workflow asked
for (notifications, executed actions, stages, the final record), so the tests assert on the
workflow's decisions, not on the activities (tests/integration/test_incident_activities.py does those).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.incident.activities import IncidentActivities
from activities.incident.planner import PlannerConfig
from activities.inference.router import GroupConfig, InferenceRouter, InferenceUnavailable
from agentic_core import policy
from agentic_core import search_attributes as sa
from agentic_core.alerts import AlertStatus
from agentic_core.incident import (
    QUERY_APPROVAL,
    SIGNAL_ALERTS,
    AlertsSignal,
    ApprovalState,
    DecideInput,
    IncidentConfig,
    IncidentInput,
    IncidentStatus,
    NotifyKind,
    PolicyVerdict,
    RecallInput,
    StageInput,
    StageResult,
    approval_id_for,
    plan_hash,
    state_occurrence,
)
from agentic_core.models import ApprovalMode, AutomationLevel, ToolCall
from tests.support.fake_openai import chat_server
from tests.support.incident_fakes import (
    DELETE_NS,
    LABELS,
    LOGS,
    RESTART,
    RUNBOOK_ID,
    SCALE,
    Fakes,
    Run,
    incident,
    make_group,
    replay,
)
from tests.support.temporal import time_skipping_with_attributes
from workflows.incident import IncidentWorkflow

# --------------------------------------------------------------------------- environment


# --------------------------------------------------------------------------- fakes


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


async def test_happy_path_question_approve_execute_resolve(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        assert st.plan == [LOGS, RESTART]
        assert st.plan_hash == plan_hash([LOGS, RESTART])
        assert st.approval_id == approval_id_for(run.incident_id, state_occurrence(st))
        assert (
            run.occurrence == state_occurrence(st)
            and abs(run.occurrence / 1000 - st.stages[0].started_at.timestamp()) < 0.002
        )
        assert st.verdict == PolicyVerdict.ASK  # VERBOSE by default
        # The question went out first, the diagnosis edited it.
        assert fakes.kinds() == [NotifyKind.QUESTION, NotifyKind.DIAGNOSIS]
        question, diagnosis = fakes.notifications
        assert question.plan == [LOGS, RESTART] and RUNBOOK_ID in question.text
        assert diagnosis.edit_of == "msg-1"
        assert diagnosis.plan_hash == st.plan_hash and diagnosis.approval_id == st.approval_id
        assert "OOM killed" in diagnosis.text
        # The recall stage's query (agentic_core.incident.recall_input), unchanged since it was
        # built inline: the summary and the alert's name, one per line; the group's labels.
        assert fakes.recalls == [
            RecallInput(
                incident_id=run.incident_id,
                text="Pod shop/checkout is crash looping.\nKubePodCrashLooping",
                labels=LABELS,
                limit=IncidentConfig().recall_limit,
            )
        ]

        res = await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        assert res.accepted and res.by == "alice"
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()

    assert final.status == IncidentStatus.RESOLVED
    assert final.resolved_by_alertmanager
    assert final.outcome is not None and final.outcome.outcome == "success"
    assert final.decision is not None and (final.decision.choice, final.decision.by) == ("approved", "alice")
    assert [(e.index, e.call, e.idempotency_key) for e in fakes.executed] == [
        (0, LOGS, run.key(0)),
        (1, RESTART, run.key(1)),
    ]
    assert [a.status for a in final.actions] == ["succeeded", "succeeded"]
    assert fakes.kinds() == [
        NotifyKind.QUESTION,
        NotifyKind.DIAGNOSIS,
        NotifyKind.UPDATE,  # executing…
        NotifyKind.UPDATE,  # executed ✓/✗
        NotifyKind.RESOLVED,
    ]
    executing, executed = fakes.notifications[2], fakes.notifications[3]
    assert executing.edit_of == "msg-1" and executed.edit_of == "msg-1"  # the same card, edited
    assert "Executing 2 action(s) (approved by alice)" in executing.text and "restart" in executing.text.lower()
    assert "Ran:" in executed.text
    names = [s.name for s in final.stages]
    assert names == [
        "triage",
        "recall",
        "investigate",
        "propose",
        "guard",
        "policy",
        "approval",
        "execute",
        "verify",
        "record",
        "trust",
    ]
    assert [(e.runbook_id, e.ran_at, e.success) for e in fakes.evaluations] == [
        (RUNBOOK_ID, AutomationLevel.MANUAL, True)
    ]
    for s in final.stages:
        assert s.finished_at is not None and s.finished_at >= s.started_at
    assert [s.status for s in fakes.stages] == [
        IncidentStatus.AWAITING_APPROVAL,
        IncidentStatus.EXECUTING,
        IncidentStatus.VERIFYING,
    ]
    # The resolved alert reached the ledger through the record (the stages saw nothing new).
    assert len(fakes.records) == 1
    rec = fakes.records[0]
    assert rec.state.status == IncidentStatus.RESOLVED
    assert [a.status for a in rec.group.alerts] == [AlertStatus.RESOLVED]
    desc = await run.handle.describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(sa.INCIDENT_STATUS) == "resolved"
    assert attrs.get(sa.INCIDENT_SEVERITY) == "warning"
    assert attrs.get(sa.INCIDENT_CATEGORY) == "infrastructure"
    assert attrs.get(sa.ALERT_NAME) == "KubePodCrashLooping"
    assert attrs.get(sa.RUNBOOK_ID) == RUNBOOK_ID
    approval = await run.approval().describe()
    assert approval.typed_search_attributes.get(sa.APPROVAL_STATE) == "approved"

    await replay(run)


async def test_repeated_group_is_one_incident_and_one_question(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        await run.awaiting()
        group = make_group(run.incident_id)
        for _ in range(5):  # what the intake does: signal-with-start, the workflow already runs
            h = await env.client.start_workflow(
                IncidentWorkflow.run,
                IncidentInput(incident_id=run.incident_id, group=group),
                id=run.incident_id,
                task_queue=run.task_queue,
                start_signal=SIGNAL_ALERTS,
                start_signal_args=[AlertsSignal(group=group)],
            )
            assert h.result_run_id == run.handle.result_run_id
        st = await run.wait_for(lambda s: s.signals == 6)
        assert st.alerts_seen == 1
        # A second alert joins the group: counted once, and recorded with the next stage.
        await run.signal(make_group(run.incident_id, fingerprints=("fp-1", "fp-2")))
        await run.signal(make_group(run.incident_id, fingerprints=("fp-1", "fp-2")))
        st = await run.wait_for(lambda s: s.signals == 8)
        assert st.alerts_seen == 2
        await run.decide(DecideInput(choice="ignored", by="bob", plan_hash=st.plan_hash or ""))
        final = await run.result()

    assert final.status == IncidentStatus.IGNORED
    assert fakes.kinds().count(NotifyKind.QUESTION) == 1
    assert fakes.executed == []
    recorded = [a.fingerprint for s in fakes.stages for a in s.alerts]
    assert recorded == []  # the ignored incident closes without another stage ...
    assert sorted(a.fingerprint for a in fakes.records[0].group.alerts) == ["fp-1", "fp-2"]  # ... the record has them


async def test_refused_tool_is_recorded_and_never_runs(env: WorkflowEnvironment) -> None:
    fakes = Fakes(proposal_actions=[RESTART, DELETE_NS])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        assert st.plan == [RESTART]
        assert [(r.call, r.allowed) for r in st.refused] == [(DELETE_NS, False)]
        assert "allow-list" in st.refused[0].reason
        diagnosis = fakes.notifications[1]
        assert diagnosis.plan == [RESTART] and "Refused: kubernetes.delete_namespace" in diagnosis.text
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert [e.call for e in fakes.executed] == [RESTART]
    assert final.status == IncidentStatus.RESOLVED
    assert final.refused[0].call == DELETE_NS


class DeadModel:
    def __init__(self) -> None:
        self.calls = 0

    async def structured(self, group: str, messages: list[dict[str, Any]], schema: type[Any], **_: Any) -> Any:
        self.calls += 1
        raise InferenceUnavailable("planner: openai/smollm2 at http://127.0.0.1:1/v1 unavailable: refused")


async def test_dead_model_falls_back_to_the_runbook_with_a_note(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    model = DeadModel()
    real = IncidentActivities(
        kb=None, ledger=None, router=model, notifier=None, planner=PlannerConfig(model_timeout_s=5)
    )  # type: ignore[arg-type]
    acts = [a for a in fakes.activities() if a != fakes.propose] + [real.propose]
    async with incident(env, fakes, activities=acts) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        final = await run.result()
    assert model.calls == 2  # one retry through Temporal, then the fallback
    assert final.proposal_source == "fallback"
    assert final.proposal is not None and final.proposal.actions == [LOGS, RESTART]
    assert final.proposal.runbook_id == RUNBOOK_ID
    assert final.proposal.confidence == policy.fallback_confidence(1.8, True)
    propose = next(s for s in final.stages if s.name == "propose")
    assert "fallback to runbook" in propose.detail and "unavailable" in propose.detail
    assert "model fallback" in fakes.notifications[1].text
    assert final.status == IncidentStatus.IGNORED


async def test_a_low_confidence_answer_escalates_to_the_cloud_redacted(env: WorkflowEnvironment) -> None:
    """The real propose activity and `InferenceRouter` against two fake OpenAI-compatible
    servers (local pool, cloud): the local answer is not confident, the cloud is asked with the
    alert redacted, and the counts reach the state, the card and the record."""
    secret, email = "Sup3rS3cret-pw", "jane.doe@example.com"
    labels = {**LABELS, "owner": email, "db_url": f"postgres://app:{secret}@db.shop.svc:5432/app"}
    answer = {"summary": "checkout crash loops", "diagnosis": "bad deploy", "runbook_id": RUNBOOK_ID}
    fakes = Fakes()
    async with chat_server("local") as local, chat_server("cloud") as cloud:
        local.answer(json.dumps({**answer, "actions": [], "confidence": 0.2}))
        cloud.answer(json.dumps({**answer, "actions": [], "confidence": 0.9, "diagnosis": "ask [EMAIL_1]"}))
        router = InferenceRouter(
            [
                GroupConfig(name="planner", model="openai/local", api_base=local.base_url),
                GroupConfig(name="cloud", model="openai/big", api_base=cloud.base_url, api_key=SecretStr("k")),
            ]
        )
        real = IncidentActivities(None, None, router, planner=PlannerConfig(cloud_group="cloud", model_timeout_s=5))  # type: ignore[arg-type]
        acts = [a for a in fakes.activities() if a != fakes.propose] + [real.propose]
        async with incident(env, fakes, activities=acts, labels=labels) as run:
            st = await run.awaiting()
            await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
            final = await run.result()
        assert secret in local.sent_text() and email in local.sent_text()
        assert len(cloud.requests) == 1
        assert secret not in cloud.sent_text() and email not in cloud.sent_text()
    assert final.proposal_source == "cloud" and final.proposal_redactions == {"secret": 1, "email": 1}
    assert final.proposal is not None and final.proposal.diagnosis == f"ask {email}"  # restored in the cluster
    assert final.proposal.actions == [LOGS, RESTART]  # grounded: the runbook's plan
    propose = next(s for s in final.stages if s.name == "propose")
    assert "escalated to the cloud: the local model's confidence 0.20 is below 0.5" in propose.detail
    assert "redacted before sending: 1 secret, 1 email address" in propose.detail
    assert "(cloud model: escalated to the cloud" in fakes.notifications[1].text
    assert fakes.records[0].state.proposal_redactions == {"secret": 1, "email": 1}
    await replay(run)


async def test_modified_plan_runs_the_modified_actions(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(
            DecideInput(choice="modified", by="alice", plan_hash=st.plan_hash or "", modified_plan=[SCALE, RESTART])
        )
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert [e.call for e in fakes.executed] == [SCALE, RESTART]
    assert [e.idempotency_key for e in fakes.executed] == [run.key(i) for i in (0, 1)]
    assert fakes.guarded[-1].actions == [SCALE, RESTART]  # the human's plan is guarded too
    assert final.plan == [SCALE, RESTART] and final.plan_hash == plan_hash([SCALE, RESTART])
    assert final.decision is not None and final.decision.choice == "modified"


async def test_modified_plan_with_a_refused_tool_runs_nothing(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(
            DecideInput(choice="modified", by="alice", plan_hash=st.plan_hash or "", modified_plan=[RESTART, DELETE_NS])
        )
        final = await run.result()
    assert fakes.executed == []
    assert final.status == IncidentStatus.FAILED
    assert final.outcome is not None and "refused" in final.outcome.detail
    assert [r.call for r in final.refused] == [DELETE_NS]


# --------------------------------------------------------------------------- protected namespaces

COREDNS_RESTART = ToolCall(
    tool="kubernetes.restart_deployment", arguments={"namespace": "kube-system", "name": "coredns"}
)


async def test_a_runbook_allowed_protected_namespace_passes_the_guard_but_asks_even_at_standard(
    env: WorkflowEnvironment,
) -> None:
    # A standard runbook whose own plan changes kube-system, which it allows; a confident model
    # and strong evidence: in NORMAL mode it would run alone, but a protected namespace asks.
    fakes = Fakes(
        runbook_level=AutomationLevel.STANDARD,
        runbook_actions=[COREDNS_RESTART],
        runbook_allow_namespaces=["kube-system"],
        confidence=1.0,
    )
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_RECOMMEND and st.plan == [COREDNS_RESTART] and st.refused == []
        assert [g.allow_namespaces for g in fakes.guarded] == [["kube-system"]]
        diagnosis = fakes.notifications[1]
        assert f"Changes protected namespace(s) kube-system (runbook {RUNBOOK_ID} allows it)" in diagnosis.text
        assert "running it now" not in diagnosis.text
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
        await replay(run)
    assert final.decision is not None and final.decision.by == "alice"
    # The allowance travels with the approved action: the gateway checks it again at execution.
    assert [(e.call, e.allow_namespaces) for e in fakes.executed] == [(COREDNS_RESTART, ["kube-system"])]


async def test_a_protected_namespace_is_refused_without_the_runbooks_allowance(env: WorkflowEnvironment) -> None:
    # The runbook does not allow kube-system; and one that does, but whose plan the model
    # replaced, allows nothing for that plan.
    for fakes in (
        Fakes(runbook_level=AutomationLevel.STANDARD, runbook_actions=[COREDNS_RESTART], confidence=1.0),
        Fakes(
            runbook_level=AutomationLevel.STANDARD,
            runbook_allow_namespaces=["kube-system"],
            proposal_actions=[COREDNS_RESTART],
            confidence=1.0,
        ),
    ):
        async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
            final = await run.result()
        assert [g.allow_namespaces for g in fakes.guarded] == [[]]
        assert final.verdict == PolicyVerdict.NOTHING_TO_DO and fakes.executed == []
        assert [(r.call, r.reason) for r in final.refused] == [
            (COREDNS_RESTART, "kubernetes.restart_deployment: namespace 'kube-system' is protected")
        ]


async def test_a_modified_plan_into_a_protected_namespace_is_guarded_the_same_way(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(
            DecideInput(choice="modified", by="alice", plan_hash=st.plan_hash or "", modified_plan=[COREDNS_RESTART])
        )
        final = await run.result()
    assert fakes.executed == []
    assert final.status == IncidentStatus.FAILED
    assert final.outcome is not None and "namespace 'kube-system' is protected" in final.outcome.detail


async def test_standard_runbook_runs_first_and_tells_after(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_level=AutomationLevel.STANDARD, confidence=0.9)
    config = IncidentConfig(approval_mode=ApprovalMode.NORMAL)
    async with incident(env, fakes, config) as run:
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert final.verdict == PolicyVerdict.RUN_THEN_NOTIFY
    assert final.approval_id is None and final.decision is None
    assert [e.call for e in fakes.executed] == [LOGS, RESTART]
    assert fakes.kinds() == [
        NotifyKind.QUESTION,
        NotifyKind.DIAGNOSIS,
        NotifyKind.UPDATE,  # executing…, on the question's card
        NotifyKind.DONE,
        NotifyKind.RESOLVED,
    ]
    assert "running it now" in fakes.notifications[1].text
    assert "approval" not in [s.name for s in final.stages]
    with pytest.raises(RPCError):
        await run.approval().describe()  # no child was started
    assert final.status == IncidentStatus.RESOLVED


async def test_standard_runbook_with_low_confidence_asks_with_a_recommendation(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_level=AutomationLevel.STANDARD, confidence=0.5)
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_RECOMMEND
        approval = await run.approval().query(QUERY_APPROVAL, result_type=ApprovalState)
        assert approval.request.recommendation.startswith("approve: standard runbook")
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        assert (await run.result()).status == IncidentStatus.IGNORED


@pytest.mark.parametrize(
    ("score", "matched", "evidence"),
    [(0.9, False, "0.45"), (1.05, True, "0.61")],  # found by text alone; labels match, text barely
    ids=["text-only", "weak-label-match"],
)
async def test_the_models_confidence_never_makes_a_standard_runbook_run_alone(
    env: WorkflowEnvironment, score: float, matched: bool, evidence: str
) -> None:
    # A model talked into confidence 1.0 (by alert text or a recalled decision) names a standard
    # runbook on weak evidence: in NORMAL mode a human is asked all the same.
    fakes = Fakes(
        runbook_level=AutomationLevel.STANDARD, confidence=1.0, runbook_score=score, runbook_matched_labels=matched
    )
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_RECOMMEND
        approval = await run.approval().query(QUERY_APPROVAL, result_type=ApprovalState)
        assert approval.request.recommendation == f"approve: standard runbook {RUNBOOK_ID}, confidence {evidence}"
        diagnosis = fakes.notifications[1]
        assert diagnosis.kind == NotifyKind.DIAGNOSIS and diagnosis.confidence == 1.0  # shown to the human
        assert f"Confidence 1.00 (the model's; the runbook's evidence gives {evidence})" in diagnosis.text
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        assert (await run.result()).status == IncidentStatus.IGNORED
    assert fakes.executed == []


async def test_a_standard_runbook_matched_by_labels_still_runs_alone(env: WorkflowEnvironment) -> None:
    # Strong evidence (labels match, a good text score: 0.84) and a confident model: it runs.
    fakes = Fakes(runbook_level=AutomationLevel.STANDARD, confidence=1.0, runbook_score=1.8)
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert final.verdict == PolicyVerdict.RUN_THEN_NOTIFY and final.approval_id is None
    assert [e.call for e in fakes.executed] == [LOGS, RESTART]


async def test_standard_runbook_with_another_plan_asks(env: WorkflowEnvironment) -> None:
    # The model named the standard runbook but proposed a different plan (the alert's untrusted
    # text was in its context): a human decides, and the guardrail event says why.
    fakes = Fakes(runbook_level=AutomationLevel.STANDARD, confidence=0.95, proposal_actions=[SCALE])
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        await run.result()
        await replay(run)
    assert fakes.executed == []
    [event] = fakes.guardrail_events
    assert (event.key, event.kind, event.agent, event.subject, event.tool) == (
        f"{run.incident_id}/{run.occurrence}/untrusted_plan",
        "untrusted_plan",
        "incident",
        run.incident_id,
        None,
    )
    assert event.detail == (
        "the llm model's plan (1 action(s)) was made with the alert's text in its context and is not runbook "
        f"{RUNBOOK_ID}'s own plan (level standard): a human approves it (level manual)"
    )


@pytest.mark.parametrize(
    ("mode", "proposal"),
    [(ApprovalMode.VERBOSE, [SCALE]), (ApprovalMode.NORMAL, None)],
    ids=["verbose-asks-anyway", "the-runbooks-own-plan"],
)
async def test_no_untrusted_plan_event_where_the_rule_is_not_why_it_asks(
    env: WorkflowEnvironment, mode: ApprovalMode, proposal: list[ToolCall] | None
) -> None:
    fakes = Fakes(runbook_level=AutomationLevel.PROMPTED, proposal_actions=proposal)
    async with incident(env, fakes, IncidentConfig(approval_mode=mode)) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        await run.result()
    assert fakes.guardrail_events == []


async def test_a_model_plan_without_any_runbook_is_an_untrusted_plan_event(env: WorkflowEnvironment) -> None:
    fakes = Fakes(recall_runbook=False, proposal_actions=[SCALE], confidence=1.0)
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        await run.result()
    [event] = fakes.guardrail_events
    assert event.kind == "untrusted_plan" and "is no runbook's plan" in event.detail


async def test_resolved_before_approval_cancels_the_question(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        # No time skipping while it ends: on a loaded machine the test server could otherwise
        # jump to the approval's reminder timer before the cancellation reached it (seen in CI).
        with env.auto_time_skipping_disabled():
            await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
            final = await run.result()
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
    assert final.status == IncidentStatus.RESOLVED and final.resolved_by_alertmanager
    assert final.actions == [] and fakes.executed == []
    assert final.decision is None
    assert final.outcome is not None and final.outcome.outcome == "unknown"
    assert fakes.kinds() == [NotifyKind.QUESTION, NotifyKind.DIAGNOSIS, NotifyKind.RESOLVED]
    desc = await run.approval().describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED
    assert desc.typed_search_attributes.get(sa.APPROVAL_STATE) == "cancelled"
    await replay(run)


async def test_unanswered_question_expires(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        await run.awaiting()
        final = await run.result()  # time skips through reminder, escalation and expiry
    assert final.status == IncidentStatus.EXPIRED
    assert final.decision is not None and final.decision.choice == "expired"
    assert fakes.executed == []
    assert fakes.kinds() == [
        NotifyKind.QUESTION,
        NotifyKind.DIAGNOSIS,
        NotifyKind.REMINDER,
        NotifyKind.ESCALATION,
        NotifyKind.EXPIRED,
        NotifyKind.UPDATE,
    ]
    assert fakes.notifications[3].route == "critical"
    started = final.stages[0].started_at
    approval = next(s for s in final.stages if s.name == "approval")
    assert approval.finished_at is not None
    assert approval.finished_at - started >= timedelta(hours=4)
    await replay(run)


async def test_first_failed_action_stops_the_plan(env: WorkflowEnvironment) -> None:
    fakes = Fakes(fail_tools={LOGS.tool})
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        final = await run.result()
    assert [e.call for e in fakes.executed] == [LOGS]
    assert final.status == IncidentStatus.FAILED
    assert final.outcome is not None and final.outcome.outcome == "failure" and "boom" in final.outcome.detail


async def test_actions_that_do_not_resolve_the_alert_end_unknown(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes, IncidentConfig(verify_window_s=600)) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        # while it waits, the stage says what for and until when (`incidents show`, the console)
        waiting = await run.wait_for(lambda s: any(x.name == "verify" for x in s.stages))
        detail = next(x for x in waiting.stages if x.name == "verify").detail
        assert detail.startswith("watching for the alert to resolve, until ") and detail.endswith(" UTC"), detail
        final = await run.result()
    assert final.status == IncidentStatus.UNKNOWN
    assert final.outcome is not None and final.outcome.outcome == "unknown"
    verify = next(s for s in final.stages if s.name == "verify")
    assert verify.finished_at is not None and verify.finished_at - verify.started_at >= timedelta(minutes=10)


async def test_nothing_to_do_when_the_guard_refuses_everything(env: WorkflowEnvironment) -> None:
    """NORMAL mode: nothing to run is not put to a human; the incident watches and says why."""
    fakes = Fakes(proposal_actions=[DELETE_NS], runbook_actions=[])
    async with incident(env, fakes, IncidentConfig(approval_mode=ApprovalMode.NORMAL)) as run:
        await run.wait_for(lambda s: s.verdict is not None)
        # nothing runs, the incident watches for the alert to resolve: `verifying`, for people and
        # for the Web UI's IncidentStatus search attribute alike
        watching = await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        assert watching.verdict == PolicyVerdict.NOTHING_TO_DO
        verify = next(x for x in watching.stages if x.name == "verify")
        assert verify.detail.startswith("watching for the alert to resolve, until "), verify  # `incidents show`
        desc = await run.handle.describe()
        assert desc.typed_search_attributes.get(sa.INCIDENT_STATUS) == IncidentStatus.VERIFYING.value
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert final.verdict == PolicyVerdict.NOTHING_TO_DO
    assert final.status == IncidentStatus.RESOLVED
    assert fakes.executed == [] and final.approval_id is None
    diagnosis = fakes.notifications[1]
    assert diagnosis.kind == NotifyKind.DIAGNOSIS and diagnosis.approval_id is None  # told, not asked
    assert "the only action was refused" in diagnosis.text and "nothing will run" in diagnosis.text


async def test_verbose_asks_about_an_incident_with_nothing_to_run(env: WorkflowEnvironment) -> None:
    """VERBOSE ("ask about everything"): every action refused still ends in a human decision:
    acknowledge, ignore or modify, never approve (there is nothing to approve); acknowledged, the
    incident watches for the alert to resolve, and the decision is recorded like any other."""
    fakes = Fakes(proposal_actions=[DELETE_NS], runbook_actions=[])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_ACKNOWLEDGE and st.plan == []
        assert st.plan_hash == plan_hash([]) and st.approval_id is not None
        diagnosis = fakes.notifications[-1]
        assert diagnosis.kind == NotifyKind.DIAGNOSIS and diagnosis.approval_id == st.approval_id
        assert diagnosis.choices == ["acknowledged", "ignored", "modified"]
        assert f"Refused: {DELETE_NS.tool}" in diagnosis.text  # the refusal and its reason
        assert "the only action was refused" in diagnosis.text and "Acknowledge" in diagnosis.text
        approval = await run.approval().query(QUERY_APPROVAL, result_type=ApprovalState)
        assert approval.request.choices == ["acknowledged", "ignored", "modified"]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        assert "nothing to run" in str(refused.value.cause)
        res = await run.decide(DecideInput(choice="acknowledged", by="alice", plan_hash=st.plan_hash or ""))
        assert res.accepted and res.choice == "acknowledged"
        watching = await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        assert watching.decision is not None and watching.decision.choice == "acknowledged"
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert final.status == IncidentStatus.RESOLVED and fakes.executed == []
    assert final.decision is not None and (final.decision.choice, final.decision.by) == ("acknowledged", "alice")
    recorded = fakes.records[-1].state
    assert recorded.decision is not None and recorded.decision.choice == "acknowledged"
    assert "acknowledged by alice" in fakes.notifications[-1].text


async def test_verbose_asks_when_no_runbook_and_no_action_and_ignore_closes(env: WorkflowEnvironment) -> None:
    fakes = Fakes(recall_runbook=False, runbook_actions=[], proposal_actions=[])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_ACKNOWLEDGE
        assert "no runbook matches this alert and the model proposed no action" in fakes.notifications[-1].text
        await run.decide(DecideInput(choice="ignored", by="bob", plan_hash=st.plan_hash or ""))
        final = await run.result()
    assert final.status == IncidentStatus.IGNORED and fakes.executed == []
    assert final.decision is not None and final.decision.choice == "ignored"


async def test_verbose_nothing_to_run_says_what_to_configure_without_tool_servers(env: WorkflowEnvironment) -> None:
    fakes = Fakes(recall_runbook=False, runbook_actions=[], proposal_actions=[], tools=[])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        text = fakes.notifications[-1].text
        assert "no MCP tool server offers the incident agent a tool" in text
        assert "AGENTIC_KUBECONFIG" in text and "AGENTIC_HA_URL" in text and "AGENTIC_SONARR_URL" in text
        await run.decide(DecideInput(choice="ignored", by="bob", plan_hash=st.plan_hash or ""))
        await run.result()


async def test_verbose_nothing_to_run_modified_with_a_plan_runs_it_guarded(env: WorkflowEnvironment) -> None:
    """Modify on a question with nothing to run: the human's plan is guarded like any other, then runs."""
    fakes = Fakes(recall_runbook=False, runbook_actions=[], proposal_actions=[])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(
            DecideInput(choice="modified", by="alice", plan_hash=st.plan_hash or "", modified_plan=[RESTART])
        )
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert [g.actions for g in fakes.guarded][-1] == [RESTART]  # guarded again before it ran
    assert [e.call for e in fakes.executed] == [RESTART]
    assert final.status == IncidentStatus.RESOLVED and final.decision is not None
    assert final.decision.choice == "modified"


async def test_failing_ledger_activities_do_not_stop_the_incident(env: WorkflowEnvironment) -> None:
    fakes = Fakes()

    @activity.defn(name="incident.stage")
    async def broken_stage(inp: StageInput) -> StageResult:
        raise ApplicationError("ledger refused", non_retryable=True)

    acts = [a for a in fakes.activities() if a != fakes.stage] + [broken_stage]
    async with incident(env, fakes, activities=acts) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
    assert final.status == IncidentStatus.RESOLVED
    assert len(fakes.executed) == 2


async def test_action_refused_at_execution_is_recorded_and_stops_the_plan(env: WorkflowEnvironment) -> None:
    fakes = Fakes(refuse_at_execute={LOGS.tool})
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        final = await run.result()
    assert [e.call for e in fakes.executed] == [LOGS]  # not retried, and RESTART never ran
    assert [(a.status, a.error) for a in final.actions] == [("refused", "kubernetes.get_logs is no longer allowed")]
    assert [(r.index, r.call) for r in final.refused] == [(0, LOGS)]
    assert final.status == IncidentStatus.FAILED


async def test_a_recurrence_of_the_group_is_a_new_run_with_its_own_keys(env: WorkflowEnvironment) -> None:
    """The group fires again after its incident closed: same incident id, a new run; its approval
    and action keys differ from the first run's, so nothing is answered or skipped by mistake."""
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        first = await run.result()
        await env.sleep(timedelta(minutes=5))

        group = make_group(run.incident_id)
        handle = await env.client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(incident_id=run.incident_id, group=group),
            id=run.incident_id,
            task_queue=run.task_queue,
            start_signal=SIGNAL_ALERTS,
            start_signal_args=[AlertsSignal(group=group)],
        )
        again = Run(env.client, handle, run.incident_id, run.task_queue)
        st2 = await again.awaiting()
        assert handle.result_run_id != run.handle.result_run_id
        assert st2.approval_id is not None and st2.approval_id != first.approval_id
        assert st2.signals == 1 and st2.alerts_seen == 1 and not st2.resolved_by_alertmanager
        await again.decide(DecideInput(choice="approved", by="bob", plan_hash=st2.plan_hash or ""))
        await again.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await again.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        second = await again.result()

    keys = [e.idempotency_key for e in fakes.executed]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert keys[2:] == [again.key(0), again.key(1)]
    assert second.status == IncidentStatus.RESOLVED and second.decision is not None
    assert second.decision.by == "bob"
    assert [n.kind for n in fakes.notifications].count(NotifyKind.QUESTION) == 2  # one per run


async def test_every_patch_is_decided_in_the_first_workflow_task(env: WorkflowEnvironment) -> None:
    """A `workflow.patched` call right after a local activity is not replay-safe: when the worker
    is slow, the activity's marker closes one workflow task and the code after it runs in the
    next, but a replay resumes that code inside the first task, before the patch is known, and
    fails ("patch marker encountered … but there is no corresponding change command"; seen
    under CPU load for `autonomy-trust` and `executing-notice`, about 1 run in 35). So a new run
    decides every patch in its first workflow task, before any local activity: all its patch
    markers are recorded by that task's completion."""
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        await run.result()
        history = await run.handle.fetch_history()
    events = list(history.events)
    completed = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    patches = [
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    # one marker for all of them (PATCHES_V10_PATCH: local stages, at start, nothing to run,
    # evidence, protected, untrusted-plan event, investigate, gitops-base, action give-up, trust,
    # executing, evidence give-up), with one TemporalChangeVersion upsert, not eleven of each
    names = [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data for e in (events[i] for i in patches)
    ]
    assert len(patches) == 1 and b'"incident-patches-v10"' in names[0], names
    versions = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(versions) == 1
    # every marker is a command of the first workflow task: after its completion, before the second
    assert all(completed[0] < i < completed[1] for i in patches), (patches, completed[:2])
