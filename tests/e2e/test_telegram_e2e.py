"""Telegram end to end: the real python-telegram-bot Application against the Bot API emulator,
the real Temporal dev server, the real ledger, the real workflows and notifier (see
tests/support/telegram_harness.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pgserver
import pytest
import uvicorn
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.ledger.repository import Ledger
from agentic_core.incident import (
    QUERY_APPROVAL,
    ApprovalRequest,
    ApprovalState,
    IncidentStatus,
    NotifyInput,
    NotifyKind,
    plan_hash,
)
from agentic_core.models import AutomationLevel, Runbook, ToolCall
from tests.support.env import REPO, free_port
from tests.support.incident_fakes import DELETE_NS, EVIDENCE, LOGS, RESTART, RUNBOOK_ID, Fakes
from tests.support.pg import create_database, pg_server
from tests.support.telegram_emulator import BotApiEmulator, Stored, emulator
from tests.support.telegram_harness import (
    ALICE,
    BOB,
    CHAT,
    MALLORY,
    OTHER_CHAT,
    SECRET,
    Telegram,
    ask,
    buttons,
    platform_worker,
    start_incident,
    telegram,
)
from tests.support.temporal import start_dev_server
from workers.sandbox import workflow_runner
from workers.telegram import signing
from workers.telegram.bot import BotConfig, TelegramBot, build_application
from workers.telegram.notifier import CHANNEL, TelegramNotifier
from workers.telegram.routing import TOPICS, TOPICS_KEY, setup_topics
from workers.temporal import ensure_search_attributes
from workflows.approval import ApprovalWorkflow

pytestmark = pytest.mark.slow

SET_MEMORY = ToolCall(
    tool="set_memory_limit", arguments={"namespace": "shop", "deployment": "checkout", "value": "1Gi"}
)
MEMORY_SCHEMA = {
    "type": "object",
    "properties": {
        "namespace": {"type": "string"},
        "deployment": {"type": "string"},
        "value": {"type": "string", "pattern": r"^[0-9]+(Mi|Gi)$"},
    },
    "required": ["namespace", "deployment", "value"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-telegram-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "tg"), max_size=8)
    yield led
    await led.close()


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    env: WorkflowEnvironment = await start_dev_server()
    await ensure_search_attributes(env.client, "default")
    yield env.client
    await env.shutdown()


@pytest.fixture(scope="module")
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with emulator() as e:
        yield e


@pytest.fixture
async def tg(emu: BotApiEmulator, ledger: Ledger, client: Client) -> AsyncIterator[Telegram]:
    async def schemas(tool: str) -> dict[str, Any] | None:
        return MEMORY_SCHEMA if tool == "set_memory_limit" else None

    async with telegram(emu, ledger, client, schemas=schemas) as t:
        yield t


async def refusals(ledger: Ledger, incident_id: str) -> list[str]:
    rows = await ledger.list_notifications(incident_id)
    return [r.text for r in rows if r.kind == "refused"]


# --------------------------------------------------------------------------- the happy path


async def test_alert_to_buttons_approve_run_edit_resolved(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes()
    rb = Runbook(id=RUNBOOK_ID, title="Pod is crash looping", automation_level=AutomationLevel.PROMPTED)
    await ledger.upsert_runbook(rb)
    for i in range(3):
        await ledger.record_execution(RUNBOOK_ID, success=i != 1, event_key=f"tg-e2e-{i}")
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        infra = tg.topics["infrastructure"]
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        assert card.thread == infra  # the routed topic (warning, infrastructure)
        assert "kubernetes.restart_deployment" in card.text and "Approve, ignore or modify?" in card.text
        # the runbook with its level and record, and the planner's confidence
        assert f"📘 {RUNBOOK_ID} · prompted · record 2/3 succeeded · confidence 0.80" in card.text
        assert [b["text"] for row in card.reply_markup["inline_keyboard"] for b in row] == [  # type: ignore[index]
            "✅ Approve",
            "🚫 Ignore",
            "✏️ Modify",
            "🔎 Details",
        ]
        assert all(len(d.encode()) <= 64 for d in buttons(card))

        answer = await tg.press(ALICE, card, 0)
        assert answer["text"].startswith("✅ Approved") and not answer["show_alert"]
        st = await inc.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        assert st.decision is not None and st.decision.by == f"tg:{ALICE}" and st.decision.choice == "approved"
        assert [e.call for e in fakes.executed] == [LOGS, RESTART]  # the action ran
        card = tg.emu.messages[(CHAT, card.message_id)]
        assert f"Approved by @u{ALICE} (tg:{ALICE})" in card.text
        assert (
            "Ran:" in card.text and "restart_deployment: ✓ succeeded" in card.text and buttons(card) == []
        )  # edited: executed, no buttons left

        await inc.resolve()
        final = await inc.handle.result()
        assert final.status == IncidentStatus.RESOLVED
        line = await tg.wait_message(lambda m: m.thread == tg.topics["resolved"] and inc.incident_id in m.text)
        assert "resolved" in line.text and f"approved by tg:{ALICE}" in line.text
        assert "✅ resolved at" in tg.emu.messages[(CHAT, card.message_id)].text

    rows = await ledger.list_notifications(inc.incident_id)
    assert {r.channel for r in rows} == {CHANNEL}
    assert {r.kind for r in rows} >= {"diagnosis", "resolved"} or {r.kind for r in rows} >= {"update", "resolved"}
    assert any(r.thread == str(tg.topics["resolved"]) for r in rows)


async def test_details_shows_the_evidence_the_incident_gathered(tg: Telegram, ledger: Ledger, client: Client) -> None:
    """The investigate stage's evidence is in the diagnosis card, and 🔎 Details posts it in full:
    each call with its status, an excerpt, and the calls that could not be gathered."""
    fakes = Fakes(runbook_evidence=list(EVIDENCE), fail_tools={"get_pod_logs"})
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        assert "Evidence (2 of 3 gathered; 1 failed):" in card.text
        answer = await tg.press(ALICE, card, 3)  # 🔎 Details
        assert answer["text"] == "🔎 Full text posted below"
        posted = await tg.wait_message(lambda m: m.reply_to == card.message_id)
        assert "Evidence (2 of 3 gathered; 1 failed):" in posted.text
        assert "get_pod_logs(namespace='shop', pod='checkout-1', previous=True): failed: boom" in posted.text
        assert "get_events(involved_object='checkout-1', namespace='shop'): ok: get_events says:" in posted.text
        assert "prom_query(query='container_memory_working_set_bytes{namespace=\"shop\"}'): ok:" in posted.text
        await inc.handle.terminate("done")


async def test_nothing_to_run_card_offers_acknowledge(tg: Telegram, ledger: Ledger, client: Client) -> None:
    """VERBOSE: a plan whose every action was refused is still a question; its card says why
    and offers 👀 Acknowledge (no ✅ Approve: there is nothing to approve); a press records it."""
    fakes = Fakes(proposal_actions=[DELETE_NS], runbook_actions=[])
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        assert [b["text"] for row in card.reply_markup["inline_keyboard"] for b in row] == [  # type: ignore[index]
            "👀 Acknowledge",
            "🚫 Ignore",
            "✏️ Modify",
            "🔎 Details",
        ]
        assert "the only action was refused" in card.text and f"Refused: {DELETE_NS.tool}" in card.text
        answer = await tg.press(ALICE, card, 0)
        assert answer["text"].startswith("👀 Acknowledged"), answer
        st = await inc.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        assert st.decision is not None and (st.decision.choice, st.decision.by) == ("acknowledged", f"tg:{ALICE}")
        assert fakes.executed == []
        await inc.resolve()
        final = await inc.handle.result()
        assert final.status == IncidentStatus.RESOLVED


# --------------------------------------------------------------------------- refusals


async def test_forged_wrong_user_wrong_chat_replay_are_refused(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes()
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        approve, modify = buttons(card)[0], buttons(card)[2]

        forged = approve[:-4] + ("AAAA" if not approve.endswith("AAAA") else "BBBB")
        a = await tg.press(ALICE, card, 0, data=forged)
        assert "forged button" in a["text"] and a["show_alert"]
        other_question = approve.replace(approve.split(":")[1], "a" * 16)
        a = await tg.press(ALICE, card, 0, data=other_question)
        assert "forged button" in a["text"]
        a = await tg.press(ALICE, card, 0, data="not-ours")
        assert "not a button of this platform" in a["text"]

        a = await tg.press(MALLORY, card, 0)
        assert "not allowed" in a["text"] and f"tg:{MALLORY}" in a["text"]

        a = await tg.press(ALICE, card, 0, chat=OTHER_CHAT)
        assert "wrong chat" in a["text"]

        await asyncio.sleep(0.5)
        st = await inc.state()
        assert st.status == IncidentStatus.AWAITING_APPROVAL and st.decision is None and fakes.executed == []

        a = await tg.press(BOB, card, 1)  # Ignore
        assert a["text"].startswith("🚫 Ignored")
        await inc.wait_for(lambda s: s.status == IncidentStatus.IGNORED)
        a = await tg.press(ALICE, card, 0, data=approve)  # replayed / late press
        assert f"already decided by tg:{BOB} (ignored)" in a["text"]
        a = await tg.press(ALICE, card, 2, data=modify)  # a late Modify
        assert f"already decided by tg:{BOB} (ignored)" in a["text"]
        assert fakes.executed == []

    texts = await refusals(ledger, inc.incident_id)
    assert len(texts) == 5  # the two presses that name no question of ours belong to no incident:
    async with ledger.pool.acquire() as conn:
        loose = await conn.fetch("SELECT text FROM notifications WHERE kind = 'refused' AND incident_id IS NULL")
    assert any("no question of this platform" in r["text"] for r in loose)
    assert any("not a button of this platform" in r["text"] for r in loose)
    assert any("forged" in t for t in texts) and any("not allowed" in t for t in texts)
    assert any("wrong chat" in t for t in texts) and any("already decided" in t for t in texts)


async def test_press_after_plan_change_and_after_expiry(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes()
    async with platform_worker(client, ledger, tg, fakes) as tq:
        # the message shows plan P1, the question (by now) is about P2
        handle, msg = await ask(client, tq, tg, plan=[RESTART], shown=[LOGS])
        a = await tg.press(ALICE, msg, 0)
        assert "plan changed" in a["text"] and a["show_alert"]
        a = await tg.press(ALICE, msg, 2)  # Modify is refused at once, no prompt
        assert "plan changed" in a["text"]
        assert not any(m.reply_to == msg.message_id for m in tg.emu.bot_messages(CHAT))
        st = await handle.query(QUERY_APPROVAL, result_type=ApprovalState)
        assert st.result is None
        await handle.cancel()

        # expiry: the notifier marks the card and removes its buttons; an old press is refused
        handle, msg = await ask(client, tq, tg, plan=[RESTART], expire_after_s=2)
        data = buttons(msg)[0]
        result = await handle.result()
        assert result.choice == "expired"
        expired_post = await tg.wait_message(lambda m: m.text.startswith("⌛ Expired") and handle.id in m.text)
        assert expired_post.thread == tg.topics["infrastructure"]
        await tg.wait_message(lambda m: m.message_id == msg.message_id and "⌛ expired at" in m.text)
        assert buttons(tg.emu.messages[(CHAT, msg.message_id)]) == []
        a = await tg.press(ALICE, msg, 0, data=data)
        assert "expired" in a["text"]
    assert fakes.executed == []


async def test_reminder_escalation_expiry_are_posts_and_edits(tg: Telegram, ledger: Ledger, client: Client) -> None:
    async with platform_worker(client, ledger, tg, Fakes()) as tq:
        handle, card = await ask(
            client, tq, tg, plan=[RESTART], route="arr", remind_after_s=1, escalate_after_s=2, expire_after_s=4
        )
        assert (await handle.result()).choice == "expired"
    posts = [m for m in tg.emu.bot_messages(CHAT) if handle.id in m.text and m.message_id != card.message_id]

    def first_buttons(m: Stored) -> int:  # as posted, before later edits
        first = m.edits[0]["reply_markup"] if m.edits else m.reply_markup
        return len([b for row in (first or {}).get("inline_keyboard", []) for b in row])

    heads = [(m.text.splitlines()[0].split(" · ")[0], m.thread, first_buttons(m)) for m in posts]
    assert heads == [
        ("⏰ Reminder: still waiting for an answer", tg.topics["arr"], 4),
        ("📣 Escalation: no answer yet", tg.topics["critical"], 4),
        ("⌛ Expired: nothing was run", tg.topics["arr"], 0),
    ]
    text = tg.emu.messages[(CHAT, card.message_id)].text
    assert "⏰ reminded at" in text and "📣 escalated to Critical Alerts at" in text and "⌛ expired at" in text
    for m in [card, *posts]:  # expired: no button is left to press on any of them
        assert buttons(tg.emu.messages[(CHAT, m.message_id)]) == []


async def test_press_that_beats_the_question_waits_for_it(tg: Telegram, ledger: Ledger, client: Client) -> None:
    """The buttons go out with the diagnosis just before the ApprovalWorkflow starts."""
    fakes = Fakes()
    aid = "early-" + uuid.uuid4().hex[:8]
    res = await tg.notifier.notify(
        NotifyInput(
            incident_id=None,
            kind=NotifyKind.DIAGNOSIS,
            route="arr",
            text="Restart?",
            approval_id=aid,
            plan=[RESTART],
            plan_hash=plan_hash([RESTART]),
        )
    )
    msg = tg.emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))]
    assert msg.thread == tg.topics["arr"]
    async with platform_worker(client, ledger, tg, fakes) as tq:
        cq = await tg.emu.press(ALICE, CHAT, msg.message_id, buttons(msg)[0], username="alice")
        await asyncio.sleep(0.6)
        await client.start_workflow(
            ApprovalWorkflow.run,
            ApprovalRequest(
                approval_id=aid,
                incident_id=aid,
                question="Restart?",
                plan=[RESTART],
                plan_hash=plan_hash([RESTART]),
                route="arr",
                remind_after_s=0,
                escalate_after_s=0,
            ),
            id=aid,
            task_queue=tq,
        )
        answer = await tg.emu.wait_answer(cq)
        assert answer["text"].startswith("✅ Approved"), answer
        a = await tg.press(ALICE, msg, 0, data=signing.sign(SECRET, "never-asked", plan_hash([RESTART]), "approved"))
        assert "forged button" in a["text"]  # a question we never posted


# --------------------------------------------------------------------------- modify


async def test_modify_with_invalid_then_valid_arguments(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes(runbook_actions=[SET_MEMORY])
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        a = await tg.press(ALICE, card, 2)
        assert "Reply to the prompt" in a["text"]
        prompt = await tg.wait_message(lambda m: m.reply_to == card.message_id and "changed arguments" in m.text)
        assert prompt.thread == card.thread and prompt.reply_markup == {
            "force_reply": True,
            "selective": True,
            "input_field_placeholder": "deployment=…",
        }

        async def reply(user: int, text: str) -> str:
            before = {m.message_id for m in tg.emu.bot_messages(CHAT)}
            said = await tg.emu.say(
                user, CHAT, text, thread=card.thread, reply_to=prompt.message_id, username=f"u{user}"
            )
            msg = await tg.wait_message(lambda m: m.message_id not in before and m.reply_to == said.message_id)
            return msg.text

        assert "does not match" in await reply(ALICE, "value=2Gx")
        assert "no action of the plan takes memory" in await reply(ALICE, "memory=2Gi")
        assert "only tg:111 answers this prompt" in await reply(BOB, "value=2Gi")
        st = await inc.state()
        assert st.decision is None and st.status == IncidentStatus.AWAITING_APPROVAL

        new_plan = [ToolCall(tool="set_memory_limit", arguments={**SET_MEMORY.arguments, "value": "2Gi"})]
        text = await reply(ALICE, "value=2Gi")
        assert "Modified plan" in text and plan_hash(new_plan)[:12] in text and "'2Gi'" in text
        st = await inc.wait_for(lambda s: s.status in (IncidentStatus.VERIFYING, IncidentStatus.FAILED))
        assert st.decision is not None and st.decision.choice == "modified" and st.decision.by == f"tg:{ALICE}"
        assert [e.call for e in fakes.executed] == new_plan
        assert f"Modified by @u{ALICE}" in tg.emu.messages[(CHAT, card.message_id)].text
        await inc.handle.cancel()
    assert len(await refusals(ledger, inc.incident_id)) == 3


# --------------------------------------------------------------------------- 429 and deduplication


async def test_429_storm_neither_loses_nor_duplicates(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes()
    tg.emu.fail("sendMessage", 3, retry_after=1)
    tg.emu.fail("editMessageText", 2, retry_after=1)
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL, within_s=60)
        card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
        assert tg.emu.rejected_429["sendMessage"] >= 3 and tg.emu.rejected_429["editMessageText"] >= 2
        ours = [m for m in tg.emu.bot_messages(CHAT) if inc.incident_id in m.text]
        assert [m.message_id for m in ours] == [card.message_id]  # one card, edited, never posted twice

        # the bot's own calls wait out a short flood control too
        tg.emu.fail("answerCallbackQuery", 1, retry_after=1)
        tg.emu.fail("editMessageText", 1, retry_after=1)
        before = dict(tg.emu.rejected_429)
        answer = await tg.press(ALICE, card, 0)
        assert answer["text"].startswith("✅ Approved")
        assert tg.emu.rejected_429["answerCallbackQuery"] == before.get("answerCallbackQuery", 0) + 1
        assert tg.emu.rejected_429["editMessageText"] == before["editMessageText"] + 1
        await inc.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        card_text = (await tg.wait_message(lambda m: m.message_id == card.message_id and "Ran:" in m.text)).text
        assert card_text.count(f"Approved by @u{ALICE}") == 1
        await inc.handle.cancel()

    # a retried activity (same key) returns the first message instead of posting again
    inp = NotifyInput(incident_id=None, kind=NotifyKind.NOTICE, route="platform", text="level changed")
    first = await tg.notifier.notify(inp, key="wf/run/7")
    again = await tg.notifier.notify(inp, key="wf/run/7")
    assert first == again
    assert len([m for m in tg.emu.bot_messages(CHAT) if "level changed" in m.text]) == 1


class FlakyLedger:
    """The ledger, whose `kv_set` fails the next `failures` times (a connection lost mid-write)."""

    def __init__(self, ledger: Ledger, failures: int) -> None:
        self._ledger, self.failures, self.failed = ledger, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def kv_set(self, key: str, value: Any) -> None:
        if self.failed < self.failures:
            self.failed += 1
            raise ConnectionResetError("connection lost")
        await self._ledger.kv_set(key, value)


async def test_a_ledger_hiccup_after_a_send_neither_duplicates_nor_orphans_the_card(
    tg: Telegram, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.telegram.notifier as notifier_module

    monkeypatch.setattr(notifier_module, "SENT_MARK_DELAYS_S", (0.01, 0.01, 0.01))
    flaky = FlakyLedger(ledger, failures=2)
    notifier = TelegramNotifier(tg.notifier.bot, flaky, CHAT, SECRET)  # type: ignore[arg-type]
    plan = [RESTART]
    inp = NotifyInput(
        incident_id=None,
        kind=NotifyKind.QUESTION,
        route="platform",
        text="promote runbook-hiccup?",
        approval_id="promote-hiccup",
        plan=plan,
        plan_hash=plan_hash(plan),
    )
    res = await notifier.notify(inp, key="wf/hiccup/1")
    assert flaky.failed == 2  # the writes after the send failed twice and were retried
    again = await notifier.notify(inp, key="wf/hiccup/1")  # the activity's retry
    assert again == res
    posted = [m for m in tg.emu.bot_messages(CHAT) if "runbook-hiccup" in m.text]
    assert len(posted) == 1
    # the card's buttons work: the link to the question was stored despite the hiccup
    link = await notifier.store.link(signing.approval_ref("promote-hiccup"))
    assert link is not None and link.approval_id == "promote-hiccup"
    assert await notifier.store.card(CHAT, posted[0].message_id) is not None

    # a ledger that stays down fails the activity (loudly) instead of pretending
    down = FlakyLedger(ledger, failures=100)
    notifier = TelegramNotifier(tg.notifier.bot, down, CHAT, SECRET)  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        await notifier.notify(inp.model_copy(update={"text": "stays down"}), key="wf/hiccup/2")
    assert down.failed == 4  # the first write and its three retries


async def test_a_press_marked_during_the_workflows_edit_of_the_same_card_is_kept(
    tg: Telegram, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of one card at once: the worker's notification editing it (slowly: Telegram
    took its time) and the bot marking a press on it. The second waits for the first's whole
    edit and builds on it, so the message keeps both (it lost the press's line once in CI)."""
    plan = [RESTART]
    question = NotifyInput(
        incident_id="inc-two-writers",
        kind=NotifyKind.QUESTION,
        route="platform",
        text="restart checkout?",
        approval_id="approval-two-writers",
        plan=plan,
        plan_hash=plan_hash(plan),
    )
    ref = (await tg.notifier.notify(question)).message_ref
    message_id = int(ref.rsplit(":", 1)[1])
    edit = tg.emu._m_editMessageText
    slow = [0.4]

    async def slow_edit(p: dict[str, Any]) -> dict[str, Any]:
        if slow:
            await asyncio.sleep(slow.pop())
        return await edit(p)

    monkeypatch.setattr(tg.emu, "_m_editMessageText", slow_edit)
    update = NotifyInput(
        incident_id="inc-two-writers", kind=NotifyKind.UPDATE, route="platform", text="Running: restart", edit_of=ref
    )
    running = asyncio.create_task(tg.notifier.notify(update))
    await asyncio.sleep(0.1)  # the worker's edit is on its way to Telegram
    await tg.notifier.add_history(CHAT, message_id, "✅ Approved by @alice", keep_buttons=False)
    await running
    shown = tg.emu.messages[(CHAT, message_id)].text
    assert "Running: restart" in shown and "✅ Approved by @alice" in shown, shown
    card = await tg.notifier.store.card(CHAT, message_id)
    assert card is not None and card.text == "Running: restart" and card.history == ["✅ Approved by @alice"]
    row = await ledger.find_notification(CHANNEL, str(CHAT), str(message_id))
    assert row is not None and "✅ Approved by @alice" in row.text and "Running: restart" in row.text


