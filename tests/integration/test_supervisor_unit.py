"""The supervisor's start sequence and restart policy, without processes: `Supervisor.start` and
`Supervisor.supervise` with `spawn` and the health checks replaced, on a temporary data dir."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.env import free_port, port_fields
from tests.support.http_server import LoopServer
from tests.support.telegram_emulator import BotApiEmulator, emulator
from tests.support.telegram_harness import CHAT
from workers.settings import Settings
from workers.stack import supervisor
from workers.stack.env import platform_settings
from workers.stack.parts import Part, build_parts
from workers.stack.restarts import RestartPolicy
from workers.stack.state import PartState, StackState, read_state
from workers.stack.status import restart_detail
from workers.stack.supervisor import Supervisor


def settings_for(tmp: Path, **over: object) -> Settings:
    ports = {name: free_port() for name in port_fields()}
    return Settings(_env_file=None, data_dir=tmp, **(ports | over))  # type: ignore[call-arg, arg-type]


class Recorder(Supervisor):
    """A supervisor whose parts are not processes: it records what it starts and checks."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, out=lambda _line: None)
        self.spawned: list[str] = []
        self.checked: list[str] = []

    async def spawn(self, part: Part) -> None:
        self.spawned.append(part.name)

    async def wait_healthy(self, part: Part) -> str:
        self.checked.append(part.name)
        return "fine"

    async def prepare_services(self, eff: Settings) -> None:
        self.spawned.append("<migrations>")

    async def ingest_docs(self, eff: Settings) -> None:
        return None


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    real = build_parts

    def parts(settings: Settings, eff: Settings, *, resolve_binaries: bool = True) -> list[Part]:
        return real(settings, eff, resolve_binaries=False)

    monkeypatch.setattr(supervisor, "build_parts", parts)
    monkeypatch.setattr(supervisor, "init_postgres", lambda *_a: None)


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"telegram_token": SecretStr("1:t"), "telegram_chat_id": -100, "telegram_approvers": "1"},
        {
            "telegram_token": SecretStr("1:t"),
            "ha_url": "http://ha:8123",
            "ha_token": SecretStr("h"),
            "sonarr_url": "http://sonarr:8989",
            "sonarr_api_key": SecretStr("k"),
            "kubeconfig": Path("/nonexistent/kubeconfig"),
        },
    ],
    ids=["plain", "telegram", "everything"],
)
async def test_start_spawns_every_embedded_part_in_phase_order(
    tmp_path: Path, no_binaries: None, over: dict[str, Any]
) -> None:
    s = settings_for(tmp_path / "data", **over)
    sup = Recorder(s)
    try:
        await sup.start()
    finally:
        sup.release_lock()
    embedded = [p.name for p in sup.parts if p.mode == "embedded"]
    assert sorted(n for n in sup.spawned if n != "<migrations>") == sorted(embedded)
    assert sorted(sup.checked) == sorted(p.name for p in sup.parts if p.mode in ("embedded", "external"))
    if "telegram_token" in over:
        assert "bot" in sup.spawned
    # services, then the ledger's migrations, then the worker, then the edges
    order = sup.spawned
    services = {p.name for p in sup.parts if p.phase == "service" and p.mode == "embedded"}
    assert set(order[: len(services)]) == services and order[len(services)] == "<migrations>"
    assert order[len(services) + 1] == "worker"
    assert {"intake", "mcp-knowledge"} <= set(order[len(services) + 2 :])
    assert read_state(s.data_path) is not None and read_state(s.data_path).ready  # type: ignore[union-attr]


# --------------------------------------------------------------------------- platform_settings


def fake_stack(data: Path, pid: int, **ports: int) -> None:
    """A stack.json as a supervisor with `pid` writes it, with its embedded parts on `ports`."""
    from datetime import UTC, datetime

    parts = {name: PartState(name=name, role=name, mode="embedded", port=port, pid=pid) for name, port in ports.items()}
    st = StackState(
        supervisor_pid=pid,
        ready=True,
        started_at=datetime.now(UTC),
        data_dir=str(data),
        host="127.0.0.1",
        temporal_target=f"127.0.0.1:{ports['temporal']}",
        temporal_namespace="ops",
        task_queue="q-of-the-stack",
        parts=parts,
    )
    (data / "stack.json").write_text(st.model_dump_json())


