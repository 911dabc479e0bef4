"""Chaos with invariants: a stream of alert groups through the real embedded stack while a seeded
random schedule kill -9s one part at a time, then the invariants.

    python benchmarks/chaos.py [--groups 60] [--kills 50] [--seed 17] [--gap 5] [--every 3] [--cap 900]
                               [--healthy-reset 20] [--only temporal ...]

(`--only`: kill only these parts; `CHAOS_KEEP=DIR`: run in DIR and keep the data dir, logs included.)

What it does:

1. Starts kmock (an emulated Kubernetes API, served from this process's event loop), the
   project's fake OpenAI-compatible model server (tests/support/fake_openai.py: it answers
   nothing usable, so every plan falls back to its runbook at once, as in the backup drill) and
   the real embedded stack (`agentic up --detach`) on a fresh data dir and free ports, with
   `AGENTIC_APPROVAL_MODE=NORMAL`, `AGENTIC_APPROVERS=alice` and `AGENTIC_KUBECONFIG` on kmock.
2. Imports two runbooks that restart the alert's deployment (`rollout_restart`, a PATCH on
   kmock): `chaos/approve` at `manual` (the agent asks; answered with `agentic approve --by
   alice`, retried until the incident has left `awaiting_approval`) and `chaos/auto` at
   `standard` (it runs alone). Each group has its own deployment, so kmock's request log says
   how often each action ran.
3. Sends `--groups` Alertmanager webhooks (every other one approve/auto), one every `--gap`
   seconds, the way Alertmanager does: a connection error or a 5xx is retried with backoff
   (docs/disaster-recovery.md, "Alertmanager while the intake is down"); a group is accepted
   when the intake answered 202. Once a group's PATCH is seen, its resolution is sent (the same
   way) and the incident must end `resolved`.
4. Meanwhile, the chaos schedule (random.Random(--seed)): wait 0.5-1.5 × --every seconds, kill -9
   one part (the kinds in a shuffled round, so each kind is hit as often as the others: every
   part `agentic up` runs here, i.e. worker, temporal, postgres, intake, gateway, each MCP server
   (the bot when configured; not here), and the model server, which lives in this process and
   is stopped and started again after 1-3 s), wait until the
   supervisor has it back (a new pid, healthy, not starting: `stack.json`), and go on until
   `--kills` kills. Time to recover = kill to healthy again, per part kind. Each part is killed
   about once a minute, far more often than anything fails for real: with the supervisor's
   default `AGENTIC_SUPERVISOR_HEALTHY_RESET_S` (300 s) every kill would count as one more crash
   in a row, the restart back-off would double up to a minute and the figure would measure the
   back-off (and the fifth crash would report the part down, an incident of its own). So the
   stack runs with `--healthy-reset` (20 s): a part healthy that long before its kill is a first
   crash (1 s back-off), as a lone failure in production is. `--healthy-reset 300` measures the
   default.
5. Waits (at most --cap seconds) until every accepted group's incident is in a terminal state,
   then checks the invariants (and reports how long after the 202 each incident's first step,
   its question, came: median, max):
   - one incident per accepted group: a ledger row, and exactly one IncidentWorkflow run in
     Temporal's visibility for its id;
   - every action ran exactly once: one PATCH per group's deployment in kmock's request log;
   - nothing stuck: every incident terminal within the bound, and its first step within
     `START_BOUND_S` of the intake's 202 (a late one is reported with its workflow history, each
     workflow task attempt, and the kills around it);
   - no notification sent twice: no two ledger `notifications` rows of one incident with the
     same channel, kind and text;
   - the ledger agrees with Temporal: each incident's ledger status equals its workflow's
     `IncidentStatus` search attribute, and a terminal status goes with a closed workflow.
   It prints the kills survived, the violations (each named), the recovery times per part kind
   and the machine's load; it exits 1 when an invariant is violated.

`run_chaos` is what tests/e2e/test_chaos.py runs with a small count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentic_core import search_attributes as sa
from agentic_core.alerts import incident_id_for
from tests.support.e2e import agentic
from tests.support.env import stack_env
from tests.support.fake_openai import FakeChatServer
from tests.support.kmock_helpers import NS, deployment, emulated_cluster, requests_for
from workers.stack.state import pid_alive, read_state

TERMINAL = {"resolved", "failed", "ignored", "expired", "unknown"}
TOKEN = "chaos-intake-token"
MODEL = "model"

# An accepted group's first step (its question) must follow the intake's 202 within this, kills
# included. A killed Temporal or worker is back in ~2 s and a workflow task lost with it is
# retried after its 10 s timeout; on the loaded 2-core machine the first step takes 25 s at the
# median and up to 45 s with Temporal killed every ~30 s. What the bound catches is the minutes
# a workflow task retried three times and more waits: from its 4th attempt the server lengthens
# its start-to-close timeout exponentially (temporalio/temporal#2765), so a late start is
# reported with its history (each attempt) and the kills around it.
START_BOUND_S = 120.0

RUNBOOKS = {
    "approve.md": ("chaos/approve", "ChaosApprove", "manual"),
    "auto.md": ("chaos/auto", "ChaosAuto", "standard"),
}


def runbook(rid: str, alertname: str, level: str) -> str:
    return f"""---