async def test_reports_photos_long_text_and_escaping(tg: Telegram, tmp_path: Any) -> None:
    png = tmp_path / "week.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    res = await tg.notifier.notify(
        NotifyInput(
            incident_id=None, kind=NotifyKind.REPORT, route="weekly", text="Week 47 <b>" + "x" * 3000, photo=str(png)
        )
    )
    msg = tg.emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))]
    assert msg.photo is not None and msg.thread == tg.topics["weekly"]
    assert len(msg.text) <= 1024 and "Week 47 <b>" in msg.text and "truncated" in msg.text

    nasty = 'alert <script>&"x" </code> ' + "y" * 6000
    res = await tg.notifier.notify(NotifyInput(incident_id=None, kind=NotifyKind.NOTICE, route="critical", text=nasty))
    msg = tg.emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))]
    assert msg.thread == tg.topics["critical"] and msg.text.count('<script>&"x" </code>') == 1
    assert len(msg.text) <= 4096 and buttons(msg)  # 🔎 Details
    a = await tg.press(ALICE, msg, 0)
    assert "Full text" in a["text"]
    parts = [m for m in tg.emu.bot_messages(CHAT) if m.reply_to == msg.message_id]
    assert parts and "".join(p.text for p in parts).count("y") == 6000


async def test_a_deleted_topic_falls_back_to_general(tg: Telegram, ledger: Ledger) -> None:
    topics = await ledger.kv_get(TOPICS_KEY)
    await ledger.kv_set(TOPICS_KEY, {**topics, "home-assistant": 99999})
    try:
        res = await tg.notifier.notify(
            NotifyInput(incident_id=None, kind=NotifyKind.NOTICE, route="home_assistant", text="lights out")
        )
    finally:
        await ledger.kv_set(TOPICS_KEY, topics)
    msg = tg.emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))]
    assert msg.thread is None and "lights out" in msg.text


# --------------------------------------------------------------------------- commands and webhook


async def test_commands(tg: Telegram, ledger: Ledger, client: Client) -> None:
    fakes = Fakes()
    async with platform_worker(client, ledger, tg, fakes) as tq:
        inc = await start_incident(client, tq, fakes)
        await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)

        async def command(text: str) -> str:
            said = await tg.emu.say(ALICE, CHAT, text)
            return (await tg.wait_message(lambda m: m.reply_to == said.message_id)).text

        assert inc.incident_id in await command("/incidents")
        status = await command(f"/status {inc.incident_id}")
        assert "awaiting_approval" in status and "kubernetes.restart_deployment" in status
        assert "Runbooks" in await command("/runbooks")
        await inc.handle.cancel()


async def test_webhook_rejects_a_wrong_secret_token(emu: BotApiEmulator, ledger: Ledger, client: Client) -> None:
    app = build_application(emu.token, emu.base_url, polling=False)
    bot = TelegramBot(
        app, client, ledger, BotConfig(chat_id=CHAT, secret=SECRET, approvers=[ALICE], webhook_secret="s3cret-token")
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(bot.http_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}/telegram"
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.02)
        await bot.start(webhook_url=url)
        assert emu.webhook == {"url": url, "secret_token": "s3cret-token"}
        update = {
            "update_id": 9001,
            "message": {"message_id": 1, "date": 0, "chat": {"id": CHAT, "type": "supergroup"}, "text": "/runbooks"},
        }
        async with httpx.AsyncClient() as http:
            wrong = await http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
            missing = await http.post(url, json=update)
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert wrong.status_code == 403 and missing.status_code == 403 and health.status_code == 200
        await asyncio.sleep(0.3)
        assert not any(m.text.startswith("Runbooks") for m in emu.bot_messages(CHAT) if m.reply_to == 1)

        said = await emu.say(ALICE, CHAT, "/runbooks")  # the emulator posts with the right secret
        assert emu.webhook_status[-1] == 200
        for _ in range(200):
            if any(m.reply_to == said.message_id for m in emu.bot_messages(CHAT)):
                break
            await asyncio.sleep(0.02)
        assert any(m.reply_to == said.message_id and "Runbooks" in m.text for m in emu.bot_messages(CHAT))
    finally:
        await app.bot.delete_webhook()
        await bot.stop()
        server.should_exit = True
        await task


