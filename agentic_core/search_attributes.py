"""The platform's custom Temporal search attributes (names and types only; no I/O).

`agentic up` registers them on the namespace (embedded or external), so the Web UI and
`temporal workflow list --query` can filter incidents and rollouts by them.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ALERT_NAME = SearchAttributeKey.for_keyword("AlertName")
INCIDENT_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
INCIDENT_CATEGORY = SearchAttributeKey.for_keyword("IncidentCategory")
INCIDENT_STATUS = SearchAttributeKey.for_keyword("IncidentStatus")
RUNBOOK_ID = SearchAttributeKey.for_keyword("RunbookId")
AUTOMATION_LEVEL = SearchAttributeKey.for_keyword("AutomationLevel")
APPROVAL_STATE = SearchAttributeKey.for_keyword("ApprovalState")
ROLLOUT_WAVE = SearchAttributeKey.for_int("RolloutWave")
# agent runs (AgentWorkflow): which agent, its status, and how the router chose it
AGENT_NAME = SearchAttributeKey.for_keyword("AgentName")
AGENT_STATUS = SearchAttributeKey.for_keyword("AgentStatus")
ROUTE_METHOD = SearchAttributeKey.for_keyword("RouteMethod")
ROUTE_SCORE = SearchAttributeKey.for_float("RouteScore")

# Temporal refuses a keyword value over 2 KiB (`limit.searchAttributeValueSize`), failing the
# workflow task that sets it, and the server then ends the run: a value from outside (an alert's
# name, a learned runbook's id) is cut well below that, with a marker.
KEYWORD_MAX_BYTES = 512
_CUT = "…"


def keyword(value: str) -> str:
    """`value` cut to at most `KEYWORD_MAX_BYTES` bytes of UTF-8 (never inside a character),
    ending with "…" when cut. Values within the limit are unchanged."""
    data = value.encode("utf-8", "replace")
    if len(data) <= KEYWORD_MAX_BYTES:
        return value
    room = KEYWORD_MAX_BYTES - len(_CUT.encode())
    return data[:room].decode("utf-8", "ignore") + _CUT


ALL: tuple[SearchAttributeKey, ...] = (  # type: ignore[type-arg]
    ALERT_NAME,
    INCIDENT_SEVERITY,
    INCIDENT_CATEGORY,
    INCIDENT_STATUS,
    RUNBOOK_ID,
    AUTOMATION_LEVEL,
    APPROVAL_STATE,
    ROLLOUT_WAVE,
    AGENT_NAME,
    AGENT_STATUS,
    ROUTE_METHOD,
    ROUTE_SCORE,
)
