"""The supervisor's start sequence and restart policy, without processes: `Supervisor.start` and
`Supervisor.supervise` with `spawn` and the health checks replaced, on a temporary data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.conftest import free_port
from workers import stack
from workers.settings import Settings
from workers.stack import Part, Supervisor, build_parts


def settings_for(tmp: Path, **over: object) -> Settings:
    ports = {
        f"{name}_port": free_port()
        for name in (
            "temporal",
            "temporal_ui",
            "postgres",
            "llm",
            "intake",
            "mcp_infra",
            "mcp_knowledge",
            "mcp_ha",
            "mcp_arr",
            "bot",
        )
    }
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

    monkeypatch.setattr(stack, "build_parts", parts)
    monkeypatch.setattr(stack, "init_postgres", lambda *_a: None)


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
    assert stack.read_state(s.data_path) is not None and stack.read_state(s.data_path).ready  # type: ignore[union-attr]


# --------------------------------------------------------------------------- platform_settings


def fake_stack(data: Path, pid: int, **ports: int) -> None:
    """A stack.json as a supervisor with `pid` writes it, with its embedded parts on `ports`."""
    from datetime import UTC, datetime

    parts = {
        name: stack.PartState(name=name, role=name, mode="embedded", port=port, pid=pid) for name, port in ports.items()
    }
    st = stack.StackState(
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
    import os

    data = tmp_path / "d"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "postgres.password").write_text("pw-from-the-data-dir\n")
    plain = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]

    # No stack runs: the settings' own ports, with the generated password; nothing new is written.
    eff = stack.platform_settings(plain)
    assert eff.postgres_target() == "postgresql://postgres:pw-from-the-data-dir@127.0.0.1:5433/postgres"
    assert eff.intake_token is None and sorted(p.name for p in (data / "secrets").iterdir()) == ["postgres.password"]

    # A stack runs (this process stands for its supervisor): its ports, target, namespace and queue.
    fake_stack(data, os.getpid(), postgres=15433, temporal=17233, intake=18088, bot=18089)
    (data / "secrets" / "intake.token").write_text("tok")
    eff = stack.platform_settings(plain)
    assert eff.postgres_target() == "postgresql://postgres:pw-from-the-data-dir@127.0.0.1:15433/postgres"
    assert (eff.temporal_target, eff.temporal_namespace, eff.task_queue) == ("127.0.0.1:17233", "ops", "q-of-the-stack")
    assert eff.intake_base_url == "http://127.0.0.1:18088" and eff.bot_port == 18089
    assert eff.intake_token is not None and eff.intake_token.get_secret_value() == "tok"

    # An explicit external PostgreSQL is kept.
    ext = Settings(_env_file=None, data_dir=data, postgres_dsn=SecretStr("postgresql://u:p@db:5432/x"))  # type: ignore[call-arg]
    assert stack.platform_settings(ext).postgres_target() == "postgresql://u:p@db:5432/x"

    # A stack.json left by a supervisor that is gone: the settings' own addresses again.
    fake_stack(data, 2**22 + 12345, postgres=15433, temporal=17233, intake=18088)
    assert stack.platform_settings(plain).temporal_target == "127.0.0.1:7233"
