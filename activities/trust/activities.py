"""Trust activities: the I/O of earned autonomy (levels in the ledger and the index).

The worker builds one `TrustActivities(ledger, kb, config)` and registers its bound methods:

| name                   | input                 | output              | what it does                                  |
|------------------------|-----------------------|---------------------|-----------------------------------------------|
| `trust.evaluate`       | EvaluateTrustInput    | EvaluateTrustResult | after an incident: demote, promote, or ask   |
| `trust.set_level`      | SetLevelInput         | SetLevelResult      | a level change: ledger (with history) + index |
| `trust.snapshot`       | TrustSnapshotInput    | TrustSnapshot       | a runbook's level and record                  |
| `trust.request`        | PromotionRequestInput | TrustSnapshot       | record a promotion question                   |
| `trust.answer`         | PromotionAnswerInput  | TrustSnapshot       | record its answer                             |
| `trust.config`         | TrustSnapshotInput    | TrustConfig         | approvers and delays from the settings        |
| `trust.ask_promotion`  | PromotionInput        | StartPromotionResult| start RunbookPromotionWorkflow (idempotent)   |
| `trust.audit`          | AuditInput            | AuditResult         | a quarter's automated actions and proposals   |

The ledger holds the truth (`runbooks.automation_level`, `runbook_level_history`); the
Qdrant payload follows it so that search results show the current level (recall reads the
level from the ledger anyway). Every write is idempotent: `set_runbook_level` writes nothing
when the level is already the target, promotion requests are keyed by the workflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger.errors import ledger_errors
from agentic_core import trust
from agentic_core.autonomy import (
    PROMOTION_WORKFLOW,
    AuditedRunbook,
    AuditInput,
    AuditResult,
    EvaluateTrustInput,
    EvaluateTrustResult,
    LevelChangeInfo,
    PromotionAnswerInput,
    PromotionInput,
    PromotionRequestInput,
    SetLevelInput,
    SetLevelResult,
    StartPromotionResult,
    TrustConfig,
    TrustSnapshot,
    TrustSnapshotInput,
    promotion_workflow_id,
    quarter_bounds,
)
from agentic_core.models import AutomationLevel
from agentic_core.trust import TrustPolicy, TrustRecord

if TYPE_CHECKING:
    from temporalio.client import Client

    from activities.knowledge.kb import KnowledgeBase
    from activities.ledger.models import RunbookStats
    from activities.ledger.repository import Ledger

log = logging.getLogger("agentic.trust")

POLICY_ACTOR = "trust-policy"


def to_record(stats: RunbookStats | None) -> TrustRecord:
    if stats is None:
        return TrustRecord()
    return TrustRecord.model_validate(stats.model_dump(include=set(TrustRecord.model_fields)))


class TrustActivities:
    def __init__(
        self,
        ledger: Ledger,
        kb: KnowledgeBase | None,
        config: TrustConfig | None = None,
        policy: TrustPolicy | None = None,
        *,
        client: Client | None = None,
        task_queue: str = "",
    ) -> None:
        self.ledger = ledger
        self.kb = kb
        self.client = client  # starts promotion questions (`trust.ask_promotion`)
        self.task_queue = task_queue
        self.config = config or TrustConfig()
        self.policy = policy or trust.DEFAULT_POLICY

    async def _index_level(self, runbook_id: str) -> None:
        """Bring the index's copy of the runbook to the ledger's level (best effort: recall
        reads the level from the ledger, the index only shows it)."""
        if self.kb is None:
            return
        row = await self.ledger.get_runbook(runbook_id)
        if row is None:
            return
        try:
            await self.kb.upsert_runbooks([row.to_runbook()])
        except Exception as exc:  # the ledger is the truth; a stale index payload is only cosmetic
            log.warning("trust: runbook %s level not updated in the index: %s", runbook_id, exc)

    async def _change(
        self, runbook_id: str, to_level: AutomationLevel, reason: str, changed_by: str, expected_from: AutomationLevel
    ) -> LevelChangeInfo | None:
        from activities.ledger.db import ConflictError

        try:
            change = await self.ledger.set_runbook_level(
                runbook_id, to_level, reason, changed_by, expected_from=expected_from
            )
        except ConflictError as exc:
            log.info("trust: %s", exc)
            return None
        await self._index_level(runbook_id)
        if change is None:
            return None
        return LevelChangeInfo(
            runbook_id=runbook_id, from_level=expected_from, to_level=to_level, reason=reason, changed_by=changed_by
        )

    async def _snapshot(self, runbook_id: str) -> TrustSnapshot:
        row = await self.ledger.get_runbook(runbook_id)
        if row is None:
            return TrustSnapshot(runbook_id=runbook_id, exists=False)
        stats = await self.ledger.runbook_stats(runbook_id)
        return TrustSnapshot(
            runbook_id=runbook_id, title=row.title, level=row.automation_level, record=to_record(stats)
        )

    async def _may_ask(self, runbook_id: str, to_level: AutomationLevel, executions: int) -> bool:
        asked = [r for r in await self.ledger.promotion_requests(runbook_id) if r.to_level == to_level]
        if any(r.status == "pending" for r in asked):
            return False
        last = next((r for r in reversed(asked) if r.status in ("refused", "expired")), None)
        return trust.may_ask_again(last.executions if last is not None else None, executions)

    @activity.defn(name="trust.evaluate")
    async def evaluate(self, inp: EvaluateTrustInput) -> EvaluateTrustResult:
        """After an incident's record (which counted the execution): a failure of a plan that
        ran at standard demotes the runbook at once; a record that supports prompted promotes
        a manual runbook (announced by the caller); one that supports standard asks a human
        (the caller starts `RunbookPromotionWorkflow`) unless a question is pending or was
        refused too recently."""
        rid = inp.runbook_id
        async with ledger_errors("trust.evaluate"):
            snap = await self._snapshot(rid)
            if not snap.exists:
                return EvaluateTrustResult(runbook_id=rid)
            result = EvaluateTrustResult(runbook_id=rid, title=snap.title, level=snap.level, record=snap.record)
            if inp.ran_at is not None and inp.success is not None:
                target = trust.demotion_target(inp.ran_at, inp.success)
                if target is not None and trust.rank(snap.level) > trust.rank(target):
                    where = f" in incident {inp.incident_id}" if inp.incident_id else ""
                    reason = f"failed while standard{where}; {trust.record_text(snap.record, self.policy)}"
                    result.demoted = await self._change(rid, target, reason, POLICY_ACTOR, snap.level)
                    if result.demoted is not None:
                        result.level = target
                    return result  # no promotion right after a demotion
            target = trust.promotion_target(result.level, snap.record, self.policy)
            if target is None:
                return result
            if not trust.needs_approval(target):
                reason = f"earned: {trust.record_text(snap.record, self.policy)}"
                result.promoted = await self._change(rid, target, reason, POLICY_ACTOR, result.level)
                if result.promoted is not None:
                    result.level = target
                target = trust.promotion_target(result.level, snap.record, self.policy)
                if target is None:
                    return result
            if await self._may_ask(rid, target, snap.record.executions):
                result.ask_promotion = target
        return result

    @activity.defn(name="trust.set_level")
    async def set_level(self, inp: SetLevelInput) -> SetLevelResult:
        from activities.ledger.db import ConflictError, NotFound

        async with ledger_errors("trust.set_level"):
            try:
                change = await self.ledger.set_runbook_level(
                    inp.runbook_id, inp.to_level, inp.reason, inp.changed_by, expected_from=inp.expected_from
                )
            except (ConflictError, NotFound) as exc:
                snap = await self._snapshot(inp.runbook_id)
                return SetLevelResult(changed=False, level=snap.level, detail=str(exc))
            await self._index_level(inp.runbook_id)
        return SetLevelResult(changed=change is not None, level=inp.to_level)

    @activity.defn(name="trust.snapshot")
    async def snapshot(self, inp: TrustSnapshotInput) -> TrustSnapshot:
        async with ledger_errors("trust.snapshot"):
            return await self._snapshot(inp.runbook_id)

    @activity.defn(name="trust.request")
    async def request(self, inp: PromotionRequestInput) -> TrustSnapshot:
        async with ledger_errors("trust.request"):
            await self.ledger.record_promotion_request(
                inp.request_key,
                inp.runbook_id,
                inp.from_level,
                inp.to_level,
                executions=inp.executions,
                workflow_id=inp.workflow_id,
            )
            return await self._snapshot(inp.runbook_id)

    @activity.defn(name="trust.answer")
    async def answer(self, inp: PromotionAnswerInput) -> TrustSnapshot:
        async with ledger_errors("trust.answer"):
            row = await self.ledger.finish_promotion_request(
                inp.request_key, inp.status, decided_by=inp.decided_by, reason=inp.reason
            )
            return await self._snapshot(row.runbook_id)

    @activity.defn(name="trust.config")
    async def get_config(self, inp: TrustSnapshotInput) -> TrustConfig:
        return self.config

    @activity.defn(name="trust.ask_promotion")
    async def ask_promotion(self, inp: PromotionInput) -> StartPromotionResult:
        """Start the `RunbookPromotionWorkflow` that asks a human, outside the asking incident
        (which closes right after). Its id (`promotion_workflow_id`) makes it one question per
        runbook and level at a time: a retry, or a second incident, finds it open."""
        from temporalio.exceptions import WorkflowAlreadyStartedError

        wid = promotion_workflow_id(inp.runbook_id, inp.to_level)
        if self.client is None:
            raise ApplicationError("this worker has no Temporal client to ask with", non_retryable=True)
        try:
            await self.client.start_workflow(
                PROMOTION_WORKFLOW, inp, id=wid, task_queue=self.task_queue or activity.info().task_queue
            )
        except WorkflowAlreadyStartedError:
            return StartPromotionResult(workflow_id=wid, started=False)
        return StartPromotionResult(workflow_id=wid, started=True)

    @activity.defn(name="trust.audit")
    async def audit(self, inp: AuditInput) -> AuditResult:
        """The quarter's automated actions (decisions taken alone, with their outcomes) and, per
        runbook, its record, what it did in the quarter and the policy's proposal."""
        since, until = quarter_bounds(inp.quarter)
        async with ledger_errors("trust.audit"):
            actions = await self.ledger.automated_actions(since, until)
            period = {p.runbook_id: p for p in await self.ledger.runbook_period_stats(since, until)}
            runbooks = await self.ledger.list_runbooks()
            audited: list[AuditedRunbook] = []
            proposals = []
            for rb in runbooks:
                record = to_record(await self.ledger.runbook_stats(rb.id))
                p = period.get(rb.id)
                audited.append(
                    AuditedRunbook(
                        runbook_id=rb.id,
                        title=rb.title,
                        level=rb.automation_level,
                        record=record,
                        quarter_successes=p.successes if p else 0,
                        quarter_failures=p.failures if p else 0,
                        quarter_automatic=p.automatic if p else 0,
                    )
                )
                proposal = trust.review_proposal(
                    rb.id, rb.automation_level, record, p.failures if p else 0, self.policy
                )
                if proposal is not None:
                    proposals.append(proposal)
        return AuditResult(
            quarter=inp.quarter,
            automated_actions=len(actions),
            automated_failures=sum(1 for a in actions if a.outcome == "failure"),
            automated_unknown=sum(1 for a in actions if a.outcome not in ("success", "failure")),
            runbooks=audited,
            proposals=proposals,
        )

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.evaluate,
            self.set_level,
            self.snapshot,
            self.request,
            self.answer,
            self.get_config,
            self.ask_promotion,
            self.audit,
        ]
