"""The learning simulation: does the agent ask less as it proves itself, without failing alone?

    python benchmarks/autonomy_sim.py [--weeks 12] [--per-week 150] [--seed 1] [--volume correlated|shuffled]

12 simulated weeks on Temporal's time-skipping test server, with the real workflows
(`IncidentWorkflow`, `ApprovalWorkflow`, `RunbookPromotionWorkflow`), the real ledger
(PostgreSQL 16 from pgserver, migrations applied), the real knowledge base (Qdrant Edge in a
temp dir, all-MiniLM embeddings) and the real incident activities (triage, stage, recall,
propose, record) and trust activities. Only the outside world is simulated:

- **the model**: a router that names the first recalled runbook with confidence 0.85 (the
  grounding then takes the runbook's plan, as with the real model);
- **the tool gateway**: `tools.list_tools` / `tools.guard` allow the one simulated tool;
  `tools.execute` succeeds with the runbook's true success rate (seeded per action), and on
  success the alert resolves (a `resolved` signal), so verification sees it;
- **notifications**: counted, not sent;
- **the operator**: approves plans of runbooks they consider sound (true rate ≥ `SOUND` = 0.70)
  and ignores the others; answers a promotion question the same way (approve if sound). So the
  human does NOT filter the 0.70–0.90 runbooks out of standard: keeping them there is the
  policy's job (`agentic_core/trust.py`).

The world: 20 runbooks, true success rates spread from 0.60 to 1.00 as 1 − 0.4·(i/19)³ (most
homelab fixes work; a tail does not). Alerts arrive as a Poisson process, `--per-week` in all,
split over runbooks by a Zipf law (weight 1/(rank+1)). `--volume correlated` (default) gives
the largest share to the most reliable runbooks (chronic alerts are the well-known ones whose fix
has been honed); `--volume shuffled` assigns the shares at random (seeded). Approval mode
NORMAL, confidence threshold 0.7.

Per week it prints: human prompts (incident questions + promotion questions), automated
actions (standard runbooks that ran without asking), failed automated actions, promotions
(manual → prompted and prompted → standard), demotions; then the three targets earned autonomy is held to:

1. at least 60 % fewer human prompts in week 8 than in week 1;
2. failed automated actions ≤ 1 % of automated actions (all weeks);
3. each runbook whose true rate is below 0.90 spends under 2 % of its executions at standard.

Recorded on the 2-core reference machine at commits 0c9cd4e–66276aa (the policy unchanged since
b314ee2: Wilson lower bound z = 1.645, standard needs > 0.95 and ≥ 5 runs, demotion on any
standard failure), 150 alerts/week:

    volume        seed  week 1 → week 8 prompts   failed automated   < 0.90 at standard   wall
    correlated    1     156 → 57   (63 % fewer)    0 / 910  (0.00 %)   0 % (6 runbooks)     348 s
    correlated    2     140 → 53   (62 % fewer)    1 / 957  (0.10 %)   0 % (6 runbooks)     247 s
    shuffled      1     161 → 108  (33 % fewer)    7 / 549  (1.28 %)   0 % (6 runbooks)     318 s

Correlated, seed 1, per week (prompts include promotion questions; promotions include the
automatic manual → prompted ones):

    week alerts prompts (promo q)  auto failed promo  demo
       1    156     156         0     0      0    13     0
       2    141     110         1    32      0     4     0
       4    149      87         1    63      0     1     0
       8    143      57         1    87      0     1     0
      12    157      44         0   113      0     0     0

All three targets hold when the chronic (high-volume) alerts are the ones with reliable fixes.
With volume independent of reliability (shuffled) the two runbooks at 0.80 and 0.71 carry
~300 of the alerts and must keep asking, and the 0.98 and 0.993 runbooks that earn standard
fail 1.3 % of the time: targets 1 and 2 are then out of reach of any policy that keeps a
human on every plan below 0.95 (target 3 still holds). The per-runbook lines show which
runbooks reached standard and for how many of their executions.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.incident.activities import IncidentActivities
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from activities.knowledge.kb import KnowledgeBase
from activities.ledger.repository import Ledger
from activities.trust.activities import TrustActivities
from agentic_core import search_attributes as sa
from agentic_core.alerts import Alert, AlertGroup, AlertStatus
from agentic_core.autonomy import PromotionResult, TrustConfig, promotion_workflow_id
from agentic_core.incident import (
    QUERY_APPROVAL,
    QUERY_STATE,
    SIGNAL_ALERTS,
    UPDATE_DECIDE,
    ActionResult,
    AlertsSignal,
    ApprovalState,
    DecideInput,
    DecideResult,
    ExecuteInput,
    GuardedAction,
    GuardInput,
    GuardResult,
    IncidentConfig,
    IncidentInput,
    IncidentState,
    IncidentStatus,
    ListToolsInput,
    ListToolsResult,
    NotifyInput,
    NotifyResult,
    PolicyVerdict,
    ToolSpec,
)
from agentic_core.models import ApprovalMode, AutomationLevel, Proposal, Runbook, ToolCall
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow
from workflows.promotion import RunbookPromotionWorkflow

N_RUNBOOKS = 20
SOUND = 0.70  # the operator approves plans (and promotions) of runbooks at or above this true rate
CONFIDENCE = 0.85
TOOL = "sim.remediate"
OPERATOR = "operator"
_FINAL = {
    IncidentStatus.RESOLVED,
    IncidentStatus.FAILED,
    IncidentStatus.IGNORED,
    IncidentStatus.EXPIRED,
    IncidentStatus.UNKNOWN,
}


def true_rates(n: int = N_RUNBOOKS) -> list[float]:
    return [round(1 - 0.4 * (i / (n - 1)) ** 3, 4) for i in range(n)]


def weekly_volume(n: int, per_week: float, volume: str, seed: int) -> list[float]:
    weights = [1 / (rank + 1) for rank in range(n)]
    if volume == "shuffled":
        random.Random(seed).shuffle(weights)
    total = sum(weights)
    return [per_week * w / total for w in weights]


def runbook_id(i: int) -> str:
    return f"sim/runbook-{i:02d}"


def alertname(i: int) -> str:
    return f"SimAlert{i:02d}"


def make_runbooks(n: int) -> list[Runbook]:
    return [
        Runbook(
            id=runbook_id(i),
            title=f"Simulated alert {i:02d} fires",
            body=f"Service svc-{i:02d} misbehaves; remediate it with the simulated tool.",
            match=[f"alertname={alertname(i)}"],
            actions=[ToolCall(tool=TOOL, arguments={"service": "{{ labels.service }}", "runbook": runbook_id(i)})],
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- the outside world


@dataclass
class _Answer:
    value: Proposal
    model: str = "sim-planner"


class SimRouter:
    """The planner model: names the first recalled runbook (the grounding takes its plan)."""

    _ID = re.compile(r'"runbooks":\[\{"id":"([^"]+)"')  # the first recalled runbook in the prompt's data

    async def structured(self, group: str, messages: list[dict[str, Any]], schema: type[Any], **_: Any) -> _Answer:
        m = self._ID.search(messages[-1]["content"])
        return _Answer(
            Proposal(
                summary="simulated alert",
                diagnosis="The service is stuck; the runbook's fix applies.",
                runbook_id=m.group(1) if m else None,
                actions=[],
                confidence=CONFIDENCE,
            )
        )


class SimKBDecisions:
    """Wraps the real knowledge base; decisions are not indexed (not read by the simulation)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kb, name)

    async def upsert_decision(self, record: Any) -> None:
        return None

    async def search_decisions(self, text: str, limit: int = 5, **_: Any) -> list[Any]:
        return []


