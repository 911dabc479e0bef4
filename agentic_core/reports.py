"""Weekly digest: its input, the digest model, ISO-week arithmetic and the pure renderings.

No I/O here. `activities/reports/` fills a `WeeklyDigest` from the ledger and draws the chart;
`workflows/digest.py` (WeeklyDigestWorkflow) strings it together. The workflow's input has
exactly the JSON shape `{"week": "2026-W47" | null}` so Temporal Schedules and the `temporal`
CLI can start it; null means the ISO week that just ended.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from agentic_core.wording import counted

WEEKLY_DIGEST_WORKFLOW = "WeeklyDigestWorkflow"
TRUST_REVIEW_WORKFLOW = "TrustReviewWorkflow"  # owned by workflows/trust_review.py; referenced by name only
REPORT_ROUTE = "weekly"
CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
RUNBOOKS_LISTED = 25  # runbooks named in a digest; the total is always given
TOP_SOURCES = 5  # values per label in "top alert sources"
DECISION_KINDS: tuple[str, ...] = ("approved", "modified", "acknowledged", "ignored", "expired", "automatic")
# guardrail event kinds, in the order the digest names them (agentic_core.agents.GuardrailKind)
GUARDRAIL_KINDS: tuple[str, ...] = (
    "tool_refused",
    "protected_namespace",
    "untrusted_plan",
    "write_denied",
    "limit",
    "egress_refused",
)
DecisionKind = Literal["approved", "modified", "acknowledged", "ignored", "expired", "automatic"]

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


# --------------------------------------------------------------------------- ISO weeks


def parse_week(week: str) -> tuple[int, int]:
    """`"2026-W47"` → (2026, 47); ValueError with a clear message otherwise."""
    m = _WEEK_RE.match(week.strip())
    if not m:
        raise ValueError(f"bad week {week!r}: expected an ISO week like 2026-W47")
    year, num = int(m.group(1)), int(m.group(2))
    weeks_in_year = date(year, 12, 28).isocalendar().week  # Dec 28 is always in the year's last week
    if not 1 <= num <= weeks_in_year:
        raise ValueError(f"bad week {week!r}: {year} has weeks 01..{weeks_in_year:02d}")
    return year, num


def week_bounds(week: str) -> tuple[datetime, datetime]:
    """The week's [start, end) in UTC: Monday 00:00 to the next Monday 00:00."""
    year, num = parse_week(week)
    monday = date.fromisocalendar(year, num, 1)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    return start, start + timedelta(days=7)