def test_platform_settings_carry_the_password_and_the_running_stacks_addresses(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "postgres.password").write_text("pw-from-the-data-dir\n")
    plain = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]

    # No stack runs: the settings' own ports, with the generated password; nothing new is written.
    eff = platform_settings(plain)
    assert eff.postgres_target() == "postgresql://postgres:pw-from-the-data-dir@127.0.0.1:5433/postgres"
    assert eff.intake_token is None and sorted(p.name for p in (data / "secrets").iterdir()) == ["postgres.password"]

    # A stack runs (this process stands for its supervisor): its ports, target, namespace and queue.
    fake_stack(data, os.getpid(), postgres=15433, temporal=17233, intake=18088, bot=18089)
    (data / "secrets" / "intake.token").write_text("tok")
    eff = platform_settings(plain)
    assert eff.postgres_target() == "postgresql://postgres:pw-from-the-data-dir@127.0.0.1:15433/postgres"
    assert (eff.temporal_target, eff.temporal_namespace, eff.task_queue) == ("127.0.0.1:17233", "ops", "q-of-the-stack")
    assert eff.intake_base_url == "http://127.0.0.1:18088" and eff.bot_port == 18089
    assert eff.intake_token is not None and eff.intake_token.get_secret_value() == "tok"

    # An explicit external PostgreSQL is kept.
    ext = Settings(_env_file=None, data_dir=data, postgres_dsn=SecretStr("postgresql://u:p@db:5432/x"))  # type: ignore[call-arg]
    assert platform_settings(ext).postgres_target() == "postgresql://u:p@db:5432/x"

    # A stack.json left by a supervisor that is gone: the settings' own addresses again.
    fake_stack(data, 2**22 + 12345, postgres=15433, temporal=17233, intake=18088)
    assert platform_settings(plain).temporal_target == "127.0.0.1:7233"


# --------------------------------------------------------------------------- restarts


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_a_healthy_run() -> None:
    policy = RestartPolicy(backoff_min_s=1, backoff_max_s=60, healthy_reset_s=300, down_after=5)
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == 60  # never gives up, never overflows
    assert policy.streak_after_crash(6, healthy_for=None) == 7  # died before it was healthy
    assert policy.streak_after_crash(6, healthy_for=299) == 7
    assert policy.streak_after_crash(6, healthy_for=300) == 1  # ran healthy long enough: fresh start
    assert policy.is_down(5, 1) and policy.is_down(2, 5) and policy.is_down(10, 1)  # every 5th crash in a row
    assert not policy.is_down(6, 1) and not policy.is_down(4, 4)
    s = Settings(_env_file=None, supervisor_backoff_min_s=0.5, supervisor_backoff_max_s=0.1)  # type: ignore[call-arg]
    assert RestartPolicy.from_settings(s).backoff_max_s == 0.5  # a cap below the first wait is the first wait


# The test part: ready (its health check passes) once it wrote `ready-<pid>` in its cwd, the data dir.
SLEEP = [
    sys.executable,
    "-c",
    "import os, pathlib, time; pathlib.Path(f'ready-{os.getpid()}').touch(); time.sleep(600)",
]
CRASH = [sys.executable, "-c", "raise SystemExit(3)"]


