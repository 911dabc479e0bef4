"""Every MCP tool server's process is one `ToolServer` (workers/toolservers/serving.py) with
its own declaration: these check, for each server, what its declaration puts in the shared
start-up: the refusal to serve off loopback without a client token names what it serves, and
a taken port names the variable that moves it (both a `StartupError`, which `main` turns into
its one `error:` line and exit 2: tests/integration/test_mcp_infra.py runs that in a process)."""

from __future__ import annotations

import importlib
import socket
import subprocess
from pathlib import Path

import pytest

from workers.process import StartupError

# server package → (what the token refusal names, the variable that changes its port)
SERVERS = {
    "infra": ("cluster-changing tools", "AGENTIC_MCP_INFRA_PORT"),
    "knowledge": ("the knowledge base", "AGENTIC_MCP_KNOWLEDGE_PORT"),
    "homeassistant": ("Home Assistant tools", "AGENTIC_MCP_HA_PORT"),
    "arr": ("arr tools", "AGENTIC_MCP_ARR_PORT"),
    "metrics": ("metrics tools", "AGENTIC_MCP_METRICS_PORT"),
    "web": ("web tools", "AGENTIC_MCP_WEB_PORT"),
    "coding": ("coding tools", "AGENTIC_MCP_CODING_PORT"),
}


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The least each server needs to get as far as binding its port (no cluster, no network)."""
    repo = tmp_path / "gitops"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for var, value in {
        "AGENTIC_HA_URL": "http://homeassistant:8123",
        "AGENTIC_HA_TOKEN": "ha-token",
        "AGENTIC_SONARR_URL": "http://sonarr:8989",
        "AGENTIC_SONARR_API_KEY": "key",
        "AGENTIC_PROMETHEUS_URL": "http://prometheus:9090",
        "AGENTIC_SEARXNG_URL": "http://searxng:8080",
        "AGENTIC_REPOS": f"gitops={repo}",
        "CLIENT_TOKEN": "client-token",
    }.items():
        monkeypatch.setenv(var, value)


@pytest.mark.parametrize("package", sorted(SERVERS))
def test_each_server_refuses_to_serve_off_loopback_without_a_token(package: str) -> None:
    process = importlib.import_module(f"workers.toolservers.{package}.server").PROCESS
    args = process.parser().parse_args(["--host", "0.0.0.0"])
    with pytest.raises(StartupError) as refused:
        process.serve(args)
    serves, _ = SERVERS[package]
    assert str(refused.value) == (
        f"refusing to serve {serves} on 0.0.0.0 without a token: "
        "set --token-env VAR (AGENTIC_MCP_TOKEN) or listen on 127.0.0.1"
    )


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("package", sorted(SERVERS))
def test_each_server_names_its_port_variable_when_the_port_is_taken(package: str) -> None:
    process = importlib.import_module(f"workers.toolservers.{package}.server").PROCESS
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = process.parser().parse_args(["--port", str(port), "--token-env", "CLIENT_TOKEN"])
        with pytest.raises(StartupError) as refused:
            process.serve(args)
    _, variable = SERVERS[package]
    assert str(refused.value) == f"port {port} on 127.0.0.1 is already in use (set {variable} to another port)"