def week_of(moment: datetime) -> str:
    """The ISO week `moment` (UTC) falls in."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    iso = moment.astimezone(UTC).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def previous_week(now: datetime) -> str:
    """The ISO week that ended last (the one before `now`'s week)."""
    return week_of(now - timedelta(days=7))


def shift_week(week: str, weeks: int) -> str:
    start, _ = week_bounds(week)
    return week_of(start + timedelta(weeks=weeks))


# --------------------------------------------------------------------------- contracts


class WeeklyDigestInput(BaseModel):
    """WeeklyDigestWorkflow's input: `{"week": "2026-W47" | null}` (null: the week that just ended)."""

    week: str | None = None

    @field_validator("week")
    @classmethod
    def _valid_week(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parse_week(v)
        return v.strip()


class DigestQuery(BaseModel):
    """What `reports.compute_digest` reads: one week, and how many weeks of automation share."""

    week: str
    trend_weeks: int = Field(default=8, ge=1, le=52)


class SourceCount(BaseModel):
    label: str  # alertname | namespace | job
    value: str
    count: int


class RunbookCreated(BaseModel):
    id: str
    title: str
    source: str = ""
    level: str = "manual"


class DayDecisions(BaseModel):
    day: date
    counts: dict[str, int] = Field(default_factory=dict)  # decision kind -> count

    def total(self) -> int:
        return sum(self.counts.values())


class WeekShare(BaseModel):
    """Decisions in one week and how many of them the platform took alone (`automatic`)."""

    week: str
    automatic: int = 0
    total: int = 0

    @property
    def share(self) -> float | None:
        return self.automatic / self.total if self.total else None


class WeeklyDigest(BaseModel):
    week: str
    start: datetime
    end: datetime
    generated_at: datetime

    alerts_processed: int = 0  # alert rows received in the week (re-sends of one alert count once)
    incidents_opened: int = 0
    decisions: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(DECISION_KINDS, 0))
    top_sources: list[SourceCount] = Field(default_factory=list)
    runbooks_created: list[RunbookCreated] = Field(default_factory=list)  # the first RUNBOOKS_LISTED
    runbooks_created_total: int = 0

    # Confidence: proposals made in the week, by where they came from.
    local_proposals: int = 0  # the local model answered (source "llm")
    local_confidence_avg: float | None = None
    fallback_proposals: int = 0  # the model could not help: the best runbook's plan
    cloud_escalations: int = 0  # proposals from the cloud model (source "cloud")
    # Items redacted from what was sent to the cloud (proposals' `redactions`): personal data
    # (email addresses, phone numbers) and secrets. None: a digest from before they were recorded.
    pii_detections: int | None = None
    secrets_redacted: int | None = None

    # Automation: decisions the platform took alone, and how their actions went.
    automatic_decisions: int = 0
    automated_actions: int = 0
    automated_succeeded: int = 0
    automated_failed: int = 0
    actions_total: int = 0  # every action that finished in the week (any decision)
    actions_succeeded: int = 0
    actions_failed: int = 0
    outcomes: dict[str, int] = Field(default_factory=lambda: {"success": 0, "failure": 0, "unknown": 0})

    # Guardrail events in the week, by kind (refusals, protected namespaces, plans made with untrusted
    # content sent to a human, limits hit). None: a digest from before they were recorded.
    guardrail_events: dict[str, int] | None = None

    daily: list[DayDecisions] = Field(default_factory=list)  # the week's 7 days, Monday first
    trend: list[WeekShare] = Field(default_factory=list)  # oldest first, ending with this week

    @property
    def total_decisions(self) -> int:
        return sum(self.decisions.values())

    @property
    def total_proposals(self) -> int:
        return self.local_proposals + self.fallback_proposals + self.cloud_escalations

    @property
    def cloud_share(self) -> float | None:
        return self.cloud_escalations / self.total_proposals if self.total_proposals else None

    @property
    def guardrail_total(self) -> int | None:
        return sum(self.guardrail_events.values()) if self.guardrail_events is not None else None

    @property
    def automated_success_rate(self) -> float | None:
        done = self.automated_succeeded + self.automated_failed
        return self.automated_succeeded / done if done else None


class DigestFiles(BaseModel):
    png: str
    markdown: str
    json_path: str


class WeeklyDigestResult(BaseModel):
    week: str
    summary: str
    files: DigestFiles
    message_ref: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)


# --------------------------------------------------------------------------- rendering


def safe(text: str) -> str:
    """Plain text that is also safe inside Telegram HTML: no `<`, `>` or `&` from label values."""
    return text.replace("&", "+").replace("<", "‹").replace(">", "›").strip()


def _tracked(value: int | None) -> str:
    """A redaction figure; None comes from a digest made before redactions were recorded."""
    return str(value) if value is not None else "not tracked"


def _guardrails(d: WeeklyDigest) -> str:
    """`3 (tool_refused 2, untrusted_plan 1)`, `0`, or `not tracked` (a digest from before)."""
    if d.guardrail_events is None:
        return "not tracked"
    parts = [f"{k} {d.guardrail_events[k]}" for k in _guardrail_order(d.guardrail_events) if d.guardrail_events[k]]
    return f"{d.guardrail_total}" + (f" ({', '.join(parts)})" if parts else "")


def _guardrail_order(counts: dict[str, int]) -> list[str]:
    return [k for k in GUARDRAIL_KINDS if k in counts] + sorted(k for k in counts if k not in GUARDRAIL_KINDS)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def _rate(value: float | None) -> str:
    return f"{100 * value:.0f}%" if value is not None else "n/a"


def _period(d: WeeklyDigest) -> str:
    last = (d.end - timedelta(days=1)).date()
    return f"{d.start.date():%d %b} – {last:%d %b %Y}"


