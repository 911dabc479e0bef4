"""Cloud escalation of the planner (`IncidentActivities.propose`), redacted, through the real
`InferenceRouter` (LiteLLM) against two fake OpenAI-compatible servers on free ports: the local
pool and the cloud. The cloud fake records every request body, so the tests can say what left
the cluster. Secrets and personal data are planted in the alert's labels and annotations."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pgserver
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.incident.activities import IncidentActivities
from activities.incident.planner import CLOUD_GROUP
from activities.incident.prompt import build_messages
from activities.ledger.repository import Ledger
from activities.reports.queries import compute_digest
from agentic_core.alerts import Alert, AlertGroup, AlertStatus
from agentic_core.incident import (
    IncidentState,
    IncidentStatus,
    ProposeInput,
    ProposeResult,
    RecalledRunbook,
    RecallResult,
    RecordInput,
    StageRecord,
    ToolSpec,
)
from agentic_core.models import InferenceMode, ToolCall
from agentic_core.reports import week_of
from tests.support.fake_openai import FakeChatServer, chat_server
from tests.support.incident_activities import RESTART
from tests.support.incident_activities import TOOLS as ACTIVITY_TOOLS
from tests.support.pg import create_database, pg_server
from workers.settings import Settings
from workers.wiring import inference_router, planner_config

# --------------------------------------------------------------------------- the planted alert

PASSWORD = "Sup3rS3cret-db-pw"
GH_TOKEN = "ghp_" + "Zx9" * 12
EMAIL_ADDR = "jane.doe@example.com"
PHONE_NO = "+49 30 1234 5678"
PLANTED = (PASSWORD, GH_TOKEN, EMAIL_ADDR, PHONE_NO)
RESTART_SPEC = ACTIVITY_TOOLS[0]  # kubernetes.restart_deployment(namespace, name)
COUNTS = {"secret": 2, "email": 1, "phone": 1}

LABELS = {
    "alertname": "KubePodCrashLooping",
    "namespace": "shop",
    "deployment": "checkout",
    "severity": "warning",
    "owner": EMAIL_ADDR,
}
ANNOTATIONS = {
    "summary": "Pod shop/checkout is crash looping.",
    "description": f"login failed: postgres://app:{PASSWORD}@db.shop.svc:5432/app; deploy key {GH_TOKEN};"
    f" on call {PHONE_NO}",
}
TOOLS = [
    RESTART_SPEC,
    ToolSpec(
        name="notify.owner",
        description="Mail the owner of a workload",
        input_schema={
            "type": "object",
            "properties": {"email": {"type": "string"}, "text": {"type": "string"}},
            "required": ["email"],
        },
    ),
]
# Found by text only (no label match): the model's own plan stands when it is valid.
RECALL = RecallResult(
    runbooks=[
        RecalledRunbook(id="kubernetes/KubePodCrashLooping", title="Pod is crash looping", score=0.6, actions=[RESTART])
    ]
)


def propose_input() -> ProposeInput:
    return ProposeInput(
        incident_id=f"inc-{uuid.uuid4().hex[:12]}",
        title="Pod shop/checkout is crash looping.",
        labels=LABELS,
        annotations=ANNOTATIONS,
        recall=RECALL,
        tools=TOOLS,
    )


def proposal_json(confidence: float, actions: list[dict[str, Any]] | None = None, **kw: Any) -> str:
    body = {
        "summary": kw.get("summary", "checkout crash loops"),
        "diagnosis": kw.get("diagnosis", "the database rejects the login"),
        "runbook_id": None,
        "actions": [RESTART.model_dump(mode="json")] if actions is None else actions,
        "confidence": confidence,
        "risk": "medium",
    }
    return json.dumps(body)


# The cloud's answer: it refers to the owner's address and the password by their placeholders.
CLOUD_ANSWER = proposal_json(
    0.9,
    [
        {"tool": "notify.owner", "arguments": {"email": "[EMAIL_1]", "text": "checkout is down"}},
        RESTART.model_dump(mode="json"),
    ],
    summary="checkout cannot log in to its database; tell [EMAIL_1]",
    diagnosis="The password [SECRET_1] is rejected by db.shop.svc.",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def local() -> AsyncIterator[FakeChatServer]:
    async with chat_server("local") as s:
        yield s


@pytest.fixture
async def cloud() -> AsyncIterator[FakeChatServer]:
    async with chat_server("cloud") as s:
        s.answer(CLOUD_ANSWER)
        yield s


def settings_for(local: FakeChatServer, cloud: FakeChatServer, mode: InferenceMode, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "planner_url": local.base_url,
        "planner_model": "local-planner",
        "code_url": None,
        "embed_url": None,
        "pool_api_key": SecretStr("pool-key"),
        "cloud_model": "openai/gpt-fake",
        "cloud_base_url": cloud.base_url,
        "cloud_api_key": SecretStr("cloud-key"),
        "inference_mode": mode,
    }
    values.update(kw)
    return Settings(**values)


def planner(
    local: FakeChatServer,
    cloud: FakeChatServer,
    mode: InferenceMode = InferenceMode.LOCAL_FIRST,
    *,
    ledger: Ledger | None = None,
    **kw: Any,
) -> IncidentActivities:
    """The worker's wiring (workers/worker.py) against the fakes."""
    settings = settings_for(local, cloud, mode)
    router = inference_router(settings)
    config = dataclasses.replace(
        planner_config(settings, router),
        model_slots=kw.pop("model_slots", 1),
        model_timeout_s=kw.pop("model_timeout_s", 5.0),
        **kw,
    )
    return IncidentActivities(
        None,  # type: ignore[arg-type]  # propose needs no knowledge base
        ledger,  # type: ignore[arg-type]
        router,
        planner=config,
    )


