"""Earned autonomy: how a runbook's trust record moves its automation level. Pure, no I/O.

What a level means at run time is `policy.decide` (level × approval mode × confidence):
`manual` asks, `prompted` asks with a recommendation to approve, `standard` runs first and
tells after (with the outcome) — in `NORMAL` mode only, and only when the plan's confidence
reaches the threshold; `VERBOSE` (the go-live default) asks for everything whatever the level.
`policy.plan_level` limits a runbook's level to the runbook's own plan. This module decides
how a runbook *earns* and *loses* its level:

- **The record** (`TrustRecord`): approved executions whose outcome is known (successes +
  failures; "automatic" runs of a standard runbook count too), approvals, ignores,
  modifications. An execution whose outcome is unknown is no evidence either way and is not
  counted (see `IncidentActivities.record`).
- **The smoothed estimate** (`smoothed_success`): the lower bound of the Wilson score
  interval for the success rate, one-sided at `Z_STANDARD` = 1.645 (95 %). It reads "we are
  95 % sure the true success rate is at least this". A short lucky streak cannot promote:
  with no failure at all the bound is n / (n + z²), which passes 0.95 only from n = 52.
  A failure costs much more: with 1 failure it takes 87 executions, with 2, 118. The raw rate s/n
  would promote a runbook after 5 lucky runs; a posterior mean under a uniform prior after
  19. Measured in `benchmarks/autonomy_sim.py` against the issue's targets.
- **manual → prompted: automatic, announced** (`promotion_target`): at least
  `PROMPTED_MIN_EXECUTIONS` (3) executions and an estimate of at least `PROMPTED_MIN_RATE`
  (0.5). Prompted still asks a human every time (it only adds a recommendation), so no human
  question is needed to get there; the change is announced (a NOTICE).
  A refused (or expired) question is put again only after `REASK_AFTER_EXECUTIONS` (10) more
  executions (`may_ask_again`).
- **prompted → standard: a human is asked** (`RunbookPromotionWorkflow`): at least
  `STANDARD_MIN_EXECUTIONS` (5) approved executions and an estimate above
  `STANDARD_MIN_RATE` (0.95). Only on the human's approval does the runbook run alone.
- **Demotion** (`demotion_target`): any failed execution of a runbook that ran at `standard`
  demotes it at once to `prompted` (one step: a human is asked again, with a recommendation),
  inside the incident where it failed, without a question; the change is announced. The
  failure stays in the record, so the estimate has to climb back over many more runs before
  the next promotion.
- **The quarterly review** (`review_proposal`): a standard runbook that failed in the quarter,
  or whose estimate is no longer above 0.95, is proposed for demotion to prompted; a prompted
  one whose estimate fell under `PROMPTED_MIN_RATE` (with the minimum evidence) for demotion to
  manual; an eligible one for promotion. Each proposal goes to a human.

Every function is total: negative or inconsistent counters are clamped, never raised.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, Field

from agentic_core.models import AutomationLevel

Z_STANDARD = 1.645  # one-sided 95 % Wilson lower bound
PROMPTED_MIN_EXECUTIONS = 3
PROMPTED_MIN_RATE = 0.5
STANDARD_MIN_EXECUTIONS = 5
STANDARD_MIN_RATE = 0.95
REASK_AFTER_EXECUTIONS = 10  # a refused or expired promotion is asked again after this many more runs

_ORDER = [AutomationLevel.MANUAL, AutomationLevel.PROMPTED, AutomationLevel.STANDARD]


class TrustRecord(BaseModel):
    """A runbook's trust record (the ledger's `runbook_stats`, the counters this policy reads)."""

    executions: int = 0
    successes: int = 0
    failures: int = 0
    approvals: int = 0
    ignores: int = 0
    modifications: int = 0


class RunbookCounters(TrustRecord):
    """The whole trust record of a runbook as the ledger keeps it (`runbook_stats`): the
    policy's counters plus expirations, automatic decisions and when it last ran."""

    expirations: int = 0
    automatic_decisions: int = 0
    # runs of its plan that the platform could not carry out (a tool server unreachable or timed
    # out): not executions, never failures; the policy does not read them
    infra_errors: int = 0
    last_executed_at: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None


class TrustPolicy(BaseModel):
    """The thresholds, in one object so a benchmark or a test can vary them."""

    z: float = Field(default=Z_STANDARD, gt=0)
    prompted_min_executions: int = Field(default=PROMPTED_MIN_EXECUTIONS, ge=1)
    prompted_min_rate: float = Field(default=PROMPTED_MIN_RATE, ge=0, le=1)
    standard_min_executions: int = Field(default=STANDARD_MIN_EXECUTIONS, ge=5)
    standard_min_rate: float = Field(default=STANDARD_MIN_RATE, ge=0.95, lt=1)


DEFAULT_POLICY = TrustPolicy()


def rank(level: AutomationLevel) -> int:
    return _ORDER.index(level)


def _counts(record: TrustRecord) -> tuple[int, int]:
    """(successes, executions) with the evidence made consistent: executions ≥ successes + failures."""
    s = max(record.successes, 0)
    f = max(record.failures, 0)
    return s, max(record.executions, s + f, 0)


