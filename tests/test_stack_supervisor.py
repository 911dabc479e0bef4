"""`agentic up` with Telegram configured, and what the supervisor does when parts die.

One embedded stack, started through the real `agentic up --detach` with the Bot API emulator
(tests/telegram_emulator.py) as its Telegram and short supervisor timings
(`AGENTIC_SUPERVISOR_*`, docs/configuration.md). Every `agentic` call is an asyncio
subprocess: the emulator serves from this test's event loop, which must keep running while
the CLI and the stack's processes talk to it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, stack_env
from tests.kmock_helpers import emulated_cluster
from tests.telegram_emulator import BotApiEmulator, Stored, emulator
from tests.telegram_harness import ALICE, CHAT, buttons
from tests.test_e2e_incident import RUNBOOK, webhook

pytestmark = pytest.mark.slow

DOWN_AFTER = 3  # crashes in a row that make a part "down" in this stack


@dataclass
class World:
    emu: BotApiEmulator
    env: dict[str, str]
    data: Path
    tmp: Path


async def agentic(
    env: dict[str, str], *args: str, stdin: bytes | None = None, limit: float = 300
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


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

    st = await eventually(decided, 60, "the decision in the incident")
    assert st["decision"]["choice"] == "approved" and st["decision"]["by"] == f"tg:{ALICE}"
    assert st["status"] != "awaiting_approval"