@dataclass
class World:
    client: Client
    rates: list[float]
    seed: int
    notifications: int = 0

    @activity.defn(name="tools.list_tools")
    async def list_tools(self, inp: ListToolsInput) -> ListToolsResult:
        return ListToolsResult(
            tools=[ToolSpec(name=TOOL, description="Remediate a simulated service", input_schema={"type": "object"})]
        )

    @activity.defn(name="tools.guard")
    async def guard(self, inp: GuardInput) -> GuardResult:
        return GuardResult(
            actions=[GuardedAction(index=i, call=c, allowed=c.tool == TOOL) for i, c in enumerate(inp.actions)]
        )

    @activity.defn(name="tools.execute")
    async def execute(self, inp: ExecuteInput) -> ActionResult:
        i = int(str(inp.call.arguments["runbook"]).rsplit("-", 1)[1])
        ok = random.Random(f"{self.seed}/{inp.idempotency_key}").random() < self.rates[i]
        if ok:  # the fix worked: Alertmanager resolves the alert
            group = resolved_group(inp.incident_id, i)
            await self.client.get_workflow_handle(inp.incident_id).signal(SIGNAL_ALERTS, AlertsSignal(group=group))
        return ActionResult(
            index=inp.index,
            tool=inp.call.tool,
            idempotency_key=inp.idempotency_key,
            status="succeeded" if ok else "failed",
            error="" if ok else "the simulated remediation failed",
        )

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        self.notifications += 1
        return NotifyResult(message_ref=inp.edit_of or f"sim-{self.notifications}")


