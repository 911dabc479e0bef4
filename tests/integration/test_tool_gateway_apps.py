"""The tool gateway over several MCP servers: the Home Assistant and arr-suite server processes
(fake apps behind them), a real PostgreSQL ledger, temporalio's ActivityEnvironment. List → guard
→ execute exactly once; annotations → what is safe to repeat; one server down does not block the
others, and what needs it fails closed saying so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pgserver
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ledger.repository import Ledger
from activities.tools.gateway import ERR_UNAVAILABLE, ToolActivities
from agentic_core.incident import ExecuteInput, GuardInput, ListToolsInput, idempotency_key
from agentic_core.models import ToolCall
from agentic_core.tools import tool_server_hint
from tests.support.env import free_port
from tests.support.fake_apps import FakeArr, FakeHomeAssistant
from tests.support.kmock_helpers import McpProcess
from tests.support.mcp_apps import TOKEN, failing_prowlarr, stalled_sonarr, start_arr, start_ha
from tests.support.pg import create_database, pg_server
from workers.settings import Settings

ALLOWED = Settings(_env_file=None).incident_tool_list  # type: ignore[call-arg]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def execute_input(incident: str, index: int, tool: str, arguments: dict[str, Any]) -> ExecuteInput:
    return ExecuteInput(
        incident_id=incident,
        index=index,
        call=ToolCall(tool=tool, arguments=arguments),
        idempotency_key=idempotency_key(incident, index),
    )


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-gateway-apps-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "gwapps"), max_size=4)
    yield led
    await led.close()


@pytest.fixture(scope="module")
async def ha() -> AsyncIterator[FakeHomeAssistant]:
    fake = FakeHomeAssistant()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def arr() -> AsyncIterator[dict[str, FakeArr]]:
    fakes = {"sonarr": stalled_sonarr(), "prowlarr": failing_prowlarr()}
    for f in fakes.values():
        await f.start()
    yield fakes
    for f in fakes.values():
        await f.stop()


@pytest.fixture(scope="module")
async def ha_proc(ha: FakeHomeAssistant) -> AsyncIterator[McpProcess]:
    proc = await start_ha(ha)
    yield proc
    await proc.stop()


@pytest.fixture(scope="module")
async def arr_proc(arr: dict[str, FakeArr]) -> AsyncIterator[McpProcess]:
    proc = await start_arr(arr)
    yield proc
    await proc.stop()


@pytest.fixture
def acts(ledger: Ledger, ha_proc: McpProcess, arr_proc: McpProcess) -> ToolActivities:
    # As the worker builds it (Settings.mcp_servers): infra first; no cluster here, so it is down.
    servers = {"infra": f"http://127.0.0.1:{free_port()}/mcp", "homeassistant": ha_proc.url, "arr": arr_proc.url}
    return ToolActivities(ledger, servers, TOKEN, {"incident": ALLOWED}, heartbeat_every_s=0.05)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


async def test_the_reachable_servers_tools_are_served_when_one_is_down(
    acts: ToolActivities, env: ActivityEnvironment
) -> None:
    result = await env.run(acts.list_tools, ListToolsInput())
    by_name = {t.name: t for t in result.tools}
    assert list(by_name) == [
        "ha_states",
        "ha_entity",
        "ha_error_log",
        "ha_check_config",
        "ha_call_service",
        "ha_restart",
        "arr_status",
        "arr_health",
        "arr_queue",
        "prowlarr_indexers",
        "arr_command",
        "arr_remove_queue_item",
        "prowlarr_test_indexer",
    ]
    assert by_name["ha_call_service"].server == "homeassistant" and by_name["ha_call_service"].mutating
    assert by_name["arr_queue"].server == "arr" and not by_name["arr_queue"].mutating
    assert set(acts._down) == {"infra"} and "cannot reach MCP server 'infra'" in acts._down["infra"]
    # What the annotations make safe to repeat after an interrupted call.
    catalog = await acts._tools()
    safe = {name: t.safe_to_repeat for name, t in catalog.items()}
    assert safe["ha_call_service"] is True and safe["ha_restart"] is False
    assert safe["arr_command"] is True and safe["arr_remove_queue_item"] is True
    assert safe["prowlarr_test_indexer"] is True


async def test_a_tool_of_a_down_server_fails_closed_and_says_so(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger
) -> None:
    incident = uid("down")
    actions = [
        ToolCall(tool="get_pods", arguments={"namespace": "media"}),
        ToolCall(tool="arr_health", arguments={"app": "sonarr"}),
    ]
    guarded = await env.run(acts.guard, GuardInput(incident_id=incident, actions=actions))
    assert [a.allowed for a in guarded.actions] == [False, True]
    reason = guarded.actions[0].reason
    assert reason.startswith("tool 'get_pods' is not available now: it may belong to an MCP server that is down")
    assert "cannot reach MCP server 'infra'" in reason and reason.endswith("not run (fail closed)")

    # An approved action whose server is down waits: retryable, nothing claimed.
    inp = execute_input(incident, 0, "get_pods", {"namespace": "media"})
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.execute, inp)
    assert info.value.type == ERR_UNAVAILABLE and not info.value.non_retryable
    assert await ledger.get_action(inp.idempotency_key) is None

    # A server that answered before and is down now is named as the tool's server.
    acts.servers["homeassistant"] = f"http://127.0.0.1:{free_port()}/mcp"
    acts._catalog_at = 0.0
    guarded = await env.run(
        acts.guard, GuardInput(incident_id=uid("down2"), actions=[ToolCall(tool="ha_check_config", arguments={})])
    )
    assert guarded.actions[0].reason.startswith(
        "tool 'ha_check_config' is not available now: its MCP server 'homeassistant' is down (cannot reach"
    )
    assert "arr_status" in {t.name for t in (await env.run(acts.list_tools, ListToolsInput())).tools}

    # Every server down: the listing itself is unavailable (retryable).
    acts.servers["arr"] = f"http://127.0.0.1:{free_port()}/mcp"
    acts._catalog_at = 0.0
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.list_tools, ListToolsInput())
    assert info.value.type == ERR_UNAVAILABLE and "'homeassistant'" in info.value.message


async def test_ha_call_service_runs_exactly_once(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, ha: FakeHomeAssistant
) -> None:
    incident = uid("ha")
    args = {"domain": "switch", "service": "turn_off", "entity_id": "switch.garage_heater"}
    guarded = await env.run(
        acts.guard, GuardInput(incident_id=incident, actions=[ToolCall(tool="ha_call_service", arguments=args)])
    )
    assert guarded.actions[0].allowed, guarded.actions[0].reason
    before = len(ha.service_calls())
    inp = execute_input(incident, 0, "ha_call_service", args)
    first = await env.run(acts.execute, inp)
    assert first.status == "succeeded" and not first.already_ran
    assert "switch.turn_off on switch.garage_heater" in first.output
    again = await env.run(acts.execute, inp)
    assert again.already_ran and again.output == first.output
    assert len(ha.service_calls()) == before + 1
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.result["server"] == "homeassistant"


async def test_a_service_off_the_allow_list_is_refused_before_home_assistant(
    acts: ToolActivities, env: ActivityEnvironment, ha: FakeHomeAssistant
) -> None:
    before = len(ha.service_calls())
    inp = execute_input(
        uid("toggle"),
        0,
        "ha_call_service",
        {"domain": "switch", "service": "toggle", "entity_id": "switch.garage_heater"},
    )
    result = await env.run(acts.execute, inp)
    assert result.status == "failed"
    assert result.error.startswith("switch.toggle is not on the Home Assistant allow-list (")
    assert len(ha.service_calls()) == before
    # Schema refusals happen in the guard, before any server is called.
    bad = ToolCall(tool="ha_call_service", arguments={"domain": "Switch!", "service": "turn_on"})
    guarded = await env.run(acts.guard, GuardInput(incident_id=uid("schema"), actions=[bad]))
    assert guarded.actions[0].reason.startswith("ha_call_service: argument 'domain': 'Switch!' does not match")


async def test_interrupted_calls_repeat_only_what_is_safe(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, ha: FakeHomeAssistant
) -> None:
    # A worker claimed a restart, maybe sent it, and died: never repeated blindly.
    incident = uid("restart")
    inp = execute_input(incident, 0, "ha_restart", {})
    await ledger.start_action(incident, 0, "ha_restart", {}, inp.idempotency_key)
    result = await env.run(acts.execute, inp)
    assert result.status == "failed" and result.error.startswith("outcome unknown: ")
    assert "ha_restart is not safe to repeat" in result.error
    assert not ha.made("POST", "/api/services/homeassistant/restart")

    # The same for a turn_on (idempotent): called again, and it succeeds.
    args = {"domain": "switch", "service": "turn_on", "entity_id": "switch.garage_heater"}
    inp = execute_input(incident, 1, "ha_call_service", args)
    await ledger.start_action(incident, 1, "ha_call_service", args, inp.idempotency_key)
    resumed = await env.run(acts.execute, inp)
    assert resumed.status == "succeeded" and ha.states["switch.garage_heater"]["state"] == "on"


async def test_arr_plan_list_guard_execute(
    acts: ToolActivities, env: ActivityEnvironment, arr: dict[str, FakeArr]
) -> None:
    incident = uid("arr")
    plan = [
        ToolCall(tool="arr_queue", arguments={"app": "sonarr", "problems_only": True}),
        ToolCall(tool="arr_remove_queue_item", arguments={"app": "sonarr", "id": 12, "blocklist": True}),
        ToolCall(tool="arr_command", arguments={"app": "sonarr", "name": "MissingEpisodeSearch", "wait_s": 0}),
        ToolCall(tool="arr_command", arguments={"app": "sonarr", "name": "DeleteEverything"}),
    ]
    guarded = await env.run(acts.guard, GuardInput(incident_id=incident, actions=plan))
    assert [a.allowed for a in guarded.actions] == [True, True, True, False]
    assert guarded.actions[3].reason.startswith(
        'arr_command: argument \'name\' must be one of "RefreshMonitoredDownloads", "RssSync", '
    )
    assert "; got the string 'DeleteEverything' (name: the command to queue (sonarr: " in guarded.actions[3].reason
    results = [
        await env.run(acts.execute, execute_input(incident, i, c.tool, c.arguments)) for i, c in enumerate(plan[:3])
    ]
    assert [r.status for r in results] == ["succeeded"] * 3
    assert '"id": 12' in results[0].output
    assert [c.query for c in arr["sonarr"].made("DELETE", "/api/v3/queue/12")] == [
        {"removeFromClient": "true", "blocklist": "true"}
    ]
    assert arr["sonarr"].made("POST", "/api/v3/command")[-1].body == {"name": "MissingEpisodeSearch"}
    # Replayed: recorded results, nothing sent again.
    seen = len(arr["sonarr"].calls)
    for i, c in enumerate(plan[:3]):
        assert (await env.run(acts.execute, execute_input(incident, i, c.tool, c.arguments))).already_ran
    assert len(arr["sonarr"].calls) == seen


async def test_a_tool_no_configured_server_offers_is_refused_with_what_to_configure(
    ledger: Ledger, env: ActivityEnvironment
) -> None:
    """The embedded stack without a cluster or any app configured: no server at all. A recalled
    arr or Home Assistant plan is refused with the settings that would make it runnable."""
    acts = ToolActivities(ledger, {}, TOKEN, {"incident": ALLOWED}, hint=tool_server_hint)
    assert (await env.run(acts.list_tools, ListToolsInput())).tools == []
    plan = [
        ToolCall(tool="arr_queue", arguments={"app": "sonarr"}),
        ToolCall(tool="ha_check_config", arguments={}),
        ToolCall(tool="get_pods", arguments={"namespace": "media"}),
    ]
    guarded = await env.run(acts.guard, GuardInput(incident_id=uid("none"), actions=plan))
    reasons = [a.reason for a in guarded.actions]
    assert not any(a.allowed for a in guarded.actions)
    assert all("no MCP server offers it (servers: none configured)" in r for r in reasons)
    assert "set AGENTIC_SONARR_URL and AGENTIC_SONARR_API_KEY" in reasons[0]
    assert "set AGENTIC_HA_URL and AGENTIC_HA_TOKEN" in reasons[1]
    assert "set AGENTIC_KUBECONFIG" in reasons[2]
