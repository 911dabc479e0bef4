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

ALL: tuple[SearchAttributeKey, ...] = (  # type: ignore[type-arg]
    ALERT_NAME,
    INCIDENT_SEVERITY,
    INCIDENT_CATEGORY,
    INCIDENT_STATUS,
    RUNBOOK_ID,
    AUTOMATION_LEVEL,
    APPROVAL_STATE,
    ROLLOUT_WAVE,
)