def attempt(n: int = 1, budget_s: float = 60.0) -> ActivityEnvironment:
    """An activity attempt with the workflow's start-to-close timeout (PROPOSE_TIMEOUT)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=n,
        activity_id=f"act-{uuid.uuid4().hex[:6]}",
        start_to_close_timeout=timedelta(seconds=budget_s),
    )
    return env


def assert_nothing_secret_sent(cloud: FakeChatServer) -> None:
    sent = cloud.sent_text()
    assert cloud.requests, "the cloud was not asked"
    for value in PLANTED:
        assert value not in sent, f"{value!r} left the cluster"
    # the redacted prompt still carries what the cloud needs to plan
    prompt = cloud.bodies[0]["messages"][-1]["content"]
    assert "KubePodCrashLooping" in prompt and "checkout" in prompt and "db.shop.svc" in prompt
    assert "[EMAIL_1]" in prompt and "[PHONE_1]" in prompt and "[SECRET_1]" in prompt


# --------------------------------------------------------------------------- LOCAL_FIRST


async def test_a_low_confidence_local_answer_escalates_redacted(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.2))
    a = planner(local, cloud)
    inp = propose_input()
    res = await attempt().run(a.propose, inp)

    assert len(local.requests) == 1 and len(cloud.requests) == 1
    # the local model (in the cluster) got the alert as it is; the cloud got it redacted
    assert all(v in local.sent_text() for v in PLANTED)
    assert_nothing_secret_sent(cloud)
    sent = cloud.requests[0]
    assert sent["body"]["model"] == "gpt-fake" and sent["headers"]["authorization"] == "Bearer cloud-key"
    assert sent["body"]["response_format"]["json_schema"]["name"] == "Proposal"
    # OpenAI's strict mode would refuse a schema with optional fields: the cloud asks without it
    assert sent["body"]["response_format"]["json_schema"]["strict"] is False
    assert local.requests[0]["body"]["response_format"]["json_schema"]["strict"] is True
    assert [m["role"] for m in sent["body"]["messages"]] == [m["role"] for m in build_messages(inp)]

    assert res.source == "cloud" and res.model == "gpt-fake"
    assert res.redactions == COUNTS
    assert "escalated to the cloud: the local model's confidence 0.20 is below 0.5" in res.note
    assert "redacted before sending: 2 secrets, 1 email address, 1 phone number" in res.note
    assert not any(v in res.note for v in PLANTED)
    # personal data comes back inside the cluster (in the plan's arguments too); secrets never
    assert res.proposal.actions[0] == ToolCall(
        tool="notify.owner", arguments={"email": EMAIL_ADDR, "text": "checkout is down"}
    )
    assert res.proposal.summary.endswith(f"tell {EMAIL_ADDR}")
    assert "[SECRET_1]" in res.proposal.diagnosis and PASSWORD not in res.proposal.model_dump_json()
    assert res.proposal.confidence == 0.9


@pytest.mark.parametrize(
    ("local_status", "local_reply", "why"),
    [
        (200, "Sure! Restart the pod.", "the model failed: planner: the reply is not a valid Proposal"),
        (200, proposal_json(0.9, [{"tool": "kubernetes.delete_namespace", "arguments": {}}]), "invalid proposal"),
        (500, "", "the model is unavailable"),
    ],
)
async def test_a_failed_or_invalid_local_answer_escalates(
    local: FakeChatServer, cloud: FakeChatServer, local_status: int, local_reply: str, why: str
) -> None:
    local.status = local_status
    local.answer(local_reply)
    a = planner(local, cloud)
    res = await attempt(1).run(a.propose, propose_input())  # attempt 1: no Temporal retry needed
    assert res.source == "cloud" and f"escalated to the cloud: {why}" in res.note
    assert len(local.requests) == 1 and len(cloud.requests) == 1
    assert_nothing_secret_sent(cloud)


async def test_a_confident_local_answer_stays_local(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.8))
    res = await attempt().run(planner(local, cloud).propose, propose_input())
    assert res.source == "llm" and res.redactions == {} and res.proposal.confidence == 0.8
    assert cloud.requests == []


async def test_a_busy_local_model_escalates(local: FakeChatServer, cloud: FakeChatServer) -> None:
    """Under load the local model sheds work to the cloud instead of to the runbook's plan."""
    local.answer(proposal_json(0.8))
    local.delay_s = 1.5
    a = planner(local, cloud, model_slots=1, slot_wait_s=0.2)
    first = asyncio.create_task(attempt().run(a.propose, propose_input()))
    while not local.requests:  # noqa: ASYNC110  # the first holds the only slot
        await asyncio.sleep(0.02)
    busy = await attempt().run(a.propose, propose_input())
    assert busy.source == "cloud" and "the model is busy" in busy.note
    assert (await first).source == "llm"
    assert len(local.requests) == 1 and len(cloud.requests) == 1


