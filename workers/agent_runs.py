"""Agent runs end in the ledger as they really ended (docs/agents.md#how-a-run-ends).

An `AgentWorkflow` closes its own row in `agent_runs` when it ends by its code: an answer, a limit,
a failure it caught, a cancellation (`cancelled`). A run that ends without its code running closes
nothing: terminated (`temporal workflow terminate`, the Web UI), timed out (an execution timeout:
an incident's investigate stage gives its run one), reset away, or a run whose last ledger write
could not reach PostgreSQL. Its row would stay `routing`, `running` or `awaiting_approval` for ever.

The reconciler closes such rows from what Temporal says of the run (the row's id is the
workflow's id): for a row in an open status it describes the workflow, and when the workflow has
closed it closes the row: with the run's own result when it completed (its finish could not be
recorded), `cancelled` when it was cancelled, `failed` when it was terminated, timed out or failed,
the answer saying how (`the agent run agent-… was terminated: <reason>; it was waiting for an
approval and did not finish.`), `finished_at` the workflow's close time. A run still running is
left alone; a row its run closed meanwhile keeps the run's own ending (`close_open_agent_run`
only changes open rows).

It runs where it cannot be missed:
- in the worker, every `AGENTIC_AGENT_RECONCILE_S` (`reconcile_loop`): at most `RECONCILE_BATCH`
  open rows a pass, the ones looked at longest ago first (`checked_at`), so a row nobody reads is
  closed too. Only this pass closes a row whose workflow Temporal does not know (its history gone:
  retention, a Temporal that lost its data): the worker polls the namespace where the runs run,
  so "not found" there is an answer; a command pointed at another namespace by mistake must not
  close anything;
- whenever `agentic agents runs`/`show`, the gateway's `GET /v1/runs/{run}` or the console's
  agents pages meet an open row or a run whose progress is still open (`reconcile_rows`,
  `ended_progress`): what they show is right even before the worker's next pass, and even when
  the ledger refuses the write (a gateway on a ledger the worker has not migrated yet: the row is
  shown as it ended and the worker closes it).
The same pass closes the approved writes such a run left `running` (it ended while one ran: nothing
will record its result now), `failed` with the outcome unknown and the run's ending named, once
they started longer ago than a write may take (`ORPHAN_ACTION_AFTER_S`).
Cheap: only open rows are looked at, one `DescribeWorkflowExecution` each (and, for a closed
one, its close event), at most `AT_ONCE` at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from activities.ledger.db import LedgerError
from activities.ledger.models import AgentRunRow
from activities.ledger.repository import Ledger
from agentic_core import search_attributes as sa
from agentic_core.agents import AgentProgress, AgentResult, AgentStatus
from workers.temporal import CLOSED, RunEnding, ended_as, how_it_ended

log = logging.getLogger("agentic.agent_runs")

RECONCILE_BATCH = 100  # open rows one pass of the worker looks at, at most
AT_ONCE = 8  # workflows described at once
# An ended run's write still `running` is closed once it started this long ago: longer than the
# write's own start-to-close timeout (workflows/agent.py EXECUTE_TIMEOUT, 5 minutes), so a write
# still finishing in a worker records its own result first.
ORPHAN_ACTION_AFTER_S = 10 * 60.0
RPC_TIMEOUT_S = 10.0

_WHILE = {
    AgentStatus.ROUTING.value: "being routed",
    AgentStatus.RUNNING.value: "running",
    AgentStatus.AWAITING_APPROVAL.value: "waiting for an approval",
}


def status_after(ended: RunEnding | None) -> AgentStatus:
    """The status of a run that ended without an answer (`workers.temporal.ended_as`; None: it
    cannot be followed): `cancelled` when it was cancelled, else `failed`."""
    return AgentStatus.CANCELLED if ended == "cancelled" else AgentStatus.FAILED


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, as its ledger row should say it."""

    status: AgentStatus
    answer: str
    finished_at: datetime | None = None
    limit_hit: str | None = None  # None: the row's stays (so do the counters)
    steps: int | None = None
    tool_calls: int | None = None
    gone: bool = False  # Temporal does not know the run (any more)


async def ending_of(client: Client, run_id: str, last: str | None = None) -> RunEnd | None:
    """How run `run_id` ended, from Temporal; None while it runs. The answer says where the run
    was: its `AgentStatus` search attribute (the run keeps it up to date: `awaiting_approval`
    while a write waits), else `last`. An RPC error other than "not found" is raised (nothing is
    known)."""
    timeout = timedelta(seconds=RPC_TIMEOUT_S)
    handle = client.get_workflow_handle(run_id, result_type=AgentResult)
    try:
        desc = await handle.describe(rpc_timeout=timeout)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return RunEnd(
            AgentStatus.FAILED,
            f"the agent run {run_id} is not in Temporal any more (its history is gone): it ended without closing "
            "this record; how is not known.",
            gone=True,
        )
    if desc.status not in CLOSED:
        return None
    try:
        res = await handle.result(follow_runs=False, rpc_timeout=timeout)
    except WorkflowFailureError as exc:
        where = _WHILE.get(desc.typed_search_attributes.get(sa.AGENT_STATUS) or last or "", "")
        tail = f"; it was {where} and did not finish." if where else "; it did not finish."
        # the words of `agent_client.run_ended`: what `agentic agents ask` and the gateway say of it
        answer = f"the agent run {run_id} {how_it_ended(exc.cause)}{tail}"
        return RunEnd(status_after(ended_as(exc.cause)), answer, finished_at=desc.close_time)
    return RunEnd(
        res.status,
        res.answer,
        finished_at=desc.close_time,
        limit_hit=res.limit_hit,
        steps=res.steps,
        tool_calls=len(res.tool_calls),
    )


