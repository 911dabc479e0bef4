"""Earned autonomy's contracts: the promotion and trust-review workflows and the trust activities.

No I/O here. The policy itself is `agentic_core.trust`.

Names other processes rely on:

- workflow type `RunbookPromotionWorkflow`, id `promotion_workflow_id(runbook_id, to_level)`,
  input `PromotionInput`, result `PromotionResult`; its question is a child
  `ApprovalWorkflow` with id `<promotion id>/approval` answered with the usual `decide` update;
- workflow type `TrustReviewWorkflow`, input `TrustReviewInput` = `{"quarter": "2026-Q3" | null}`
  (null: the quarter that just ended), result `TrustReviewResult`; each proposal is a child
  `ApprovalWorkflow` with id `trust-review/<quarter>/<runbook id>/approval`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from agentic_core.models import AutomationLevel
from agentic_core.trust import ReviewProposal, TrustRecord

PROMOTION_WORKFLOW = "RunbookPromotionWorkflow"
TRUST_REVIEW_WORKFLOW = "TrustReviewWorkflow"
LEVEL_ROUTE = "platform"  # level-change questions and announcements
REPORT_ROUTE = "weekly"  # the quarterly review's report

_QUARTER_RE = re.compile(r"^(\d{4})-Q([1-4])$")


def promotion_workflow_id(runbook_id: str, to_level: AutomationLevel) -> str:
    """One promotion question per runbook and target level at a time (idempotent start)."""
    return f"runbook-promotion/{runbook_id}/{to_level.value}"


def quarter_of(moment: datetime) -> str:
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def previous_quarter(moment: datetime) -> str:
    """The quarter that ended last before `moment`."""
    year, q = moment.year, (moment.month - 1) // 3 + 1
    return f"{year - 1}-Q4" if q == 1 else f"{year}-Q{q - 1}"


def quarter_bounds(quarter: str) -> tuple[datetime, datetime]:
    """[start, end) of a quarter such as "2026-Q3", in UTC."""
    m = _QUARTER_RE.match(quarter)
    if m is None:
        raise ValueError(f"not a quarter: {quarter!r} (expected YYYY-Qn, e.g. 2026-Q3)")
    year, q = int(m.group(1)), int(m.group(2))
    start = datetime(year, 3 * (q - 1) + 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    return start, end


class TrustConfig(BaseModel):
    """Who answers level-change questions and how long they wait (from the worker's settings)."""

    approvers: list[str] = Field(default_factory=list)
    route: str = LEVEL_ROUTE
    remind_after_s: int = 15 * 60
    escalate_after_s: int = 60 * 60
    expire_after_s: int = 24 * 60 * 60


class LevelChangeInfo(BaseModel):
    runbook_id: str
    from_level: AutomationLevel
    to_level: AutomationLevel
    reason: str
    changed_by: str


class EvaluateTrustInput(BaseModel):
    """After an incident's record: what ran under a runbook and how it ended."""

    runbook_id: str
    incident_id: str | None = None
    ran_at: AutomationLevel | None = None  # the level the runbook's own plan ran at; None: nothing ran
    success: bool | None = None  # None: no evidence (nothing ran, or the outcome is unknown)


class EvaluateTrustResult(BaseModel):
    runbook_id: str
    title: str = ""
    level: AutomationLevel = AutomationLevel.MANUAL  # after any change made here
    record: TrustRecord = Field(default_factory=TrustRecord)
    demoted: LevelChangeInfo | None = None
    promoted: LevelChangeInfo | None = None  # an automatic one (manual → prompted)
    ask_promotion: AutomationLevel | None = None  # a human must be asked for this level


class SetLevelInput(BaseModel):
    runbook_id: str
    to_level: AutomationLevel
    reason: str
    changed_by: str
    expected_from: AutomationLevel | None = None


class SetLevelResult(BaseModel):
    changed: bool
    level: AutomationLevel
    detail: str = ""


class TrustSnapshotInput(BaseModel):
    runbook_id: str


class TrustSnapshot(BaseModel):
    runbook_id: str
    exists: bool = True
    title: str = ""
    level: AutomationLevel = AutomationLevel.MANUAL
    record: TrustRecord = Field(default_factory=TrustRecord)


class PromotionRequestInput(BaseModel):
    request_key: str
    workflow_id: str
    runbook_id: str
    from_level: AutomationLevel
    to_level: AutomationLevel
    executions: int = 0


class PromotionAnswerInput(BaseModel):
    request_key: str
    status: Literal["approved", "refused", "expired", "stale"]
    decided_by: str | None = None
    reason: str = ""


class PromotionInput(BaseModel):
    runbook_id: str
    from_level: AutomationLevel
    to_level: AutomationLevel
    reason: str = ""
    config: TrustConfig | None = None  # None: ask the worker (`trust.config`)


class StartPromotionResult(BaseModel):
    workflow_id: str
    started: bool  # False: a question for this runbook and level is already open


class PromotionResult(BaseModel):
    runbook_id: str
    outcome: Literal["promoted", "refused", "expired", "stale"]
    level: AutomationLevel
    by: str | None = None
    comment: str = ""


class TrustReviewInput(BaseModel):
    """Exactly `{"quarter": "YYYY-Qn" | null}`; null: the quarter that just ended."""

    quarter: str | None = None

    @field_validator("quarter")
    @classmethod
    def _quarter(cls, value: str | None) -> str | None:
        if value is not None:
            quarter_bounds(value)
        return value


class AuditInput(BaseModel):
    quarter: str


class AuditedRunbook(BaseModel):
    runbook_id: str
    title: str = ""
    level: AutomationLevel
    record: TrustRecord
    quarter_successes: int = 0
    quarter_failures: int = 0
    quarter_automatic: int = 0


class AuditResult(BaseModel):
    quarter: str
    automated_actions: int = 0
    automated_failures: int = 0
    automated_unknown: int = 0
    runbooks: list[AuditedRunbook] = Field(default_factory=list)
    proposals: list[ReviewProposal] = Field(default_factory=list)


class ProposalOutcome(BaseModel):
    proposal: ReviewProposal
    answer: Literal["applied", "refused", "expired", "stale"]
    by: str | None = None


class TrustReviewResult(BaseModel):
    quarter: str
    automated_actions: int = 0
    automated_failures: int = 0
    automated_unknown: int = 0
    runbooks: int = 0
    outcomes: list[ProposalOutcome] = Field(default_factory=list)
    report: str = ""
