"""The proposal rules: how a planner's answer becomes the plan an incident may run. Pure.

- `ground_proposal`: the model explains and ranks; retrieval decides the plan when a runbook
  fits (a recalled runbook the model names, else a label match).
- `check_proposal`: why a model's proposal cannot be used as it is (a tool not offered,
  arguments against the tool's schema, an unfilled template, no action where a runbook has one);
  `action_problems`: each action of it that cannot be used, with why; `dropped_actions`: those
  and the writes dropped with them (the guardrail events of an unusable proposal).
- `fallback_proposal`: the best recalled runbook's plan when no model can help.

The incident workflow calls `fallback_proposal` itself when the propose activity fails, so a
change here that changes its result is a change of what a running workflow decides.
"""

from __future__ import annotations

from agentic_core import policy
from agentic_core.incident import ProposeInput, ProposeResult, RecalledRunbook, plan_hash
from agentic_core.models import Proposal, Risk, ToolCall


def ground_proposal(proposal: Proposal, inp: ProposeInput) -> tuple[Proposal, str]:
    """The model explains and ranks; retrieval decides the plan when a runbook fits.

    - A runbook id that was not recalled is dropped.
    - The model named a recalled runbook that has actions: the plan is that runbook's
      (rendered) plan, whatever actions the model wrote.
    - The model named none, but the best recalled runbook matched the alert's labels and has
      actions: that runbook and its plan.
    - Otherwise the model's own plan stands (checked by `check_proposal`): a novel plan,
      which `policy.plan_level` sends to a human.

    Returns the proposal to use and a note saying what was changed ("" when nothing).
    """
    recalled = {rb.id: rb for rb in inp.recall.runbooks}
    notes: list[str] = []
    if proposal.runbook_id is not None and proposal.runbook_id not in recalled:
        notes.append(f"the model named runbook {proposal.runbook_id!r}, which was not recalled: dropped")
        proposal = proposal.model_copy(update={"runbook_id": None})
    chosen = recalled.get(proposal.runbook_id) if proposal.runbook_id is not None else None
    best = inp.recall.runbooks[0] if inp.recall.runbooks else None
    if chosen is None and best is not None and best.matched_labels and best.actions:
        chosen = best
        notes.append(f"runbook {best.id} matches the alert's labels")
    if chosen is not None and chosen.actions:
        if plan_hash(list(proposal.actions)) != plan_hash(list(chosen.actions)):
            notes.append(f"the plan is runbook {chosen.id}'s (the model proposed other actions)")
        proposal = proposal.model_copy(update={"runbook_id": chosen.id, "actions": list(chosen.actions)})
    return proposal, "; ".join(notes)


def action_problems(proposal: Proposal, inp: ProposeInput) -> list[tuple[int, ToolCall, str]]:
    """Each action of the model's proposal that cannot be used, with why: a tool not offered to the
    incident agent (not on its allow-list, or no server offers it), an unfilled template, arguments
    against the tool's schema. The incident activities record these as `tool_refused` guardrail
    events: the model asked for them (perhaps told to by the alert's text), and they never ran."""
    import jsonschema

    tools = {t.name: t for t in inp.tools}
    out: list[tuple[int, ToolCall, str]] = []
    for i, call in enumerate(proposal.actions):
        spec = tools.get(call.tool)
        if spec is None:
            known = ", ".join(sorted(tools)) or "none"
            out.append(
                (i, call, f"action {i} calls {call.tool!r}, which is not an available tool (available: {known})")
            )
            continue
        if policy.has_templates(call.arguments):
            out.append((i, call, f"action {i} ({call.tool}) has an unfilled template in its arguments"))
            continue
        if spec.input_schema:
            try:
                validator = jsonschema.validators.validator_for(spec.input_schema)(spec.input_schema)
                error = jsonschema.exceptions.best_match(validator.iter_errors(call.arguments))
            except jsonschema.exceptions.SchemaError:
                continue  # the tool's own schema is broken: leave the arguments to the guard
            if error is not None:
                out.append((i, call, f"action {i} ({call.tool}): invalid arguments: {error.message}"))
    return out


def dropped_actions(proposal: Proposal, inp: ProposeInput) -> list[tuple[int, ToolCall, str]]:
    """What an unusable proposal asked for and did not get, for the guardrail events: each action
    that cannot be used (`action_problems`), and each other action that would change something,
    dropped with its plan. Empty when every action could be used."""
    problems = action_problems(proposal, inp)
    if not problems:
        return []
    bad = {i for i, _call, _why in problems}
    tools = {t.name: t for t in inp.tools}
    first = problems[0][2]
    out = list(problems)
    for i, call in enumerate(proposal.actions):
        if i not in bad and tools[call.tool].mutating:
            out.append((i, call, f"action {i} ({call.tool}) was dropped with its plan: {first}"))
    return sorted(out, key=lambda item: item[0])


def check_proposal(proposal: Proposal, inp: ProposeInput) -> str | None:
    """Why the model's proposal cannot be used as it is, or None when it can."""
    problems = action_problems(proposal, inp)
    if problems:
        return problems[0][2]
    if not proposal.actions and inp.recall.runbooks and inp.recall.runbooks[0].actions:
        return f"the model proposed no action, but runbook {inp.recall.runbooks[0].id} has a plan"
    return None


def fallback_proposal(inp: ProposeInput, reason: str, model: Proposal | None = None) -> ProposeResult:
    """The best recalled runbook's (rendered) plan, when the model's answer cannot be used."""
    best: RecalledRunbook | None = inp.recall.runbooks[0] if inp.recall.runbooks else None
    if best is None:
        proposal = Proposal(
            summary=inp.title,
            diagnosis=f"No runbook was recalled for this alert and the model gave no usable plan ({reason}).",
            runbook_id=None,
            actions=[],
            confidence=0.0,
            risk=Risk.MEDIUM,
        )
        return ProposeResult(proposal=proposal, source="fallback", note=f"fallback, no runbook: {reason}")
    proposal = Proposal(
        summary=model.summary if model is not None else inp.title,
        diagnosis=(model.diagnosis if model is not None else "")
        or f"Following runbook {best.id} ({best.title}): the model gave no usable plan.",
        runbook_id=best.id,
        actions=list(best.actions),
        confidence=policy.fallback_confidence(best.score, best.matched_labels),
        risk=Risk.MEDIUM,
    )
    return ProposeResult(proposal=proposal, source="fallback", note=f"fallback to runbook {best.id}: {reason}")
