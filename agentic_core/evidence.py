"""Evidence: the read-only tool calls an incident gathers before its diagnosis (the investigate
stage of `IncidentWorkflow`), and what came of each. No I/O here.

A runbook declares them under `evidence:` (docs/runbook-format.md), with arguments templated from
the alert's labels like its actions; `policy.render_evidence` fills them for one alert, keeping
the ones that cannot be filled as reasons. `sort_calls` decides, before anything runs, which calls may run:
only tools the incident agent is offered that are read-only, at most `max_calls` of them; every
other call becomes an `EvidenceItem` that says why it was not gathered. Tool output is untrusted
data: it reaches the planner model only inside its quoted incident data (activities/incident/
prompt.py), and people as excerpts (`evidence_lines`). A diff a call returns (`propose_edit`, a
GitOps change) is kept whole (`diff_of`) and shown whole with the question (`evidence_diffs`); the
runbook's `commit_edit` of the same edits is bound to the commit that diff was made against
(`bind_bases`), so the plan a human approves names that very diff.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agentic_core.models import ToolCall
from agentic_core.tools import tool_server_hint

EvidenceStatus = Literal["ok", "failed", "refused", "unavailable", "timed_out", "skipped"]
EvidenceSource = Literal["runbook", "model"]

MAX_EXCERPT_CHARS = 600  # of a call's output, kept in the incident's state
LINE_EXCERPT_CHARS = 160  # of a call's output, in one line of a message


class EvidenceItem(BaseModel):
    """One evidence call and what came of it. `excerpt`: the start of the tool's output (ok);
    `error`: why it was not gathered, or the tool's error (every other status)."""

    index: int = Field(ge=0)
    call: ToolCall
    source: EvidenceSource = "runbook"
    status: EvidenceStatus
    excerpt: str = ""
    error: str = ""
    # A unified diff the call returned (the coding server's `propose_edit`: the change a GitOps
    # action commits), whole as far as the output kept it: people are shown it as it is.
    diff: str = ""
    diff_cut: bool = False  # the output was cut: the whole diff is in the ledger (the call's key)
    base: str = ""  # the commit the diff was made against (propose_edit's `base`)


class EvidenceDiff(BaseModel):
    """A diff an evidence call returned, for the channels that show it (`NotifyInput.diffs`):
    inline when short, as a file when long (Telegram). `key`: the call's ledger key, where the
    whole tool output is kept when `cut`."""

    title: str
    diff: str
    cut: bool = False
    key: str = ""


def evidence_key(incident_id: str, index: int, occurrence: int) -> str:
    """The ledger key of one evidence call of one run of an incident: apart from the actions' keys
    (`idempotency_key`), so looking never counts as acting (reports skip `/evidence/` keys)."""
    return f"{incident_id}/evidence/{occurrence}/{index}"


EVIDENCE_KEY_PART = "/evidence/"

_DIFF_FIELD = re.compile(r'"diff"\s*:\s*"')
_BASE_FIELD = re.compile(r'"base"\s*:\s*"([0-9a-f]{40,64})"')
PROPOSE_EDIT = "propose_edit"  # the coding server's diff (read-only: evidence)
COMMIT_EDIT = "commit_edit"  # the coding server's commit of the same edits (the GitOps action)


def base_of(output: str) -> str:
    """The `base` commit in a tool's JSON output (`propose_edit`'s), or ""."""
    m = _BASE_FIELD.search(output)
    return m.group(1) if m else ""


def _same_edit(a: ToolCall, b: ToolCall) -> bool:
    keys = ("repo", "edits")
    return json.dumps([a.arguments.get(k) for k in keys], sort_keys=True) == json.dumps(
        [b.arguments.get(k) for k in keys], sort_keys=True
    )


def bind_bases(actions: Sequence[ToolCall], items: Sequence[EvidenceItem]) -> list[ToolCall]:
    """`actions` with each `commit_edit` that names no `base` bound to the commit its diff was
    shown against: the `base` of a gathered `propose_edit` of the same repository and edits. The
    plan's hash then binds the very diff the question shows (`commit_edit` commits that diff or
    refuses). Anything else is returned as it is."""
    out: list[ToolCall] = []
    for call in actions:
        if call.tool == COMMIT_EDIT and "base" not in call.arguments:
            shown = next(
                (
                    e
                    for e in items
                    if e.status == "ok" and e.base and e.call.tool == PROPOSE_EDIT and _same_edit(e.call, call)
                ),
                None,
            )
            if shown is not None:
                call = ToolCall(tool=call.tool, arguments={**call.arguments, "base": shown.base})
        out.append(call)
    return out


def unbound(actions: Sequence[ToolCall]) -> list[ToolCall]:
    """`actions` without the `base` `bind_bases` adds: the runbook's own plan as written."""
    return [
        ToolCall(tool=c.tool, arguments={k: v for k, v in c.arguments.items() if k != "base"})
        if c.tool == COMMIT_EDIT
        else c
        for c in actions
    ]


