"""`agentic up` with Telegram configured, and what the supervisor does when parts die.

One embedded stack, started through the real `agentic up --detach` with the Bot API emulator
(tests/support/telegram_emulator.py) as its Telegram and short supervisor timings
(`AGENTIC_SUPERVISOR_*`, docs/configuration.md). Every `agentic` call is an asyncio
subprocess: the emulator serves from this test's event loop, which must keep running while
the CLI and the stack's processes talk to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import RUNBOOK, agentic, eventually, webhook
from tests.support.env import stack_env
from tests.support.kmock_helpers import emulated_cluster
from tests.support.telegram_emulator import BotApiEmulator, Stored, emulator
from tests.support.telegram_harness import ALICE, CHAT, buttons

pytestmark = pytest.mark.slow

DOWN_AFTER = 3  # crashes in a row that make a part "down" in this stack


@dataclass
class World:
    emu: BotApiEmulator
    env: dict[str, str]
    data: Path
    tmp: Path


def logs(data: Path, *names: str, lines: int = 30) -> str:
    out = []
    for name in names:
        log = data / "logs" / f"{name}.log"
        if log.exists():
            out.append(f"--- {name}.log\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(out)


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    with tempfile.TemporaryDirectory(prefix="agentic-sup-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "kube").mkdir()
        async with emulator() as emu, emulated_cluster(tmp / "kube") as (_k, kubeconfig):
            data = tmp / "data"
            env = stack_env(data)
            env.update(
                AGENTIC_KUBECONFIG=str(kubeconfig),
                AGENTIC_TELEGRAM_TOKEN=emu.token,
                AGENTIC_TELEGRAM_API_BASE=emu.base_url,
                AGENTIC_TELEGRAM_CHAT_ID=str(CHAT),
                AGENTIC_TELEGRAM_APPROVERS=str(ALICE),
                AGENTIC_VERIFY_WINDOW_S="30",
                AGENTIC_SUPERVISOR_BACKOFF_MIN_S="0.2",
                AGENTIC_SUPERVISOR_BACKOFF_MAX_S="1",
                AGENTIC_SUPERVISOR_HEALTHY_RESET_S="600",
                AGENTIC_SUPERVISOR_DOWN_AFTER=str(DOWN_AFTER),
            )
            rc, out, err = await agentic(env, "up", "--detach")
            assert rc == 0, out + err + logs(data, "supervisor", "bot")
            try:
                rb = tmp / "runbooks"
                rb.mkdir()
                (rb / "restart.md").write_text(RUNBOOK)
                rc, out, err = await agentic(env, "runbooks", "import", str(rb))
                assert rc == 0 and "1 added" in out, out + err
                yield World(emu=emu, env=env, data=data, tmp=tmp)
            finally:
                await agentic(env, "down", limit=120)


def state(data: Path) -> dict[str, Any]:
    return dict(json.loads((data / "stack.json").read_text()))


async def status(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    rc, out, err = await agentic(env, "status", "--json", limit=60)
    assert out, err
    return rc, {p["name"]: p for p in json.loads(out)["parts"]}


# --------------------------------------------------------------------------- the bot


async def test_up_starts_the_bot_and_a_button_press_decides(world: World) -> None:
    """`agentic up` with a token starts the bot: status shows it healthy, and an Approve pressed
    in the forum topic (through the emulator) answers the incident's question."""
    env, emu, data = world.env, world.emu, world.data
    rc, parts = await status(env)
    assert rc == 0 and parts["bot"]["mode"] == "embedded" and parts["bot"]["healthy"] is True, parts["bot"]
    assert (data / "logs" / "bot.log").exists()

    rc, out, err = await agentic(env, "telegram", "setup")
    assert rc == 0 and out.count("created") == 6, out + err
    rc, out, err = await agentic(env, "alert", "send", "-", stdin=webhook("DemoDeploymentUnhealthy", "sonarr"))
    assert rc == 0, err
    inc = out.strip().split()[-1]

    def card() -> Stored | None:
        return next((m for m in emu.bot_messages(CHAT) if inc in m.text and len(buttons(m)) == 4), None)

    async def card_posted() -> Stored | None:
        return card()

    try:
        msg = await eventually(card_posted, 120, "the question with its buttons", every=0.5)
    except AssertionError as exc:
        rc, out, err = await agentic(env, "incidents", "show", inc, "--json")
        texts = [(m.thread, m.text[:100], len(buttons(m))) for m in emu.bot_messages(CHAT)]
        raise AssertionError(f"{exc}\n{out[-3000:]}{err}\n{texts}\n{logs(data, 'worker', 'bot')}") from None
    assert msg.thread in emu.topics, (msg.thread, emu.topics)  # posted in a forum topic

    cq = await emu.press(ALICE, CHAT, msg.message_id, buttons(msg)[0], username="alice")
    try:
        answer = await emu.wait_answer(cq, within_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(data, 'bot', 'supervisor')}") from None
    assert answer["text"].startswith("✅ Approved"), answer

    async def decided() -> dict[str, Any] | None:
        rc, out, err = await agentic(env, "incidents", "show", inc, "--json")
        assert rc == 0, err
        doc: dict[str, Any] = json.loads(out)
        return doc if doc["decision"] else None

    st = await eventually(decided, 60, "the decision in the incident", every=0.5)
    assert st["decision"]["choice"] == "approved" and st["decision"]["by"] == f"tg:{ALICE}"
    assert st["status"] != "awaiting_approval"


