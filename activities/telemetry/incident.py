"""What the incident activities record about an incident (metrics, and attributes on the
activity's span). Called from activities, once per first attempt: workflow code never records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

from activities.telemetry import metrics as m

if TYPE_CHECKING:
    from agentic_core.incident import IncidentState, NotifyInput, ProposeResult, RecallResult, TriageResult

_FIRST_KINDS = frozenset({"question", "done"})
_DECISIONS = frozenset({"approved", "acknowledged", "ignored", "modified", "expired", "automatic"})


def _first_attempt() -> bool:
    try:
        from temporalio import activity

        return activity.info().attempt <= 1
    except RuntimeError:  # called outside an activity (tests): record
        return True


def triaged(incident_id: str, result: TriageResult) -> None:
    with m.safely():
        span = trace.get_current_span()
        span.set_attribute("agentic.incident_id", incident_id)
        span.set_attribute("agentic.category", result.category.value)
        span.set_attribute("agentic.severity", result.severity.value)
        if _first_attempt():
            m.INCIDENTS_OPENED.labels(result.category.value, result.severity.value).inc()
            m.OPENED.mark(incident_id)


def recalled(incident_id: str, result: RecallResult) -> None:
    with m.safely():
        span = trace.get_current_span()
        span.set_attribute("agentic.incident_id", incident_id)
        if result.runbooks:
            top = result.runbooks[0]
            span.set_attribute("agentic.runbook_id", top.id)
            span.set_attribute("agentic.runbook_level", m.label(top.automation_level))
        if _first_attempt():
            for rb in result.runbooks:
                m.RUNBOOK_RECALLS.labels(m.label(rb.automation_level)).inc()


def proposed(incident_id: str, runbook_id: str | None, result: ProposeResult) -> None:
    with m.safely():
        span = trace.get_current_span()
        span.set_attribute("agentic.incident_id", incident_id)
        span.set_attribute("agentic.proposal_source", result.source)
        if runbook_id:
            span.set_attribute("agentic.runbook_id", runbook_id)
        if _first_attempt():
            m.PROPOSALS.labels(result.source).inc()
            for kind, n in result.redactions.items():
                if n:
                    m.REDACTIONS.labels(m.label(kind, frozenset({"secret", "email", "phone"}))).inc(n)


def notified(inp: NotifyInput, outcome: str) -> None:
    with m.safely():
        if inp.incident_id:
            trace.get_current_span().set_attribute("agentic.incident_id", inp.incident_id)
        m.NOTIFICATIONS.labels(inp.kind.value, outcome).inc()
        if outcome == "ok" and inp.incident_id and inp.kind.value in _FIRST_KINDS:
            waited = m.OPENED.take(inp.incident_id)
            if waited is not None:
                m.TIME_TO_FIRST_NOTIFICATION.labels(inp.kind.value).observe(waited)


def recorded(state: IncidentState, choice: str | None) -> None:
    with m.safely():
        span = trace.get_current_span()
        span.set_attribute("agentic.incident_id", state.incident_id)
        span.set_attribute("agentic.status", state.status.value)
        if state.runbook_id:
            span.set_attribute("agentic.runbook_id", state.runbook_id)
        if not _first_attempt():
            return
        category = state.category.value if state.category else "none"
        m.INCIDENTS_CLOSED.labels(state.status.value, category).inc()
        if choice is None:
            return
        decision = m.label(choice, _DECISIONS)
        m.DECISIONS.labels(decision).inc()
        started = state.stages[0].started_at if state.stages else None
        dec = state.decision
        if dec is not None and dec.decided_at is not None:
            if started is not None:
                m.TIME_TO_DECISION.labels(decision).observe(max(0.0, (dec.decided_at - started).total_seconds()))
            asked = next((s.started_at for s in reversed(state.stages) if s.name == "approval"), None)
            if asked is not None:
                m.APPROVAL_WAIT.labels(decision).observe(max(0.0, (dec.decided_at - asked).total_seconds()))
        elif choice == "automatic":
            policy = next((s for s in state.stages if s.name == "policy"), None)
            if started is not None and policy is not None:
                m.TIME_TO_DECISION.labels(decision).observe(max(0.0, (policy.started_at - started).total_seconds()))
            for action in state.actions:
                m.AUTOMATED_ACTIONS.labels(action.status).inc()