id: {rid}
title: Restart the deployment ({alertname})
automation_level: {level}
match:
  - alertname={alertname}
actions:
  - tool: rollout_restart
    arguments:
      namespace: "{{{{ labels.namespace }}}}"
      deployment: "{{{{ labels.deployment }}}}"
---
# Restart the deployment

## Meaning
The deployment {alertname} names does not serve.

## Mitigation
Restart it with a rollout restart.
"""


def webhook(alertname: str, dep: str, status: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "namespace": NS, "deployment": dep, "severity": "warning"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", deployment="{dep}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "agentic",
        "groupLabels": {"alertname": alertname, "deployment": dep},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"Deployment {NS}/{dep} is unhealthy"},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"Deployment {NS}/{dep} is unhealthy"},
                "startsAt": "2026-12-06T10:00:00Z",
                "endsAt": "2026-12-06T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": f"fp-{dep}",
            }
        ],
    }


@dataclass
class Group:
    alertname: str
    dep: str
    incident_id: str
    accepted: bool = False
    resolved_sent: bool = False
    approved: bool = False
    sends: int = 0  # POSTs of its firing webhook, retries included
    refusals: list[int] = field(default_factory=list)  # statuses other than 202 on the way
    accepted_at: float | None = None  # wall clock of the intake's 202
    first_step_s: float | None = None  # 202 → the incident's first notification (its question)
    timeline: list[str] = field(default_factory=list)  # a late start's history, for the report


@dataclass
class Kill:
    kind: str
    at: float  # seconds since the start
    recover_s: float | None = None  # None: not back within the bound
    wall: float = field(default_factory=time.time)  # when, by the wall clock


@dataclass
class Report:
    groups: list[Group]
    kills: list[Kill]
    violations: list[str]
    statuses: dict[str, str]
    wall_s: float
    load: tuple[float, float, float]
    intake_answers: dict[int, int]  # every status the intake answered to the sender, counted
    notifications: dict[str, int] = field(default_factory=dict)
    start_bound_s: float = START_BOUND_S

    def recovery(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for k in self.kills:
            if k.recover_s is not None:
                out.setdefault(k.kind, []).append(k.recover_s)
        return out

    def lines(self) -> list[str]:
        survived = sum(1 for k in self.kills if k.recover_s is not None)
        accepted = sum(g.accepted for g in self.groups)
        lines = [
            f"groups sent / accepted                 {len(self.groups)} / {accepted}",
            f"approve / standard groups              "
            f"{sum(g.alertname == 'ChaosApprove' for g in self.groups)} / "
            f"{sum(g.alertname == 'ChaosAuto' for g in self.groups)}",
            f"approved by `agentic approve`          {sum(g.approved for g in self.groups)}"
            f" ({sum(g.approved and g.alertname == 'ChaosAuto' for g in self.groups)} of them standard, which asked)",
            f"kills survived                         {survived} of {len(self.kills)}",
            f"invariant violations                   {len(self.violations)}",
            f"intake answers to the sender           {dict(sorted(self.intake_answers.items()))}",
            f"final statuses                         {dict(sorted(_count(self.statuses.values()).items()))}",
            f"notifications recorded, by kind        {dict(sorted(self.notifications.items()))}",
            f"wall time                              {self.wall_s:.0f} s",
            f"load average (1/5/15 min) at the end   {self.load[0]:.2f} / {self.load[1]:.2f} / {self.load[2]:.2f}"
            f" on {os.cpu_count()} cores",
        ]
        starts = [g.first_step_s for g in self.groups if g.first_step_s is not None]
        if starts:
            lines.append(
                f"202 → first step (question), s         median {statistics.median(starts):.1f}   max {max(starts):.1f}"
                f"   over {self.start_bound_s:g} s: {sum(s > self.start_bound_s for s in starts)}"
            )
        lines.append("time to recover (kill -9 → healthy again), per part:")
        for kind, times in sorted(self.recovery().items()):
            lines.append(
                f"  {kind:<14} n={len(times):<3} median {statistics.median(times):5.1f} s   max {max(times):5.1f} s"
            )
        for v in self.violations:
            lines.append(f"VIOLATION: {v}")
        for g in self.groups:
            if g.timeline:
                lines.append(f"late start of {g.incident_id} ({g.dep}), its history (s after the 202):")
                lines.extend(f"  {e}" for e in g.timeline)
                assert g.accepted_at is not None
                near = [
                    f"{k.kind} at {k.wall - g.accepted_at:+.1f} s (back in {k.recover_s or 0:.1f} s)"
                    for k in self.kills
                    if -30 < k.wall - g.accepted_at < (g.first_step_s or 0)
                ]
                lines.append("  kills meanwhile: " + ("; ".join(near) or "none"))
        return lines


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


class Chaos:
    def __init__(
        self, env: dict[str, str], data: Path, model: FakeChatServer, seed: int, every: float, kinds: list[str] | None
    ) -> None:
        self.env, self.data, self.model = env, data, model
        self.rng = random.Random(seed)
        self.every = every
        self.only = kinds
        self.t0 = time.monotonic()
        self.url = f"http://127.0.0.1:{env['AGENTIC_INTAKE_PORT']}/alerts"
        self.answers: dict[int, int] = {}
        self.kills: list[Kill] = []
        self.notifications: dict[str, int] = {}  # ledger rows of the incidents, by kind
        self.busy_kill = asyncio.Lock()

    # ---- Alertmanager's side ------------------------------------------------------------

    async def post(self, http: httpx.AsyncClient, doc: dict[str, Any], group: Group | None, limit: float) -> bool:
        """POST like Alertmanager's webhook notifier: retry on a connection error or a 5xx with
        backoff (its own: 0.5 s doubling up to 5 s here) until `limit`; a 4xx is final."""
        deadline = time.monotonic() + limit
        backoff = 0.5
        while True:
            status = 0
            with contextlib.suppress(httpx.HTTPError):
                r = await http.post(self.url, json=doc, headers={"Authorization": f"Bearer {TOKEN}"})
                status = r.status_code
            self.answers[status] = self.answers.get(status, 0) + 1
            if group is not None:
                group.sends += 1
                if status != 202:
                    group.refusals.append(status)
            if status == 202:
                if group is not None:
                    group.accepted_at = time.time()
                return True
            if 400 <= status < 500 or time.monotonic() > deadline:
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # ---- the schedule --------------------------------------------------------------------

    def part_pid(self, name: str) -> int | None:
        with contextlib.suppress(Exception):
            state = read_state(self.data)
            if state is not None and name in state.parts:
                return state.parts[name].pid
        return None

    def healthy_again(self, name: str, old_pid: int | None) -> bool:
        with contextlib.suppress(Exception):
            state = read_state(self.data)
            if state is None or name not in state.parts:
                return False
            p = state.parts[name]
            return (
                p.pid is not None and p.pid != old_pid and pid_alive(p.pid) and not p.starting and p.down_since is None
            )
        return False

    async def kill_one(self, kind: str, bound: float = 180.0) -> Kill:
        kill = Kill(kind=kind, at=time.monotonic() - self.t0)
        started = time.monotonic()
        if kind == MODEL:  # the model server lives in this process: stop it, start it again
            await self.model.stop()
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            await self.model.start()
            kill.recover_s = time.monotonic() - started
            return kill
        pid = self.part_pid(kind)
        if pid is None:
            raise RuntimeError(f"no pid for part {kind} in stack.json")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while time.monotonic() - started < bound:
            if self.healthy_again(kind, pid):
                kill.recover_s = time.monotonic() - started
                break
            await asyncio.sleep(0.2)
        return kill

    async def schedule(self, kills: int, done: asyncio.Event, on_kill: Callable[[Kill], Awaitable[None]]) -> None:
        state = read_state(self.data)
        assert state is not None
        # every part `agentic up` runs here (worker, temporal, postgres, intake, each MCP server,
        # the bot when configured), and the model server
        kinds = self.only or [*sorted(n for n, p in state.parts.items() if p.mode == "embedded" and p.pid), MODEL]
        print(f"chaos among: {', '.join(kinds)}", flush=True)
        order: list[str] = []
        for _ in range(kills):
            if not order:
                order = list(kinds)
                self.rng.shuffle(order)
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.every)
            kind = order.pop()
            async with self.busy_kill:
                kill = await self.kill_one(kind)
            self.kills.append(kill)
            await on_kill(kill)
            print(
                f"[{kill.at:6.1f}s] kill -9 {kind:<14} back in "
                + (f"{kill.recover_s:.1f}s" if kill.recover_s is not None else "NEVER"),
                flush=True,
            )
        done.set()


async def _ledger(data: Path, env: dict[str, str]) -> asyncpg.Connection:
    pw = (data / "secrets" / "postgres.password").read_text().strip()
    return await asyncpg.connect(
        f"postgresql://postgres:{pw}@127.0.0.1:{env['AGENTIC_POSTGRES_PORT']}/postgres", timeout=5
    )


async def _statuses(data: Path, env: dict[str, str], ids: list[str]) -> dict[str, str] | None:
    """Each incident's ledger status, or None while the ledger cannot be read (PostgreSQL down)."""
    try:
        conn = await _ledger(data, env)
    except Exception:
        return None
    try:
        rows = await conn.fetch("select id, status from incidents where id = any($1::text[])", ids)
        return {r["id"]: r["status"] for r in rows}
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def _all_closed(data: Path, ids: list[str]) -> bool:
    """Whether every incident's workflow has closed (a terminal ledger status is written a moment
    before the workflow returns)."""
    state = read_state(data)
    if state is None:
        return False
    try:
        client = await Client.connect(state.temporal_target, namespace=state.temporal_namespace)
        for i in ids:
            desc = await client.get_workflow_handle(i).describe()
            if desc.status is None or desc.status.name == "RUNNING":
                return False
    except Exception:
        return False
    return True


