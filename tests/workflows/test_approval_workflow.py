"""`ApprovalWorkflow` on the time-skipping test server: validated answers, reminders, expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

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
    NotifyResult,
    plan_hash,
)
from agentic_core.models import ToolCall
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow

PLAN = [ToolCall(tool="kubernetes.restart_deployment", arguments={"namespace": "shop", "name": "checkout"})]
OTHER = [
    ToolCall(tool="kubernetes.scale_deployment", arguments={"namespace": "shop", "name": "checkout", "replicas": 3})
]
HASH = plan_hash(PLAN)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


@dataclass
class Notes:
    sent: list[NotifyInput] = field(default_factory=list)

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        self.sent.append(inp)
        return NotifyResult(message_ref=f"msg-{len(self.sent)}")


@asynccontextmanager
async def approval(
    env: WorkflowEnvironment, notes: Notes, *, cache: bool = True, **changes: Any
) -> AsyncIterator[WorkflowHandle[ApprovalWorkflow, ApprovalResult]]:
    task_queue = f"approval-{uuid.uuid4().hex[:8]}"
    aid = f"inc-{uuid.uuid4().hex[:10]}-approval-1"
    req = ApprovalRequest(
        approval_id=aid,
        incident_id=aid.removesuffix("-approval-1"),
        question="Restart checkout?",
        plan=PLAN,
        plan_hash=HASH,
        route="infrastructure",
        **{"approvers": ["alice", "bob"], **changes},
    )
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[ApprovalWorkflow],
        activities=[notes.notify],
        max_cached_workflows=100 if cache else 0,  # 0: no sticky queue, another worker can take over
    ):
        handle = await env.client.start_workflow(ApprovalWorkflow.run, req, id=aid, task_queue=task_queue)
        # The test server loses updates (and stalls queries across env.sleep) sent before the
        # first workflow task ran; a query waits for it.
        await state(handle)
        yield handle


async def decide(handle: WorkflowHandle[Any, Any], inp: DecideInput) -> DecideResult:
    return await handle.execute_update(UPDATE_DECIDE, inp, result_type=DecideResult)


async def state(handle: WorkflowHandle[Any, Any]) -> ApprovalState:
    return await handle.query(QUERY_APPROVAL, result_type=ApprovalState)


async def state_when(handle: WorkflowHandle[Any, Any], pred: Callable[[ApprovalState], bool]) -> ApprovalState:
    for _ in range(400):
        st = await state(handle)
        if pred(st):
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"approval state never matched: {st}")


async def accepted_updates(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


async def rejected(handle: WorkflowHandle[Any, Any], inp: DecideInput) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await decide(handle, inp)
    cause = exc.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ApprovalRejected"
    return str(cause)


async def test_approve(env: WorkflowEnvironment) -> None:
    notes = Notes()
    async with approval(env, notes) as h:
        assert (await state(h)).result is None
        res = await decide(h, DecideInput(choice="approved", by="alice", plan_hash=HASH, comment="go"))
        assert (res.accepted, res.choice, res.by, res.plan_hash) == (True, "approved", "alice", HASH)
        result = await h.result()
    assert (result.choice, result.by, result.plan, result.plan_hash, result.comment) == (
        "approved",
        "alice",
        PLAN,
        HASH,
        "go",
    )
    assert result.decided_at is not None
    assert notes.sent == []  # answered at once: no reminder
    assert (await h.describe()).typed_search_attributes.get(sa.APPROVAL_STATE) == "approved"
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"), workflows=[ApprovalWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(await h.fetch_history())


async def test_validator_rejections_record_nothing(env: WorkflowEnvironment) -> None:
    notes = Notes()
    async with approval(env, notes) as h:
        msg = await rejected(h, DecideInput(choice="approved", by="mallory", plan_hash=HASH))
        assert "mallory may not answer" in msg
        msg = await rejected(h, DecideInput(choice="approved", by="alice", plan_hash=plan_hash(OTHER)))
        assert "plan changed" in msg
        msg = await rejected(h, DecideInput(choice="modified", by="alice", plan_hash=HASH))
        assert "modified needs the modified plan" in msg
        msg = await rejected(h, DecideInput(choice="modified", by="alice", plan_hash=HASH, modified_plan=[]))
        assert "modified needs the modified plan" in msg
        st = await state(h)
        assert st.result is None
        assert await accepted_updates(h) == 0  # rejected before anything reached history

        await decide(h, DecideInput(choice="ignored", by="bob", plan_hash=HASH))
        result = await h.result()
    assert (result.choice, result.by) == ("ignored", "bob")
    assert await accepted_updates(h) == 1


async def test_second_answer_is_rejected(env: WorkflowEnvironment) -> None:
    """Two people answer at once: the first wins, the validator refuses the second.

    Both updates are sent while no worker polls, so one workflow task carries both (a second
    answer after the run closed is refused by the server instead)."""
    notes = Notes()
    async with approval(env, notes, cache=False) as h:
        pass  # the first workflow task ran; the worker is gone
    first = asyncio.create_task(decide(h, DecideInput(choice="ignored", by="bob", plan_hash=HASH)))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(decide(h, DecideInput(choice="approved", by="alice", plan_hash=HASH)))
    await asyncio.sleep(0.3)
    async with Worker(
        env.client,
        task_queue=(await h.describe()).task_queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[ApprovalWorkflow],
        activities=[notes.notify],
        max_cached_workflows=0,
    ):
        res = await first
        with pytest.raises(WorkflowUpdateFailedError) as exc:
            await second
        result = await h.result()
    assert res.accepted and res.by == "bob"
    assert "already decided by bob" in str(exc.value.cause)
    assert (result.choice, result.by) == ("ignored", "bob")
    assert await accepted_updates(h) == 1


async def test_anyone_may_answer_when_no_approvers_are_listed(env: WorkflowEnvironment) -> None:
    async with approval(env, Notes(), approvers=[]) as h:
        await decide(h, DecideInput(choice="approved", by="whoever", plan_hash=HASH))
        assert (await h.result()).by == "whoever"


async def test_modified_returns_the_modified_plan(env: WorkflowEnvironment) -> None:
    async with approval(env, Notes()) as h:
        await decide(h, DecideInput(choice="modified", by="alice", plan_hash=HASH, modified_plan=OTHER))
        result = await h.result()
    assert (result.choice, result.plan, result.plan_hash) == ("modified", OTHER, plan_hash(OTHER))
    assert (await h.describe()).typed_search_attributes.get(sa.APPROVAL_STATE) == "modified"


async def test_unanswered_reminds_escalates_and_expires(env: WorkflowEnvironment) -> None:
    notes = Notes()
    async with approval(env, notes) as h:
        await env.sleep(timedelta(minutes=20))
        st = await state_when(h, lambda s: s.reminded)
        assert not st.escalated and st.result is None
        result = await h.result()
        msg = await rejected_or_closed(h)
        st = await state(h)  # a closed workflow still answers queries while a worker polls
    assert st.reminded and st.escalated
    assert result.choice == "expired" and result.by is None and result.plan == []
    assert [n.kind for n in notes.sent] == [NotifyKind.REMINDER, NotifyKind.ESCALATION, NotifyKind.EXPIRED]
    reminder, escalation, expired = notes.sent
    assert reminder.route == "infrastructure" and reminder.plan_hash == HASH and reminder.approval_id == h.id
    assert escalation.route == "critical"
    assert expired.plan_hash is None
    assert (await h.describe()).typed_search_attributes.get(sa.APPROVAL_STATE) == "expired"
    assert msg


async def rejected_or_closed(h: WorkflowHandle[Any, Any]) -> str:
    """An answer after expiry is refused (by the validator, or the server: the run is closed)."""
    from temporalio.service import RPCError

    with pytest.raises((WorkflowUpdateFailedError, RPCError)) as exc:
        await decide(h, DecideInput(choice="approved", by="alice", plan_hash=HASH))
    return str(exc.value)


async def test_disabled_reminders_expire_quietly(env: WorkflowEnvironment) -> None:
    notes = Notes()
    async with approval(env, notes, remind_after_s=0, escalate_after_s=0, expire_after_s=1) as h:
        result = await h.result()
    assert result.choice == "expired"
    assert [n.kind for n in notes.sent] == [NotifyKind.EXPIRED]


async def test_answer_between_reminder_and_escalation(env: WorkflowEnvironment) -> None:
    notes = Notes()
    async with approval(env, notes) as h:
        await env.sleep(timedelta(minutes=30))
        await state_when(h, lambda s: s.reminded)
        await decide(h, DecideInput(choice="approved", by="bob", plan_hash=HASH))
        result = await h.result()
        st = await state(h)
    assert result.choice == "approved"
    assert [n.kind for n in notes.sent] == [NotifyKind.REMINDER]
    assert st.reminded and not st.escalated
