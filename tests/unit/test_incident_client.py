"""`agentic incidents show` / `approve` while the worker restarts (workers/incident_client.py): a
query that no worker answers waits for one (bounded, workers.temporal.query_when_served),
instead of failing a command typed a second too early (CI under load: `agentic approve` right
after a worker kill said "no poller seen for task queue recently, worker may be down").

Temporal answers that error about 30 s after the last worker went away (measured on the dev
server), so the client is faked here with the server's exact error rather than waiting for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.incident import IncidentState, IncidentStatus
from workers import incident_client, temporal
from workers.errors import AgenticError
from workers.settings import Settings

NO_POLLER = "no poller seen for task queue recently, worker may be down"


class Handle:
    def __init__(self, failures: int, status: RPCStatusCode = RPCStatusCode.FAILED_PRECONDITION) -> None:
        self.failures, self.status, self.calls = failures, status, 0

    async def query(self, name: str, result_type: Any) -> IncidentState:
        self.calls += 1
        if self.calls <= self.failures:
            raise RPCError(NO_POLLER if self.status == RPCStatusCode.FAILED_PRECONDITION else "gone", self.status, b"")
        return IncidentState(incident_id="inc-1", status=IncidentStatus.AWAITING_APPROVAL)


@pytest.fixture
def handle(monkeypatch: pytest.MonkeyPatch) -> Any:
    box: dict[str, Handle] = {}

    class Client:
        def get_workflow_handle(self, incident_id: str) -> Handle:
            return box["h"]

    async def platform_client(settings: Settings) -> tuple[Client, str]:
        return Client(), "q"

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(incident_client, "platform_client", platform_client)
    monkeypatch.setattr(temporal.asyncio, "sleep", no_sleep)
    return box


async def test_a_query_waits_for_a_restarting_worker(
    handle: dict[str, Handle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    handle["h"] = Handle(failures=3)
    st = await incident_client.incident_state(settings, "inc-1")
    assert st.status == IncidentStatus.AWAITING_APPROVAL and handle["h"].calls == 4
    assert capsys.readouterr().err.count("no worker answers (restarting?): waiting up to 90 s") == 1


async def test_it_gives_up_after_the_wait_and_other_errors_at_once(handle: dict[str, Handle], tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    handle["h"] = Handle(failures=99)
    with pytest.raises(AgenticError, match=f"cannot read incident inc-1: {NO_POLLER}"):
        await incident_client.incident_state(settings, "inc-1", wait_for_worker_s=0)
    handle["h"] = Handle(failures=1, status=RPCStatusCode.NOT_FOUND)
    with pytest.raises(AgenticError, match="no incident inc-1"):
        await incident_client.incident_state(settings, "inc-1")
    assert handle["h"].calls == 1
