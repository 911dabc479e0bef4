"""The MCP tools of the platform's own servers, by family, with what configures each server.

The incident agent's default allow-list is every tool here (`workers.settings`); a refusal of
a tool that no configured server offers says which server offers it and what to set
(`tool_server_hint`); a question with nothing to run because no server is configured says
what would configure one (`configure_hints`). No I/O.
"""

from __future__ import annotations

INFRA_TOOLS: tuple[str, ...] = (
    "get_nodes",
    "get_pods",
    "get_events",
    "get_pod_logs",
    "describe_pod",
    "rollout_restart",
    "set_memory_limit",
    "scale_deployment",
    "talos_health",
)
HA_TOOLS: tuple[str, ...] = (
    "ha_states",
    "ha_entity",
    "ha_error_log",
    "ha_check_config",
    "ha_call_service",
    "ha_restart",
)
ARR_TOOLS: tuple[str, ...] = (
    "arr_status",
    "arr_health",
    "arr_queue",
    "prowlarr_indexers",
    "arr_command",
    "arr_remove_queue_item",
    "prowlarr_test_indexer",
)
METRICS_TOOLS: tuple[str, ...] = (
    "prom_query",
    "prom_query_range",
    "prom_alerts",
    "prom_targets",
    "prom_rules",
)
ALL_TOOLS: tuple[str, ...] = (*INFRA_TOOLS, *HA_TOOLS, *ARR_TOOLS, *METRICS_TOOLS)

# The tools above that change something (their MCP annotations say readOnlyHint=false). The
# gateway decides from the annotations at run time; this list lets a runbook's `evidence:` (read
# calls only) be refused when it is imported, not when an incident needs it.
WRITE_TOOLS: frozenset[str] = frozenset(
    {
        "rollout_restart",
        "set_memory_limit",
        "scale_deployment",
        "ha_call_service",
        "ha_restart",
        "arr_command",
        "arr_remove_queue_item",
        "prowlarr_test_indexer",
    }
)
# The observability agent's tools: the metrics server's and the infrastructure server's reads.
OBSERVABILITY_TOOLS: tuple[str, ...] = (
    *METRICS_TOOLS,
    "get_nodes",
    "get_pods",
    "get_events",
    "get_pod_logs",
    "describe_pod",
)

TOOL_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (INFRA_TOOLS, "the Kubernetes/Talos tools come from the MCP infrastructure server: set AGENTIC_KUBECONFIG"),
    (HA_TOOLS, "the Home Assistant tools come from its MCP server: set AGENTIC_HA_URL and AGENTIC_HA_TOKEN"),
    (
        ARR_TOOLS,
        "the arr tools come from the arr MCP server: set AGENTIC_SONARR_URL and AGENTIC_SONARR_API_KEY "
        "(or RADARR_, PROWLARR_)",
    ),
    (METRICS_TOOLS, "the metrics tools come from the metrics MCP server: set AGENTIC_PROMETHEUS_URL"),
)


def tool_server_hint(tool: str) -> str | None:
    """Which MCP server offers `tool` and what configures it: the tool gateway adds this to a
    refusal of a tool that no configured server offers."""
    return next((hint for tools, hint in TOOL_FAMILIES if tool in tools), None)


def configure_hints() -> list[str]:
    """What configures each of the platform's tool servers, one line each."""
    return [hint for _tools, hint in TOOL_FAMILIES]
