"""README, "Configuration": a second stack pointed at existing services, and the home apps.

    export AGENTIC_TEMPORAL_ADDRESS=temporal.example:7233 AGENTIC_TEMPORAL_NAMESPACE=ops
    export AGENTIC_POSTGRES_DSN=postgresql://agentic:…@db.example:5432/agentic
    export AGENTIC_PLANNER_URL=http://vllm-planner.ai-inference:8000/v1 AGENTIC_PLANNER_MODEL=qwen2.5-7b-instruct
    export AGENTIC_CLOUD_MODEL=openai/gpt-4o-mini AGENTIC_CLOUD_API_KEY=… AGENTIC_CLOUD_ESCALATE_BELOW=0.5
    export AGENTIC_HA_URL=… AGENTIC_SONARR_URL=… AGENTIC_RADARR_URL=… AGENTIC_PROWLARR_URL=… (and keys)
    agentic runbooks import ./runbooks

The "existing services" are the first stack's (tests/acceptance/conftest.py `configured_stack`):
its Temporal (namespace `ops`), its PostgreSQL (role and database `agentic`) and its llama.cpp.
Home Assistant and Sonarr/Radarr/Prowlarr are the fakes of tests/support/fake_apps.py. Qdrant stays
embedded: no Qdrant server can be had here.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import REPO, Configured, program, queue_stalled, run
from tests.support.kmock_helpers import mcp_client, result_data

pytestmark = pytest.mark.slow

PROJECT_RUNBOOKS = sorted(p for p in (REPO / "runbooks").rglob("*.md") if not p.name.startswith("_"))


def test_every_embedded_part_can_point_at_an_existing_service(configured_stack: Configured) -> None:
    c = configured_stack
    parts = c.stack.status()["parts_by_name"]
    for name in ("temporal", "postgres", "llm", "worker", "mcp-knowledge", "intake"):
        assert parts[name]["healthy"] is True, parts[name]
    # README: "Every embedded part can instead point at an existing service"
    assert {n: parts[n]["mode"] for n in ("temporal", "postgres", "llm", "worker")} == {
        "temporal": "external",
        "postgres": "external",
        "llm": "external",
        "worker": "embedded",
    }, parts
    assert c.first.temporal_address in parts["temporal"]["url"], parts["temporal"]
    assert re.search(r"schema \d{4}", parts["postgres"]["detail"]), parts["postgres"]
    # The ledger's tables are in the first stack's PostgreSQL, database `agentic`, owned by `agentic`.
    tables = c.outside.run(_tables_owned_by_agentic(c))
    assert tables, "no tables in database agentic"
    assert f"127.0.0.1:{c.first.port('llm')}" in parts["llm"]["url"], parts["llm"]
    # Its workflows run on the first stack's Temporal, in namespace `ops` (e.g. the docs ingestion
    # that `agentic up` starts).
    listed = run(
        [*program("temporal"), "workflow", "list", "--namespace", "ops", "--limit", "50"],
        c.first.shell_env(),
        timeout=60,
    )
    assert listed.rc == 0 and "docs-ingest-" in listed.out, listed


async def _tables_owned_by_agentic(c: Configured) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(c.stack.env["AGENTIC_POSTGRES_DSN"], timeout=10)
    try:
        rows = await conn.fetch(
            "select tablename from pg_tables where schemaname = 'public' and tableowner = 'agentic'"
        )
    finally:
        await conn.close()
    return [r["tablename"] for r in rows]


def test_secrets_are_never_printed(configured_stack: Configured) -> None:
    # README: "One typed settings object, every field an `AGENTIC_*` environment variable; secrets
    # are never printed."
    c = configured_stack
    assert c.stack.up_result is not None
    shown = {
        "`agentic up --detach`": c.stack.up_result.out + c.stack.up_result.err,
        "`agentic status`": (lambda r: r.out + r.err)(c.stack.agentic("status")),
        "`agentic status --json`": (lambda r: r.out + r.err)(c.stack.agentic("status", "--json")),
        "DATA_DIR/stack.json": (c.stack.data / "stack.json").read_text(),
    }
    for log in sorted((c.stack.data / "logs").glob("*.log")):
        shown[f"DATA_DIR/logs/{log.name}"] = log.read_text(errors="replace")
    leaks = [
        f"{what} in {where}" for what, secret in c.secrets.items() for where, text in shown.items() if secret in text
    ]
    assert not leaks, "secrets printed:\n  " + "\n  ".join(leaks)


async def _tools(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[set[str], list[Any]]:
    async with mcp_client(url, token) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        return names, [await client.call_tool(name, args) for name, args in calls]


def test_home_assistant_and_the_arr_suite_get_their_own_tool_servers(configured_stack: Configured) -> None:
    c = configured_stack
    parts = c.stack.status()["parts_by_name"]
    # README: "Home Assistant and the arr suite get their own MCP tool servers once configured"
    for name in ("mcp-ha", "mcp-arr"):
        assert parts[name]["mode"] == "embedded" and parts[name]["healthy"] is True, parts[name]
    token = c.stack.secret("mcp.token")
    ha_tools, (states,) = asyncio.run(
        _tools(f"http://127.0.0.1:{c.stack.port('mcp_ha')}/mcp", token, [("ha_states", {"domain": "switch"})])
    )
    assert "ha_states" in ha_tools, ha_tools
    assert "switch.aquarium_pump" in json.dumps(result_data(states)), states
    assert c.ha.made("GET", "/api/states")
    apps = ("sonarr", "radarr", "prowlarr")
    arr_tools, statuses = asyncio.run(
        _tools(f"http://127.0.0.1:{c.stack.port('mcp_arr')}/mcp", token, [("arr_status", {"app": app}) for app in apps])
    )
    assert {"arr_queue", "arr_command"} <= arr_tools, arr_tools
    for app, status in zip(apps, statuses, strict=True):
        assert result_data(status)["app_name"] == app.capitalize(), status
        assert c.arr[app].made("GET", f"/api/{c.arr[app].version}/system/status"), app


def test_import_the_projects_runbooks(configured_stack: Configured) -> None:
    # README: `agentic runbooks import ./runbooks     # the project's runbooks for these apps`
    # (run by `configured_stack` right after `agentic up`, as the block orders it)
    project_runbooks = configured_stack.runbooks_import
    assert project_runbooks.rc == 0, project_runbooks
    n = len(PROJECT_RUNBOOKS)
    assert f"imported {n} runbooks: {n} added, 0 updated, 0 unchanged; 0 skipped" in project_runbooks.out, (
        project_runbooks
    )
    listed = configured_stack.stack.agentic("runbooks", "list", "--json").json
    ids = {r["id"] for r in listed}
    assert {"arr/download-queue-stalled", "home-assistant/entity-unavailable"} <= ids, ids


def send(c: Configured, payload: dict[str, Any], where: Path) -> str:
    (where / "alert.json").write_text(json.dumps(payload))
    res = c.stack.agentic("alert", "send", "alert.json", cwd=where)  # as the README's, with this payload
    assert res.rc == 0, res
    ids = re.findall(r"inc-[0-9a-z]+", res.out)
    assert len(ids) == 1, res
    return ids[0]


def test_a_stalled_sonarr_queue_is_asked_about_and_fixed_through_the_arr_server(
    configured_stack: Configured, tmp_path: Path
) -> None:
    c = configured_stack
    assert c.runbooks_import.rc == 0, c.runbooks_import
    incident = send(c, queue_stalled("sonarr"), tmp_path)
    st = c.stack.wait_incident(incident, {"awaiting_approval"}, 180, "the question to a human")
    # The project's runbook for it, with the arr tools its server serves.
    assert st["runbook_id"] == "arr/download-queue-stalled", st
    assert [call["tool"] for call in st["plan"]] == ["arr_queue", "arr_command"], st["plan"]
    assert not c.arr["sonarr"].made("POST", "/api/v3/command"), "a command ran before the approval"

    res = c.stack.readme("agentic approve inc-… --by alice", {"inc-…": incident})
    assert res.rc == 0, res
    done = c.stack.wait_incident(incident, {"verifying", "resolved", "failed", "unknown"}, 120, "the actions")
    assert [a["status"] for a in done["actions"]] == ["succeeded", "succeeded"], done["actions"]
    commands = c.arr["sonarr"].made("POST", "/api/v3/command")
    assert [cmd.body["name"] for cmd in commands] == ["RefreshMonitoredDownloads"], commands