def smoothed_success(successes: int, executions: int, z: float = Z_STANDARD) -> float:
    """Wilson score lower bound of the success rate; 0.0 without evidence.

    `successes` is clamped into [0, executions]. Increases with successes for a fixed number of
    executions, and is always below the raw rate s/n (except at 0).
    """
    n = max(executions, 0)
    if n == 0:
        return 0.0
    s = min(max(successes, 0), n)
    if s == 0:
        return 0.0  # exactly (the formula's centre - margin leaves float noise such as 1.7e-18)
    p = s / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def estimate(record: TrustRecord, policy: TrustPolicy = DEFAULT_POLICY) -> float:
    s, n = _counts(record)
    return smoothed_success(s, n, policy.z)


def eligible_for(level: AutomationLevel, record: TrustRecord, policy: TrustPolicy = DEFAULT_POLICY) -> bool:
    """Does the record support `level`? (manual: always)."""
    s, n = _counts(record)
    rate = smoothed_success(s, n, policy.z)
    if level == AutomationLevel.STANDARD:
        return n >= policy.standard_min_executions and rate > policy.standard_min_rate
    if level == AutomationLevel.PROMPTED:
        return n >= policy.prompted_min_executions and rate >= policy.prompted_min_rate
    return True


def earned_level(record: TrustRecord, policy: TrustPolicy = DEFAULT_POLICY) -> AutomationLevel:
    """The highest level the record supports."""
    for level in reversed(_ORDER):
        if eligible_for(level, record, policy):
            return level
    return AutomationLevel.MANUAL  # pragma: no cover (manual is always eligible)


def promotion_target(
    level: AutomationLevel, record: TrustRecord, policy: TrustPolicy = DEFAULT_POLICY
) -> AutomationLevel | None:
    """The next level up when the record supports it, else None. One step at a time:
    manual → prompted (automatic, announced), prompted → standard (a human is asked)."""
    if level == AutomationLevel.STANDARD:
        return None
    nxt = _ORDER[rank(level) + 1]
    return nxt if eligible_for(nxt, record, policy) else None


def needs_approval(target: AutomationLevel) -> bool:
    """Only `standard` (running without asking) needs a human's yes."""
    return target == AutomationLevel.STANDARD


def may_ask_again(asked_at_executions: int | None, executions: int) -> bool:
    """A promotion question that was refused (or expired) at `asked_at_executions` is not put
    again before `REASK_AFTER_EXECUTIONS` more executions; None: never asked."""
    return asked_at_executions is None or executions >= asked_at_executions + REASK_AFTER_EXECUTIONS


def demotion_target(ran_at: AutomationLevel, success: bool) -> AutomationLevel | None:
    """Any failure of a plan that ran at `standard` demotes its runbook to `prompted` at once."""
    if ran_at == AutomationLevel.STANDARD and not success:
        return AutomationLevel.PROMPTED
    return None


class ReviewProposal(BaseModel):
    runbook_id: str
    from_level: AutomationLevel
    to_level: AutomationLevel
    reason: str

    @property
    def promotion(self) -> bool:
        return rank(self.to_level) > rank(self.from_level)


def review_proposal(
    runbook_id: str,
    level: AutomationLevel,
    record: TrustRecord,
    quarter_failures: int = 0,
    policy: TrustPolicy = DEFAULT_POLICY,
) -> ReviewProposal | None:
    """The quarterly review's proposal for one runbook, or None to leave it where it is.

    Demotions first: a standard runbook that failed in the quarter or whose estimate no longer
    supports standard goes to prompted; a prompted one that no longer supports prompted goes
    to manual. Otherwise a promotion when the record supports the next level.
    """
    est = estimate(record, policy)
    s, n = _counts(record)
    summary = f"{s}/{n} successes, estimate {est:.3f}"
    if level == AutomationLevel.STANDARD:
        if quarter_failures > 0:
            return ReviewProposal(
                runbook_id=runbook_id,
                from_level=level,
                to_level=AutomationLevel.PROMPTED,
                reason=f"{quarter_failures} failure(s) this quarter; {summary}",
            )
        if not eligible_for(AutomationLevel.STANDARD, record, policy):
            return ReviewProposal(
                runbook_id=runbook_id,
                from_level=level,
                to_level=AutomationLevel.PROMPTED,
                reason=f"the record no longer supports standard ({summary}, needs > {policy.standard_min_rate})",
            )
        return None
    if (
        level == AutomationLevel.PROMPTED
        and n >= policy.prompted_min_executions
        and not eligible_for(AutomationLevel.PROMPTED, record, policy)
    ):
        return ReviewProposal(
            runbook_id=runbook_id,
            from_level=level,
            to_level=AutomationLevel.MANUAL,
            reason=f"unreliable: {summary}, under {policy.prompted_min_rate}",
        )
    target = promotion_target(level, record, policy)
    if target is not None:
        return ReviewProposal(runbook_id=runbook_id, from_level=level, to_level=target, reason=f"strong: {summary}")
    return None


def record_text(record: TrustRecord, policy: TrustPolicy = DEFAULT_POLICY) -> str:
    """One line for questions and announcements."""
    s, n = _counts(record)
    return (
        f"{s}/{n} successful executions, {max(record.failures, 0)} failed; approvals {record.approvals},"
        f" ignores {record.ignores}, modifications {record.modifications};"
        f" smoothed success {estimate(record, policy):.3f}"
    )
