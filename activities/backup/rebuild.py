"""`knowledge.rebuild`: Qdrant is an index of the ledger (docs/architecture.md); this rebuilds it
from the ledger, on the worker that owns the store. The runbooks are indexed from the ledger's
`runbooks` table (levels included), the decisions from `decisions` with their incident's title,
alerts' common labels and latest outcome, under the same point ids `incident.record` gives them
(`<incident>/<occurrence>/decision`, the occurrence from the approval id), so a later record of
the same decision replaces the point instead of adding one. Documentation is re-ingested by the
command (`agentic knowledge rebuild`) from its sources, as `agentic up` ingests it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.heartbeat import heartbeating
from agentic_core.backup import RebuildInput, RebuildResult
from agentic_core.models import Collection, DecisionRecord, Runbook, ToolCall

if TYPE_CHECKING:
    from activities.knowledge.kb import KnowledgeBase

_APPROVAL_RE = re.compile(r"^(?P<iid>.+)-(?:approval|automatic)-(?P<occ>\d+)$")
MAX_SUMMARY = 200  # as incident.record keeps a decision's summary (activities/incident/prompt.py)

_DECISIONS_SQL = """
SELECT d.id, d.incident_id, d.approval_id, d.runbook_id, d.choice, d.decided_by, d.arguments,
       coalesce(nullif(i.title, ''), p.summary, d.incident_id) AS summary,
       (SELECT o.result FROM outcomes o WHERE o.incident_id = d.incident_id
         ORDER BY o.verified_at DESC, o.id DESC LIMIT 1) AS outcome
FROM decisions d
JOIN incidents i ON i.id = d.incident_id
LEFT JOIN proposals p ON p.id = d.proposal_id
WHERE d.incident_id IS NOT NULL
ORDER BY d.id
"""


def _short(text: str, limit: int = MAX_SUMMARY) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _common_labels(rows: list[dict[str, Any]]) -> dict[str, str]:
    if not rows:
        return {}
    common = dict(rows[0])
    for labels in rows[1:]:
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return {str(k): str(v) for k, v in common.items()}


def decision_point_id(incident_id: str, approval_id: str | None, row_id: int) -> str:
    m = _APPROVAL_RE.match(approval_id or "")
    if m and m.group("iid") == incident_id:
        return f"{incident_id}/{m.group('occ')}/decision"
    return f"{incident_id}/ledger-{row_id}/decision"


class RebuildActivities:
    def __init__(self, kb: KnowledgeBase, pool: Any) -> None:
        self.kb = kb
        self.pool = pool

    @activity.defn(name="knowledge.rebuild")
    async def rebuild(self, inp: RebuildInput) -> RebuildResult:
        result = RebuildResult()
        async with heartbeating():
            await self.kb.ensure()
            if inp.clear:
                for c in (Collection.RUNBOOKS, Collection.DECISIONS, Collection.DOCUMENTATION):
                    ids = [p.id for p in await self.kb.store.scroll(c)]
                    await self.kb.store.delete(c, ids)
                    result.cleared[str(c)] = len(ids)
            async with self.pool.acquire() as conn:
                rb_rows = await conn.fetch("SELECT * FROM runbooks ORDER BY id")
                dec_rows = await conn.fetch(_DECISIONS_SQL)
                labels_by_incident: dict[str, list[dict[str, Any]]] = {}
                for r in await conn.fetch("SELECT incident_id, labels FROM alerts WHERE incident_id IS NOT NULL"):
                    labels_by_incident.setdefault(r["incident_id"], []).append(r["labels"] or {})
            fields = set(Runbook.model_fields)
            runbooks = [Runbook.model_validate({k: v for k, v in dict(r).items() if k in fields}) for r in rb_rows]
            await self.kb.upsert_runbooks(runbooks)
            result.runbooks = len(runbooks)
            for r in dec_rows:
                args = r["arguments"] or []
                record = DecisionRecord(
                    id=decision_point_id(r["incident_id"], r["approval_id"], r["id"]),
                    incident_id=r["incident_id"],
                    summary=_short(r["summary"] or r["incident_id"]),
                    runbook_id=r["runbook_id"],
                    actions=[ToolCall.model_validate(a) for a in args if isinstance(a, dict)],
                    decision=r["choice"],
                    decided_by=r["decided_by"],
                    outcome=r["outcome"] or "pending",
                    labels=_common_labels(labels_by_incident.get(r["incident_id"], [])),
                )
                await self.kb.upsert_decision(record)
                result.decisions += 1
        return result