def diff_of(output: str) -> tuple[str, bool]:
    """The unified diff in a tool's JSON output (`{"diff": "diff --git …"}`, as `propose_edit`
    answers), decoded, and whether the output was cut inside it; ("", False) when there is none."""
    m = _DIFF_FIELD.search(output)
    if m is None:
        return "", False
    i, raw, closed = m.end(), [], False
    while i < len(output):
        ch = output[i]
        if ch == "\\":
            raw.append(output[i : i + 2])
            i += 2
            continue
        if ch == '"':
            closed = True
            break
        raw.append(ch)
        i += 1
    text = "".join(raw)
    if not closed:  # cut: drop a partial escape at the end
        text = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", text)
    try:
        diff = json.loads(f'"{text}"')
    except ValueError:
        return "", False
    if not isinstance(diff, str) or not diff.startswith(("diff --git ", "--- ")):
        return "", False
    return diff, not closed


def evidence_diffs(items: Sequence[EvidenceItem], incident_id: str, occurrence: int) -> list[EvidenceDiff]:
    """The diffs the gathered evidence holds, in index order, each titled by its call."""
    return [
        EvidenceDiff(
            title=_call_text(e.call),
            diff=e.diff,
            cut=e.diff_cut,
            key=evidence_key(incident_id, e.index, occurrence),
        )
        for e in sorted(items, key=lambda e: e.index)
        if e.status == "ok" and e.diff
    ]


def excerpt(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    """`text` on one line (runs of white space as one space), cut to `limit` with a marker."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def sort_calls(
    calls: Sequence[ToolCall],
    offered: Mapping[str, bool],
    max_calls: int,
    *,
    start: int = 0,
    source: EvidenceSource = "runbook",
) -> tuple[list[tuple[int, ToolCall]], list[EvidenceItem]]:
    """Which calls run (with their index) and which are not gathered (with the reason).

    `offered`: the tools the incident agent is offered now, name → whether it changes something
    (from the gateway's `tools.list_tools`, i.e. the MCP annotations). A tool not offered is
    `unavailable` (no configured server offers it, its server is down, or it is not on the
    allow-list: the hint says what configures its server); a tool that changes something is
    `refused` (evidence only looks); beyond `max_calls`, `skipped`. Indexes start at `start`."""
    run: list[tuple[int, ToolCall]] = []
    not_run: list[EvidenceItem] = []
    for i, call in enumerate(calls, start=start):
        reason = ""
        status: EvidenceStatus = "skipped"
        if call.tool not in offered:
            status = "unavailable"
            hint = tool_server_hint(call.tool)
            reason = f"no configured MCP server offers {call.tool} to the incident agent now" + (
                f" ({hint})" if hint else " (not on its allow-list, or its server is down)"
            )
        elif offered[call.tool]:
            status = "refused"
            reason = f"{call.tool} changes something: evidence calls only look (put it under the runbook's actions)"
        elif len(run) >= max_calls:
            reason = f"over the budget of {max_calls} evidence call(s)"
        if reason:
            not_run.append(EvidenceItem(index=i, call=call, source=source, status=status, error=reason))
        else:
            run.append((i, call))
    return run, not_run


def _call_text(call: ToolCall) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(call.arguments.items()))
    return f"{call.tool}({args})"


def evidence_lines(items: Sequence[EvidenceItem], limit: int = LINE_EXCERPT_CHARS) -> list[str]:
    """One line per call, in index order: the call, its status, a short excerpt or the reason."""
    lines = []
    for item in sorted(items, key=lambda e: e.index):
        by = " (model)" if item.source == "model" else ""
        detail = excerpt(item.excerpt, limit) if item.status == "ok" else excerpt(item.error, limit)
        if item.status == "ok" and item.diff:
            detail = diff_summary(item.diff) + " (the diff is shown with this message)"
        lines.append(
            f"  {item.index + 1}. {_call_text(item.call)}{by}: {item.status}" + (f": {detail}" if detail else "")
        )
    return lines


def diff_summary(diff: str) -> str:
    """e.g. `a diff of apps/radarr/values.yaml: +1 -1 lines`."""
    lines = diff.splitlines()
    files = [ln[6:] for ln in lines if ln.startswith("+++ b/")]
    added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    return f"a diff of {', '.join(files) or 'no file'}: +{added} -{removed} lines"


def evidence_summary(items: Sequence[EvidenceItem]) -> str:
    """e.g. `3 of 4 gathered; 1 failed`: the stage's detail."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    ok = counts.pop("ok", 0)
    rest = "; ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    return f"{ok} of {len(items)} gathered" + (f"; {rest}" if rest else "")