def ended_progress(p: AgentProgress, ending: RunEnd) -> AgentProgress:
    """The progress a closed run's query still answers (its last state: `awaiting_approval` for a
    run terminated while it waited), corrected to how it ended."""
    if ending.gone:
        return p
    return p.model_copy(
        update={
            "status": ending.status,
            "answer": ending.answer,
            "finished_at": p.finished_at or ending.finished_at,
            "approval_id": None,
        }
    )


async def close_row(ledger: Ledger, row: AgentRunRow, ending: RunEnd) -> AgentRunRow:
    """Close `row` as `ending` says (only while it is open). A ledger that refuses (unreachable, or
    not migrated to 0014 yet for `cancelled`) is logged, and the row comes back as it ended, for
    the caller to show: the worker's next pass writes it."""
    try:
        closed = await ledger.close_open_agent_run(
            row.id,
            ending.status.value,  # type: ignore[arg-type]
            answer=ending.answer,
            finished_at=ending.finished_at,
            limit_hit=ending.limit_hit,
            steps=ending.steps,
            tool_calls=ending.tool_calls,
        )
    except LedgerError as exc:
        log.warning("agent run %s ended (%s) but its row could not be closed: %s", row.id, ending.status.value, exc)
        closed = None
    if closed is not None:
        return closed
    return row.model_copy(
        update={
            "status": ending.status.value,
            "answer": ending.answer,
            "finished_at": ending.finished_at or row.finished_at,
            "limit_hit": ending.limit_hit if ending.limit_hit is not None else row.limit_hit,
            "steps": ending.steps if ending.steps is not None else row.steps,
            "tool_calls": ending.tool_calls if ending.tool_calls is not None else row.tool_calls,
        }
    )


async def reconcile_rows(
    ledger: Ledger, client: Client, rows: Sequence[AgentRunRow], *, close_missing: bool = False
) -> tuple[list[AgentRunRow], list[str]]:
    """`rows` with each open one whose run has ended closed (in the ledger, and in the list); and
    the ids of the open rows whose runs still run. A row whose run cannot be described now stays
    as it is (in neither); one Temporal does not know is closed only with `close_missing` (the
    worker's pass: see the module's doc)."""
    gate = asyncio.Semaphore(AT_ONCE)
    still: list[str] = []

    async def one(row: AgentRunRow) -> AgentRunRow:
        if not row.open:
            return row
        async with gate:
            try:
                ending = await ending_of(client, row.id, row.status)
            except (TimeoutError, RPCError) as exc:
                log.info("agent run %s: cannot tell how it stands now: %s", row.id, getattr(exc, "message", exc))
                return row
            if ending is None:
                still.append(row.id)
                return row
            if ending.gone and not close_missing:
                return row
            return await close_row(ledger, row, ending)

    done = await asyncio.gather(*(one(r) for r in rows))
    return list(done), still


async def reconcile_pass(ledger: Ledger, client: Client, *, limit: int = RECONCILE_BATCH) -> int:
    """One pass of the worker: up to `limit` open rows (looked at longest ago first); returns how
    many were closed."""
    rows = await ledger.open_agent_runs(limit=limit)
    if not rows:
        return 0
    done, still = await reconcile_rows(ledger, client, rows, close_missing=True)
    await ledger.mark_agent_runs_checked(still)
    closed = [r for r in done if not r.open]
    for r in closed:
        log.info("agent run %s had ended without closing its row: closed %s (%s)", r.id, r.status, r.answer[:200])
    return len(closed)


async def close_orphaned_actions(ledger: Ledger, *, started_before_s: float = ORPHAN_ACTION_AFTER_S) -> int:
    """The approved writes of agent runs that ended while they ran (terminated, say): their rows
    would stay `running` for ever; closed `failed`, outcome unknown (`Ledger.close_orphaned_agent_actions`).
    Returns how many."""
    closed = await ledger.close_orphaned_agent_actions(started_before_s=started_before_s)
    for key, status in closed:
        log.info("action %s of an agent run that ended (%s) while it ran: closed failed, outcome unknown", key, status)
    return len(closed)


async def reconcile_loop(ledger: Ledger, client: Client, every_s: float) -> None:
    """The worker's reconciler: a pass at once, then every `every_s` seconds, for as long as the
    worker runs (cancel the task to stop it). A pass that fails is logged; the next one tries again."""
    while True:
        try:
            await reconcile_pass(ledger, client)
            await close_orphaned_actions(ledger)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("reconciling agent runs failed; the next pass tries again", exc_info=True)
        await asyncio.sleep(every_s)
