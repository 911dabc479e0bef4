"""The MCP tools of the platform's own servers, by family, with what configures each server,
and each agent's default allow-list.

The incident agent's default allow-list is every tool of the cluster's families here (`ALL_TOOLS`)
and the GitOps action's two coding-server tools (`GITOPS_TOOLS`): `INCIDENT_TOOLS`; the
observability agent's is the read tools of the infrastructure server and the metrics server
(`OBSERVABILITY_TOOLS`); the coding agent's the coding server's (`CODING_TOOLS`); the web agent's the
web server's (`WEB_TOOLS`) (`DEFAULT_AGENT_TOOLS`; settings `AGENTIC_<AGENT>_TOOLS`, glob patterns
allowed: `tool_allowed`).
An agent in `ALWAYS_READ_ONLY_AGENTS` (and any in AGENTIC_READ_ONLY_AGENTS) may call only tools
whose MCP annotations say `readOnlyHint`, whatever its list says. A refusal of a tool that no
configured server offers says which server offers it and what to set (`tool_server_hint`); a
question with nothing to run because no server is configured says what would configure one
(`configure_hints`). No I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

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
# The metrics server's tools (Prometheus HTTP API: PromQL instant and range queries, active alerts,
# scrape targets, rules), all read-only.
METRICS_TOOLS: tuple[str, ...] = ("prom_query", "prom_query_range", "prom_alerts", "prom_targets", "prom_rules")
ALL_TOOLS: tuple[str, ...] = (*INFRA_TOOLS, *HA_TOOLS, *ARR_TOOLS, *METRICS_TOOLS)
# The web server's tools (SearXNG search, fetching a page behind the domain allow-list), both
# read-only; the web agent's, not the incident agent's (an incident does not browse the web).
WEB_TOOLS: tuple[str, ...] = ("web_search", "web_fetch")
# How a web tool's refusal begins (the allow-list, SSRF, robots.txt, the page budget): the tool
# gateway records such an error as an `egress_refused` guardrail event.
EGRESS_REFUSED = "egress refused"
# The coding server's tools (Git repositories, AGENTIC_REPOS): reads, structure, diffs; only
# apply_change writes (a commit on a new branch, after a human approves). Not the incident agent's.
CODING_TOOLS: tuple[str, ...] = (
    "repo_list",
    "repo_files",
    "repo_read",
    "repo_search",
    "repo_history",
    "repo_symbols",
    "repo_definitions",
    "repo_references",
    "propose_edit",
    "apply_change",
)
# The GitOps action (docs/runbook-format.md#gitops-changes): the two coding-server tools the incident
# agent may use, and only these: `propose_edit` (read-only: the diff, as evidence) and `commit_edit`
# (the write: the same edits committed on a new branch named after the incident, once).
GITOPS_TOOLS: tuple[str, ...] = ("propose_edit", "commit_edit")
# The incident agent's default allow-list: every tool of the cluster's servers and the GitOps action.
INCIDENT_TOOLS: tuple[str, ...] = (*ALL_TOOLS, *GITOPS_TOOLS)

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
        "commit_edit",
    }
)
# The infrastructure server's tools annotated read-only (pods, events, logs, describe, nodes, Talos health).
INFRA_READ_TOOLS: tuple[str, ...] = (
    "get_nodes",
    "get_pods",
    "get_events",
    "get_pod_logs",
    "describe_pod",
    "talos_health",
)
# The observability agent's tools: the infrastructure server's reads and the metrics server's.
OBSERVABILITY_TOOLS: tuple[str, ...] = (*INFRA_READ_TOOLS, *METRICS_TOOLS)

# The agents whose tool calls the gateway guards, and each one's allow-list when its setting is
# left at its default. Nothing is allowed for an agent without a list.
GUARDED_AGENTS: tuple[str, ...] = ("incident", "observability", "coding", "web")
DEFAULT_AGENT_TOOLS: dict[str, tuple[str, ...]] = {
    "incident": INCIDENT_TOOLS,
    "observability": OBSERVABILITY_TOOLS,
    "coding": CODING_TOOLS,
    "web": WEB_TOOLS,
}
# Read-only whatever the settings say: a tool that changes something is refused even when listed.
ALWAYS_READ_ONLY_AGENTS: tuple[str, ...] = ("observability",)


def tool_allowed(tool: str, patterns: Iterable[str]) -> bool:
    """`tool` matches one of the allow-list's entries: a name, or a shell-style glob (`prom_*`,
    `get_*`). Case-sensitive: tool names are."""
    return any(fnmatch.fnmatchcase(tool, p) for p in patterns if p)


def allowed_tools(patterns: Sequence[str], names: Iterable[str]) -> list[str]:
    """The `names` an allow-list allows, in the list's order (a glob's matches sorted), once each."""
    pool = list(names)
    out: list[str] = []
    for p in patterns:
        for name in sorted(n for n in pool if fnmatch.fnmatchcase(n, p)) if p else ():
            if name not in out:
                out.append(name)
    return out


TOOL_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (INFRA_TOOLS, "the Kubernetes/Talos tools come from the MCP infrastructure server: set AGENTIC_KUBECONFIG"),
    (HA_TOOLS, "the Home Assistant tools come from its MCP server: set AGENTIC_HA_URL and AGENTIC_HA_TOKEN"),
    (
        ARR_TOOLS,
        "the arr tools come from the arr MCP server: set AGENTIC_SONARR_URL and AGENTIC_SONARR_API_KEY "
        "(or RADARR_, PROWLARR_)",
    ),
    (METRICS_TOOLS, "the metrics tools come from the metrics MCP server: set AGENTIC_PROMETHEUS_URL"),
    (
        WEB_TOOLS,
        "the web tools come from the web MCP server: set AGENTIC_SEARXNG_URL (search) and/or "
        "AGENTIC_WEB_ALLOWED_DOMAINS (the sites it may fetch)",
    ),
    (
        (*CODING_TOOLS, "commit_edit"),
        "the repository tools come from the coding MCP server: set AGENTIC_REPOS (name=path,...)",
    ),
)


def tool_server_hint(tool: str) -> str | None:
    """Which MCP server offers `tool` and what configures it: the tool gateway adds this to a
    refusal of a tool that no configured server offers."""
    return next((hint for tools, hint in TOOL_FAMILIES if tool in tools), None)


def configure_hints() -> list[str]:
    """What configures each of the incident agent's tool servers, one line each (the web server's
    tools are not the incident agent's)."""
    return [hint for tools, hint in TOOL_FAMILIES if set(tools) & set(ALL_TOOLS)]
