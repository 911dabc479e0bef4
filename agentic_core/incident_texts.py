"""The incident's messages: the question, the diagnosis, executing/executed, done, closing.

Pure functions of the incident's state (the workflow sends what they return through the
`incident.notify` activity, so a change of wording never changes what a running workflow
decides). Telegram renders them into its cards; the ledger keeps them as sent.
"""

from __future__ import annotations

from agentic_core.alerts import AlertGroup, AlertStatus
from agentic_core.autonomy import EvaluateTrustResult
from agentic_core.evidence import evidence_lines, evidence_summary
from agentic_core.incident import (
    IncidentState,
    PolicyVerdict,
    ProposeResult,
    RecalledRunbook,
    TriageResult,
)
from agentic_core.models import AutomationLevel, ToolCall
from agentic_core.tools import configure_hints


def _call(c: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(c.arguments.items()))
    return f"{c.tool}({args})"


def _plan_lines(plan: list[ToolCall]) -> list[str]:
    return [f"  {i + 1}. {_call(c)}" for i, c in enumerate(plan)] or ["  (none)"]


def question_text(tri: TriageResult, group: AlertGroup, best: RecalledRunbook | None) -> str:
    firing = sum(1 for a in group.alerts if a.status == AlertStatus.FIRING)
    lines = [f"{tri.title}", f"{tri.severity.value} · {tri.category.value} · {firing} alert(s) firing"]
    if best is not None:
        lines.append(f"Runbook: {best.id}: {best.title} ({best.automation_level.value})")
        lines += ["Runbook plan:", *_plan_lines(list(best.actions))]
    else:
        lines.append("No runbook found for this alert.")
    lines.append("The diagnosis follows; then approve, ignore or modify.")
    return "\n".join(lines)


def recommendation_text(
    verdict: PolicyVerdict, runbook: RecalledRunbook | None, level: AutomationLevel, confidence: float
) -> str:
    if verdict != PolicyVerdict.ASK_RECOMMEND or runbook is None:
        return ""
    return f"approve: {level.value} runbook {runbook.id}, confidence {confidence:.2f}"


def nothing_to_run_reason(
    st: IncidentState, prop: ProposeResult, tools_offered: int, runbook: RecalledRunbook | None
) -> str:
    """Why a plan has nothing to run, in the operator's words: every action refused (each with
    the guard's reason, which says what to configure when no server offers a tool), no tool
    server configured, no runbook and no action from the model, or a runbook without actions."""
    if st.refused:
        n = len(st.refused)
        return f"Nothing can run: {'the only action was' if n == 1 else f'all {n} actions were'} refused (see above)."
    if tools_offered == 0:
        return "Nothing can run: no MCP tool server offers the incident agent a tool. " + " ".join(
            f"{hint[:1].upper()}{hint[1:]}." for hint in configure_hints()
        )
    if runbook is None:
        model = "the model proposed no action" if prop.source != "fallback" else "the model gave no usable plan"
        return f"Nothing to run: no runbook matches this alert and {model}."
    return f"Nothing to run: runbook {runbook.id} has no action that can run for this alert."


def diagnosis_text(
    st: IncidentState,
    prop: ProposeResult,
    verdict: PolicyVerdict,
    recommendation: str,
    run_confidence: float | None = None,
    protected: list[str] | None = None,
    why_nothing: str = "",
) -> str:
    """The evidence the investigate stage gathered (`st.evidence`) follows the diagnosis: each
    call, its status, a short excerpt or why it was not gathered. `run_confidence`: the
    confidence the policy used (`policy.run_confidence`); shown when it is below the model's own
    (the runbook's evidence, not the model, set it). `protected`: the
    protected namespaces the plan changes (its runbook allows them; a human decides).
    `why_nothing`: why there is nothing to run (`nothing_to_run_reason`)."""
    p = prop.proposal
    lines = [st.title, f"Diagnosis: {p.summary}", p.diagnosis]
    if prop.source == "fallback":
        lines.append(f"(model fallback: {prop.note})")
    elif prop.source == "cloud":
        lines.append(f"(cloud model: {prop.note})")
    if st.evidence:
        lines += [f"Evidence ({evidence_summary(st.evidence)}):", *evidence_lines(st.evidence)]
    confidence = f"Confidence {p.confidence:.2f}"
    if run_confidence is not None and run_confidence < p.confidence:
        confidence += f" (the model's; the runbook's evidence gives {run_confidence:.2f})"
    lines += [f"{confidence}, risk {p.risk.value}.", "Plan:", *_plan_lines(st.plan)]
    for r in st.refused:
        lines.append(f"Refused: {_call(r.call)}: {r.reason}")
    if protected:
        names = ", ".join(protected)
        lines.append(f"Changes protected namespace(s) {names} (runbook {st.runbook_id} allows it): a human decides.")
    if why_nothing:
        lines.append(why_nothing)
    if verdict == PolicyVerdict.RUN_THEN_NOTIFY:
        lines.append("Standard runbook: running it now; the result follows.")
    elif verdict == PolicyVerdict.ASK_ACKNOWLEDGE:
        lines.append(
            "Acknowledge (you saw it; the incident watches for the alert to resolve), ignore, "
            "or modify (give a plan: it is checked like any other)?"
        )
    elif verdict == PolicyVerdict.NOTHING_TO_DO:
        lines.append("Nothing to run." if not why_nothing else "Watching for the alert to resolve; nothing will run.")
    elif recommendation:
        lines.append(f"Recommended: {recommendation}. Approve, ignore or modify?")
    else:
        lines.append("Approve, ignore or modify?")
    return "\n".join(line for line in lines if line)


def executing_text(st: IncidentState, plan: list[ToolCall]) -> str:
    who = f" (approved by {st.decision.by})" if st.decision is not None and st.decision.by else ""
    return "\n".join([st.title, f"Executing {len(plan)} action(s){who}:", *_plan_lines(plan)])


def executed_text(st: IncidentState) -> str:
    lines = [st.title, "Ran:"]
    for a in st.actions:
        tail = f": {a.error}" if a.error else ""
        lines.append(f"  {a.index + 1}. {a.tool}: {a.status}{tail}")
    return "\n".join(lines)


def done_with_outcome_text(st: IncidentState, evaluation: EvaluateTrustResult | None) -> str:
    """What a standard runbook did, told after it ran: its actions, the outcome, any demotion."""
    lines = [executed_text(st)]
    if st.outcome is not None:
        lines.append(f"Outcome: {st.outcome.outcome}" + (f": {st.outcome.detail}" if st.outcome.detail else ""))
    if evaluation is not None and evaluation.demoted is not None:
        d = evaluation.demoted
        lines.append(f"Runbook {d.runbook_id} demoted {d.from_level.value} → {d.to_level.value}: it will ask again.")
    return "\n".join(lines)


def closing_text(st: IncidentState) -> str:
    detail = f": {st.outcome.detail}" if st.outcome is not None and st.outcome.detail else ""
    who = f" ({st.decision.choice} by {st.decision.by})" if st.decision is not None and st.decision.by else ""
    return f"{st.status.value}{who}: {st.title}{detail}"
