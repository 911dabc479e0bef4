"""`agentic incidents show` prints a GitOps change's diff as it is (an approver on the CLI sees what
the plan commits, as Telegram and the console show it; before, the CLI said "the diff is shown
with this message" and showed none)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic_core.evidence import EvidenceItem
from agentic_core.incident import Category, IncidentState, IncidentStatus, Severity, StageRecord
from agentic_core.models import ToolCall

DIFF = (
    "diff --git a/apps/media/radarr/values.yaml b/apps/media/radarr/values.yaml\n"
    "--- a/apps/media/radarr/values.yaml\n+++ b/apps/media/radarr/values.yaml\n@@ -4 +4 @@\n"
    "-    memory: 1Gi  # [raised] in March\n+    memory: 2Gi  # [raised] in March\n"
)


def test_incidents_show_prints_the_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import incident_client
    from workers.cli import app

    st = IncidentState(
        incident_id="inc-1",
        status=IncidentStatus.AWAITING_APPROVAL,
        evidence=[
            EvidenceItem(
                index=0,
                call=ToolCall(tool="propose_edit", arguments={"repo": "gitops"}),
                status="ok",
                excerpt="{}",
                diff=DIFF,
            )
        ],
    )

    async def state(*_: Any, **__: Any) -> IncidentState:
        return st

    monkeypatch.setattr(incident_client, "incident_state", state)
    res = CliRunner().invoke(app, ["incidents", "show", "inc-1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "diff from evidence 1:" in res.output
    assert DIFF.rstrip("\n") in res.output  # whole, markup-free (the brackets are kept)


def test_incidents_show_says_when_no_runbook_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import incident_client
    from workers.cli import app

    now = datetime.now(UTC)
    states = [
        IncidentState(incident_id="inc-2", status=IncidentStatus.OPEN),
        IncidentState(
            incident_id="inc-2",
            status=IncidentStatus.VERIFYING,
            severity=Severity.WARNING,
            category=Category.INFRASTRUCTURE,
            stages=[StageRecord(name="recall", started_at=now, finished_at=now, detail="no runbook")],
        ),
    ]

    async def state(*_: Any, **__: Any) -> IncidentState:
        return states.pop(0)

    monkeypatch.setattr(incident_client, "incident_state", state)
    # words, not lines: the console's width is the terminal's the process started with
    just_in = CliRunner().invoke(app, ["incidents", "show", "inc-2"])
    assert just_in.exit_code == 0, just_in.output
    words = " ".join(just_in.output.split())
    assert "severity not triaged yet" in words and "runbook not looked up yet" in words, just_in.output
    assert "None" not in words, just_in.output
    recalled = " ".join(CliRunner().invoke(app, ["incidents", "show", "inc-2"]).output.split())
    assert "severity warning" in recalled and "runbook none matched" in recalled and "None" not in recalled, recalled


def test_incidents_show_says_what_a_waiting_incident_needs_next(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import incident_client
    from workers.cli import app

    plan = [ToolCall(tool="rollout_restart", arguments={"namespace": "media", "name": "radarr"})]
    states = [
        IncidentState(incident_id="inc-3", status=IncidentStatus.AWAITING_APPROVAL),  # nothing to run
        IncidentState(incident_id="inc-3", status=IncidentStatus.AWAITING_APPROVAL, plan=plan),
        IncidentState(incident_id="inc-3", status=IncidentStatus.VERIFYING, plan=plan),
    ]

    async def state(*_: Any, **__: Any) -> IncidentState:
        return states.pop(0)

    monkeypatch.setattr(incident_client, "incident_state", state)

    def shown() -> str:
        res = CliRunner().invoke(app, ["incidents", "show", "inc-3"])
        assert res.exit_code == 0, res.output
        return " ".join(res.output.split())

    nothing = shown()
    assert "nothing to run; waiting for a human: agentic acknowledge inc-3 --by NAME" in nothing, nothing
    assert "agentic ignore inc-3" in nothing and "agentic modify inc-3" in nothing, nothing
    planned = shown()
    assert "waiting for a human: agentic approve inc-3 --by NAME" in planned and "acknowledge" not in planned, planned
    assert "waiting for a human" not in shown()  # past the approval: nothing to ask for
