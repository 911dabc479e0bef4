"""The Telegram end-to-end harness shared by the tests and the benchmark.

The real pieces: the Temporal dev server, PostgreSQL (pgserver) with the ledger schema,
python-telegram-bot's `Application` polling the Bot API emulator, the real
`TelegramNotifier` behind the real `incident.notify` activity, the real `IncidentWorkflow`
and `ApprovalWorkflow`. The other activities are the fakes of tests/workflows/test_incident_workflow.py
(they record what ran).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.incident.activities import IncidentActivities
from activities.ledger.repository import Ledger
from agentic_core.incident import (
    QUERY_STATE,
    SIGNAL_ALERTS,
    AlertsSignal,
    ApprovalRequest,
    IncidentConfig,
    IncidentInput,
    IncidentState,
    NotifyInput,
    NotifyKind,
    plan_hash,
)
from agentic_core.models import ToolCall
from tests.support.incident_fakes import Fakes, make_group
from tests.support.telegram_emulator import BotApiEmulator, Stored
from workers.sandbox import workflow_runner
from workers.telegram.bot import BotConfig, SchemaSource, TelegramBot, build_application
from workers.telegram.notifier import TelegramNotifier
from workers.telegram.routing import TOPICS_KEY, setup_topics
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow

CHAT = -1001234567890
OTHER_CHAT = -1009999999999
ALICE = 111
BOB = 222
MALLORY = 666
SECRET = b"test-callback-secret-0123456789abcdef"


@dataclass
class Telegram:
    emu: BotApiEmulator
    ledger: Ledger
    client: Client
    notifier: TelegramNotifier
    bot: TelegramBot
    topics: dict[str, int] = field(default_factory=dict)

    async def wait_message(self, pred: Callable[[Stored], bool], within_s: float = 30.0, chat: int = CHAT) -> Stored:
        deadline = time.monotonic() + within_s
        while True:
            for m in self.emu.bot_messages(chat):
                if pred(m):
                    return m
            if time.monotonic() > deadline:
                texts = [(m.thread, m.text[:80]) for m in self.emu.bot_messages(chat)]
                raise AssertionError(f"no such message; messages: {texts}")
            await asyncio.sleep(0.02)

    async def press(
        self, user: int, msg: Stored, button: int, *, chat: int = CHAT, data: str | None = None
    ) -> dict[str, Any]:
        """Press the `button`-th button of `msg` (or send `data`), return the callback answer."""
        if data is None:
            data = buttons(msg)[button]
        cq = await self.emu.press(user, chat, msg.message_id, data, username=f"u{user}")
        return await self.emu.wait_answer(cq)


def buttons(msg: Stored) -> list[str]:
    rows = (msg.reply_markup or {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row]


@asynccontextmanager
async def telegram(
    emu: BotApiEmulator,
    ledger: Ledger,
    client: Client,
    *,
    approvers: list[int] | None = None,
    schemas: SchemaSource | None = None,
) -> AsyncIterator[Telegram]:
    """The notifier (the worker's side) and the bot, polling the emulator."""
    app = build_application(emu.token, emu.base_url, polling=True)
    async with app.bot:
        notifier = TelegramNotifier(app.bot, ledger, CHAT, SECRET)
        if not await ledger.kv_get(TOPICS_KEY):
            await setup_topics(app.bot, ledger, CHAT)
        topics = {str(k): int(v) for k, v in (await ledger.kv_get(TOPICS_KEY)).items()}
        cfg = BotConfig(chat_id=CHAT, secret=SECRET, approvers=[ALICE, BOB] if approvers is None else approvers)
        bot = TelegramBot(app, client, ledger, cfg, schemas=schemas)
        await bot.start(poll_timeout=2)
        try:
            yield Telegram(emu, ledger, client, notifier, bot, topics)
        finally:
            await bot.stop()


@dataclass
class Incident:
    handle: WorkflowHandle[Any, Any]
    incident_id: str
    fakes: Fakes

    async def state(self) -> IncidentState:
        return await self.handle.query(QUERY_STATE, result_type=IncidentState)

    async def wait_for(self, pred: Callable[[IncidentState], bool], within_s: float = 30.0) -> IncidentState:
        deadline = time.monotonic() + within_s
        while True:
            st = await self.state()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; state: {st.model_dump_json(indent=1)}")
            await asyncio.sleep(0.05)

    async def resolve(self) -> None:
        from agentic_core.alerts import AlertStatus

        await self.handle.signal(SIGNAL_ALERTS, AlertsSignal(group=make_group(self.incident_id, AlertStatus.RESOLVED)))


@asynccontextmanager
async def platform_worker(client: Client, ledger: Ledger, tg: Telegram, fakes: Fakes) -> AsyncIterator[str]:
    """A worker with both workflows, the fakes and the real `incident.notify` (Telegram)."""
    task_queue = f"tg-{uuid.uuid4().hex[:8]}"
    real = IncidentActivities(None, ledger, None, notifier=tg.notifier)  # type: ignore[arg-type]
    acts = [a for a in fakes.activities() if a != fakes.notify] + [real.notify]
    async with Worker(
        client,
        task_queue=task_queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        activities=acts,
        max_concurrent_activities=50,
    ):
        yield task_queue


async def start_incident(
    client: Client, task_queue: str, fakes: Fakes, config: IncidentConfig | None = None
) -> Incident:
    incident_id = f"inc-{uuid.uuid4().hex[:12]}"
    group = make_group(incident_id)
    handle = await client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(incident_id=incident_id, group=group, config=config or IncidentConfig(verify_window_s=60)),
        id=incident_id,
        task_queue=task_queue,
        start_signal=SIGNAL_ALERTS,
        start_signal_args=[AlertsSignal(group=group)],
    )
    return Incident(handle, incident_id, fakes)


async def ask(
    client: Client,
    task_queue: str,
    tg: Telegram,
    *,
    plan: list[ToolCall],
    shown: list[ToolCall] | None = None,
    expire_after_s: int = 3600,
    remind_after_s: int = 0,
    escalate_after_s: int = 0,
    approvers: list[str] | None = None,
    route: str = "platform",
) -> tuple[WorkflowHandle[Any, Any], Stored]:
    """A bare ApprovalWorkflow question (not an incident), and its Telegram message showing
    `shown` (default: the question's own plan)."""
    approval_id = f"promote-{uuid.uuid4().hex[:10]}"
    shown = plan if shown is None else shown
    handle = await client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalRequest(
            approval_id=approval_id,
            incident_id=approval_id,
            question="Promote the runbook?",
            plan=plan,
            plan_hash=plan_hash(plan),
            route=route,
            approvers=approvers or [],
            remind_after_s=remind_after_s,
            escalate_after_s=escalate_after_s,
            expire_after_s=expire_after_s,
        ),
        id=approval_id,
        task_queue=task_queue,
    )
    res = await tg.notifier.notify(
        NotifyInput(
            incident_id=None,
            kind=NotifyKind.QUESTION,
            route=route,
            text="Promote the runbook?",
            approval_id=approval_id,
            plan=shown,
            plan_hash=plan_hash(shown),
        )
    )
    mid = int(res.message_ref.rsplit(":", 1)[1])
    return handle, tg.emu.messages[(CHAT, mid)]