_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def group_for(incident_id: str, i: int, status: AlertStatus = AlertStatus.FIRING) -> AlertGroup:
    labels = {"alertname": alertname(i), "service": f"svc-{i:02d}", "severity": "warning", "namespace": "sim"}
    return AlertGroup(
        incident_id=incident_id,
        receiver="agentic",
        group_key=f'{{}}:{{alertname="{alertname(i)}"}}',
        status=status,
        common_labels=labels,
        common_annotations={"summary": f"Simulated alert {i:02d} fires on svc-{i:02d}"},
        alerts=[
            Alert(
                fingerprint=f"{incident_id}-fp",
                status=status,
                labels=labels,
                annotations={"summary": f"Simulated alert {i:02d} fires on svc-{i:02d}"},
                starts_at=_START,
                ends_at=_START + timedelta(minutes=5) if status == AlertStatus.RESOLVED else None,
            )
        ],
    )


def resolved_group(incident_id: str, i: int) -> AlertGroup:
    return group_for(incident_id, i, AlertStatus.RESOLVED)


# --------------------------------------------------------------------------- the run


@dataclass
class Week:
    alerts: int = 0
    prompts: int = 0
    promotion_questions: int = 0
    automated: int = 0
    automated_failed: int = 0
    promotions: int = 0
    demotions: int = 0

    @property
    def human_prompts(self) -> int:
        return self.prompts + self.promotion_questions


@dataclass
class Tally:
    weeks: list[Week] = field(default_factory=list)
    executions: list[int] = field(default_factory=lambda: [0] * N_RUNBOOKS)
    at_standard: list[int] = field(default_factory=lambda: [0] * N_RUNBOOKS)


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in sa.ALL},
        )
    )


