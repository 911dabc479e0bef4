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