class Intake:
    """What the stack's intake would receive: the `POST /events` bodies (202 each)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.server = LoopServer()

    async def _events(self, request: Request) -> JSONResponse:
        self.auth.append(request.headers.get("authorization", ""))
        self.events.append(await request.json())
        return JSONResponse({"accepted": True, "incidents": ["inc-x"], "events": 1}, status_code=202)

    async def start(self) -> None:
        await self.server.start(Starlette(routes=[Route("/events", self._events, methods=["POST"])]), self.port)


@dataclass
class Rig:
    sup: Supervisor
    part: Part
    lines: list[str]
    intake: Intake
    emu: BotApiEmulator


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A supervisor with one real process as its part (a sleeper), short timings, its intake a
    recorder on a port nobody listens on yet, its Telegram the Bot API emulator."""
    async with emulator() as emu:
        intake = Intake()
        s = settings_for(
            tmp_path / "data",
            intake_port=intake.port,
            intake_token=SecretStr("intake-token"),
            telegram_token=SecretStr(emu.token),
            telegram_api_base=emu.base_url,
            telegram_chat_id=CHAT,
        )
        s.data_path.mkdir(parents=True)
        lines: list[str] = []
        policy = RestartPolicy(backoff_min_s=0.05, backoff_max_s=0.2, healthy_reset_s=600, down_after=3)
        sup = Supervisor(s, out=lines.append, policy=policy, alert_retry_s=0.1)
        sup.eff = s
        part = Part(name="sleeper", role="a test part", mode="embedded", argv=list(SLEEP), env=dict(os.environ))
        part.log = s.data_path / "logs" / "sleeper.log"
        part.start_timeout = 20

        async def health() -> tuple[bool, str]:
            proc = part.proc
            ready = proc is not None and proc.returncode is None and (s.data_path / f"ready-{proc.pid}").exists()
            return ready, "ready" if ready else "not ready"

        part.health = health
        sup.parts = [part]
        await sup.spawn(part)
        part.healthy_since = time.monotonic()
        task = asyncio.create_task(sup.supervise())
        try:
            yield Rig(sup, part, lines, intake, emu)
        finally:
            sup.stopping.set()
            await task
            await sup.stop()
            await intake.server.stop()


async def until(check: Callable[[], bool], within: float, what: str, rig: Rig) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; supervisor said: {rig.lines}")
        await asyncio.sleep(0.02)


def alive(part: Part) -> bool:
    return part.proc is not None and part.proc.returncode is None and part.healthy_since is not None


def telegram_texts(emu: BotApiEmulator) -> list[str]:
    return [p["text"] for m, p in emu.calls if m == "sendMessage"]


async def test_a_part_killed_again_and_again_keeps_coming_back(rig: Rig) -> None:
    part, emu = rig.part, rig.emu
    pids = []
    for i in range(7):
        assert part.proc is not None
        pids.append(part.proc.pid)
        os.kill(part.proc.pid, signal.SIGKILL)
        await until(lambda: alive(part) and part.proc.pid not in pids, 20, f"restart {i + 1}", rig)  # type: ignore[union-attr]
    assert part.restarts == 7 and part.crash_streak == 7 and part.down_since is None
    state = read_state(rig.sup.data)
    assert state is not None and state.parts["sleeper"].restarts == 7 and state.parts["sleeper"].pid == part.proc.pid  # type: ignore[union-attr]

    # Its 3rd and 6th crashes in a row made it down, and each time it came back: four messages,
    # sent by the supervisor itself to the chat.
    await until(lambda: len(telegram_texts(emu)) >= 4, 10, "the Telegram messages", rig)
    texts = telegram_texts(emu)
    assert len(texts) == 4, texts
    assert "part sleeper is down" in texts[0] and "crashed 3 times in a row" in texts[0]
    assert "part sleeper is down" in texts[2] and "crashed 6 times in a row" in texts[2]
    assert "part sleeper is back" in texts[1] and "part sleeper is back" in texts[3]
    assert all(p["chat_id"] in (CHAT, str(CHAT)) for m, p in emu.calls if m == "sendMessage")

    # The intake was not listening (as if it were the part that is down): the events wait, in order.
    assert rig.intake.events == []
    await rig.intake.start()
    await until(lambda: len(rig.intake.events) == 4, 10, "the events at the intake", rig)
    assert [e["status"] for e in rig.intake.events] == ["firing", "resolved", "firing", "resolved"]
    firing, resolved = rig.intake.events[:2]
    assert firing["source"] == "agentic-supervisor" and firing["severity"] == "critical"
    assert firing["title"] == "agentic part sleeper is down" and firing["labels"]["part"] == "sleeper"
    assert resolved["group"] == firing["group"] and resolved["fingerprint"] == firing["fingerprint"]
    assert rig.intake.auth == ["Bearer intake-token"] * 4


