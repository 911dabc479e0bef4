"""The Home Assistant and arr-suite MCP servers: the real server processes and the real MCP client
against fake apps that speak the apps' REST wire format (tests/support/fake_apps.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from tests.support.env import REPO, free_port
from tests.support.fake_apps import FakeArr, FakeHomeAssistant, prowlarr_indexer, queue_record
from tests.support.kmock_helpers import McpProcess, mcp_client
from tests.support.kmock_helpers import result_data as data
from tests.support.kmock_helpers import result_text as text
from tests.support.mcp_apps import TOKEN, failing_prowlarr, stalled_sonarr, start_arr, start_ha
from workers.process import StartupError
from workers.toolservers.arr.client import ArrApp
from workers.toolservers.arr.server import build_server as arr_server
from workers.toolservers.homeassistant.client import HomeAssistant
from workers.toolservers.homeassistant.server import DEFAULT_SERVICES, parse_services
from workers.toolservers.homeassistant.server import build_server as ha_server

HA_READ = {"ha_states", "ha_entity", "ha_error_log", "ha_check_config"}
HA_WRITE = {"ha_call_service", "ha_restart"}
ARR_READ = {"arr_status", "arr_health", "arr_queue", "prowlarr_indexers"}
ARR_WRITE = {"arr_command", "arr_remove_queue_item", "prowlarr_test_indexer"}


@pytest.fixture(scope="module")
async def ha() -> AsyncIterator[FakeHomeAssistant]:
    fake = FakeHomeAssistant()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def arr() -> AsyncIterator[dict[str, FakeArr]]:
    fakes = {
        "sonarr": stalled_sonarr(),
        "radarr": FakeArr(app="radarr", api_key="radarr-key-0002", queue=[queue_record(21, "Movie.2024.2160p")]),
        "prowlarr": failing_prowlarr(),
    }
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


async def call(server: McpProcess, tool: str, args: dict[str, Any]) -> CallToolResult:
    async with mcp_client(server.url, TOKEN) as c:
        return await c.call_tool(tool, args)


# --- Home Assistant ----------------------------------------------------------------------------


async def test_ha_lists_tools_with_schemas_and_annotations(ha_proc: McpProcess) -> None:
    async with mcp_client(ha_proc.url, TOKEN) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == HA_READ | HA_WRITE
    for name, t in tools.items():
        assert t.input_schema["additionalProperties"] is False, name
        assert t.description and t.output_schema is not None, name
        for prop, spec in t.input_schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop} has no description"
        assert t.annotations is not None and t.annotations.read_only_hint is (name in HA_READ), name
    call_service = tools["ha_call_service"].annotations
    restart = tools["ha_restart"].annotations
    assert call_service is not None and call_service.idempotent_hint is True and call_service.destructive_hint is True
    assert restart is not None and restart.idempotent_hint is False
    assert tools["ha_call_service"].input_schema["required"] == ["domain", "service"]
    assert tools["ha_entity"].input_schema["properties"]["entity_id"]["pattern"] == r"^[a-z0-9_]+\.[a-z0-9_]+$"


async def test_ha_read_tools(ha_proc: McpProcess, ha: FakeHomeAssistant) -> None:
    switches = data(await call(ha_proc, "ha_states", {"domain": "switch"}))
    assert [e["entity_id"] for e in switches["entities"]] == ["switch.aquarium_pump", "switch.garage_heater"]
    assert switches["unavailable"] == ["switch.aquarium_pump"] and switches["matched"] == 2
    assert switches["entities"][1]["friendly_name"] == "Garage heater"
    dead = data(await call(ha_proc, "ha_states", {"state": "unavailable"}))
    assert [e["entity_id"] for e in dead["entities"]] == ["switch.aquarium_pump"]
    capped = data(await call(ha_proc, "ha_states", {"limit": 2}))
    assert len(capped["entities"]) == 2 and capped["truncated"] is True and capped["matched"] == len(ha.states)
    assert sorted(capped["unavailable"]) == ["sensor.zigbee_coordinator", "switch.aquarium_pump"]

    kitchen = data(await call(ha_proc, "ha_entity", {"entity_id": "light.kitchen"}))
    assert kitchen["state"] == "on" and kitchen["attributes"]["brightness"] == 180

    missing = await call(ha_proc, "ha_entity", {"entity_id": "switch.nope"})
    assert missing.is_error
    assert (
        'entity switch.nope not found in Home Assistant: list the switch entities with ha_states(domain="switch")'
        in text(missing)
    )

    zha = data(await call(ha_proc, "ha_error_log", {"contains": "zha", "lines": 1}))
    assert zha["total_lines"] == 3 and zha["truncated"] is True
    assert zha["lines"] == [ha.error_log.splitlines()[2]]

    assert data(await call(ha_proc, "ha_check_config", {}))["valid"] is True
    assert ha.made("POST", "/api/config/core/check_config")


async def test_ha_call_service_sets_a_state_once(ha_proc: McpProcess, ha: FakeHomeAssistant) -> None:
    before = len(ha.service_calls())
    args = {"domain": "switch", "service": "turn_on", "entity_id": "switch.garage_heater"}
    result = data(await call(ha_proc, "ha_call_service", args))
    assert result["message"] == "switch.turn_on on switch.garage_heater: off → on"
    assert result["state_after"]["state"] == "on" and ha.states["switch.garage_heater"]["state"] == "on"
    sent = ha.service_calls()[before:]
    assert [(c.method, c.path, c.body) for c in sent] == [
        ("POST", "/api/services/switch/turn_on", {"entity_id": "switch.garage_heater"})
    ]
    # Idempotent: again, same state, nothing changed.
    again = data(await call(ha_proc, "ha_call_service", args))
    assert again["changed"] == [] and again["state_after"]["state"] == "on"

    light = {"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {"brightness_pct": 40}}
    data(await call(ha_proc, "ha_call_service", light))
    assert ha.service_calls()[-1].body == {"brightness_pct": 40, "entity_id": "light.kitchen"}
    reload = data(await call(ha_proc, "ha_call_service", {"domain": "automation", "service": "reload"}))
    assert reload["message"] == "automation.reload done" and ha.service_calls()[-1].body == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            {"domain": "switch", "service": "toggle", "entity_id": "switch.garage_heater"},
            "switch.toggle is not on the Home Assistant allow-list (",
        ),
        ({"domain": "homeassistant", "service": "restart"}, "use ha_restart"),
        (
            {"domain": "switch", "service": "turn_off", "entity_id": "light.kitchen"},
            "switch.turn_off cannot act on light.kitchen: use a switch entity, or light.turn_off",
        ),
        ({"domain": "switch", "service": "turn_off"}, "switch.turn_off needs an entity_id"),
        (
            {"domain": "switch", "service": "turn_off", "entity_id": "switch.ghost"},
            "entity switch.ghost not found in Home Assistant",
        ),
        (
            {
                "domain": "switch",
                "service": "turn_off",
                "entity_id": "switch.garage_heater",
                "data": {"entity_id": "x"},
            },
            "give the target as the entity_id argument",
        ),
        (
            {"domain": "scene", "service": "reload"},
            "Home Assistant rejected scene.reload with {} (400: 400: Bad Request): the service does not exist here",
        ),
    ],
)
async def test_ha_call_service_refusals(
    ha_proc: McpProcess, ha: FakeHomeAssistant, args: dict[str, Any], expected: str
) -> None:
    before = len(ha.service_calls())
    result = await call(ha_proc, "ha_call_service", args)
    assert result.is_error and expected in text(result), text(result)
    reached = ha.service_calls()[before:]
    # Only the 400 case reaches Home Assistant's service endpoint.
    assert [c.path for c in reached] == (["/api/services/scene/reload"] if args["domain"] == "scene" else [])


async def test_ha_restart_checks_the_configuration_first(ha: FakeHomeAssistant) -> None:
    async with Client(ha_server(HomeAssistant(ha.url, ha.token), parse_services(DEFAULT_SERVICES))) as c:
        ha.config_errors = "Invalid config for 'template' at configuration.yaml, line 12"
        refused = await c.call_tool("ha_restart", {})
        assert refused.is_error and "not restarting" in text(refused) and "line 12" in text(refused)
        assert not ha.made("POST", "/api/services/homeassistant/restart")
        ha.config_errors = None
        ok = data(await c.call_tool("ha_restart", {}))
        assert ok["requested"] is True and len(ha.made("POST", "/api/services/homeassistant/restart")) == 1
    # Without homeassistant.restart on the allow-list, there is no ha_restart tool.
    async with Client(ha_server(HomeAssistant(ha.url, ha.token), ["switch.turn_on"])) as c:
        assert "ha_restart" not in {t.name for t in (await c.list_tools()).tools}


async def test_ha_wrong_token_and_unreachable_are_clear(ha: FakeHomeAssistant) -> None:
    async with Client(ha_server(HomeAssistant(ha.url, "wrong"), ["switch.turn_on"])) as c:
        r = await c.call_tool("ha_states", {})
    assert r.is_error
    assert f"Home Assistant at {ha.url} refused the credentials (401): check AGENTIC_HA_TOKEN" in text(r)
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(ha_server(HomeAssistant(url, "x"), ["switch.turn_on"])) as c:
        r = await c.call_tool("ha_entity", {"entity_id": "light.kitchen"})
    assert r.is_error and f"cannot reach Home Assistant at {url}" in text(r) and "AGENTIC_HA_URL" in text(r)


def test_the_allow_list_takes_only_services_that_set_a_state() -> None:
    assert "homeassistant.restart" in parse_services(DEFAULT_SERVICES)
    for bad in ("switch.toggle", "script.wake_up", "button.press", "automation.trigger"):
        with pytest.raises(StartupError, match="has a further effect each time"):
            parse_services(f"switch.turn_on,{bad}")
    with pytest.raises(StartupError, match=r"is not a domain\.service name"):
        parse_services("switch")


async def run_cli(module: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=REPO,
        env={**clean, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


async def test_start_up_errors_are_one_line() -> None:
    port = str(free_port())
    rc, err = await run_cli("workers.toolservers.homeassistant", "--port", port, env={"AGENTIC_HA_TOKEN": "t"})
    assert (rc, err.strip()) == (
        2,
        "error: no Home Assistant URL: set AGENTIC_HA_URL (--ha-url), e.g. http://homeassistant:8123",
    )
    rc, err = await run_cli("workers.toolservers.homeassistant", "--port", port, "--ha-url", "http://ha:8123")
    assert rc == 2 and err.strip().startswith("error: --ha-token-env AGENTIC_HA_TOKEN: the environment variable")
    rc, err = await run_cli("workers.toolservers.arr", "--port", port)
    assert rc == 2 and err.strip().startswith("error: no arr app configured: set AGENTIC_SONARR_URL")
    rc, err = await run_cli("workers.toolservers.arr", "--port", port, env={"AGENTIC_RADARR_URL": "http://radarr:7878"})
    assert (rc, err.strip()) == (
        2,
        "error: Radarr is configured (http://radarr:7878) but AGENTIC_RADARR_API_KEY is not set or empty",
    )


# --- the arr suite ------------------------------------------------------------------------------


async def test_arr_lists_tools_with_the_configured_apps(arr_proc: McpProcess) -> None:
    async with mcp_client(arr_proc.url, TOKEN) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == ARR_READ | ARR_WRITE
    for name, t in tools.items():
        assert t.input_schema["additionalProperties"] is False, name
        for prop, spec in t.input_schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop} has no description"
        assert t.annotations is not None and t.annotations.read_only_hint is (name in ARR_READ), name
        assert t.annotations.idempotent_hint is True, name  # every arr tool is safe to repeat
    assert tools["arr_status"].input_schema["properties"]["app"]["enum"] == ["sonarr", "radarr", "prowlarr"]
    assert tools["arr_queue"].input_schema["properties"]["app"]["enum"] == ["sonarr", "radarr"]
    assert tools["arr_remove_queue_item"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert tools["arr_command"].annotations.destructive_hint is False  # type: ignore[union-attr]
    assert "MissingMoviesSearch" in tools["arr_command"].input_schema["properties"]["name"]["enum"]


async def test_arr_status_health_and_queue(arr_proc: McpProcess, arr: dict[str, FakeArr]) -> None:
    status = data(await call(arr_proc, "arr_status", {"app": "radarr"}))
    assert (status["app_name"], status["version"]) == ("Radarr", "5.4.6.8723")
    assert arr["radarr"].made("GET", "/api/v3/system/status")
    prowlarr = data(await call(arr_proc, "arr_status", {"app": "prowlarr"}))
    assert prowlarr["version"] == "1.16.2.4435" and arr["prowlarr"].made("GET", "/api/v1/system/status")

    health = data(await call(arr_proc, "arr_health", {"app": "sonarr"}))
    assert health["healthy"] is False
    assert health["issues"][0]["message"] == "Unable to communicate with qBittorrent. Connection refused"
    assert data(await call(arr_proc, "arr_health", {"app": "radarr"}))["healthy"] is True

    queue = data(await call(arr_proc, "arr_queue", {"app": "sonarr", "problems_only": True}))
    assert queue["total_records"] == 3 and queue["problems"] == 2
    assert [(i["id"], i["status"], i["tracked_download_state"]) for i in queue["items"]] == [
        (12, "warning", "downloading"),
        (13, "completed", "importBlocked"),
    ]
    assert queue["items"][0]["messages"] == ["Show.S01E02.1080p: The download is stalled with no connections"]
    sent = arr["sonarr"].made("GET", "/api/v3/queue")[-1]
    assert sent.query == {"page": "1", "pageSize": "50", "includeUnknownSeriesItems": "true"}
    paged = data(await call(arr_proc, "arr_queue", {"app": "sonarr", "page": 2, "page_size": 2}))
    assert [i["id"] for i in paged["items"]] == [13] and paged["page"] == 2

    wrong = await call(arr_proc, "arr_queue", {"app": "prowlarr"})
    assert wrong.is_error  # not a queue app: refused by the schema's enum


async def test_arr_command(arr_proc: McpProcess, arr: dict[str, FakeArr]) -> None:
    done = data(await call(arr_proc, "arr_command", {"app": "sonarr", "name": "RefreshMonitoredDownloads"}))
    assert done["status"] == "completed" and done["id"] == 1000
    posted = arr["sonarr"].made("POST", "/api/v3/command")[-1]
    assert posted.body == {"name": "RefreshMonitoredDownloads"}
    assert arr["sonarr"].made("GET", "/api/v3/command/1000")  # waited for it

    queued = data(await call(arr_proc, "arr_command", {"app": "radarr", "name": "MissingMoviesSearch", "wait_s": 0}))
    assert queued["status"] == "queued"
    assert data(await call(arr_proc, "arr_command", {"app": "prowlarr", "name": "ApplicationIndexerSync", "wait_s": 0}))
    assert arr["prowlarr"].made("POST", "/api/v1/command")[-1].body == {"name": "ApplicationIndexerSync"}

    seen = len(arr["radarr"].calls)
    wrong = await call(arr_proc, "arr_command", {"app": "radarr", "name": "MissingEpisodeSearch"})
    assert wrong.is_error and "MissingEpisodeSearch is not a command for radarr: use one of" in text(wrong)
    unknown = await call(arr_proc, "arr_command", {"app": "radarr", "name": "DeleteEverything"})
    assert unknown.is_error
    assert len(arr["radarr"].calls) == seen


async def test_arr_remove_queue_item(arr_proc: McpProcess, arr: dict[str, FakeArr]) -> None:
    removed = data(await call(arr_proc, "arr_remove_queue_item", {"app": "radarr", "id": 21, "blocklist": True}))
    assert removed["removed"] is True and removed["blocklisted"] is True
    sent = arr["radarr"].made("DELETE", "/api/v3/queue/21")
    assert [c.query for c in sent] == [{"removeFromClient": "true", "blocklist": "true"}]
    gone = data(await call(arr_proc, "arr_remove_queue_item", {"app": "radarr", "id": 21}))
    assert gone["removed"] is False and gone["already_gone"] is True


async def test_prowlarr_indexers_and_test(arr_proc: McpProcess, arr: dict[str, FakeArr]) -> None:
    listed = data(await call(arr_proc, "prowlarr_indexers", {}))
    assert listed["failing"] == 1
    by_name = {i["name"]: i for i in listed["indexers"]}
    assert by_name["TorrentLeech"]["failing"] is True
    assert by_name["TorrentLeech"]["most_recent_failure"] == "2024-05-01T09:00:00Z"
    assert by_name["1337x"]["failing"] is False

    failed = data(await call(arr_proc, "prowlarr_test_indexer", {"id": 2}))
    assert failed["ok"] is False
    assert failed["failures"] == ["Unable to connect to indexer, check the log above for more details"]
    sent = arr["prowlarr"].made("POST", "/api/v1/indexer/test")[-1]
    assert sent.body == prowlarr_indexer(2, "TorrentLeech", privacy="private")  # the indexer's JSON from GET
    assert data(await call(arr_proc, "prowlarr_test_indexer", {"id": 1}))["ok"] is True
    missing = await call(arr_proc, "prowlarr_test_indexer", {"id": 99})
    assert missing.is_error and "Prowlarr has no indexer 99: list them with prowlarr_indexers" in text(missing)


async def test_arr_wrong_key_and_unreachable_are_clear(arr: dict[str, FakeArr]) -> None:
    sonarr = arr["sonarr"]
    async with Client(arr_server({"sonarr": ArrApp("sonarr", sonarr.url, "wrong-key")})) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert tools == {"arr_status", "arr_health", "arr_queue", "arr_command", "arr_remove_queue_item"}
        r = await c.call_tool("arr_health", {"app": "sonarr"})
    assert r.is_error
    assert f"Sonarr at {sonarr.url} refused the credentials (401): check AGENTIC_SONARR_API_KEY" in text(r)
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(arr_server({"radarr": ArrApp("radarr", url, "k")})) as c:
        r = await c.call_tool("arr_queue", {"app": "radarr"})
    assert r.is_error and f"cannot reach Radarr at {url}" in text(r) and "AGENTIC_RADARR_URL" in text(r)


async def test_the_projects_runbooks_propose_valid_calls(ha: FakeHomeAssistant, arr: dict[str, FakeArr]) -> None:
    """runbooks/ imports cleanly, and each action, rendered for a matching alert, names a tool of
    these servers with arguments the gateway's guard accepts."""
    from activities.knowledge.markdown import load_runbooks
    from activities.tools.arguments import argument_problems
    from agentic_core.incident import ToolSpec
    from agentic_core.policy import render_actions

    runbooks, errors = load_runbooks(REPO / "runbooks")
    assert errors == [] and len(runbooks) >= 4
    assert all(not rb.id.lower().startswith("_readme") for rb in runbooks)
    specs: dict[str, ToolSpec] = {}
    apps = {a: ArrApp(a, f.url, f.api_key) for a, f in arr.items()}
    for server in (ha_server(HomeAssistant(ha.url, ha.token), parse_services(DEFAULT_SERVICES)), arr_server(apps)):
        async with Client(server) as c:
            for t in (await c.list_tools()).tools:
                specs[t.name] = ToolSpec(name=t.name, description="", input_schema=t.input_schema, server="x")
    labels = {"app": "sonarr", "integration": "zha", "entity_id": "switch.aquarium_pump"}
    for rb in runbooks:
        assert rb.actions, rb.id
        for call in render_actions(rb.actions, labels):
            assert call.tool in specs, (rb.id, call.tool)
            assert argument_problems(specs[call.tool], call.arguments) == [], (rb.id, call)