async def test_cloud_calls_are_bounded_in_flight_and_per_hour(local: FakeChatServer, cloud: FakeChatServer) -> None:
    """A burst must not become a bill: beyond the bounds the local answer stands (or the
    runbook's plan), and the note says the cloud was not asked and why."""
    local.answer(proposal_json(0.2))
    cloud.delay_s = 1.0
    a = planner(local, cloud, cloud_max_concurrent=1, cloud_max_per_hour=2)
    first = asyncio.create_task(attempt().run(a.propose, propose_input()))
    while not cloud.requests:  # noqa: ASYNC110  # the first call holds the only cloud slot
        await asyncio.sleep(0.02)
    second = await attempt().run(a.propose, propose_input())
    assert second.source == "llm" and "the cloud is busy (1 calls in flight, the bound is 1)" in second.note
    assert (await first).source == "cloud"
    assert len(cloud.requests) == 1

    cloud.delay_s = 0.0
    assert (await attempt().run(a.propose, propose_input())).source == "cloud"  # the 2nd of 2 this hour
    spent = await attempt().run(a.propose, propose_input())
    assert spent.source == "llm" and "the cloud call budget (2 per hour) is spent" in spent.note
    assert len(cloud.requests) == 2 and spent.redactions == {}  # nothing was sent, nothing counted

    never = planner(local, cloud, cloud_max_per_hour=0)
    res = await attempt().run(never.propose, propose_input())
    assert "the cloud call budget is 0 per hour" in res.note and len(cloud.requests) == 2


