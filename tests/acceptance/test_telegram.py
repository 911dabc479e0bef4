"""README, "Telegram":

    With `AGENTIC_TELEGRAM_TOKEN`, `AGENTIC_TELEGRAM_CHAT_ID` (a forum supergroup) and
    `AGENTIC_TELEGRAM_APPROVERS` set, `agentic up` also starts the bot and incident questions
    arrive in forum topics with ✅ Approve · 🚫 Ignore · ✏️ Modify · 🔎 Details buttons whose
    signed presses answer the `ApprovalWorkflow` (refusals say why, and are recorded).
    `agentic telegram setup` creates the topics; `/incidents`, `/status ID`, `/runbooks` work in
    the group.

On the second stack (tests/acceptance/conftest.py `configured_stack`), whose Telegram is the Bot
API emulator of tests/support/telegram_emulator.py; the question is a stalled Radarr queue (the project's
arr runbook, the arr tool server in front of a fake Radarr).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.acceptance.conftest import TELEGRAM_APPROVER, TELEGRAM_CHAT, Configured, eventually

pytestmark = pytest.mark.slow

TOPICS = [
    "🔴 Critical Alerts",
    "🟡 Arr Suite",
    "🔵 Infrastructure",
    "🏠 Home Assistant",
    "📊 Weekly Reports",
    "✅ Resolved",
]
BUTTONS = ["✅ Approve", "🚫 Ignore", "✏️ Modify", "🔎 Details"]
STRANGER = 999999


def bot_messages(c: Configured) -> list[Any]:
    return c.outside.call(lambda: list(c.emu.bot_messages(TELEGRAM_CHAT)))


def buttons(msg: Any) -> list[dict[str, str]]:
    return [b for row in (msg.reply_markup or {}).get("inline_keyboard", []) for b in row]


def test_agentic_up_starts_the_bot(configured_stack: Configured) -> None:
    c = configured_stack
    # README: "... set, `agentic up` also starts the bot"
    bot = c.stack.status()["parts_by_name"]["bot"]
    assert bot["mode"] == "embedded" and bot["healthy"] is True, f"README: `agentic up` also starts the bot: {bot}"
    # A started bot polls the Bot API for updates.
    polled = c.outside.call(lambda: [m for m, _ in c.emu.calls if m == "getUpdates"])
    assert polled, (
        f"the bot never called getUpdates; Bot API calls: {c.outside.call(lambda: [m for m, _ in c.emu.calls])}"
    )


def topic(c: Configured, name: str) -> int:
    topics = c.outside.call(lambda: dict(c.emu.topics))
    return next(thread for thread, t in topics.items() if t["name"] == name)


def test_telegram_setup_creates_the_topics(configured_stack: Configured) -> None:
    c = configured_stack
    # README: "`agentic telegram setup` creates the topics" (run by `configured_stack` right after
    # `agentic up`, as docs/telegram.md orders it)
    setup = c.telegram_setup
    assert setup.rc == 0 and setup.out.count("created") == len(TOPICS), setup
    names = [t["name"] for t in c.outside.call(lambda: list(c.emu.topics.values()))]
    assert names == TOPICS, names
    again = c.stack.agentic("telegram", "setup", timeout=120)  # docs/telegram.md: "Run it again at any time"
    assert again.rc == 0 and again.out.count("exists") == len(TOPICS), again
    assert len(c.outside.call(lambda: dict(c.emu.topics))) == len(TOPICS)


@pytest.fixture(scope="module")
def question(configured_stack: Configured) -> tuple[str, Any]:
    """The stalled Radarr queue's incident (alerted by `configured_stack` once the topics
    existed) and its question in Telegram."""
    c = configured_stack
    incident = c.radarr_incident
    assert incident, f"no incident: {c.runbooks_import}\n{c.telegram_setup}"

    def card() -> Any:
        for m in bot_messages(c):
            if incident in m.text and len(buttons(m)) == 4:
                return m
        return None

    msg = eventually(
        card,
        180,
        f"the question of {incident} with its buttons",
        describe=lambda: (
            f"incident: {json.dumps(c.stack.incident(incident))[-2000:]}\n"
            f"messages: {[(m.thread, m.text[:120]) for m in bot_messages(c)]}"
        ),
    )
    return incident, msg


def require_bot(c: Configured) -> None:
    """What follows needs the bot: fail at once (not after a wait) when `agentic up` did not start it."""
    bot = c.stack.status()["parts_by_name"]["bot"]
    assert bot["healthy"] is True, f"README: `agentic up` also starts the bot; it does not run: {bot}"


def test_an_incident_question_arrives_in_its_topic_with_the_four_buttons(
    configured_stack: Configured, question: tuple[str, Any]
) -> None:
    c = configured_stack
    incident, msg = question
    # README: "incident questions arrive in forum topics with ✅ Approve · 🚫 Ignore · ✏️ Modify ·
    # 🔎 Details buttons" (docs/telegram.md: category `arr` → 🟡 Arr Suite)
    assert msg.thread == topic(c, "🟡 Arr Suite"), (msg.thread, c.outside.call(lambda: dict(c.emu.topics)))
    assert [b["text"] for b in buttons(msg)] == BUTTONS, msg.reply_markup
    assert "arr_command" in msg.text and incident in msg.text, msg.text


@pytest.mark.parametrize("command", ["/incidents", "/status ID", "/runbooks"])
def test_commands_work_in_the_group(configured_stack: Configured, question: tuple[str, Any], command: str) -> None:
    c = configured_stack
    incident, _ = question
    require_bot(c)
    text = command.replace("ID", incident)
    said = c.outside.run(c.emu.say(TELEGRAM_APPROVER, TELEGRAM_CHAT, text, username="alice"))

    def reply() -> Any:
        return next((m for m in bot_messages(c) if m.reply_to == said.message_id), None)

    # README: "`/incidents`, `/status ID`, `/runbooks` work in the group"
    answer = eventually(reply, 20, f"the bot's reply to {text}", every=0.5)
    expected = {
        "/incidents": incident,  # the open incidents
        "/status ID": "runbook: arr/download-queue-stalled",  # its status, runbook, plan, decision, ...
        "/runbooks": "arr/download-queue-stalled",  # every runbook with its level and record
    }[command]
    assert expected in answer.text, answer.text


def test_a_press_answers_the_approval_and_a_refusal_says_why(
    configured_stack: Configured, question: tuple[str, Any]
) -> None:
    c = configured_stack
    incident, msg = question
    require_bot(c)
    approve = buttons(msg)[0]["callback_data"]

    def press(user: int) -> dict[str, Any]:
        cq = c.outside.run(c.emu.press(user, TELEGRAM_CHAT, msg.message_id, approve, username=f"u{user}"))
        return c.outside.run(c.emu.wait_answer(cq, within_s=20), timeout=60)

    # README: "(refusals say why, and are recorded)"
    refused = press(STRANGER)
    assert refused["show_alert"] and "not allowed" in refused["text"], refused
    assert c.stack.incident(incident)["decision"] is None
    log = c.stack.agentic("telegram", "log", "--refused")
    assert log.rc == 0 and incident in log.out and f"tg:{STRANGER}" in log.out, log

    # README: "signed presses answer the `ApprovalWorkflow`"
    answer = press(TELEGRAM_APPROVER)
    assert answer["text"].startswith("✅ Approved"), answer
    st = c.stack.wait_incident(incident, {"executing", "verifying", "resolved", "failed", "unknown"}, 60, "the answer")
    assert st["decision"]["choice"] == "approved" and st["decision"]["by"] == f"tg:{TELEGRAM_APPROVER}", st