async def until(pred: Any, within_s: float = 60.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the simulation waited too long for a workflow")
        await asyncio.sleep(0.01)


async def decide(client: Client, approval_id: str, approve: bool) -> None:
    handle = client.get_workflow_handle(approval_id)

    async def pending() -> ApprovalState | None:
        try:
            return await handle.query(QUERY_APPROVAL, result_type=ApprovalState)
        except RPCError:
            return None

    st = await until(pending)
    await handle.execute_update(
        UPDATE_DECIDE,
        DecideInput(choice="approved" if approve else "ignored", by=OPERATOR, plan_hash=st.request.plan_hash),
        result_type=DecideResult,
    )


async def one_alert(
    env: WorkflowEnvironment, tq: str, incident_id: str, i: int, rates: list[float], week: Week, tally: Tally
) -> None:
    client = env.client
    sound = rates[i] >= SOUND
    group = group_for(incident_id, i)
    config = IncidentConfig(
        approval_mode=ApprovalMode.NORMAL, approvers=[OPERATOR], confidence_threshold=0.7, verify_window_s=600
    )
    handle = await client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(incident_id=incident_id, group=group, config=config),
        id=incident_id,
        task_queue=tq,
        start_signal=SIGNAL_ALERTS,
        start_signal_args=[AlertsSignal(group=group)],
    )

    async def settled() -> IncidentState | None:
        st = await handle.query(QUERY_STATE, result_type=IncidentState)
        return st if st.status == IncidentStatus.AWAITING_APPROVAL or st.status in _FINAL else None

    st = await until(settled)
    if st.status == IncidentStatus.AWAITING_APPROVAL:
        week.prompts += 1
        assert st.approval_id is not None
        await decide(client, st.approval_id, sound)
    final = await handle.result()
    if final.actions:
        tally.executions[i] += 1
        if final.verdict == PolicyVerdict.RUN_THEN_NOTIFY:
            tally.at_standard[i] += 1
            week.automated += 1
            if final.status == IncidentStatus.FAILED:
                week.automated_failed += 1
    trust_stage = next((s for s in final.stages if s.name == "trust"), None)
    detail = trust_stage.detail if trust_stage is not None else ""
    if "standard → prompted" in detail:
        week.demotions += 1
    if "manual → prompted" in detail:
        week.promotions += 1
    if "asking for standard" in detail:
        week.promotion_questions += 1
        wid = promotion_workflow_id(runbook_id(i), AutomationLevel.STANDARD)
        promotion = client.get_workflow_handle(wid, result_type=PromotionResult)
        approval = client.get_workflow_handle(f"{wid}/approval")

        async def asking() -> str | None:
            # The latest promotion run either asks (its approval runs) or ended without asking
            # (stale); an earlier run's approval under the same id is closed.
            if (await promotion.describe()).status != WorkflowExecutionStatus.RUNNING:
                return "ended"
            try:
                running = (await approval.describe()).status == WorkflowExecutionStatus.RUNNING
            except RPCError:
                return None
            return "asking" if running else None

        if await until(asking) == "asking":
            await decide(client, f"{wid}/approval", sound)
        else:
            week.promotion_questions -= 1  # not asked after all
        res = await promotion.result()
        if res.outcome == "promoted":
            week.promotions += 1


async def skip(env: WorkflowEnvironment, seconds: float) -> None:
    """Advance the test server's clock; its sleep RPC sometimes drops the HTTP/2 stream under
    load (the server keeps running): try again."""
    for attempt in range(5):
        try:
            await env.sleep(seconds)
            return
        except RPCError as exc:
            print(f"  time skip of {seconds:.0f} s failed ({exc}); retrying", file=sys.stderr)
            await asyncio.sleep(0.5 * (attempt + 1))
    await env.sleep(seconds)