# --------------------------------------------------------------------------- the cloud fails


async def test_a_failing_cloud_falls_back_and_the_note_says_both(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer("not json")
    cloud.status = 503
    res = await attempt(2).run(planner(local, cloud).propose, propose_input())
    assert res.source == "fallback" and res.proposal.actions == [RESTART]
    assert "fallback to runbook kubernetes/KubePodCrashLooping" in res.note
    assert "not a valid Proposal" in res.note and "the cloud failed too: the cloud is unavailable" in res.note
    assert res.redactions == COUNTS  # the request went out, redacted: it counts
    assert_nothing_secret_sent(cloud)


async def test_an_unavailable_local_model_and_cloud_retry_on_an_early_attempt(
    local: FakeChatServer, cloud: FakeChatServer
) -> None:
    local.status, cloud.status = 500, 500
    a = planner(local, cloud)
    with pytest.raises(ApplicationError) as info:
        await attempt(1).run(a.propose, propose_input())
    assert "the cloud failed too" in str(info.value) and not info.value.non_retryable
    res = await attempt(2).run(a.propose, propose_input())  # the last attempt falls back
    assert res.source == "fallback" and len(cloud.requests) == 2


async def test_a_low_confidence_local_answer_stands_when_the_cloud_fails(
    local: FakeChatServer, cloud: FakeChatServer
) -> None:
    local.answer(proposal_json(0.3))
    cloud.answer("I cannot help with that.")
    res = await attempt().run(planner(local, cloud).propose, propose_input())
    assert res.source == "llm" and res.proposal.confidence == 0.3
    assert "escalated to the cloud (the local model's confidence 0.30 is below 0.5), but the cloud failed" in res.note
    assert res.redactions == COUNTS


async def test_a_cloud_plan_that_uses_a_secret_is_refused(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.1))
    cloud.answer(
        proposal_json(0.9, [{"tool": "notify.owner", "arguments": {"email": "[EMAIL_1]", "text": "pw [SECRET_1]"}}])
    )
    res = await attempt().run(planner(local, cloud).propose, propose_input())
    assert res.source == "llm"  # the local answer, not confident, but the cloud's plan is refused
    assert "redacted secret(s), which are never tool arguments" in res.note
    assert PASSWORD not in res.model_dump_json()


async def test_the_cloud_is_bounded_by_the_activity_timeout(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer("not json")
    cloud.delay_s = 5.0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    res = await attempt(2, budget_s=5.0).run(planner(local, cloud).propose, propose_input())
    # 5 s start-to-close, 2 s margin: the cloud gets what is left (about 3 s), not its 20 s
    assert loop.time() - t0 < 4.5
    assert res.source == "fallback" and re.search(r"the cloud did not answer within [23]s", res.note)
    # with less than MIN_CLOUD_S left the cloud is not asked at all
    local.delay_s, cloud.requests = 1.0, []
    res = await attempt(2, budget_s=4.5).run(planner(local, cloud, model_timeout_s=0.8).propose, propose_input())
    assert res.source == "fallback" and "no time was left to ask the cloud" in res.note
    assert cloud.requests == [] and res.redactions == {}


# --------------------------------------------------------------------------- the other modes


async def test_local_only_never_asks_the_cloud(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.1))
    a = planner(local, cloud, InferenceMode.LOCAL_ONLY)
    assert a.planner.cloud_group is None  # the router has no cloud group in LOCAL_ONLY
    assert (await attempt().run(a.propose, propose_input())).source == "llm"
    # even handed a cloud group, LOCAL_ONLY never uses it
    a.planner.cloud_group = CLOUD_GROUP
    local.status = 500
    res = await attempt(2).run(a.propose, propose_input())
    assert res.source == "fallback" and "cloud" not in res.note
    assert cloud.requests == []