async def test_a_part_that_cannot_start_is_down_until_it_can(rig: Rig) -> None:
    part, emu = rig.part, rig.emu
    await rig.intake.start()
    part.argv = list(CRASH)  # every start from now on exits at once
    assert part.proc is not None
    os.kill(part.proc.pid, signal.SIGKILL)
    await until(lambda: part.down_since is not None, 20, "the part to be down", rig)
    await until(lambda: part.restarts >= 5, 20, "more starts", rig)  # it keeps trying
    await until(lambda: len(rig.intake.events) == 1, 10, "the firing event", rig)
    assert rig.intake.events[0]["status"] == "firing" and "exit code 3" in rig.intake.events[0]["description"]
    assert any("part sleeper is down" in t for t in telegram_texts(emu))

    state = read_state(rig.sup.data)
    assert state is not None
    ps = state.parts["sleeper"]
    assert ps.down_since is not None and ps.last_exit == 3 and ps.crash_streak >= 3
    assert restart_detail(ps).startswith("down since") and "last exit code 3" in restart_detail(ps)

    part.argv = list(SLEEP)  # fixed: it comes back
    await until(lambda: alive(part) and part.down_since is None, 20, "the part to be back", rig)
    await until(lambda: len(rig.intake.events) == 2, 10, "the resolved event", rig)
    assert rig.intake.events[1]["status"] == "resolved"
    await until(lambda: any("part sleeper is back" in t for t in telegram_texts(emu)), 10, "the message", rig)
    # One down, one back: the starts that kept failing made no second incident.
    assert sum("is down" in t for t in telegram_texts(emu)) == 1


async def test_status_checks_a_failing_part_once_more_before_calling_it_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentic status` under load: one probe that times out does not make a part unhealthy (the
    acceptance runs saw parts flip to unhealthy at load 15); a part that fails twice is."""
    from workers.stack import status as status_mod

    calls: dict[str, int] = {"flaky": 0, "down": 0}

    async def flaky() -> tuple[bool, str]:
        calls["flaky"] += 1
        return (calls["flaky"] > 1), "serving" if calls["flaky"] > 1 else "unreachable: ReadTimeout"

    async def down() -> tuple[bool, str]:
        calls["down"] += 1
        return False, "unreachable: ConnectError"

    parts = [
        Part(name="flaky", role="r", mode="external", url="http://a", health=flaky),
        Part(name="down", role="r", mode="external", url="http://b", health=down),
    ]
    monkeypatch.setattr(status_mod, "build_parts", lambda *a, **k: parts)
    monkeypatch.setattr(status_mod, "RECHECK_AFTER_S", 0.01)
    _, health = await status_mod.stack_health(settings_for(tmp_path / "data"))
    got = {h.name: (h.healthy, h.detail) for h in health}
    assert got == {"flaky": (True, "serving"), "down": (False, "unreachable: ConnectError")}
    assert calls == {"flaky": 2, "down": 2}


def test_parts_run_the_code_of_the_agentic_that_started_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts start in the data dir and the supervisor in the shell's directory, where Python
    could find another tree's code: the project through its installation (an editable install
    of a copy sharing the virtual environment: here a decoy on PYTHONPATH), or a `workers`
    directory where the process starts. `child_env` puts the running code's root first on
    PYTHONPATH and `PYTHON_M` keeps the working directory off sys.path (`-P`), so a part imports
    what the `agentic` that started it imports."""
    import subprocess

    from tests.support.env import REPO
    from workers.stack.env import CODE_ROOT, PYTHON_M, child_env

    for where in (tmp_path / "decoy", tmp_path / "data"):  # on PYTHONPATH; where the part starts
        (where / "workers" / "stack").mkdir(parents=True)
        (where / "workers" / "__init__.py").write_text("")
        (where / "workers" / "stack" / "__init__.py").write_text("")
        (where / "workers" / "stack" / "env.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "decoy"))
    env = child_env(settings_for(tmp_path))
    assert CODE_ROOT == REPO and env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(tmp_path / "decoy")]
    assert PYTHON_M[1:] == ("-P", "-m")
    code = "import workers.stack.env as e; print(e.__file__)"

    def imported(*flags: str) -> Path:
        out = subprocess.run(
            [sys.executable, *flags, "-c", code], env=env, cwd=tmp_path / "data",
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return Path(out.stdout.strip())

    assert imported(*PYTHON_M[1:-1]) == REPO / "workers" / "stack" / "env.py"
    assert imported() == tmp_path / "data" / "workers" / "stack" / "env.py"  # what -P prevents