def render_summary(d: WeeklyDigest, *, limit: int = CAPTION_LIMIT) -> str:
    """The digest's caption: the headline numbers, under `limit` characters."""
    dec = d.decisions
    lines = [
        f"📊 Weekly digest {d.week} ({_period(d)})",
        f"Alerts processed: {d.alerts_processed} in {counted(d.incidents_opened, 'incident')}",
        f"Decisions: {d.total_decisions} — approved {dec.get('approved', 0)}, modified {dec.get('modified', 0)},"
        + (f" acknowledged {dec['acknowledged']}," if dec.get("acknowledged") else "")
        + f" ignored {dec.get('ignored', 0)}, expired {dec.get('expired', 0)}, automatic {dec.get('automatic', 0)}",
    ]
    if d.top_sources:
        tops = ", ".join(f"{safe(s.value)} ({s.count})" for s in d.top_sources if s.label == "alertname")
        if tops:
            lines.append(f"Top alerts: {tops}")
    lines.append(f"Runbooks created: {d.runbooks_created_total}")
    avg = f"{d.local_confidence_avg:.2f}" if d.local_confidence_avg is not None else "n/a"
    lines.append(
        f"Confidence: local avg {avg} ({counted(d.local_proposals, 'proposal')},"
        f" {counted(d.fallback_proposals, 'fallback')});"
        f" cloud escalations {d.cloud_escalations} ({_rate(d.cloud_share) if d.total_proposals else '0%'});"
        f" PII detections {_tracked(d.pii_detections)}, secrets redacted {_tracked(d.secrets_redacted)}"
    )
    lines.append(
        f"Automated: {counted(d.automatic_decisions, 'run')}, {counted(d.automated_actions, 'action')},"
        f" success {_rate(d.automated_success_rate)}"
    )
    lines.append(f"Guardrail events: {_guardrails(d)}")
    text = "\n".join(lines)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def render_text(d: WeeklyDigest) -> str:
    """The full digest as plain text with sections (no markup; label values made HTML-safe)."""
    out: list[str] = [f"Weekly digest {d.week} ({_period(d)})", ""]
    dec = d.decisions
    total = d.total_decisions
    out += [
        "Alerts",
        f"  alerts processed: {d.alerts_processed}",
        f"  incidents opened: {d.incidents_opened}",
        "",
        "Decisions",
    ]
    for kind in DECISION_KINDS:
        out.append(f"  {kind}: {dec.get(kind, 0)} ({_pct(dec.get(kind, 0), total)})")
    out.append(f"  total: {total}")
    out += ["", "Top alert sources"]
    if not d.top_sources:
        out.append("  none")
    for label in ("alertname", "namespace", "job"):
        items = [s for s in d.top_sources if s.label == label]
        if items:
            out.append(f"  {label}: " + ", ".join(f"{safe(s.value)} ({s.count})" for s in items))
    out += ["", f"Runbooks created: {d.runbooks_created_total}"]
    for rb in d.runbooks_created:
        src = f", from {safe(rb.source)}" if rb.source else ""
        out.append(f"  {safe(rb.id)}: {safe(rb.title)} ({rb.level}{src})")
    if d.runbooks_created_total > len(d.runbooks_created):
        out.append(f"  … and {d.runbooks_created_total - len(d.runbooks_created)} more")
    avg = f"{d.local_confidence_avg:.2f}" if d.local_confidence_avg is not None else "n/a"
    out += [
        "",
        "Confidence",
        f"  local inference: {counted(d.local_proposals, 'proposal')}, average confidence {avg}",
        f"  runbook fallbacks (the model could not help): {d.fallback_proposals}",
        f"  cloud escalations: {d.cloud_escalations} ({_pct(d.cloud_escalations, d.total_proposals)}"
        f" of {counted(d.total_proposals, 'proposal')})",
        f"  PII detections (personal data redacted before cloud calls): {_tracked(d.pii_detections)}",
        f"  secrets redacted before cloud calls: {_tracked(d.secrets_redacted)}",
        "",
        "Automation",
        f"  automatic runs (standard runbooks): {d.automatic_decisions}",
        f"  their actions: {d.automated_actions} — {d.automated_succeeded} succeeded, {d.automated_failed} failed"
        f" (success {_rate(d.automated_success_rate)})",
        f"  all actions this week: {d.actions_total} — {d.actions_succeeded} succeeded, {d.actions_failed} failed",
        f"  verified outcomes: {d.outcomes.get('success', 0)} success, {d.outcomes.get('failure', 0)} failure,"
        f" {d.outcomes.get('unknown', 0)} unknown",
    ]
    events = d.guardrail_total
    out += ["", "Guardrails", f"  events: {events if events is not None else 'not tracked'}"]
    if d.guardrail_events is not None:
        for kind in _guardrail_order(d.guardrail_events):
            out.append(f"  {kind}: {d.guardrail_events[kind]}")
    if d.trend:
        out += ["", "Automation share by week"]
        for w in d.trend:
            out.append(f"  {w.week}: {w.automatic}/{w.total} ({_rate(w.share)})")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return safe(text).replace("|", "/")