async def drive(chaos: Chaos, http: httpx.AsyncClient, k: Any, g: Group, cap: float) -> None:
    """One group's life: fire, approve (approve groups), resolve once its PATCH was seen."""
    g.accepted = await chaos.post(http, webhook(g.alertname, g.dep, "firing"), g, limit=cap)
    if not g.accepted:
        return
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        if requests_for(k, g.dep, "PATCH"):
            break
        if not g.approved:  # a standard one asks too when its evidence fell short (counted below)
            st = (await _statuses(chaos.data, chaos.env, [g.incident_id])) or {}
            if st.get(g.incident_id) == "awaiting_approval":
                rc, _out, _err = await agentic(chaos.env, "approve", g.incident_id, "--by", "alice", limit=60)
                g.approved = rc == 0
        await asyncio.sleep(1.0)
    else:
        return
    g.resolved_sent = await chaos.post(http, webhook(g.alertname, g.dep, "resolved"), None, limit=cap)


async def check(chaos: Chaos, k: Any, groups: list[Group], statuses: dict[str, str]) -> list[str]:
    env, data = chaos.env, chaos.data
    violations: list[str] = []
    accepted = [g for g in groups if g.accepted]
    for g in groups:
        if not g.accepted:
            violations.append(f"{g.dep}: the intake never accepted the group ({g.refusals[-5:]})")
    state = read_state(data)
    assert state is not None
    client = await Client.connect(state.temporal_target, namespace=state.temporal_namespace)
    conn = await _ledger(data, env)
    try:
        for g in accepted:
            runs = [w async for w in client.list_workflows(f"WorkflowId = '{g.incident_id}'")]
            if len(runs) != 1:
                violations.append(f"{g.incident_id} ({g.dep}): {len(runs)} workflow runs, not exactly one")
            if g.incident_id not in statuses:
                violations.append(f"{g.incident_id} ({g.dep}): no incident in the ledger")
                continue
            patches = len(requests_for(k, g.dep, "PATCH"))
            if patches != 1:
                violations.append(f"{g.incident_id} ({g.dep}): the restart ran {patches} times, not once")
            st = statuses[g.incident_id]
            if st not in TERMINAL:
                violations.append(f"{g.incident_id} ({g.dep}): stuck in {st} past the bound")
            elif st != "resolved":
                violations.append(f"{g.incident_id} ({g.dep}): ended {st}, not resolved")
            if runs:
                desc = await client.get_workflow_handle(g.incident_id).describe()
                sa_status = desc.typed_search_attributes.get(sa.INCIDENT_STATUS)
                closed = desc.status is not None and desc.status.name != "RUNNING"
                if sa_status != st:
                    violations.append(f"{g.incident_id}: the ledger says {st}, Temporal's IncidentStatus {sa_status}")
                if (st in TERMINAL) != closed:
                    wf = desc.status.name if desc.status else "?"
                    violations.append(f"{g.incident_id}: the ledger says {st}, the workflow is {wf}")
        dups = await conn.fetch(
            "select incident_id, channel, kind, left(text, 80) as text, count(*) as n from notifications"
            " where incident_id = any($1::text[]) group by incident_id, channel, kind, text having count(*) > 1",
            [g.incident_id for g in accepted],
        )
        kinds = await conn.fetch(
            "select kind, count(*) as n from notifications where incident_id = any($1::text[]) group by kind",
            [g.incident_id for g in accepted],
        )
        chaos.notifications = {r["kind"]: r["n"] for r in kinds}
        firsts = await conn.fetch(
            "select incident_id, min(sent_at) as at from notifications where incident_id = any($1::text[])"
            " group by incident_id",
            [g.incident_id for g in accepted],
        )
        first_at = {r["incident_id"]: r["at"].timestamp() for r in firsts}
        for g in accepted:
            if g.accepted_at is None:
                continue
            if g.incident_id not in first_at:
                violations.append(f"{g.incident_id} ({g.dep}): no notification at all")
                continue
            g.first_step_s = max(0.0, first_at[g.incident_id] - g.accepted_at)
            if g.first_step_s > START_BOUND_S:
                violations.append(
                    f"{g.incident_id} ({g.dep}): its first step came {g.first_step_s:.0f} s after the intake's 202"
                    f" (bound {START_BOUND_S:g} s)"
                )
                g.timeline = await _timeline(client, g)
        for r in dups:
            violations.append(f"{r['incident_id']}: notification {r['kind']} on {r['channel']} sent {r['n']} times")
    finally:
        await conn.close()
    return violations


