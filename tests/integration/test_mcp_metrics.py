"""The metrics MCP server against the real Prometheus and Alertmanager (Debian packages, as the
end-to-end tests start them: tests/support/promstack.py): Prometheus scrapes a gauge this test
serves, a rule fires, Alertmanager holds the alert; a second, secured Prometheus wants basic
auth. Each tool's results, bounds and errors, in-process (`Client(server)`) and as the real
server process behind its bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from tests.support.env import REPO, free_port
from tests.support.kmock_helpers import McpProcess, mcp_client, start_server
from tests.support.promstack import MetricsSource, alerting_stack, secured_prometheus
from workers.toolservers.metrics.client import Alertmanager, Prometheus, auth_headers, parse_duration, parse_time
from workers.toolservers.metrics.server import build_server

NS = "media"
USER, PASSWORD = "agentic", "s3cret"
PASSWORD_HASH = "$2b$04$j3zPAuFllwyHhd/v2NTlJ.MmoTZ8D.tbZzfAgAuR8k5WMRNXTKIA."  # bcrypt of PASSWORD, cost 4
# a pending alert (its `for` never elapses) and a recording rule whose evaluation fails (two
# series on the right of a one-to-one match)
EXTRA_RULES = """
      - alert: DemoSlowBurn
        expr: demo_deployment_healthy < 2
        for: 1h
        labels:
          severity: info
      - record: demo:broken
        expr: demo_deployment_healthy + on() demo_deployment_healthy
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    down_port = free_port()  # nothing listens: a target that is down
    scrape = f'  - job_name: gone\n    static_configs:\n      - targets: ["127.0.0.1:{down_port}"]\n'
    with MetricsSource() as metrics:
        metrics.values[(NS, "sonarr")] = 0
        metrics.values[(NS, "radarr")] = 1
        intake = f"http://127.0.0.1:{free_port()}/alerts"  # nobody: Alertmanager's webhook fails, it keeps the alert
        tmp = tmp_path_factory.mktemp("prom")
        with alerting_stack(tmp, metrics.port, intake, "t", extra_rules=EXTRA_RULES, extra_scrape_configs=scrape) as p:
            ports = {**p, "down": down_port}
            _wait_until(lambda: _firing_in_alertmanager(ports["alertmanager"]), 60, "the alert in Alertmanager")
            _wait_until(lambda: _scraped_twice(ports["prometheus"]), 30, "two scrapes of the gauge")
            yield ports


def _wait_until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _firing_in_alertmanager(port: int) -> bool:
    alerts = httpx.get(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=2).json()
    return any(a["labels"].get("alertname") == "DemoDeploymentUnhealthy" for a in alerts)


def _scraped_twice(port: int) -> bool:
    r = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/query", params={"query": "count_over_time(demo_deployment_healthy[1m])"}
    ).json()
    return bool(r["data"]["result"]) and all(float(s["value"][1]) >= 2 for s in r["data"]["result"])


def server(stack: dict[str, int], *, alertmanager: str | None = "default") -> Any:
    am_url = f"http://127.0.0.1:{stack['alertmanager']}" if alertmanager == "default" else alertmanager
    return build_server(Prometheus(f"http://127.0.0.1:{stack['prometheus']}"), Alertmanager(am_url) if am_url else None)


def text(r: CallToolResult) -> str:
    return "\n".join(c.text for c in r.content if isinstance(c, TextContent))


