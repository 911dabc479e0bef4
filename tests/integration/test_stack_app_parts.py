"""`agentic up`'s parts for the home applications' MCP servers and the metrics server: disabled
until configured, the command lines it builds (secrets by environment only), and those command
lines really serving (against fake apps; against a real, secured Prometheus), with the worker's
gateway seeing every configured server's tools."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.env import REPO, free_port
from tests.support.fake_apps import FakeArr, FakeHomeAssistant
from tests.support.kmock_helpers import mcp_client
from tests.support.promstack import secured_prometheus
from workers.settings import Settings
from workers.stack.env import child_env, effective_settings
from workers.stack.parts import Part, build_parts


def settings_for(tmp: Path, **over: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": tmp,
        "mcp_ha_port": free_port(),
        "mcp_arr_port": free_port(),
        "mcp_infra_port": free_port(),
    }
    return Settings(_env_file=None, **(base | over))  # type: ignore[call-arg, arg-type]


def parts_of(s: Settings) -> dict[str, Part]:
    return {p.name: p for p in build_parts(s, effective_settings(s), resolve_binaries=False)}


def test_disabled_until_configured(tmp_path: Path) -> None:
    s = settings_for(tmp_path, sonarr_url="http://sonarr:8989")  # a URL without its key is not enough
    parts = parts_of(s)
    assert parts["mcp-ha"].mode == "disabled" and parts["mcp-ha"].url.endswith("AGENTIC_HA_URL and AGENTIC_HA_TOKEN")
    assert parts["mcp-arr"].mode == "disabled" and "AGENTIC_SONARR_API_KEY" in parts["mcp-arr"].url
    assert s.mcp_servers == {"infra": s.mcp_infra_endpoint}


def test_embedded_and_external_parts(tmp_path: Path) -> None:
    s = settings_for(
        tmp_path,
        ha_url="http://ha:8123",
        ha_token=SecretStr("ha-secret-token"),
        radarr_url="http://radarr:7878",
        radarr_api_key=SecretStr("radarr-secret-key"),
    )
    parts = parts_of(s)
    ha, arr = parts["mcp-ha"], parts["mcp-arr"]
    assert (ha.mode, arr.mode) == ("embedded", "embedded")
    assert ha.argv[1:] == [
        "-P",
        "-m",
        "workers.toolservers.homeassistant",
        "--host",
        "127.0.0.1",
        "--port",
        str(s.mcp_ha_port),
        "--ha-url",
        "http://ha:8123",
        "--services",
        s.ha_services,
        "--token-env",
        "AGENTIC_MCP_TOKEN",
    ]
    assert "--radarr-url" in arr.argv and "--sonarr-url" not in arr.argv
    for part in (ha, arr):
        assert "ha-secret-token" not in " ".join(part.argv) and "radarr-secret-key" not in " ".join(part.argv)
    assert ha.env["AGENTIC_HA_TOKEN"] == "ha-secret-token" and arr.env["AGENTIC_RADARR_API_KEY"] == "radarr-secret-key"
    assert s.mcp_servers == {
        "infra": s.mcp_infra_endpoint,
        "homeassistant": f"http://127.0.0.1:{s.mcp_ha_port}/mcp",
        "arr": f"http://127.0.0.1:{s.mcp_arr_port}/mcp",
    }
    ext = parts_of(settings_for(tmp_path, mcp_ha_url="http://mcp-ha.ai-tools:8093/mcp"))
    assert ext["mcp-ha"].mode == "external" and ext["mcp-ha"].url == "http://mcp-ha.ai-tools:8093/mcp"


@contextlib.asynccontextmanager
async def running(part: Part) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *part.argv,
        cwd=REPO,
        env={**part.env, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert part.health is not None
        for _ in range(300):
            ok, _detail = await part.health()
            if ok:
                break
            if proc.returncode is not None:
                assert proc.stderr is not None
                pytest.fail(f"{part.name} exited: {(await proc.stderr.read()).decode()}")
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"{part.name} did not become healthy")
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_the_parts_serve_the_configured_apps(tmp_path: Path) -> None:
    ha = FakeHomeAssistant()
    sonarr = FakeArr(app="sonarr", api_key="sonarr-key")
    await ha.start()
    await sonarr.start()
    try:
        s = settings_for(
            tmp_path,
            ha_url=ha.url,
            ha_token=SecretStr(ha.token),
            ha_services="switch.turn_on,switch.turn_off",
            sonarr_url=sonarr.url,
            sonarr_api_key=SecretStr("sonarr-key"),
        )
        eff = effective_settings(s)
        assert eff.mcp_token is not None
        parts = parts_of(s)
        assert child_env(eff)["AGENTIC_HA_TOKEN"] == ha.token
        async with running(parts["mcp-ha"]), running(parts["mcp-arr"]):
            token = eff.mcp_token.get_secret_value()
            async with mcp_client(s.mcp_ha_endpoint, token) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert "ha_call_service" in names and "ha_restart" not in names  # restart not on the list
                r = await c.call_tool("ha_states", {"domain": "switch"})
                assert not r.is_error
            async with mcp_client(s.mcp_arr_endpoint, token) as c:
                r = await c.call_tool("arr_status", {"app": "sonarr"})
                assert not r.is_error and r.structured_content is not None
                assert r.structured_content["app_name"] == "Sonarr"
        assert ha.made("GET", "/api/states") and sonarr.made("GET", "/api/v3/system/status")
    finally:
        await ha.stop()
        await sonarr.stop()


def test_without_a_cluster_the_worker_leaves_the_infra_server_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentic up` disables the `mcp` part without a cluster; its worker must not then try to
    reach it (a refused Kubernetes tool says what to configure instead of 'cannot reach')."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    parts = parts_of(settings_for(tmp_path))
    assert parts["mcp"].mode == "disabled"
    worker_env = parts["worker"].env
    assert worker_env["AGENTIC_MCP_INFRA_ENABLED"] == "False"
    monkeypatch.setenv("AGENTIC_MCP_INFRA_ENABLED", worker_env["AGENTIC_MCP_INFRA_ENABLED"])
    assert settings_for(tmp_path).mcp_servers == {}  # the worker's view
    monkeypatch.delenv("AGENTIC_MCP_INFRA_ENABLED")

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    parts = parts_of(settings_for(tmp_path, kubeconfig=kubeconfig))
    assert parts["mcp"].mode == "embedded"
    assert parts["worker"].env.get("AGENTIC_MCP_INFRA_ENABLED") != "False"


# --------------------------------------------------------------------------- mcp-metrics

PASSWORD_HASH = "$2b$04$j3zPAuFllwyHhd/v2NTlJ.MmoTZ8D.tbZzfAgAuR8k5WMRNXTKIA."  # bcrypt of "s3cret", cost 4


def test_disabled_until_a_prometheus_url_is_set(tmp_path: Path) -> None:
    s = settings_for(tmp_path, alertmanager_url="http://am:9093")  # Alertmanager alone is not enough
    part = parts_of(s)["mcp-metrics"]
    assert (part.mode, part.url) == ("disabled", "no Prometheus: set AGENTIC_PROMETHEUS_URL")
    assert "metrics" not in s.mcp_servers


def test_embedded_and_external(tmp_path: Path) -> None:
    s = settings_for(
        tmp_path,
        prometheus_url="http://prometheus:9090",
        alertmanager_url="http://am:9093",
        prometheus_username="agentic",
        prometheus_password=SecretStr("prom-secret-password"),
        mcp_metrics_port=18095,
    )
    part = parts_of(s)["mcp-metrics"]
    assert part.mode == "embedded" and part.phase == "service"
    assert part.role == "MCP metrics tools (Prometheus, Alertmanager) http://prometheus:9090"
    assert part.argv[1:] == [
        "-P",
        "-m",
        "workers.toolservers.metrics",
        "--host",
        "127.0.0.1",
        "--port",
        "18095",
        "--prometheus-url",
        "http://prometheus:9090",
        "--alertmanager-url",
        "http://am:9093",
        "--prometheus-username",
        "agentic",
        "--token-env",
        "AGENTIC_MCP_TOKEN",
    ]
    assert "prom-secret-password" not in " ".join(part.argv)
    assert part.env["AGENTIC_PROMETHEUS_PASSWORD"] == "prom-secret-password"
    assert s.mcp_servers["metrics"] == "http://127.0.0.1:18095/mcp"

    ext = settings_for(tmp_path, mcp_metrics_url="http://mcp-metrics.ai-tools:8095/mcp")
    part = parts_of(ext)["mcp-metrics"]
    assert (part.mode, part.url) == ("external", "http://mcp-metrics.ai-tools:8095/mcp")
    assert ext.mcp_servers["metrics"] == "http://mcp-metrics.ai-tools:8095/mcp"


async def test_the_part_serves_a_secured_prometheus(tmp_path: Path) -> None:
    with secured_prometheus(tmp_path / "prom", "agentic", PASSWORD_HASH) as port:
        s = settings_for(
            tmp_path,
            prometheus_url=f"http://127.0.0.1:{port}",
            prometheus_username="agentic",
            prometheus_password=SecretStr("s3cret"),
        )
        eff = effective_settings(s)
        assert eff.mcp_token is not None and child_env(eff)["AGENTIC_PROMETHEUS_PASSWORD"] == "s3cret"
        token = eff.mcp_token.get_secret_value()
        async with running(parts_of(s)["mcp-metrics"]), mcp_client(s.mcp_metrics_endpoint, token) as c:
            r = await c.call_tool("prom_query", {"query": "vector(42)"})
        assert not r.is_error and r.structured_content is not None
        assert r.structured_content["series"][0]["value"][1] == "42"


def test_every_embedded_part_with_a_port_is_found_again_from_the_data_dir(tmp_path: Path) -> None:
    """`agentic … --data-dir D` reaches the stack on D whatever ports it was started with
    (`stack_addresses` reads them from stack.json through PORT_SETTINGS): every part that listens
    on a port of its own must be there, or `status` probes the default port and calls it down
    (the gateway and the web server were missing)."""
    from workers.stack.env import PORT_SETTINGS

    s = settings_for(
        tmp_path,
        ha_url="http://ha:8123",
        ha_token=SecretStr("t"),
        sonarr_url="http://sonarr:8989",
        sonarr_api_key=SecretStr("k"),
        prometheus_url="http://prom:9090",
        searxng_url="http://searxng:8080",
        repos=f"self={REPO}",
        telegram_token=SecretStr("123:abc"),
        telegram_chat_id=-100,
    )
    with_port = {p.name for p in parts_of(s).values() if p.mode == "embedded" and p.port}
    assert "gateway" in with_port and "mcp-web" in with_port
    assert with_port - set(PORT_SETTINGS) == set()
    for name, field in PORT_SETTINGS.items():
        assert field in Settings.model_fields, (name, field)
