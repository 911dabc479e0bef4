"""Earned autonomy end to end on the time-skipping server, with the real ledger (PostgreSQL),
the real knowledge base (Qdrant Edge in a temp dir, all-MiniLM) and the real trust and record
activities; only the outside world (triage/notify/tools/model) is faked.

- a failure of a standard runbook demotes it inside that same incident;
- promotion asks a human and promotes on approval, stays on refusal; an incident whose record
  makes a runbook eligible starts that question;
- a novel approved plan becomes a manual runbook that the next similar alert recalls.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pgserver
import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.incident.activities import IncidentActivities
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from activities.knowledge.kb import KnowledgeBase
from activities.ledger.repository import Ledger
from activities.tools import ERR_UNAVAILABLE
from activities.tools.gateway import ToolActivities
from activities.trust.activities import TrustActivities
from agentic_core.alerts import AlertStatus
from agentic_core.autonomy import (
    EvaluateTrustInput,
    PromotionInput,
    PromotionResult,
    TrustConfig,
    TrustReviewInput,
    previous_quarter,
    promotion_workflow_id,
    quarter_bounds,
    quarter_of,
)
from agentic_core.incident import (
    QUERY_APPROVAL,
    UPDATE_DECIDE,
    ActionResult,
    ApprovalState,
    DecideInput,
    DecideResult,
    ExecuteInput,
    IncidentConfig,
    IncidentState,
    IncidentStatus,
    NotifyKind,
    PolicyVerdict,
    ProposeInput,
    ProposeResult,
    RecalledRunbook,
    RecallInput,
    RecallResult,
)
from agentic_core.models import ApprovalMode, AutomationLevel, Proposal, Runbook, ToolCall
from agentic_core.proposals import fallback_proposal
from tests.support.incident_fakes import LABELS, LOGS, RESTART, Fakes, incident, make_group
from tests.support.pg import create_database, pg_server
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow
from workflows.incident import EXECUTE_RETRY
from workflows.promotion import RunbookPromotionWorkflow
from workflows.trust_review import TrustReviewWorkflow

M, P, S = AutomationLevel.MANUAL, AutomationLevel.PROMPTED, AutomationLevel.STANDARD


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-autonomy-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "autonomy"), max_size=4)
    yield led
    await led.close()


@pytest.fixture(scope="module")
async def kb(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KnowledgeBase]:
    model = LocalEmbedder(threads=1)
    store = EdgeStore(tmp_path_factory.mktemp("autonomy-kb") / "qdrant", dim=model.dim)
    k = KnowledgeBase(store, model)
    await k.ensure()
    yield k
    await store.close()
    model.close()


async def add_runbook(
    ledger: Ledger, kb: KnowledgeBase, level: AutomationLevel, successes: int = 0, failures: int = 0
) -> str:
    rid = f"test/rb-{uuid.uuid4().hex[:8]}"
    rb = Runbook(
        id=rid,
        title="Pod is crash looping",
        body="Look at the logs, then restart the deployment.",
        match=["alertname=KubePodCrashLooping"],
        actions=[LOGS, RESTART],
        automation_level=level,
    )
    await ledger.upsert_runbook(rb)
    await kb.upsert_runbooks([rb])
    for _ in range(successes):
        await ledger.record_execution(rid, True)
    for _ in range(failures):
        await ledger.record_execution(rid, False)
    return rid


def real_activities(
    fakes: Fakes,
    kb: KnowledgeBase,
    ledger: Ledger,
    *,
    recall: bool = False,
    propose: Any = None,
    client: Client | None = None,
    task_queue: str = "",
) -> list[Callable[..., Awaitable[Any]]]:
    """The fakes, with the real `incident.record` (and `incident.recall`) and trust activities."""
    real = IncidentActivities(kb, ledger, router=None)
    trust_acts = TrustActivities(ledger, kb, TrustConfig(approvers=["alice"]), client=client, task_queue=task_queue)
    return [
        fakes.triage,
        fakes.stage,
        real.recall if recall else fakes.recall,
        propose or fakes.propose,
        fakes.notify,
        real.record,
        fakes.list_tools,
        fakes.guard,
        fakes.execute,
        *trust_acts.all(),
    ]


async def wait_running(handle: WorkflowHandle[Any, Any], within_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            await handle.describe()
            return
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def answer(env: WorkflowEnvironment, approval_id: str, choice: str, by: str, comment: str = "") -> None:
    handle = env.client.get_workflow_handle(approval_id)
    await wait_running(handle)
    st = await handle.query(QUERY_APPROVAL, result_type=ApprovalState)
    await handle.execute_update(
        UPDATE_DECIDE,
        DecideInput(choice=choice, by=by, plan_hash=st.request.plan_hash, comment=comment),  # type: ignore[arg-type]
        result_type=DecideResult,
    )


# --------------------------------------------------------------------------- demotion


async def test_a_failure_of_a_standard_runbook_demotes_it_inside_that_same_incident(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    rid = await add_runbook(ledger, kb, S, successes=60)
    fakes = Fakes(runbook_level=S, confidence=0.9, fail_tools={RESTART.tool})
    fakes.recall = _recall_of(rid, S)  # type: ignore[method-assign]
    config = IncidentConfig(approval_mode=ApprovalMode.NORMAL)
    acts = real_activities(fakes, kb, ledger, propose=_propose_for(rid))
    async with incident(env, fakes, config, activities=acts) as run:
        final = await run.result()
    assert final.verdict == PolicyVerdict.RUN_THEN_NOTIFY and final.decision is None
    assert final.status == IncidentStatus.FAILED
    # The record counted the failure, and the same incident demoted the runbook.
    stats = await ledger.runbook_stats(rid)
    assert stats is not None and (stats.executions, stats.failures) == (61, 1)
    row = await ledger.get_runbook(rid)
    assert row is not None and row.automation_level == P
    last = (await ledger.level_history(rid))[-1]
    assert (last.from_level, last.to_level) == (S, P)
    assert run.incident_id in last.reason and last.changed_by == "trust-policy"
    indexed = await kb.get_runbook(rid)
    assert indexed is not None and indexed.automation_level == P
    trust_stage = next(s for s in final.stages if s.name == "trust")
    assert "standard → prompted" in trust_stage.detail
    # Told after it ran, with the outcome and the demotion; then announced as a notice.
    kinds = fakes.kinds()
    assert kinds[:2] == [NotifyKind.QUESTION, NotifyKind.DIAGNOSIS]
    done = next(n for n in fakes.notifications if n.kind == NotifyKind.DONE)
    assert "Outcome: failure" in done.text and "demoted standard → prompted" in done.text
    notice = next(n for n in fakes.notifications if n.kind == NotifyKind.NOTICE)
    assert notice.incident_id is None and rid in notice.text and "demoted" in notice.text
    assert kinds.index(NotifyKind.DONE) < kinds.index(NotifyKind.NOTICE)
    # The next alert for it asks a human again.
    fakes2 = Fakes(runbook_level=row.automation_level, confidence=0.9)
    async with incident(env, fakes2, config) as run2:
        st = await run2.awaiting()
        assert st.verdict == PolicyVerdict.ASK_RECOMMEND
        await run2.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        await run2.result()


async def test_an_unreachable_tool_server_fails_the_action_in_the_ledger_and_does_not_demote(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    """#17: the gateway claimed the action's row, then its MCP server stayed unreachable through
    every retry (`EXECUTE_RETRY`). The row ends `failed` with the reason (`tools.give_up`, the real
    gateway activity on the real ledger), never `running`; the outcome is an infrastructure
    `error`, counted apart in the runbook's record, and the standard runbook keeps its level
    (a failure of the remedy itself still demotes it: the test above)."""
    rid = await add_runbook(ledger, kb, S, successes=60)
    fakes = Fakes(runbook_level=S, confidence=0.9)
    fakes.recall = _recall_of(rid, S)  # type: ignore[method-assign]
    attempts: list[int] = []

    @activity.defn(name="tools.execute")
    async def execute(inp: ExecuteInput) -> ActionResult:
        if inp.call.tool != RESTART.tool:
            return ActionResult(
                index=inp.index, tool=inp.call.tool, idempotency_key=inp.idempotency_key, status="succeeded"
            )
        attempts.append(activity.info().attempt)
        # as the gateway does: the key is claimed, then the server cannot be reached
        await ledger.start_action(inp.incident_id, inp.index, inp.call.tool, inp.call.arguments, inp.idempotency_key)
        raise ApplicationError("MCP server infra (http://127.0.0.1:9/mcp): connection refused", type=ERR_UNAVAILABLE)

    gateway = ToolActivities(ledger, servers={}, token=None, allow={})
    acts = real_activities(fakes, kb, ledger, propose=_propose_for(rid))
    acts.remove(fakes.execute)
    acts += [execute, gateway.give_up]
    config = IncidentConfig(approval_mode=ApprovalMode.NORMAL)
    try:
        async with incident(env, fakes, config, activities=acts) as run:
            final = await run.result()
            await run.state()  # learns the occurrence (the action's key)
    finally:
        await gateway.aclose()
    assert len(attempts) == EXECUTE_RETRY.maximum_attempts  # it waited for the server, then gave up
    row = await ledger.get_action(run.key(1))
    assert row is not None and row.status == "failed" and row.finished_at is not None, row
    assert row.error is not None and "gave up" in row.error and "connection refused" in row.error, row.error
    assert [a.status for a in final.actions] == ["succeeded", "failed"]
    assert final.actions[1].infrastructure and "gave up" in final.actions[1].error
    assert final.status == IncidentStatus.FAILED
    assert final.outcome is not None and final.outcome.outcome == "error", final.outcome
    assert [o.result for o in await ledger.list_outcomes(run.incident_id)] == ["error"]
    # not a failure of the runbook's remedy: counted apart, and the runbook stays standard
    stats = await ledger.runbook_stats(rid)
    assert stats is not None and (stats.executions, stats.failures, stats.infra_errors) == (60, 0, 1), stats
    rb = await ledger.get_runbook(rid)
    assert rb is not None and rb.automation_level == S
    assert [h.to_level for h in await ledger.level_history(rid)] == [S]
    assert not [n for n in fakes.notifications if n.kind == NotifyKind.NOTICE]  # no demotion announced
    done = next(n for n in fakes.notifications if n.kind == NotifyKind.DONE)
    assert "Outcome: error" in done.text and "demoted" not in done.text


def _recall_of(rid: str, level: AutomationLevel) -> Any:
    @activity.defn(name="incident.recall")
    async def recall(inp: RecallInput) -> RecallResult:
        rb = RecalledRunbook(
            id=rid, title="Pod is crash looping", score=1.8, automation_level=level, actions=[LOGS, RESTART]
        )
        return RecallResult(runbooks=[rb.model_copy(update={"matched_labels": True})])

    return recall


def _propose_for(rid: str, confidence: float = 0.9) -> Any:
    @activity.defn(name="incident.propose")
    async def propose(inp: ProposeInput) -> ProposeResult:
        return ProposeResult(
            proposal=Proposal(
                summary="checkout crash loops",
                diagnosis="OOM",
                runbook_id=rid,
                actions=[LOGS, RESTART],
                confidence=confidence,
            ),
            source="llm",
        )

    return propose


# --------------------------------------------------------------------------- promotion


async def _promotion_worker(
    env: WorkflowEnvironment, fakes: Fakes, kb: KnowledgeBase, ledger: Ledger
) -> tuple[Worker, str]:
    tq = f"promotion-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        env.client,
        task_queue=tq,
        workflow_runner=workflow_runner("strict"),
        workflows=[RunbookPromotionWorkflow, ApprovalWorkflow],
        activities=[fakes.notify, *TrustActivities(ledger, kb, TrustConfig(approvers=["alice"])).all()],
    )
    return worker, tq


async def test_promotion_asks_and_promotes_on_approval(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    rid = await add_runbook(ledger, kb, P, successes=60)
    fakes = Fakes()
    worker, tq = await _promotion_worker(env, fakes, kb, ledger)
    wid = promotion_workflow_id(rid, S)
    async with worker:
        handle = await env.client.start_workflow(
            RunbookPromotionWorkflow.run,
            PromotionInput(runbook_id=rid, from_level=P, to_level=S, reason="test"),
            id=wid,
            task_queue=tq,
        )
        approval_id = f"{wid}/approval"
        await wait_running(env.client.get_workflow_handle(approval_id))
        # Asked, not promoted yet; only alice may answer.
        row = await ledger.get_runbook(rid)
        assert row is not None and row.automation_level == P
        st = await env.client.get_workflow_handle(approval_id).query(QUERY_APPROVAL, result_type=ApprovalState)
        assert st.request.approvers == ["alice"] and st.request.kind == "level"
        assert "60/60" in st.request.question and rid in st.request.question
        await answer(env, approval_id, "approved", "alice", "fine")
        result = await handle.result()
    assert result == PromotionResult(runbook_id=rid, outcome="promoted", level=S, by="alice", comment="fine")
    row = await ledger.get_runbook(rid)
    assert row is not None and row.automation_level == S
    last = (await ledger.level_history(rid))[-1]
    assert (last.from_level, last.to_level, last.changed_by) == (P, S, "alice")
    indexed = await kb.get_runbook(rid)
    assert indexed is not None and indexed.automation_level == S
    (req,) = await ledger.promotion_requests(rid)
    assert (req.status, req.decided_by, req.executions) == ("approved", "alice", 60)
    question = next(n for n in fakes.notifications if n.kind == NotifyKind.QUESTION)
    assert question.incident_id is None and question.approval_id == approval_id
    notice = fakes.notifications[-1]
    assert notice.kind == NotifyKind.NOTICE and "now standard" in notice.text
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[RunbookPromotionWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(await handle.fetch_history())


async def test_promotion_stays_on_refusal_and_records_why(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    rid = await add_runbook(ledger, kb, P, successes=60)
    fakes = Fakes()
    worker, tq = await _promotion_worker(env, fakes, kb, ledger)
    wid = promotion_workflow_id(rid, S)
    async with worker:
        handle = await env.client.start_workflow(
            RunbookPromotionWorkflow.run,
            PromotionInput(runbook_id=rid, from_level=P, to_level=S),
            id=wid,
            task_queue=tq,
        )
        await answer(env, f"{wid}/approval", "ignored", "alice", "not before the upgrade")
        result = await handle.result()
    assert result.outcome == "refused" and result.level == P
    row = await ledger.get_runbook(rid)
    assert row is not None and row.automation_level == P
    assert [h.to_level for h in await ledger.level_history(rid)] == [P]  # only its creation
    (req,) = await ledger.promotion_requests(rid)
    assert (req.status, req.reason) == ("refused", "not before the upgrade")
    assert "stays prompted" in fakes.notifications[-1].text
    # Not asked again before 10 more executions.
    evaluation = await TrustActivities(ledger, kb).evaluate(_eval(rid))
    assert evaluation.ask_promotion is None
    for _ in range(10):
        await ledger.record_execution(rid, True)
    evaluation = await TrustActivities(ledger, kb).evaluate(_eval(rid))
    assert evaluation.ask_promotion == S


def _eval(rid: str) -> EvaluateTrustInput:
    return EvaluateTrustInput(runbook_id=rid, ran_at=P, success=True)


async def test_stale_promotion_does_not_ask(env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase) -> None:
    rid = await add_runbook(ledger, kb, P, successes=6)  # not enough for standard
    fakes = Fakes()
    worker, tq = await _promotion_worker(env, fakes, kb, ledger)
    async with worker:
        result = await env.client.execute_workflow(
            RunbookPromotionWorkflow.run,
            PromotionInput(runbook_id=rid, from_level=P, to_level=S),
            id=promotion_workflow_id(rid, S),
            task_queue=tq,
        )
    assert result.outcome == "stale" and fakes.notifications == []


async def test_an_incident_that_makes_a_runbook_eligible_asks_for_its_promotion(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    rid = await add_runbook(ledger, kb, P, successes=51)  # the 52nd success makes it eligible
    fakes = Fakes(runbook_level=P)
    fakes.recall = _recall_of(rid, P)  # type: ignore[method-assign]
    tq = f"incident-{uuid.uuid4().hex[:8]}"
    acts = real_activities(fakes, kb, ledger, propose=_propose_for(rid), client=env.client, task_queue=tq)
    config = IncidentConfig(approval_mode=ApprovalMode.NORMAL)
    async with incident(env, fakes, config, activities=acts, task_queue=tq) as run:
        st = await run.awaiting()
        assert st.verdict == PolicyVerdict.ASK_RECOMMEND
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        final = await run.result()
        assert final.status == IncidentStatus.RESOLVED
        assert "asking for standard" in next(s for s in final.stages if s.name == "trust").detail
        promotion = env.client.get_workflow_handle(promotion_workflow_id(rid, S), result_type=PromotionResult)
        await wait_running(promotion)
        desc = await promotion.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING  # outlives the incident
        await answer(env, f"{promotion_workflow_id(rid, S)}/approval", "approved", "alice")
        result = await promotion.result()
        await env.sleep(3600)  # time still skips afterwards (a child ABANDONed by a closed parent broke it)
    assert result.outcome == "promoted"
    row = await ledger.get_runbook(rid)
    assert row is not None and row.automation_level == S


async def test_manual_to_prompted_is_automatic_and_announced(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    rid = await add_runbook(ledger, kb, M, successes=2)
    fakes = Fakes(runbook_level=M)
    fakes.recall = _recall_of(rid, M)  # type: ignore[method-assign]
    acts = real_activities(fakes, kb, ledger, propose=_propose_for(rid))
    async with incident(env, fakes, activities=acts) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
        await run.result()
    row = await ledger.get_runbook(rid)
    assert row is not None and row.automation_level == P
    notice = next(n for n in fakes.notifications if n.kind == NotifyKind.NOTICE)
    assert "manual → prompted" in notice.text


# --------------------------------------------------------------------------- learned runbooks


async def test_a_novel_approved_plan_becomes_a_runbook_that_the_next_similar_alert_recalls(
    env: WorkflowEnvironment, ledger: Ledger, kb: KnowledgeBase
) -> None:
    labels = {**LABELS, "alertname": "CheckoutQueueStuck", "namespace": "shop-novel", "pod": "checkout-abc"}
    novel = [
        ToolCall(tool="kubernetes.scale_deployment", arguments={"namespace": "shop-novel", "name": "checkout"}),
    ]

    @activity.defn(name="incident.propose")
    async def propose(inp: ProposeInput) -> ProposeResult:
        runbook = next((r for r in inp.recall.runbooks if r.matched_labels), None)
        if runbook is not None:
            return fallback_proposal(inp, "test: follow the matched runbook")
        return ProposeResult(
            proposal=Proposal(summary="queue stuck", diagnosis="The consumer hangs.", actions=novel, confidence=0.6),
            source="llm",
        )

    fakes = Fakes()
    acts = real_activities(fakes, kb, ledger, recall=True, propose=propose)
    async with incident(env, fakes, activities=acts, labels=labels) as run:
        st = await run.awaiting()
        assert st.plan == novel
        await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED, labels=labels))
        first = await run.result()
    learned = first.runbook_id
    assert learned is not None and learned.startswith("learned/CheckoutQueueStuck-")
    row = await ledger.get_runbook(learned)
    assert row is not None and row.automation_level == M and row.source == f"approval:{run.incident_id}"
    assert {str(m) for m in row.match} == {
        "alertname=CheckoutQueueStuck",
        "namespace=shop-novel",
        "deployment=checkout",
    }
    assert row.actions[0].arguments == {"namespace": "{{ labels.namespace }}", "name": "{{ labels.deployment }}"}
    stats = await ledger.runbook_stats(learned)
    assert stats is not None and (stats.executions, stats.successes, stats.approvals) == (1, 1, 1)
    history = await ledger.level_history(learned)
    assert [(h.from_level, h.to_level, h.changed_by) for h in history] == [(None, M, "alice")]

    # The next similar alert (another pod, same deployment) recalls it and proposes its plan.
    fakes2 = Fakes()
    labels2 = {**labels, "pod": "checkout-xyz"}
    acts2 = real_activities(fakes2, kb, ledger, recall=True, propose=propose)
    async with incident(env, fakes2, activities=acts2, labels=labels2) as run2:
        st2 = await run2.awaiting()
        assert st2.runbook_id == learned
        assert st2.plan == novel
        assert learned in next(s for s in st2.stages if s.name == "recall").detail
        assert learned in fakes2.notifications[0].text
        await run2.decide(DecideInput(choice="ignored", by="alice", plan_hash=st2.plan_hash or ""))
        await run2.result()


# --------------------------------------------------------------------------- quarterly review, CLI


async def test_trust_review_audits_the_quarter_and_applies_approved_proposals(
    env: WorkflowEnvironment, pg: pgserver.PostgresServer, kb: KnowledgeBase
) -> None:
    led = await Ledger.connect(await create_database(pg, "review"), max_size=2)
    try:
        shaky = await add_runbook(led, kb, S)
        strong = await add_runbook(led, kb, P)
        steady = await add_runbook(led, kb, S)
        for i in range(40):
            await led.record_execution(shaky, i % 8 != 0, event_key=f"shaky/{i}")  # 5 failures
            await led.record_execution(steady, True, event_key=f"steady/{i}")
        for i in range(70):
            await led.record_execution(strong, True, event_key=f"strong/{i}")
            await led.record_execution(steady, True, event_key=f"steady/more/{i}")
        for i in range(3):
            await led.record_decision(f"inc-auto-{i}", "automatic", approval_id=f"inc-auto-{i}-a", runbook_id=steady)
        await led.record_outcome("inc-auto-0", "failure", "boom")
        await led.record_outcome("inc-auto-1", "success")

        fakes = Fakes()
        tq = f"review-{uuid.uuid4().hex[:8]}"
        quarter = quarter_of(datetime.now(UTC))
        async with Worker(
            env.client,
            task_queue=tq,
            workflow_runner=workflow_runner("strict"),
            workflows=[TrustReviewWorkflow, ApprovalWorkflow],
            activities=[fakes.notify, *TrustActivities(led, kb, TrustConfig(approvers=["alice"])).all()],
        ):
            wid = f"trust-review/{uuid.uuid4().hex[:6]}"
            handle = await env.client.start_workflow(
                TrustReviewWorkflow.run, TrustReviewInput(quarter=quarter), id=wid, task_queue=tq
            )
            await answer(env, f"{wid}/{shaky}/approval", "approved", "alice")
            await answer(env, f"{wid}/{strong}/approval", "ignored", "alice", "wait for the upgrade")
            result = await handle.result()
        assert result.quarter == quarter
        assert (result.automated_actions, result.automated_failures, result.automated_unknown) == (3, 1, 1)
        by_id = {o.proposal.runbook_id: o for o in result.outcomes}
        assert set(by_id) == {shaky, strong}  # the steady standard runbook is left alone
        assert by_id[shaky].proposal.to_level == P and by_id[shaky].answer == "applied"
        assert by_id[strong].proposal.to_level == S and by_id[strong].answer == "refused"
        assert (await led.get_runbook(shaky)).automation_level == P  # type: ignore[union-attr]
        assert (await led.get_runbook(strong)).automation_level == P  # type: ignore[union-attr]
        assert "5 failure(s) this quarter" in by_id[shaky].proposal.reason
        report = fakes.notifications[-1]
        assert report.kind == NotifyKind.REPORT and report.route == "weekly" and report.incident_id is None
        assert quarter in report.text and "3 (33.3% failed" in report.text
        assert [r.status for r in await led.promotion_requests(strong)] == ["refused"]
        replayer = Replayer(
            workflow_runner=workflow_runner("strict"),
            workflows=[TrustReviewWorkflow, ApprovalWorkflow],
            data_converter=pydantic_data_converter,
        )
        await replayer.replay_workflow(await handle.fetch_history())
    finally:
        await led.close()


def test_review_input_is_exactly_the_quarter() -> None:
    assert TrustReviewInput.model_validate({"quarter": None}).quarter is None
    assert TrustReviewInput.model_validate_json('{"quarter": "2026-Q3"}').quarter == "2026-Q3"
    assert TrustReviewInput().model_dump(mode="json") == {"quarter": None}
    with pytest.raises(ValueError):
        TrustReviewInput(quarter="2026-Q5")
    assert previous_quarter(datetime(2026, 1, 15, tzinfo=UTC)) == "2025-Q4"
    assert previous_quarter(datetime(2026, 8, 1, tzinfo=UTC)) == "2026-Q2"
    assert quarter_bounds("2026-Q4") == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


async def test_cli_runbooks_stats_and_show(
    pg: pgserver.PostgresServer, kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from workers.cli import app

    dsn = await create_database(pg, "cli")
    led = await Ledger.connect(dsn, max_size=2)
    try:
        rid = await add_runbook(led, kb, M)
        await add_runbook(led, kb, P)
        await add_runbook(led, kb, S)
        await add_runbook(led, kb, S)
        await led.record_execution(rid, True)
        await led.record_infra_error(rid, event_key="inc-x/1/execution")
        await led.record_infra_error(rid, event_key="inc-x/1/execution")  # a retried record counts once
        await led.set_runbook_level(rid, P, "earned", "trust-policy")
    finally:
        await led.close()
    monkeypatch.setenv("AGENTIC_POSTGRES_DSN", dsn)
    monkeypatch.setenv("AGENTIC_DATA_DIR", str(tmp_path))

    def run(*args: str) -> str:
        res = CliRunner().invoke(app, list(args))
        assert res.exit_code == 0, res.output
        return res.output

    out = await asyncio.to_thread(run, "runbooks", "stats", "--json")
    assert json.loads(out) == {"manual": 0, "prompted": 2, "standard": 2}
    lines = json.loads(await asyncio.to_thread(run, "runbooks", "stats", "--records", "--json"))
    mine = next(line for line in lines if line["runbook_id"] == rid)
    assert (mine["level"], mine["executions"], mine["failures"], mine["infra_errors"]) == ("prompted", 1, 0, 1)
    text = await asyncio.to_thread(run, "runbooks", "stats")
    assert "infra" in text and "1 infrastructure error:" in text, text
    view = json.loads(await asyncio.to_thread(run, "runbooks", "show", rid, "--json"))
    assert view["runbook"]["id"] == rid and view["runbook"]["automation_level"] == "prompted"
    assert view["record"]["executions"] == 1 and view["record"]["successes"] == 1
    assert [(h["from_level"], h["to_level"]) for h in view["level_history"]] == [
        (None, "manual"),
        ("manual", "prompted"),
    ]
    text = await asyncio.to_thread(run, "runbooks", "show", rid)
    assert "level history" in text and "earned" in text


def test_only_a_novel_approved_plan_that_ran_is_learned() -> None:
    from agentic_core.incident import ActionResult, ApprovalResult
    from agentic_core.learning import learned_runbook

    labels = {"alertname": "DiskFull", "namespace": "media", "pod": "plex-0", "severity": "warning"}
    group = make_group("inc-x", labels=labels)
    plan = [ToolCall(tool="kubernetes.expand_pvc", arguments={"namespace": "media", "size": "20Gi"})]
    base = IncidentState(
        incident_id="inc-x",
        title="Disk full",
        proposal=Proposal(summary="disk", diagnosis="full", actions=plan, confidence=0.5),
        plan=plan,
        decision=ApprovalResult(approval_id="a", choice="approved", by="bob", plan=plan),
        actions=[ActionResult(index=0, tool=plan[0].tool, status="succeeded")],
    )
    rb = learned_runbook(base, group)
    assert rb is not None and rb.source == "approval:inc-x" and rb.automation_level == M
    assert {str(m) for m in rb.match} == {"alertname=DiskFull", "namespace=media"}  # no pod, no severity
    assert rb.actions[0].arguments == {"namespace": "{{ labels.namespace }}", "size": "20Gi"}
    assert rb.content_hash == rb.compute_hash()
    assert learned_runbook(base, make_group("inc-y", labels=labels)).id == rb.id  # type: ignore[union-attr]
    named = base.model_copy(update={"proposal": base.proposal.model_copy(update={"runbook_id": "k/x"})})  # type: ignore[union-attr]
    assert learned_runbook(named, group) is None
    ignored = base.model_copy(update={"decision": base.decision.model_copy(update={"choice": "ignored"})})  # type: ignore[union-attr]
    assert learned_runbook(ignored, group) is None
    assert learned_runbook(base.model_copy(update={"actions": []}), group) is None
    automatic = base.model_copy(update={"decision": None})
    assert learned_runbook(automatic, group) is None
