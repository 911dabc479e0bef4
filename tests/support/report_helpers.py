"""A week of ledger rows with known counts, for the digest tests.

`seed_week(ledger, week)` writes incidents, alerts, proposals, decisions, actions, outcomes,
runbooks and guardrail events inside `week` (plus a few just outside it, which must not count) with explicit
timestamps, and returns the numbers a correct digest of `week` reports.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from activities.ledger.repository import Ledger
from agentic_core.agents import GuardrailEvent
from agentic_core.models import AutomationLevel, Runbook
from agentic_core.reports import shift_week, week_bounds

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Expected:
    week: str
    alerts: int = 5
    incidents: int = 3
    decisions: dict[str, int] = field(
        default_factory=lambda: {
            "approved": 2,
            "modified": 1,
            "acknowledged": 1,
            "ignored": 1,
            "expired": 1,
            "automatic": 2,
        }
    )
    alertnames: list[tuple[str, int]] = field(
        default_factory=lambda: [("KubePodCrashLooping", 3), ("NodeDiskPressure", 1), ("a<b&c", 1)]
    )
    namespaces: list[tuple[str, int]] = field(default_factory=lambda: [("shop", 2), ("web", 1)])
    jobs: list[tuple[str, int]] = field(default_factory=lambda: [("kube-state-metrics", 3), ("node-exporter", 1)])
    runbooks_created: list[str] = field(default_factory=lambda: ["seed/new-one", "seed/new-two"])
    local_proposals: int = 2
    local_avg: float = 0.7
    fallback_proposals: int = 1
    cloud_escalations: int = 1
    pii_detections: int = 3  # redacted before cloud calls: 1 email + 1 phone, and 1 email (cloud failed)
    secrets_redacted: int = 2
    automated_actions: int = 2
    automated_succeeded: int = 1
    automated_failed: int = 1
    actions_total: int = 3
    actions_succeeded: int = 2
    actions_failed: int = 1
    outcomes: dict[str, int] = field(default_factory=lambda: {"success": 2, "failure": 1, "unknown": 0})
    # per day (0 = Monday): kind -> count
    daily: dict[int, dict[str, int]] = field(
        default_factory=lambda: {
            0: {"approved": 1},
            1: {"approved": 1},
            2: {"ignored": 1, "modified": 1},
            3: {"acknowledged": 1},
            4: {"expired": 1},
            5: {"automatic": 2},
        }
    )
    previous_week_share: tuple[int, int] = (1, 2)  # automatic, total in the week before
    guardrail_events: dict[str, int] = field(
        default_factory=lambda: {
            "tool_refused": 3,
            "protected_namespace": 1,
            "untrusted_plan": 2,
            "write_denied": 0,
            "limit": 1,
            "egress_refused": 0,
        }
    )


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def seed_week(ledger: Ledger, week: str) -> Expected:
    start, end = week_bounds(week)
    prev, _ = week_bounds(shift_week(week, -1))

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return start + timedelta(days=day, hours=hour, minutes=minute)

    pool = ledger.pool
    async with pool.acquire() as c:
        for iid, opened in (("inc-a", at(0, 9)), ("inc-b", at(2, 10)), ("inc-c", at(5, 3)), ("inc-old", prev)):
            await c.execute(
                "INSERT INTO incidents (id, status, opened_at, updated_at) VALUES ($1, 'resolved', $2, $2)",
                iid,
                opened,
            )
        alerts = [
            ("fa1", {"alertname": "KubePodCrashLooping", "namespace": "shop", "job": "kube-state-metrics"}, at(0, 9)),
            ("fa2", {"alertname": "KubePodCrashLooping", "namespace": "shop", "job": "kube-state-metrics"}, at(0, 9)),
            ("fb1", {"alertname": "NodeDiskPressure", "job": "node-exporter", "namespace": ""}, at(2, 10)),
            ("fc1", {"alertname": "KubePodCrashLooping", "namespace": "web", "job": "kube-state-metrics"}, at(5, 3)),
            ("fd1", {"alertname": "a<b&c"}, at(6, 23, 59)),
            ("fold", {"alertname": "OldAlert", "namespace": "shop"}, prev + timedelta(hours=1)),
            ("fnext", {"alertname": "NextAlert"}, end),  # the next week's first instant: not this week
        ]
        for fp, labels, t in alerts:
            await c.execute(
                """INSERT INTO alerts (fingerprint, labels, starts_at, status, received_at, incident_id)
                   VALUES ($1, $2, $3, 'firing', $3, NULL)""",
                fp,
                labels,
                t,
            )
        proposals: list[tuple[str, str, float, bool, datetime, dict[str, int]]] = [
            ("inc-a", "llm", 0.8, False, at(0, 9, 1), {}),
            ("inc-b", "llm", 0.6, False, at(2, 10, 1), {}),
            ("inc-c", "fallback", 0.5, True, at(5, 3, 1), {"email": 1}),  # the cloud was asked, and failed
            ("inc-a", "cloud", 0.9, False, at(0, 9, 2), {"secret": 2, "email": 1, "phone": 1}),
            ("inc-old", "llm", 0.1, False, prev + timedelta(hours=2), {"secret": 7, "email": 5}),  # last week
        ]
        for iid, source, conf, fb, t, redactions in proposals:
            await c.execute(
                """INSERT INTO proposals (incident_id, source, confidence, fallback, created_at, redactions)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                iid,
                source,
                conf,
                fb,
                t,
                redactions,
            )
        run_start = at(5, 3)
        decisions = [
            ("inc-a", "approved", "inc-a-approval-1", at(0, 9, 5)),
            ("inc-a", "approved", "inc-a-approval-2", at(1, 9, 5)),
            ("inc-b", "ignored", "inc-b-approval-1", at(2, 10, 5)),
            ("inc-b", "modified", "inc-b-approval-2", at(2, 11, 5)),
            ("inc-b", "expired", "inc-b-approval-3", at(4, 11, 5)),
            ("inc-c", "acknowledged", "inc-c-approval-1", at(3, 8, 5)),  # nothing to run: a human saw it
            ("inc-c", "automatic", f"inc-c-automatic-{_ms(run_start)}", at(5, 3, 10)),
            ("inc-b", "automatic", f"inc-b-automatic-{_ms(at(5, 4))}", at(5, 4, 10)),
            ("inc-old", "approved", "inc-old-approval-1", prev + timedelta(hours=3)),
            ("inc-old", "automatic", f"inc-old-automatic-{_ms(prev)}", prev + timedelta(hours=4)),
            ("inc-a", "approved", "inc-a-approval-next", end + timedelta(minutes=1)),
        ]
        for iid, choice, approval, t in decisions:
            await c.execute(
                "INSERT INTO decisions (incident_id, choice, approval_id, decided_at) VALUES ($1, $2, $3, $4)",
                iid,
                choice,
                approval,
                t,
            )
        actions = [
            # the automatic run of inc-c: one succeeded, one failed
            ("inc-c", 0, "k-c-0", "succeeded", at(5, 3, 2), at(5, 3, 3)),
            ("inc-c", 1, "k-c-1", "failed", at(5, 3, 4), at(5, 3, 5)),
            # an approved action of inc-a
            ("inc-a", 0, "k-a-0", "succeeded", at(0, 9, 6), at(0, 9, 7)),
            # inc-c's earlier run in the previous week: not part of this week's automatic run
            ("inc-c", 0, "k-c-old", "succeeded", prev + timedelta(hours=5), prev + timedelta(hours=5, minutes=1)),
            # the evidence inc-c's automatic run looked at first (investigate stage): not actions
            ("inc-c", 0, f"inc-c/evidence/{_ms(run_start)}/0", "succeeded", at(5, 3, 1), at(5, 3, 1)),
            ("inc-c", 1, f"inc-c/evidence/{_ms(run_start)}/1", "failed", at(5, 3, 1), at(5, 3, 2)),
        ]
        for iid, idx, key, status, t0, t1 in actions:
            await c.execute(
                """INSERT INTO actions (incident_id, action_index, tool, idempotency_key, status, started_at,
                                        finished_at) VALUES ($1, $2, 'rollout_restart', $3, $4, $5, $6)""",
                iid,
                idx,
                key,
                status,
                t0,
                t1,
            )
        for iid, result, t in (
            ("inc-a", "success", at(0, 9, 20)),
            ("inc-c", "failure", at(5, 3, 20)),
            ("inc-b", "success", at(4, 12)),
            ("inc-old", "failure", prev + timedelta(hours=6)),
        ):
            await c.execute(
                "INSERT INTO outcomes (incident_id, result, verified_at) VALUES ($1, $2, $3)", iid, result, t
            )
    for rid, created in (("seed/new-one", at(1, 8)), ("seed/new-two", at(3, 8)), ("seed/old", prev)):
        await ledger.upsert_runbook(
            Runbook(
                id=rid, title=f"Runbook {rid}", body="b", source="approval", automation_level=AutomationLevel.MANUAL
            )
        )
        async with pool.acquire() as c:
            await c.execute("UPDATE runbooks SET created_at = $2 WHERE id = $1", rid, created)
    guardrails = [
        ("tool_refused", at(0, 9, 1)),
        ("tool_refused", at(2, 10, 1)),
        ("tool_refused", at(6, 23, 59)),
        ("protected_namespace", at(0, 9, 2)),
        ("untrusted_plan", at(0, 9, 3)),
        ("untrusted_plan", at(2, 10, 2)),
        ("limit", at(4, 1)),
        ("tool_refused", prev + timedelta(hours=1)),  # last week
        ("limit", end),  # the next week's first instant
    ]
    for n, (kind, t) in enumerate(guardrails):
        await ledger.record_guardrail_event(
            GuardrailEvent(key=f"seed/{week}/{n}", kind=kind, agent="incident", subject="inc-a", at=t)  # type: ignore[arg-type]
        )
    return Expected(week=week)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR, after checking the signature."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_png(data: bytes) -> tuple[int, int]:
    """A valid, sensible PNG: signature, Pillow decodes it fully, a chart-like size."""
    from PIL import Image

    w, h = png_size(data)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        img.load()  # decodes every byte: a truncated file fails here
        assert img.size == (w, h)
        # not blank: a chart has many colours
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 20
    assert 600 <= w <= 3000 and 300 <= h <= 2000, (w, h)
    return w, h
