"""The settings object: env prefix, secrets, validation, and the docs that describe it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentic_core.tools import CODING_TOOLS
from tests.support.env import REPO
from workers.settings import Settings


def test_every_setting_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    missing = [f"AGENTIC_{n.upper()}" for n in Settings.model_fields if f"`AGENTIC_{n.upper()}`" not in doc]
    assert missing == []


def test_env_prefix_and_external_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_TEMPORAL_ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("AGENTIC_POSTGRES_DSN", "postgresql://u:hunter2@db:5432/ledger")
    monkeypatch.setenv("AGENTIC_QDRANT_URL", "http://qdrant:6333")
    s = Settings()
    assert s.temporal_target == "temporal.example:7233"
    assert not s.temporal_embedded and not s.postgres_embedded and not s.qdrant_embedded
    assert s.postgres_target() == "postgresql://u:hunter2@db:5432/ledger"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_embedded_defaults() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.temporal_embedded and s.postgres_embedded and s.qdrant_embedded and s.llm_embedded
    assert s.temporal_target == "127.0.0.1:7233"
    assert s.planner_base_url == "http://127.0.0.1:8090/v1"
    assert s.approval_mode == "VERBOSE"
    assert s.approver_list == [] and "rollout_restart" in s.incident_tool_list


def test_comma_separated_lists() -> None:
    s = Settings(approvers=" alice, ,bob ", incident_tools="get_pods,,scale_deployment ")
    assert s.approver_list == ["alice", "bob"]
    assert s.incident_tool_list == ["get_pods", "scale_deployment"]


def test_per_agent_allow_lists_and_read_only_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    lists = s.agent_tool_lists
    assert set(lists) == {"incident", "observability", "coding", "web"}
    assert lists["incident"] == s.incident_tool_list  # today's default: every tool of every server
    assert lists["observability"] == [
        "get_nodes",
        "get_pods",
        "get_events",
        "get_pod_logs",
        "describe_pod",
        "talos_health",
        "prom_query",
        "prom_query_range",
        "prom_alerts",
        "prom_targets",
        "prom_rules",
    ]
    assert lists["coding"] == list(CODING_TOOLS)  # the coding server's tools (on when AGENTIC_REPOS is set)
    assert lists["web"] == ["web_search", "web_fetch"]  # the web server's tools (on when the server is configured)
    assert s.read_only_agent_list == ["observability"]
    monkeypatch.setenv("AGENTIC_CODING_TOOLS", "git_*, read_file")
    monkeypatch.setenv("AGENTIC_READ_ONLY_AGENTS", "web")
    s = Settings()
    assert s.agent_tool_lists["coding"] == ["git_*", "read_file"]
    assert s.read_only_agent_list == ["observability", "web"]  # observability always is
    with pytest.raises(ValidationError, match=r"not 'rm -rf'"):
        Settings(web_tools="fetch,rm -rf")
    with pytest.raises(ValidationError, match=r"agents are incident, observability, coding, web, not 'ops'"):
        Settings(read_only_agents="ops")


def test_the_coding_agent_runs_when_repositories_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not s.coding_configured and "coding" not in s.mcp_servers and "coding" not in s.agent_limit_map
    monkeypatch.setenv("AGENTIC_REPOS", "gitops=/srv/gitops, app=/src/app")
    s = Settings()
    assert s.coding_configured and s.mcp_servers["coding"] == "http://127.0.0.1:8096/mcp"
    assert "coding" in s.agent_limit_map
    assert "coding" not in Settings(repos="gitops=/srv/gitops", coding_tools="").agent_limit_map  # empty list: off
    with pytest.raises(ValidationError, match=r"'gitops' is not name=path \(AGENTIC_REPOS"):
        Settings(repos="gitops")
    with pytest.raises(ValidationError, match=r"'a' is named twice in AGENTIC_REPOS"):
        Settings(repos="a=/x,a=/y")


def test_protected_namespaces() -> None:
    default = Settings().protected_namespace_list
    assert {"kube-system", "kube-public", "kube-node-lease", "ai-*", "argocd", "cnpg-system"} <= set(default)
    s = Settings(protected_namespaces=" kube-system, Prod-* ,,")
    assert s.protected_namespace_list == ["kube-system", "prod-*"]
    assert Settings(protected_namespaces="").protected_namespace_list == []  # an explicit opt-out
    with pytest.raises(ValidationError, match=r"not 'kube system'"):
        Settings(protected_namespaces="kube system,ai-*")


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_TEMPORAL_PORT", "70000")
    with pytest.raises(ValidationError, match=r"outside 1\.\.65535"):
        Settings()
    monkeypatch.setenv("AGENTIC_TEMPORAL_PORT", "7233")
    monkeypatch.setenv("AGENTIC_APPROVAL_MODE", "YOLO")
    with pytest.raises(ValidationError):
        Settings()


def test_the_investigate_budget_reaches_every_new_incident(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.intake.delivery import incident_config

    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (default.investigate_max_calls, default.investigate_budget_s) == (6, 20)
    monkeypatch.setenv("AGENTIC_INVESTIGATE_MAX_CALLS", "3")
    monkeypatch.setenv("AGENTIC_INVESTIGATE_BUDGET_S", "9")
    cfg = incident_config(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (cfg.investigate_max_calls, cfg.investigate_budget_s, cfg.investigate_model_calls) == (3, 9, 0)


def test_model_evidence_needs_a_capable_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_INVESTIGATE_MODEL_CALLS", "2")
    with pytest.raises(ValueError, match="AGENTIC_INVESTIGATE_MODEL_CALLS needs a capable model"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AGENTIC_PLANNER_URL", "http://vllm-planner:8000/v1")
    assert Settings(_env_file=None).investigate_model_calls == 2  # type: ignore[call-arg]


def test_metrics_server_is_the_gateways_once_prometheus_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "metrics" not in Settings(_env_file=None).mcp_servers  # type: ignore[call-arg]
    monkeypatch.setenv("AGENTIC_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("AGENTIC_PROMETHEUS_TOKEN", "prom-token-value")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.mcp_servers["metrics"] == "http://127.0.0.1:8095/mcp"
    assert "prom-token-value" not in repr(s)
    assert {"prom_query", "prom_alerts"} <= set(s.incident_tool_list)  # the incident agent may look with them


def test_task_queues_and_the_queues_a_worker_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/scaling.md: the model and tools queues follow the task queue unless named; new runs
    carry them unless the split is off; a worker polls all three or the ones it is given."""
    s = Settings(task_queue="tq", _env_file=None)  # type: ignore[call-arg]
    assert (s.model_queue, s.tools_queue) == ("tq-model", "tq-tools")
    assert (s.run_model_queue, s.run_tools_queue) == ("tq-model", "tq-tools")
    assert s.polled_queues == ["orchestration", "model", "tools"]
    monkeypatch.setenv("AGENTIC_QUEUES_SPLIT", "false")
    monkeypatch.setenv("AGENTIC_WORKER_QUEUES", "tools, model")
    monkeypatch.setenv("AGENTIC_MODEL_TASK_QUEUE", "gpu-calls")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.run_model_queue, s.run_tools_queue) == (None, None)  # everything on the run's own queue
    assert s.model_queue == "gpu-calls" and s.polled_queues == ["model", "tools"]
    monkeypatch.setenv("AGENTIC_WORKER_QUEUES", "model,planner")
    with pytest.raises(ValueError, match="unknown queue planner"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_planners_burst_cut_is_on_for_the_embedded_model_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/scaling.md: the embedded llama.cpp shares the worker's CPU, so a burst cuts its plan in
    flight (5 refused); a pool's model has its own hardware (never); the setting overrides both."""
    from activities.inference.router import GroupConfig, InferenceRouter
    from workers.wiring import planner_config

    router = InferenceRouter([GroupConfig(name="planner", model="openai/m", api_base="http://127.0.0.1:9/v1")])
    assert planner_config(Settings(_env_file=None), router).burst_cut == 5  # type: ignore[call-arg]
    monkeypatch.setenv("AGENTIC_PLANNER_URL", "http://vllm-planner:8000/v1")
    assert planner_config(Settings(_env_file=None), router).burst_cut == 0  # type: ignore[call-arg]
    monkeypatch.setenv("AGENTIC_PLANNER_BURST_CUT", "12")
    assert planner_config(Settings(_env_file=None), router).burst_cut == 12  # type: ignore[call-arg]
    monkeypatch.delenv("AGENTIC_PLANNER_URL")
    monkeypatch.setenv("AGENTIC_PLANNER_BURST_CUT", "0")
    assert planner_config(Settings(_env_file=None), router).burst_cut == 0  # type: ignore[call-arg]
