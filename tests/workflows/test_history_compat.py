"""Running incidents survive upgrades: every captured history in `tests/histories/` (finished
incidents and their approvals, captured with `python -m tests.support.capture_history NAME` by the code
of their time) replays with today's workflows under the strict sandbox; agent runs
(`NAME.agent.json`, captured with `python -m tests.support.capture_agent_history NAME`) too.

A change to what a workflow does must keep these replaying (`workflow.patched` for new
commands); then capture a new pair for the new code and keep the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.support.agent_harness import first_task
from workers.sandbox import workflow_runner
from workflows.agent import RUN_CANCEL_PATCH, START_LISTS_TOOLS_PATCH, WRITE_GIVE_UP_PATCH, AgentWorkflow
from workflows.approval import ApprovalWorkflow
from workflows.incident import (
    ACTION_GIVE_UP_PATCH,
    EVIDENCE_CONFIDENCE_PATCH,
    INVESTIGATE_PATCH,
    LOCAL_STAGES_PATCH,
    PATCHES_V10_PATCH,
    PROTECTED_NAMESPACES_PATCH,
    UNTRUSTED_PLAN_EVENT_PATCH,
    IncidentWorkflow,
)
from workflows.investigate import EVIDENCE_GIVE_UP_PATCH

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
CAPTURED = sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_there_are_histories_of_both_stage_kinds() -> None:
    names = {p.name for p in CAPTURED}
    assert {"v1-regular-stages.incident.json", "v2-local-stages.incident.json"} <= names
    # v1 predates local stages (no patch marker); v2 has it: both code paths are replayed
    assert "core_patch" not in (HISTORIES / "v1-regular-stages.incident.json").read_text()
    assert "core_patch" in (HISTORIES / "v2-local-stages.incident.json").read_text()


def test_there_is_an_agent_run_with_a_read_and_an_approved_write() -> None:
    # `python -m tests.support.capture_agent_history NAME`: AgentWorkflow's commands keep replaying.
    text = (HISTORIES / "agent-v1-read-and-write.agent.json").read_text()
    assert "tools.call" in text and "tools.execute" in text and "ApprovalWorkflow" in text


def test_a_history_with_the_evidence_and_protected_namespace_patches_is_kept() -> None:
    # Captured with both markers recorded when the run starts: incidents that run the
    # evidence-confidence and protected-namespaces rules keep replaying after later changes.
    history = load(HISTORIES / "v4-evidence-and-protected.incident.json")
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert patches[:3] == [LOCAL_STAGES_PATCH, EVIDENCE_CONFIDENCE_PATCH, PROTECTED_NAMESPACES_PATCH]


def test_a_history_that_recorded_an_untrusted_plan_event_is_kept() -> None:
    # NORMAL mode, the model's own plan for a standard runbook: the patch marker at the start and
    # the guardrails.record local activity before the question; it must keep replaying.
    history = load(HISTORIES / "v7-untrusted-plan.incident.json")
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert UNTRUSTED_PLAN_EVENT_PATCH in patches
    local = [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)["activity_type"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert local.index("guardrails.record") == local.index("tools.guard") + 1  # after the guard, before the question


def test_a_history_with_the_investigate_stage_is_kept() -> None:
    # Captured with the investigate patch and the runbook's three evidence calls (tools.execute
    # under their evidence keys) before the proposal: incidents that investigate keep replaying.
    history = load(HISTORIES / "v6-investigate.incident.json")
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert INVESTIGATE_PATCH in patches
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled[:4] == ["tools.execute"] * 3 + ["incident.propose"]


def test_a_history_that_gave_up_on_an_action_is_kept() -> None:
    # Captured with the action-give-up patch: the approved restart's server unreachable through
    # every retry, then `tools.give_up` closed its ledger row; such incidents keep replaying.
    history = load(HISTORIES / "v8-action-give-up.incident.json")
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert ACTION_GIVE_UP_PATCH in patches
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "tools.give_up" in scheduled
    assert scheduled[scheduled.index("tools.give_up") - 1] == "tools.execute"


def _patches_and_scheduled(history: WorkflowHistory) -> tuple[list[str], list[str]]:
    patches = [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    return patches, scheduled


@pytest.mark.parametrize(
    ("name", "patch"),
    [
        # an agent's approved write whose server stayed unreachable: `tools.give_up` closed its row
        ("agent-v2-write-give-up.agent.json", WRITE_GIVE_UP_PATCH),
        # an evidence call (get_events) whose server stayed unreachable: the same in investigate
        ("v9-evidence-give-up.incident.json", EVIDENCE_GIVE_UP_PATCH),
    ],
)
def test_histories_that_gave_up_on_a_write_or_an_evidence_call_are_kept(name: str, patch: str) -> None:
    patches, scheduled = _patches_and_scheduled(load(HISTORIES / name))
    assert patch in patches
    assert "tools.give_up" in scheduled
    assert scheduled[scheduled.index("tools.give_up") - 1] == "tools.execute"


def test_agent_runs_cancelled_while_asking_before_and_after_the_patch_are_kept() -> None:
    # `capture_agent_history NAME --cancelled`: the run is cancelled while its write waits for an
    # answer. Before `RUN_CANCEL_PATCH` (captured with the code of its time) the cancelled question
    # was taken as expired and the run asked its model again and completed; with it, the run closes
    # its ledger row (`agents.finish_run`) and ends cancelled, asking the model nothing more.
    before = load(HISTORIES / "agent-v3-cancelled-before-patch.agent.json")
    patches, scheduled = _patches_and_scheduled(before)
    assert RUN_CANCEL_PATCH not in patches and scheduled.count("agents.model_turn") == 3
    assert before.events[-1].HasField("workflow_execution_completed_event_attributes")
    after = load(HISTORIES / "agent-v4-cancelled.agent.json")
    patches, scheduled = _patches_and_scheduled(after)
    assert RUN_CANCEL_PATCH in patches and scheduled.count("agents.model_turn") == 2
    assert after.events[-1].HasField("workflow_execution_canceled_event_attributes")
    finish = after.events[-2].marker_recorded_event_attributes
    assert (
        finish.marker_name == "core_local_activity" and b"agents.finish_run" in finish.details["data"].payloads[0].data
    )


def _agent_statuses(history: WorkflowHistory) -> list[str]:
    """The `AgentStatus` search attribute values the run upserted, in order."""
    return [
        json.loads(
            e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields["AgentStatus"].data
        )
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
        and "AgentStatus" in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]


def test_cancelled_runs_that_said_failed_and_cancelled_are_both_kept() -> None:
    # A cancelled run closed its row `failed` until the ledger had `cancelled` (0014); now it says
    # `cancelled`, to the ledger (`agents.finish_run`'s input, which a local activity's marker does
    # not even hold) and in its `AgentStatus`. Neither is compared on replay (the commands are the
    # same), so no patch: both histories replay below.
    before = load(HISTORIES / "agent-v4-cancelled.agent.json")
    after = load(HISTORIES / "agent-v5-cancelled-status.agent.json")
    assert _agent_statuses(before)[-2:] == ["awaiting_approval", "failed"]
    assert _agent_statuses(after)[-2:] == ["awaiting_approval", "cancelled"]
    assert _patches_and_scheduled(before) == _patches_and_scheduled(after)
    assert after.events[-1].HasField("workflow_execution_canceled_event_attributes")
    finish = after.events[-2].marker_recorded_event_attributes  # the row closed (a local activity)
    assert (
        finish.marker_name == "core_local_activity" and b"agents.finish_run" in finish.details["data"].payloads[0].data
    )


def test_agent_runs_that_listed_tools_apart_and_with_the_start_are_kept() -> None:
    # Before `START_LISTS_TOOLS_PATCH` the first workflow task ran `agents.start_run`, then
    # `tools.list_tools`; with it, `agents.start_run` lists the tools too: one local activity.
    before = load(HISTORIES / "agent-v5-cancelled-status.agent.json")
    assert first_task(before) == ["agents.start_run", "tools.list_tools"]
    after = load(HISTORIES / "agent-v6-start-lists-tools.agent.json")
    assert first_task(after) == [f"patch:{START_LISTS_TOOLS_PATCH}", "agents.start_run"]
    assert b"tools.list_tools" not in after.to_json().encode()
    _, scheduled = _patches_and_scheduled(after)  # the same run as v1's from there on
    assert scheduled == _patches_and_scheduled(load(HISTORIES / "agent-v1-read-and-write.agent.json"))[1]


def test_a_history_with_every_patch_in_one_marker_is_kept() -> None:
    # v9's run (the happy path, one evidence call given up) with `PATCHES_V10_PATCH`: one marker
    # and one TemporalChangeVersion upsert where v9 recorded twelve of each, and otherwise the
    # same activities in the same order (the give-up included)
    v10 = load(HISTORIES / "v10-patches-in-one.incident.json")
    patches, scheduled = _patches_and_scheduled(v10)
    assert patches == [PATCHES_V10_PATCH]
    versions = [
        e
        for e in v10.events
        if "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(versions) == 1
    v9_patches, v9_scheduled = _patches_and_scheduled(load(HISTORIES / "v9-evidence-give-up.incident.json"))
    assert len(v9_patches) == 12 and scheduled == v9_scheduled
    assert len(v10.events) < len(load(HISTORIES / "v9-evidence-give-up.incident.json").events) - 20


async def test_replay_catches_code_that_ignores_the_one_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker carries the run: today's code that did not see `PATCHES_V10_PATCH` (the old
    patches, each unrecorded in this history, so each off) cannot replay a run that took it."""
    from temporalio import workflow

    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda id: real(id) and id != PATCHES_V10_PATCH)
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(
        load(HISTORIES / "v10-patches-in-one.incident.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None


@pytest.mark.parametrize("path", CAPTURED, ids=[p.stem for p in CAPTURED])
async def test_captured_history_replays_with_todays_code(path: Path) -> None:
    history = load(path)
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow, AgentWorkflow],
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_replay_catches_a_change_without_a_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check has teeth: today's code with the local stages forced on (as if the change had
    shipped without `workflow.patched`) cannot replay an incident that ran before it."""
    from temporalio import workflow

    assert LOCAL_STAGES_PATCH  # the patch this forces
    monkeypatch.setattr(workflow, "patched", lambda _id: True)
    path = HISTORIES / "v1-regular-stages.incident.json"
    history = load(path)
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None


async def test_replay_catches_the_run_cancel_change_without_its_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for the agent run: today's code with `RUN_CANCEL_PATCH` forced on cannot replay a
    run cancelled while asking before the patch (it went on to another model turn)."""
    from temporalio import workflow

    monkeypatch.setattr(workflow, "patched", lambda _id: True)
    history = load(HISTORIES / "agent-v3-cancelled-before-patch.agent.json")
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[AgentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None


async def test_replay_catches_a_run_that_listed_its_tools_with_the_start_without_the_patch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """And for `START_LISTS_TOOLS_PATCH`: today's code taking the old path (`tools.list_tools`
    after the start) where the patch is recorded cannot replay a run that listed its tools with
    the start (its model turn is where the listing was); forced on, a run from before the patch
    still replays (its start listed nothing, so the run lists with `tools.list_tools` as it did)."""
    from temporalio import workflow

    real = workflow.patched
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[AgentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    # the marker is recorded (the real call), its answer ignored: only the sequence differs
    monkeypatch.setattr(workflow, "patched", lambda id: real(id) and id != START_LISTS_TOOLS_PATCH)
    result = await replayer.replay_workflow(
        load(HISTORIES / "agent-v6-start-lists-tools.agent.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "ActivityTaskScheduled" in str(result.replay_failure), result.replay_failure
    monkeypatch.setattr(workflow, "patched", lambda id: True if id == START_LISTS_TOOLS_PATCH else real(id))
    result = await replayer.replay_workflow(
        load(HISTORIES / "agent-v5-cancelled-status.agent.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure
