"""Capture the histories of one finished incident (and its approval) for the replay-compatibility
test: `python -m tests.support.capture_history NAME` writes `tests/histories/NAME.incident.json` and
`NAME.approval.json`.

The incident is the happy path of `test_incident_workflow` (question, the investigate stage
gathering the runbook's three evidence calls, approve, two actions, verified by the alert
resolving; with `--nothing-to-run`, a question about a plan whose every action was refused,
acknowledged, then resolved; with `--untrusted-plan`, NORMAL mode and the model's own plan for a
standard runbook, which records an `untrusted_plan` guardrail event before it asks; with
`--gave-up`, the approved restart's tool server unreachable through every retry, so the incident
gives up on it (`tools.give_up`) and fails; with `--evidence-gave-up`, the happy path with one
evidence call's server unreachable through its retries, so the investigate stage closes its ledger
row with `tools.give_up`) on the
time-skipping server with the fake activities. Capture
a new pair whenever the workflows change the commands they issue (behind `workflow.patched`),
and keep the old pairs: `test_history_compat` replays every pair with today's code, so a change
that would break running incidents fails there.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Literal

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentic_core.alerts import AlertStatus
from agentic_core.incident import DecideInput, IncidentConfig, IncidentStatus
from agentic_core.models import ApprovalMode, AutomationLevel
from tests.support import incident_fakes as t
from tests.support.temporal import register_search_attributes, time_skipping_server

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def capture(
    name: str,
    *,
    nothing_to_run: bool = False,
    untrusted_plan: bool = False,
    gave_up: bool = False,
    evidence_gave_up: bool = False,
) -> None:
    """`nothing_to_run`: the VERBOSE question about a plan whose every action was refused,
    acknowledged, then resolved (`python -m tests.support.capture_history NAME --nothing-to-run`);
    `untrusted_plan`: NORMAL mode, the model's own plan for a standard runbook (`--untrusted-plan`)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    fakes = (
        t.Fakes(proposal_actions=[t.DELETE_NS], runbook_actions=[])
        if nothing_to_run
        else t.Fakes(runbook_evidence=list(t.EVIDENCE))  # the runbook's evidence: the investigate stage runs it
    )
    config = IncidentConfig()
    if untrusted_plan:
        fakes = t.Fakes(runbook_level=AutomationLevel.STANDARD, confidence=0.95, proposal_actions=[t.SCALE])
        config = IncidentConfig(approval_mode=ApprovalMode.NORMAL)
    if gave_up:
        fakes = t.Fakes(unreachable_tools={t.RESTART.tool})
    if evidence_gave_up:
        fakes = t.Fakes(runbook_evidence=list(t.EVIDENCE), unreachable_tools={t.EVENTS.tool})
    choice: Literal["acknowledged", "approved"] = "acknowledged" if nothing_to_run else "approved"
    try:
        await register_search_attributes(env.client)
        async with t.incident(env, fakes, config) as run:
            st = await run.awaiting()
            await run.decide(DecideInput(choice=choice, by="alice", plan_hash=st.plan_hash or ""))
            if not gave_up:
                await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
                await run.signal(t.make_group(run.incident_id, AlertStatus.RESOLVED))
            await run.result()
            incident = await run.handle.fetch_history()
            approval = await run.approval().fetch_history()
    finally:
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.incident.json").write_text(incident.to_json())
    (HISTORIES / f"{name}.approval.json").write_text(approval.to_json())
    print(f"wrote {HISTORIES}/{name}.incident.json and .approval.json")


if __name__ == "__main__":
    flags = sys.argv[2:]
    asyncio.run(
        capture(
            sys.argv[1],
            nothing_to_run="--nothing-to-run" in flags,
            untrusted_plan="--untrusted-plan" in flags,
            gave_up="--gave-up" in flags,
            evidence_gave_up="--evidence-gave-up" in flags,
        )
    )