async def _timeline(client: Client, g: Group, limit: int = 40) -> list[str]:
    """The first events of a group's workflow history, in seconds after the 202 (a late start's
    evidence: which task waited, and for what)."""
    out: list[str] = []
    with contextlib.suppress(Exception):
        history = await client.get_workflow_handle(g.incident_id).fetch_history()
        for e in list(history.events)[:limit]:
            at = e.event_time.ToDatetime().timestamp() - (g.accepted_at or 0.0)
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
            extra = ""
            if e.HasField("workflow_task_scheduled_event_attributes"):
                a = e.workflow_task_scheduled_event_attributes
                extra = f" queue={a.task_queue.name} kind={a.task_queue.kind} attempt={a.attempt}"
            elif e.HasField("workflow_task_started_event_attributes"):
                extra = f" by {e.workflow_task_started_event_attributes.identity}"
            elif e.HasField("workflow_task_timed_out_event_attributes"):
                extra = f" {e.workflow_task_timed_out_event_attributes.timeout_type}"
            elif e.HasField("workflow_task_failed_event_attributes"):
                extra = f" cause={e.workflow_task_failed_event_attributes.cause}"
            out.append(f"{at:7.1f}  {name}{extra}")
    return out


async def run_chaos(
    groups: int,
    kills: int,
    seed: int,
    gap: float,
    every: float,
    cap: float,
    tmp: Path,
    kinds: list[str] | None = None,
    healthy_reset_s: float = 20.0,
) -> Report:
    """Everything above, on a fresh data dir under `tmp`; the stack is stopped before it returns."""
    t_start = time.monotonic()
    (tmp / "kube").mkdir()
    (tmp / "runbooks").mkdir()
    for fname, (rid, alertname, level) in RUNBOOKS.items():
        (tmp / "runbooks" / fname).write_text(runbook(rid, alertname, level))
    async with emulated_cluster(tmp / "kube") as (k, kubeconfig):
        model = FakeChatServer(name="planner")  # answers nothing usable: the planner falls back at once
        await model.start()
        data = tmp / "data"
        env = stack_env(data) | {
            "AGENTIC_KUBECONFIG": str(kubeconfig),
            "AGENTIC_PLANNER_URL": model.base_url,
            "AGENTIC_APPROVAL_MODE": "NORMAL",
            "AGENTIC_APPROVERS": "alice",
            "AGENTIC_INTAKE_TOKEN": TOKEN,
            "AGENTIC_VERIFY_WINDOW_S": "600",
            "AGENTIC_SUPERVISOR_HEALTHY_RESET_S": str(healthy_reset_s),
        }
        try:
            rc, out, err = await agentic(env, "up", "--detach")
            if rc != 0:
                raise RuntimeError(f"agentic up failed: {out}\n{err}")
            try:
                rc, out, err = await agentic(env, "runbooks", "import", str(tmp / "runbooks"), limit=120)
                if rc != 0 or "2 added" not in out:
                    raise RuntimeError(f"runbooks import: {out}\n{err}")
                chaos = Chaos(env, data, model, seed, every, kinds)
                stream = []
                for i in range(groups):
                    alertname = "ChaosApprove" if i % 2 == 0 else "ChaosAuto"
                    dep = f"chaos-{i:03d}"
                    k.objects["apps/v1/deployments", NS, dep] = deployment(dep)
                    stream.append(
                        Group(alertname, dep, incident_id_for("agentic", webhook(alertname, dep, "f")["groupKey"]))
                    )
                done = asyncio.Event()

                async def noop(_k: Kill) -> None:
                    return None

                async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as http:
                    chaos_task = asyncio.create_task(chaos.schedule(kills, done, noop))
                    drivers = []
                    for g in stream:
                        drivers.append(asyncio.create_task(drive(chaos, http, k, g, cap)))
                        await asyncio.sleep(gap)
                    await asyncio.gather(*drivers)
                    await chaos_task
                # every accepted incident terminal, within the bound
                ids = [g.incident_id for g in stream if g.accepted]
                deadline = time.monotonic() + min(cap, 180)
                statuses: dict[str, str] = {}
                while time.monotonic() < deadline:
                    statuses = (await _statuses(data, env, ids)) or statuses
                    if (
                        len(statuses) == len(ids)
                        and all(s in TERMINAL for s in statuses.values())
                        and await _all_closed(data, ids)
                    ):
                        break
                    await asyncio.sleep(1.0)
                violations = await check(chaos, k, stream, statuses)
                for kill in chaos.kills:
                    if kill.recover_s is None:
                        violations.append(f"{kill.kind} killed at {kill.at:.0f}s did not come back")
                return Report(
                    groups=stream,
                    kills=chaos.kills,
                    violations=violations,
                    statuses=statuses,
                    wall_s=time.monotonic() - t_start,
                    load=os.getloadavg(),
                    intake_answers=chaos.answers,
                    notifications=chaos.notifications,
                )
            finally:
                await agentic(env, "down", limit=120)
        finally:
            await model.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=60, help="alert groups in the stream (half approve, half standard)")
    ap.add_argument("--kills", type=int, default=50, help="kill -9s, one part at a time")
    ap.add_argument("--seed", type=int, default=17, help="the chaos schedule's seed")
    ap.add_argument("--gap", type=float, default=5.0, help="seconds between groups")
    ap.add_argument("--every", type=float, default=3.0, help="seconds between kills, 0.5-1.5 × this after a recovery")
    ap.add_argument(
        "--healthy-reset", type=float, default=20.0, help="AGENTIC_SUPERVISOR_HEALTHY_RESET_S for the stack (see above)"
    )
    ap.add_argument("--cap", type=float, default=900.0, help="bound, seconds, on a group's life and the final wait")
    ap.add_argument("--only", nargs="*", default=None, help="kill only these parts (e.g. temporal worker)")
    args = ap.parse_args()
    keep = os.environ.get("CHAOS_KEEP")  # a directory: the run's data (logs included) stays there
    with contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="agentic-chaos-") as tmp:
        report = asyncio.run(
            run_chaos(
                args.groups,
                args.kills,
                args.seed,
                args.gap,
                args.every,
                args.cap,
                Path(tmp),
                args.only,
                args.healthy_reset,
            )
        )
    print("\n".join(report.lines()))
    print(json.dumps({"kills": len(report.kills), "violations": len(report.violations)}))
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