# --------------------------------------------------------------------------- the processes


def process_env(emu: BotApiEmulator, dsn: str, client: Client, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_TELEGRAM_TOKEN=emu.token,
        AGENTIC_TELEGRAM_API_BASE=emu.base_url,
        AGENTIC_TELEGRAM_CHAT_ID=str(CHAT),
        AGENTIC_TELEGRAM_APPROVERS=f"{ALICE}",
        AGENTIC_TELEGRAM_CALLBACK_SECRET=SECRET.decode(),
        AGENTIC_POSTGRES_DSN=dsn,
        AGENTIC_TEMPORAL_ADDRESS=client.service_client.config.target_host,
        AGENTIC_MCP_INFRA_URL="http://127.0.0.1:9/mcp",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


async def test_setup_command_is_idempotent(emu: BotApiEmulator, pg: pgserver.PostgresServer, client: Client) -> None:
    dsn = await create_database(pg, "setup")
    env = process_env(emu, dsn, client)
    before = len(emu.topics)
    runs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "telegram", "setup", env=env, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        runs.append(out.decode())
    assert runs[0].count("created") == 6 and runs[1].count("exists") == 6
    assert len(emu.topics) == before + 6
    names = [t["name"] for t in list(emu.topics.values())[-6:]]
    assert names == [t.name for t in TOPICS]
    led = await Ledger.connect(dsn, max_size=1)
    try:
        stored = await led.kv_get(TOPICS_KEY)
        await led.record_notification(
            CHANNEL, incident_id="inc-x", target=str(CHAT), message_id="refused:1", kind="refused", text="tg:666: no"
        )
        await led.record_notification(CHANNEL, incident_id="inc-x", target=str(CHAT), message_id="5", kind="question")
    finally:
        await led.close()
    assert set(stored) == {t.key for t in TOPICS} and set(stored.values()) <= set(emu.topics)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "telegram", "log", "--refused", env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "inc-x" in lines[0] and "tg:666: no" in lines[0]

    bad = {**env, "AGENTIC_TELEGRAM_TOKEN": "999:wrong-token"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "telegram", "setup", env=bad, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2 and "rejected AGENTIC_TELEGRAM_TOKEN" in err.decode()
    assert "wrong-token" not in (out + err).decode()


async def test_bot_process_polls_answers_and_stops(
    emu: BotApiEmulator, pg: pgserver.PostgresServer, client: Client
) -> None:
    dsn = await create_database(pg, "proc")
    port = free_port()
    env = process_env(emu, dsn, client, AGENTIC_BOT_PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.telegram", env=env, stdout=PIPE, stderr=PIPE
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the bot never became healthy")
        said = await emu.say(ALICE, CHAT, "/runbooks")
        for _ in range(300):
            if any(m.reply_to == said.message_id for m in emu.bot_messages(CHAT)):
                break
            await asyncio.sleep(0.05)
        assert any(m.reply_to == said.message_id and "Runbooks" in m.text for m in emu.bot_messages(CHAT))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert emu.token not in err.decode()  # the token never reaches the log


async def test_bot_process_start_up_errors_are_one_line(emu: BotApiEmulator, client: Client) -> None:
    env = process_env(emu, "postgresql://x@127.0.0.1:9/x", client)
    del env["AGENTIC_TELEGRAM_CHAT_ID"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.telegram", env=env, stdout=PIPE, stderr=PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and err.decode().strip().startswith("error: AGENTIC_TELEGRAM_CHAT_ID is not set")
    env = process_env(emu, "postgresql://x@127.0.0.1:9/x", client, AGENTIC_TELEGRAM_TOKEN="999:wrong")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.telegram", env=env, stdout=PIPE, stderr=PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and "999:wrong" not in err.decode(), err.decode()
    env = process_env(emu, "postgresql://x@127.0.0.1:9/x", client, AGENTIC_TELEGRAM_APPROVERS="")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.telegram", env=env, stdout=PIPE, stderr=PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and err.decode().strip().startswith("error: AGENTIC_TELEGRAM_APPROVERS is empty")


async def test_worker_builds_the_telegram_notifier_from_settings(emu: BotApiEmulator, ledger: Ledger) -> None:
    from contextlib import AsyncExitStack

    from workers.errors import AgenticError
    from workers.settings import Settings
    from workers.telegram.notifier import TelegramNotifier
    from workers.worker import build_notifier

    base = {"telegram_api_base": emu.base_url, "telegram_chat_id": CHAT, "telegram_callback_secret": "s"}
    async with AsyncExitStack() as stack:
        assert await build_notifier(Settings(), ledger, stack) is None  # no token: the ledger notifier
        notifier = await build_notifier(
            Settings(telegram_token=emu.token, telegram_routes="platform=arr", **base), ledger, stack
        )
        assert isinstance(notifier, TelegramNotifier) and notifier.secret == b"s"
        if not await ledger.kv_get(TOPICS_KEY):
            await setup_topics(notifier.bot, ledger, CHAT)
        res = await notifier.notify(NotifyInput(incident_id=None, kind=NotifyKind.NOTICE, route="platform", text="hi"))
        assert (
            emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))].thread
            == (await ledger.kv_get(TOPICS_KEY))["arr"]
        )
        with pytest.raises(AgenticError, match="rejected AGENTIC_TELEGRAM_TOKEN") as err:
            await build_notifier(Settings(telegram_token="999:nope", **base), ledger, stack)
        assert "999:nope" not in str(err.value)


async def test_weekly_digest_lands_in_weekly_reports_as_a_photo(
    tg: Telegram, pg: pgserver.PostgresServer, client: Client, tmp_path: Path
) -> None:
    """The reports helper's real WeeklyDigestWorkflow and activities, through the Telegram notifier."""
    from activities.incident.activities import IncidentActivities
    from activities.reports.activities import ReportActivities
    from agentic_core.reports import WeeklyDigestResult, shift_week, week_of
    from tests.support.report_helpers import check_png, seed_week
    from workflows.digest import WeeklyDigestWorkflow

    led = await Ledger.connect(await create_database(pg, "digest"), max_size=4)
    try:
        await led.kv_set(TOPICS_KEY, tg.topics)
        notifier = TelegramNotifier(tg.notifier.bot, led, CHAT, SECRET)
        week = shift_week(week_of(datetime.now(UTC)), -1)
        await seed_week(led, week)
        queue = f"digest-{uuid.uuid4().hex[:8]}"
        incident = IncidentActivities(None, led, None, notifier)  # type: ignore[arg-type]  # notify only
        reports = ReportActivities(led, tmp_path)
        async with Worker(
            client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[WeeklyDigestWorkflow],
            activities=[reports.compute_digest, reports.write_digest, incident.notify],
        ):
            res = await client.execute_workflow(
                "WeeklyDigestWorkflow",
                {"week": week},
                id=f"weekly-digest-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                result_type=WeeklyDigestResult,
            )
        assert res.message_ref is not None and res.message_ref.startswith("tg:")
        msg = tg.emu.messages[(CHAT, int(res.message_ref.rsplit(":", 1)[1]))]
        assert msg.thread == tg.topics["weekly"] and msg.photo is not None
        check_png(msg.photo)
        assert msg.text.startswith("📊 Report") and res.summary.splitlines()[0] in msg.text
        rows = await led.recent_notifications(CHANNEL)
        assert [(r.kind, r.thread, r.incident_id) for r in rows] == [("report", str(tg.topics["weekly"]), None)]
    finally:
        await led.close()


async def test_housekeeping_purges_stale_bot_state_and_keeps_the_topics(ledger: Ledger) -> None:
    from datetime import timedelta

    from workers.telegram.process import housekeep

    topics = await ledger.kv_get(TOPICS_KEY)
    await ledger.kv_set(TOPICS_KEY, topics or {"critical": 7})
    stale, fresh = "tg:sent:housekeeping-stale", "tg:card:housekeeping-fresh"
    await ledger.kv_set(stale, "tg:1:2")
    await ledger.kv_set(fresh, {"x": 1})
    async with ledger.pool.acquire() as conn:
        await conn.execute(
            "UPDATE kv SET updated_at = now() - interval '31 days' WHERE key = ANY($1)", [stale, TOPICS_KEY]
        )
    task = asyncio.create_task(housekeep(ledger, timedelta(days=30), every_s=3600))
    for _ in range(100):
        if await ledger.kv_get(stale) is None:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    assert await ledger.kv_get(stale) is None  # purged at start
    assert await ledger.kv_get(fresh) == {"x": 1}
    assert await ledger.kv_get(TOPICS_KEY)  # the standing topics are not state: never purged


async def test_concurrent_links_for_one_approval_are_all_kept(ledger: Ledger) -> None:
    """Two cards linked to the same approval at the same instant (e.g. a question and its
    escalation): both plans and both cards stay reachable from the button's ref."""
    from workers.telegram import signing
    from workers.telegram.notifier import CardStore

    store = CardStore(ledger)
    aid = f"race-{uuid.uuid4().hex[:8]}"
    plans = [[ToolCall(tool="get_pods", arguments={"namespace": f"ns{i}"})] for i in range(6)]
    await asyncio.gather(
        *(store.add_link(aid, None, plan, plan_hash(plan), f"tg:{CHAT}:{100 + i}") for i, plan in enumerate(plans))
    )
    link = await store.link(signing.approval_ref(aid))
    assert link is not None and len(link.hashes) == 6 and len(link.cards) == 6


async def test_bot_http_server_bounds_header_and_body_reads(
    emu: BotApiEmulator, pg: pgserver.PostgresServer, client: Client
) -> None:
    """The bot's HTTP server (webhook and /healthz) against slow and malformed clients, over raw
    sockets: each is answered or closed within seconds (workers/http_limits.py)."""
    from tests.support.raw_http import assert_bounded, slow_clients

    dsn = await create_database(pg, "limits")
    port = free_port()
    hook_secret = "hook-secret-" + uuid.uuid4().hex[:8]
    env = process_env(
        emu,
        dsn,
        client,
        AGENTIC_BOT_PORT=str(port),
        AGENTIC_TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
        AGENTIC_TELEGRAM_WEBHOOK_SECRET=hook_secret,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.telegram", env=env, stdout=PIPE, stderr=PIPE
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the bot never became healthy")
        assert_bounded(await slow_clients(port, "/telegram", f"X-Telegram-Bot-Api-Secret-Token: {hook_secret}"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        emu.webhook = None  # the other tests of this module poll
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode(), err.decode()