# --------------------------------------------------------------------------- the supervisor


def supervisor_texts(emu: BotApiEmulator) -> list[str]:
    """What the supervisor itself sent the chat (in the General topic: the bot's cards go to topics)."""
    return [m.text for m in emu.bot_messages(CHAT) if m.text.startswith(("🚨 agentic-platform", "✅ agentic-platform"))]


def part_incident(part: str) -> str:
    from agentic_core.alerts import incident_id_for

    return incident_id_for("events:agentic-supervisor", f"agentic-supervisor/part/{part}")


async def healthz(port: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_the_intake_killed_again_and_again_keeps_coming_back(world: World) -> None:
    """kill -9 of the intake six times in a row: it comes back every time (the old supervisor
    gave up after five); at the 3rd and 6th crash in a row it is down, which the supervisor
    tells the chat itself, and the intake events wait until the intake is back."""
    env, data, emu = world.env, world.data, world.emu
    port = env["AGENTIC_INTAKE_PORT"]
    seen: list[int] = []
    for i in range(6):
        pid = state(data)["parts"]["intake"]["pid"]
        seen.append(pid)
        os.kill(pid, signal.SIGKILL)

        async def back(kills: int = i + 1) -> bool:
            p = state(data)["parts"]["intake"]
            # back for the supervisor too (not only answering): a kill while it still waits for
            # the health of the restarted intake would be a failed start, not a crash of its own
            fresh = p["pid"] not in seen and p.get("next_start_at") is None and not p["starting"]
            return fresh and p["restarts"] == kills and await healthz(port)

        try:
            await eventually(back, 60, f"the intake back after kill {i + 1}", every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs(data, 'supervisor', 'intake')}") from None
    rc, parts = await status(env)
    assert rc == 0, parts
    assert parts["intake"]["healthy"] is True and parts["intake"]["restarts"] == 6 and not parts["intake"]["down"]

    async def told() -> list[str]:
        texts = supervisor_texts(emu)
        return texts if len(texts) >= 4 else []

    texts = await eventually(told, 30, "the supervisor's messages", every=0.5)
    assert [t.split(":")[0] for t in texts[:4]] == ["🚨 agentic-platform", "✅ agentic-platform"] * 2
    assert "part intake is down" in texts[0] and "crashed 3 times in a row" in texts[0]
    assert "part intake is down" in texts[2] and "crashed 6 times in a row" in texts[2]

    # The events reached the intake once it was back: the incident of the part exists.
    rc, _, err = await agentic(env, "alert", "send", "-", stdin=webhook("DemoAfterKills", "radarr"))
    assert rc == 0, err  # and it takes alerts again

    async def incident() -> dict[str, Any] | None:
        rc, out, _ = await agentic(env, "incidents", "show", part_incident("intake"), "--json")
        return dict(json.loads(out)) if rc == 0 else None

    st = await eventually(incident, 60, "the intake's own incident", every=1)
    assert "agentic part intake is down" in st["title"]


async def test_a_part_that_stays_down_is_an_incident_and_a_message(world: World) -> None:
    """The knowledge MCP server killed and its port held by someone else: every start fails. It is
    down: an event to the intake (an incident of its own, handled by the worker), a message to the
    chat, `agentic status` says so; the supervisor keeps trying and, the port free again, it is
    back: a resolved event and a second message."""
    env, data, emu = world.env, world.data, world.emu
    port = int(env["AGENTIC_MCP_KNOWLEDGE_PORT"])
    before = len(supervisor_texts(emu))
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        os.kill(state(data)["parts"]["mcp-knowledge"]["pid"], signal.SIGKILL)
        for _ in range(200):  # the port is free once the kernel has closed the killed server's socket
            try:
                holder.bind(("127.0.0.1", port))
                break
            except OSError:
                await asyncio.sleep(0.005)
        holder.listen()

        async def down() -> bool:
            return bool(state(data)["parts"]["mcp-knowledge"]["down_since"])

        await eventually(down, 60, "mcp-knowledge to be down", every=0.2)
        rc, parts = await status(env)
        assert rc == 1 and parts["mcp-knowledge"]["down"] is True and parts["mcp-knowledge"]["healthy"] is False
        assert parts["mcp-knowledge"]["detail"].startswith("down since"), parts["mcp-knowledge"]
        assert "last exit code 2" in parts["mcp-knowledge"]["detail"]  # its start-up error: the port is taken

        async def incident() -> dict[str, Any] | None:
            rc, out, _ = await agentic(env, "incidents", "show", part_incident("mcp-knowledge"), "--json")
            return dict(json.loads(out)) if rc == 0 else None

        st = await eventually(incident, 60, "the part's own incident", every=1)
        assert "agentic part mcp-knowledge is down" in st["title"] and st["severity"] == "critical"

        async def message() -> list[str]:
            return [t for t in supervisor_texts(emu)[before:] if "part mcp-knowledge is down" in t]

        assert await eventually(message, 30, "the message to the chat", every=0.5)
        restarts = state(data)["parts"]["mcp-knowledge"]["restarts"]

        async def tried_again() -> bool:  # it keeps trying (after its back-off, longer on a loaded machine)
            return bool(state(data)["parts"]["mcp-knowledge"]["restarts"] > restarts)

        await eventually(tried_again, 30, "another start of mcp-knowledge", every=0.2)
    finally:
        holder.close()

    async def back() -> bool:
        return await healthz(str(port)) and not state(data)["parts"]["mcp-knowledge"]["down_since"]

    await eventually(back, 60, "mcp-knowledge to be back", every=0.2)

    async def back_message() -> list[str]:
        return [t for t in supervisor_texts(emu)[before:] if "part mcp-knowledge is back" in t]

    assert await eventually(back_message, 30, "the message that it is back", every=0.5)

    async def resolved() -> dict[str, Any] | None:
        rc, out, _ = await agentic(env, "incidents", "show", part_incident("mcp-knowledge"), "--json")
        doc = dict(json.loads(out)) if rc == 0 else {}
        return doc if doc.get("resolved_by_alertmanager") else None

    await eventually(resolved, 60, "the resolved event in the incident", every=1)
    rc, parts = await status(env)
    assert rc == 0 and parts["mcp-knowledge"]["healthy"] is True and not parts["mcp-knowledge"]["down"]