async def simulate(args: argparse.Namespace) -> Tally:
    import pgserver

    rates = true_rates()
    volume = weekly_volume(N_RUNBOOKS, args.per_week, args.volume, args.seed)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="agentic-autonomy-sim-"))
    pg = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
    pg.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; SELECT pg_reload_conf();")
    embedder = LocalEmbedder(threads=1)
    store = EdgeStore(tmp / "qdrant", dim=embedder.dim)
    ledger = await Ledger.connect(pg.get_uri(), max_size=6)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=shutil.which("temporal-test-server")
        or str(Path(sys.executable).parent / "temporal-test-server"),
    )
    tally = Tally()
    try:
        await register_search_attributes(env.client)
        kb = KnowledgeBase(store, embedder)
        await kb.ensure()
        runbooks = make_runbooks(N_RUNBOOKS)
        for rb in runbooks:
            await ledger.upsert_runbook(rb)
        await kb.upsert_runbooks(runbooks)
        world = World(env.client, rates, args.seed)
        incident_acts = IncidentActivities(SimKBDecisions(kb), ledger, SimRouter())  # type: ignore[arg-type]
        tq = f"sim-{uuid.uuid4().hex[:6]}"
        trust_acts = TrustActivities(ledger, kb, TrustConfig(approvers=[OPERATOR]), client=env.client, task_queue=tq)
        async with Worker(
            env.client,
            task_queue=tq,
            workflows=[IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow],
            activities=[
                incident_acts.triage,
                incident_acts.stage,
                incident_acts.recall,
                incident_acts.propose,
                incident_acts.record,
                world.notify,
                world.list_tools,
                world.guard,
                world.execute,
                *trust_acts.all(),
            ],
            max_concurrent_activities=20,
        ):
            started = time.monotonic()
            for w in range(args.weeks):
                week = Week()
                tally.weeks.append(week)
                arrivals: list[tuple[float, int]] = []
                for i in range(N_RUNBOOKS):
                    t = rng.expovariate(volume[i])
                    while t < 1.0:
                        arrivals.append((t, i))
                        t += rng.expovariate(volume[i])
                arrivals.sort()
                last = 0.0
                for n, (t, i) in enumerate(arrivals):
                    gap = (t - last) * 7 * 24 * 3600
                    if gap > 1:
                        await skip(env, gap)
                    last = t
                    week.alerts += 1
                    await one_alert(env, tq, f"sim-w{w + 1:02d}-{n:04d}", i, rates, week, tally)
                await skip(env, max((1.0 - last) * 7 * 24 * 3600, 1))
                print(
                    f"  week {w + 1:2d} done: {week.alerts} alerts, {week.human_prompts} prompts"
                    f" ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        counts = await ledger.level_counts()
        print(f"levels at the end: {counts}", file=sys.stderr)
    finally:
        # Every step, even when one fails: never leave a PostgreSQL or a test server behind.
        for step in (env.shutdown, ledger.close, store.close):
            try:
                await step()
            except Exception as exc:
                print(f"cleanup: {exc}", file=sys.stderr)
        embedder.close()
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    tally_rates[:] = rates
    return tally


tally_rates: list[float] = []


def report(tally: Tally, args: argparse.Namespace) -> bool:
    rates = tally_rates
    print(
        f"autonomy_sim: {args.weeks} weeks, {args.per_week:g} alerts/week, volume {args.volume}, seed {args.seed},"
        f" {N_RUNBOOKS} runbooks (true rates {min(rates):.2f}–{max(rates):.2f}), operator approves ≥ {SOUND}"
    )
    print(
        f"{'week':>4} {'alerts':>6} {'prompts':>7} {'(promo q)':>9} {'auto':>5} {'failed':>6} {'promo':>5} {'demo':>5}"
    )
    for n, w in enumerate(tally.weeks, 1):
        print(
            f"{n:>4} {w.alerts:>6} {w.human_prompts:>7} {w.promotion_questions:>9} {w.automated:>5}"
            f" {w.automated_failed:>6} {w.promotions:>5} {w.demotions:>5}"
        )
    ok = True
    if len(tally.weeks) >= 8:
        p1, p8 = tally.weeks[0].human_prompts, tally.weeks[7].human_prompts
        cut = 1 - p8 / p1 if p1 else 0.0
        met = cut >= 0.6
        ok &= met
        print(
            f"target 1: week 8 prompts {p8} vs week 1 {p1}: {100 * cut:.0f}% fewer (≥ 60%):"
            f" {'MET' if met else 'MISSED'}"
        )
    auto = sum(w.automated for w in tally.weeks)
    failed = sum(w.automated_failed for w in tally.weeks)
    share = failed / auto if auto else 0.0
    met = share <= 0.01
    ok &= met
    print(
        f"target 2: failed automated actions {failed}/{auto} = {100 * share:.2f}% (≤ 1%): {'MET' if met else 'MISSED'}"
    )
    worst = 0.0
    lines = []
    for i, r in enumerate(rates):
        if r < 0.9 and tally.executions[i]:
            frac = tally.at_standard[i] / tally.executions[i]
            worst = max(worst, frac)
            lines.append(f"{runbook_id(i)} ({r:.2f}): {tally.at_standard[i]}/{tally.executions[i]}")
    met = worst < 0.02
    ok &= met
    print(
        f"target 3: runbooks below 0.90 at standard, worst {100 * worst:.1f}% of executions (< 2%):"
        f" {'MET' if met else 'MISSED'}"
    )
    print("  " + "; ".join(lines))
    print("per runbook (true rate: executions, at standard):")
    print("  " + "; ".join(f"{r:.3f}: {tally.executions[i]}/{tally.at_standard[i]}" for i, r in enumerate(rates)))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--per-week", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--volume", choices=("correlated", "shuffled"), default="correlated")
    args = parser.parse_args()
    if not math.isfinite(args.per_week) or args.per_week <= 0:
        parser.error("--per-week must be positive")
    started = time.monotonic()
    tally = asyncio.run(simulate(args))
    ok = report(tally, args)
    print(f"({time.monotonic() - started:.0f} s wall)")
    sys.stdout.flush()
    import os

    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