async def test_cloud_first_asks_the_cloud_first(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.99))
    res = await attempt().run(planner(local, cloud, InferenceMode.CLOUD_FIRST).propose, propose_input())
    assert res.source == "cloud" and "CLOUD_FIRST" in res.note and res.redactions == COUNTS
    assert local.requests == [] and len(cloud.requests) == 1
    assert_nothing_secret_sent(cloud)


async def test_cloud_first_falls_back_to_the_local_model(local: FakeChatServer, cloud: FakeChatServer) -> None:
    local.answer(proposal_json(0.2))  # not confident: no second trip to the cloud
    cloud.status = 500
    res = await attempt().run(planner(local, cloud, InferenceMode.CLOUD_FIRST).propose, propose_input())
    assert res.source == "llm" and res.note.startswith("the cloud failed first (the cloud is unavailable")
    assert len(cloud.requests) == 1 and len(local.requests) == 1 and res.redactions == COUNTS


# --------------------------------------------------------------------------- ledger and digest


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-cloud-pg-")


@pytest.fixture
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "cloud"), max_size=2)
    try:
        yield led
    finally:
        await led.close()


def recorded_state(inp: ProposeInput, res: ProposeResult) -> tuple[IncidentState, AlertGroup]:
    now = datetime.now(UTC)
    state = IncidentState(
        incident_id=inp.incident_id,
        status=IncidentStatus.IGNORED,
        title=inp.title,
        stages=[StageRecord(name="triage", started_at=now, finished_at=now)],
        proposal=res.proposal,
        proposal_source=res.source,
        proposal_redactions=res.redactions,
    )
    group = AlertGroup(
        incident_id=inp.incident_id,
        receiver="agentic",
        group_key="{}:{alertname=KubePodCrashLooping}",
        status=AlertStatus.FIRING,
        common_labels=LABELS,
        common_annotations=ANNOTATIONS,
        alerts=[
            Alert(
                fingerprint=f"{inp.incident_id}-a",
                status=AlertStatus.FIRING,
                labels=LABELS,
                annotations=ANNOTATIONS,
                starts_at=now,
            )
        ],
    )
    return state, group


async def test_the_ledger_keeps_the_counts_and_the_digest_counts_them(
    local: FakeChatServer, cloud: FakeChatServer, ledger: Ledger
) -> None:
    local.answer(proposal_json(0.2))
    a = planner(local, cloud, ledger=ledger)
    results = []
    for _ in range(2):  # two escalated incidents
        inp = propose_input()
        res = await attempt().run(a.propose, inp)
        assert res.source == "cloud"
        state, group = recorded_state(inp, res)
        await a.record(RecordInput(state=state, group=group))
        await a.record(RecordInput(state=state, group=group))  # a retry writes nothing twice
        results.append((inp, res))
    local.answer(proposal_json(0.9))  # and one that stayed local
    stayed = propose_input()
    res = await attempt().run(a.propose, stayed)
    state, group = recorded_state(stayed, res)
    await a.record(RecordInput(state=state, group=group))

    for inp, _res in results:
        rows = await ledger.list_proposals(inp.incident_id)
        assert [(r.source, r.redactions) for r in rows] == [("cloud", COUNTS)]
    assert [(r.source, r.redactions) for r in await ledger.list_proposals(stayed.incident_id)] == [("llm", {})]
    async with ledger.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT string_agg(redactions::text || summary || diagnosis, ' ') FROM proposals")
    assert not any(v in stored for v in (PASSWORD, GH_TOKEN, PHONE_NO))

    d = await compute_digest(ledger, week_of(datetime.now(UTC)), trend_weeks=1)
    assert (d.cloud_escalations, d.local_proposals) == (2, 1)
    assert d.pii_detections == 4  # 2 × (1 email + 1 phone)
    assert d.secrets_redacted == 4