def render_markdown(d: WeeklyDigest, chart_name: str | None = None) -> str:
    """The digest as a Markdown document (saved beside the chart)."""
    dec = d.decisions
    total = d.total_decisions
    out = [f"# Weekly digest {d.week}", "", f"{_period(d)} (UTC). Generated {d.generated_at:%Y-%m-%d %H:%M} UTC.", ""]
    if chart_name:
        out += [f"![decisions and automation share]({chart_name})", ""]
    out += [
        "## Alerts",
        "",
        f"- Alerts processed: **{d.alerts_processed}**",
        f"- Incidents opened: **{d.incidents_opened}**",
        "",
        "## Decisions",
        "",
        "| decision | count | share |",
        "|---|---:|---:|",
    ]
    out += [f"| {k} | {dec.get(k, 0)} | {_pct(dec.get(k, 0), total)} |" for k in DECISION_KINDS]
    out += [f"| **total** | **{total}** | |", "", "## Top alert sources", ""]
    if d.top_sources:
        out += ["| label | value | alerts |", "|---|---|---:|"]
        out += [f"| {s.label} | {_md(s.value)} | {s.count} |" for s in d.top_sources]
    else:
        out.append("No alerts this week.")
    out += ["", f"## Runbooks created ({d.runbooks_created_total})", ""]
    out += [
        f"- `{_md(rb.id)}` {_md(rb.title)} ({rb.level}, {_md(rb.source) or 'no source'})" for rb in d.runbooks_created
    ]
    if d.runbooks_created_total > len(d.runbooks_created):
        out.append(f"- … and {d.runbooks_created_total - len(d.runbooks_created)} more")
    if not d.runbooks_created_total:
        out.append("None.")
    avg = f"{d.local_confidence_avg:.2f}" if d.local_confidence_avg is not None else "n/a"
    out += [
        "",
        "## Confidence",
        "",
        f"- Local inference: {counted(d.local_proposals, 'proposal')}, average confidence {avg}",
        f"- Runbook fallbacks: {d.fallback_proposals}",
        f"- Cloud escalations: {d.cloud_escalations} ({_pct(d.cloud_escalations, d.total_proposals)} of"
        f" {counted(d.total_proposals, 'proposal')})",
        f"- PII detections (personal data redacted before cloud calls): {_tracked(d.pii_detections)}",
        f"- Secrets redacted before cloud calls: {_tracked(d.secrets_redacted)}",
        "",
        "## Automation",
        "",
        f"- Automatic runs (standard runbooks): {d.automatic_decisions}",
        f"- Their actions: {d.automated_actions} ({d.automated_succeeded} succeeded, {d.automated_failed} failed;"
        f" success {_rate(d.automated_success_rate)})",
        f"- All actions: {d.actions_total} ({d.actions_succeeded} succeeded, {d.actions_failed} failed)",
        f"- Verified outcomes: {d.outcomes.get('success', 0)} success, {d.outcomes.get('failure', 0)} failure,"
        f" {d.outcomes.get('unknown', 0)} unknown",
    ]
    out += ["", "## Guardrails", ""]
    if d.guardrail_events is None:
        out.append("Guardrail events: not tracked.")
    else:
        out += ["| kind | events |", "|---|---:|"]
        out += [f"| {k} | {d.guardrail_events[k]} |" for k in _guardrail_order(d.guardrail_events)]
        out.append(f"| **total** | **{d.guardrail_total}** |")
    if d.trend:
        out += [
            "",
            "## Automation share by week",
            "",
            "| week | automatic | decisions | share |",
            "|---|---:|---:|---:|",
        ]
        out += [f"| {w.week} | {w.automatic} | {w.total} | {_rate(w.share)} |" for w in d.trend]
    return "\n".join(out) + "\n"