async def call(srv: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async with Client(srv) as c:
        r = await c.call_tool(tool, args)
    assert not r.is_error, text(r)
    assert r.structured_content is not None
    return dict(r.structured_content)


async def call_error(srv: Any, tool: str, args: dict[str, Any]) -> str:
    async with Client(srv) as c:
        r = await c.call_tool(tool, args)
    assert r.is_error, text(r)
    return text(r).removeprefix(f"Error executing tool {tool}: ")  # the SDK's prefix (the gateway drops it too)


# --------------------------------------------------------------------------- tools


async def test_lists_five_read_only_tools_with_schemas(stack: dict[str, int]) -> None:
    async with Client(server(stack)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == {"prom_query", "prom_query_range", "prom_alerts", "prom_targets", "prom_rules"}
    for t in tools.values():
        assert t.annotations is not None and t.annotations.read_only_hint and not t.annotations.destructive_hint
        assert t.input_schema.get("additionalProperties") is False  # unknown arguments refused
    assert tools["prom_query"].input_schema["required"] == ["query"]


async def test_instant_query_returns_the_scraped_series_bounded(stack: dict[str, int]) -> None:
    srv = server(stack)
    res = await call(srv, "prom_query", {"query": "demo_deployment_healthy"})
    assert res["result_type"] == "vector" and res["series_total"] == 2 and not res["truncated"]
    values = {s["labels"]["deployment"]: s["value"][1] for s in res["series"]}
    assert values == {"sonarr": "0", "radarr": "1"}
    assert all(s["labels"]["__name__"] == "demo_deployment_healthy" for s in res["series"])

    one = await call(srv, "prom_query", {"query": "demo_deployment_healthy", "max_series": 1})
    assert one["truncated"] and one["series_total"] == 2 and len(one["series"]) == 1
    assert one["note"] == "2 series; the first 1 are shown (max_series=1)"

    scalar = await call(srv, "prom_query", {"query": "1 + 1", "time": "now-1m"})
    assert scalar["result_type"] == "scalar" and scalar["scalar"][1] == "2" and scalar["series"] == []
    assert abs(scalar["time"] - (time.time() - 60)) < 30


async def test_range_query_with_stats_and_a_raised_step(stack: dict[str, int]) -> None:
    srv = server(stack)
    res = await call(
        srv, "prom_query_range", {"query": 'demo_deployment_healthy{deployment="sonarr"}', "start": "-1m", "step": "1s"}
    )
    assert res["result_type"] == "matrix" and res["series_total"] == 1 and res["note"] == ""
    series = res["series"][0]
    assert series["last"] == 0 and series["min"] == 0 and series["max"] == 0 and len(series["values"]) >= 2
    assert res["step_s"] == 1

    raised = await call(
        srv, "prom_query_range", {"query": "demo_deployment_healthy", "start": "now-1h", "step": "1s", "max_points": 10}
    )
    assert raised["step_s"] == 400 and raised["note"].startswith("step raised from 1s to 400s")
    assert all(len(s["values"]) <= 10 for s in raised["series"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            {"query": "sum(demo_deployment_healthy"},
            "Prometheus refused the query 'sum(demo_deployment_healthy' (bad_data): ",
        ),
        ({"query": "up", "time": "yesterday"}, "time 'yesterday': expected RFC 3339"),
    ],
)
async def test_a_bad_query_says_what_prometheus_said(
    stack: dict[str, int], args: dict[str, Any], expected: str
) -> None:
    err = await call_error(server(stack), "prom_query", args)
    assert expected in err
    if "sum(" in args["query"]:
        assert "parse error" in err and err.endswith("fix the PromQL")


async def test_range_errors_are_in_words(stack: dict[str, int]) -> None:
    srv = server(stack)
    err = await call_error(srv, "prom_query_range", {"query": "up", "start": "now", "end": "now-1h"})
    assert err == "the range is empty: end (now-1h) must be after start (now)"
    err = await call_error(srv, "prom_query_range", {"query": "up", "step": "fast"})
    assert err.startswith("step: 'fast' is not a duration")


async def test_alerts_from_prometheus_and_alertmanager(stack: dict[str, int]) -> None:
    res = await call(server(stack), "prom_alerts", {})
    prom = {(a["name"], a["state"], a["labels"].get("deployment")) for a in res["prometheus"]}
    assert ("DemoDeploymentUnhealthy", "firing", "sonarr") in prom
    assert ("DemoSlowBurn", "pending", "sonarr") in prom
    firing = next(a for a in res["prometheus"] if a["name"] == "DemoDeploymentUnhealthy")
    assert firing["annotations"]["summary"] == f"Deployment {NS}/sonarr is unhealthy" and firing["active_at"]
    am = res["alertmanager"]
    assert am is not None and res["alertmanager_error"] is None
    assert [(a["name"], a["state"], a["labels"]["deployment"]) for a in am] == [
        ("DemoDeploymentUnhealthy", "active", "sonarr")
    ]
    assert am[0]["receivers"] == ["agentic"]

    only = await call(server(stack), "prom_alerts", {"state": "pending", "alertname": "DemoSlowBurn", "limit": 1})
    assert only["prometheus_total"] == 2 and len(only["prometheus"]) == 1 and only["truncated"]
    assert only["alertmanager"] == [] and "narrow with state or alertname" in only["note"]


async def test_alertmanager_down_or_not_configured_still_gives_prometheus_alerts(stack: dict[str, int]) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    res = await call(server(stack, alertmanager=gone), "prom_alerts", {"alertname": "DemoDeploymentUnhealthy"})
    assert [a["name"] for a in res["prometheus"]] == ["DemoDeploymentUnhealthy"]
    assert res["alertmanager"] is None
    assert res["alertmanager_error"].startswith(f"cannot reach Alertmanager at {gone}")
    assert "AGENTIC_ALERTMANAGER_URL" in res["alertmanager_error"]
    res = await call(server(stack, alertmanager=None), "prom_alerts", {})
    assert res["alertmanager"] is None and res["alertmanager_error"] is None and res["prometheus_total"] >= 2


async def test_targets_health_down_first(stack: dict[str, int]) -> None:
    res = await call(server(stack), "prom_targets", {})
    assert (res["total"], res["up"], res["down"]) == (2, 1, 1)
    gone = res["targets"][0]
    assert (gone["job"], gone["health"], gone["instance"]) == ("gone", "down", f"127.0.0.1:{stack['down']}")
    assert "connection refused" in gone["last_error"]
    up = await call(server(stack), "prom_targets", {"health": "up", "job": "demo"})
    assert [t["job"] for t in up["targets"]] == ["demo"] and up["total"] == 1


async def test_rules_with_their_state_and_health(stack: dict[str, int]) -> None:
    res = await call(server(stack), "prom_rules", {})
    rules = {r["name"]: r for r in res["rules"]}
    assert (
        rules["DemoDeploymentUnhealthy"]["state"] == "firing" and rules["DemoDeploymentUnhealthy"]["active_alerts"] == 1
    )
    assert rules["DemoSlowBurn"]["state"] == "pending" and rules["DemoSlowBurn"]["for_s"] == 3600
    broken = rules["demo:broken"]
    assert broken["kind"] == "recording" and broken["health"] == "err" and broken["last_error"]
    assert res["unhealthy"] == ["demo:broken"] and res["firing"] == ["DemoDeploymentUnhealthy"]
    recording = await call(server(stack), "prom_rules", {"kind": "recording"})
    assert [r["name"] for r in recording["rules"]] == ["demo:broken"]
    pending = await call(server(stack), "prom_rules", {"state": "pending", "group": "demo"})
    assert [r["name"] for r in pending["rules"]] == ["DemoSlowBurn"]


# --------------------------------------------------------------------------- reaching Prometheus


async def test_an_unreachable_prometheus_names_its_url_and_setting() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    err = await call_error(build_server(Prometheus(url)), "prom_query", {"query": "up"})
    assert err.startswith(f"cannot reach Prometheus at {url}") and "is AGENTIC_PROMETHEUS_URL right?" in err


async def test_a_secured_prometheus_with_basic_auth(tmp_path: Path) -> None:
    with secured_prometheus(tmp_path / "secured", USER, PASSWORD_HASH) as port:
        url = f"http://127.0.0.1:{port}"
        err = await call_error(build_server(Prometheus(url)), "prom_targets", {})
        assert err == (
            f"Prometheus at {url} refused the credentials (401): check AGENTIC_PROMETHEUS_TOKEN "
            "(or AGENTIC_PROMETHEUS_USERNAME and AGENTIC_PROMETHEUS_PASSWORD) (the MCP server's environment)"
        )
        srv = build_server(Prometheus(url, auth_headers(None, USER, PASSWORD)))
        res = await call(srv, "prom_query", {"query": "vector(7)"})
        assert res["series"][0]["value"][1] == "7"


def test_times_and_durations() -> None:
    now = 1_700_000_000.0
    assert parse_time("now", now) == now and parse_time("now-1h30m", now) == now - 5400
    assert parse_time("-30s", now) == now - 30 and parse_time("now+5m", now) == now + 300
    assert parse_time("1699999000", now) == 1699999000
    assert parse_time("2023-11-14T22:13:20Z", now) == now
    assert parse_duration("250ms") == 0.25 and parse_duration("1w") == 604800 and parse_duration("90") == 90
    for bad in ("1hour", "", "-5m"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="expected RFC 3339"):
        parse_time("now*2", now)


# --------------------------------------------------------------------------- the process


TOKEN = "metrics-test-token"


@pytest.fixture
async def proc(stack: dict[str, int]) -> AsyncIterator[McpProcess]:
    p = await start_server(
        free_port(),
        None,
        TOKEN,
        module="workers.toolservers.metrics",
        extra_args=["--prometheus-url", f"http://127.0.0.1:{stack['prometheus']}"],
        env={"AGENTIC_ALERTMANAGER_URL": f"http://127.0.0.1:{stack['alertmanager']}"},
    )
    yield p
    assert await p.stop() == 0


async def test_the_process_serves_behind_its_token(proc: McpProcess, stack: dict[str, int]) -> None:
    async with httpx.AsyncClient() as http:
        health = (await http.get(proc.url.removesuffix("/mcp") + "/healthz")).json()
        assert health == {
            "status": "ok",
            "tools": 5,
            "prometheus": f"http://127.0.0.1:{stack['prometheus']}",
            "alertmanager": f"http://127.0.0.1:{stack['alertmanager']}",
        }
        assert (await http.post(proc.url, json={})).status_code == 401
    async with mcp_client(proc.url, TOKEN) as c:
        r = await c.call_tool("prom_query", {"query": 'demo_deployment_healthy{deployment="sonarr"}'})
    assert not r.is_error and json.loads(text(r))["series"][0]["value"][1] == "0"
    assert any("mcp_metrics: serving agentic-metrics" in line and "no auth" in line for line in proc.stderr)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    p = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.toolservers.metrics",
        "--port",
        str(free_port()),
        *args,
        cwd=REPO,
        env={**clean, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(p.communicate(), 60)
    return p.returncode or 0, err.decode().strip()


async def test_start_up_errors_are_one_line() -> None:
    assert await run_cli() == (
        2,
        "error: no Prometheus URL: set AGENTIC_PROMETHEUS_URL (--prometheus-url), e.g. http://prometheus:9090",
    )
    assert await run_cli("--prometheus-url", "prometheus:9090") == (
        2,
        "error: AGENTIC_PROMETHEUS_URL: 'prometheus:9090' is not an http(s) URL",
    )
    rc, err = await run_cli("--prometheus-url", "http://p:9090", "--prometheus-username", "u")
    assert (rc, err) == (
        2,
        "error: basic auth to Prometheus needs both AGENTIC_PROMETHEUS_USERNAME and AGENTIC_PROMETHEUS_PASSWORD",
    )
    rc, err = await run_cli(
        "--prometheus-url",
        "http://p:9090",
        env={"AGENTIC_PROMETHEUS_TOKEN": "t", "AGENTIC_PROMETHEUS_USERNAME": "u", "AGENTIC_PROMETHEUS_PASSWORD": "p"},
    )
    assert rc == 2 and err.startswith("error: set either AGENTIC_PROMETHEUS_TOKEN")


def test_auth_headers() -> None:
    assert auth_headers("tok", None, None) == {"Authorization": "Bearer tok"}
    assert auth_headers(None, "u", "p") == {"Authorization": "Basic dTpw"}
    assert auth_headers(None, None, None) == {}
