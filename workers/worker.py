"""The Temporal worker process: `python -m workers.worker` (started by `agentic up`).

It builds every client once (asyncpg pool, knowledge store, embedder), registers the bound
activity methods and the workflows, then polls its task queues while the embedding model loads
in its own thread (a recall that comes first waits for it; a model that cannot load stops the
worker, as before). It is healthy when Temporal sees it polling. SIGTERM drains and stops it.
The one that polls the orchestration queue also closes, every AGENTIC_AGENT_RECONCILE_S, the
ledger rows of agent runs that ended without closing them (terminated, timed out:
`workers/agent_runs.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack
from typing import Any

from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from workers.errors import AgenticError
from workers.process import run_service, settle_heap
from workers.sandbox import workflow_runner
from workers.settings import Settings

log = logging.getLogger("agentic.worker")


async def build_notifier(settings: Settings, ledger: Any, stack: AsyncExitStack) -> Any:
    """Telegram when a bot token is set (it records every message in the ledger too); else None:
    the activities' default, ledger rows and log lines."""
    if settings.telegram_token is None:
        return None
    from workers.telegram.client import make_bot, secrets_from
    from workers.telegram.notifier import TelegramNotifier
    from workers.telegram.routing import Router, parse_routes

    _, chat_id, secret = secrets_from(settings.model_copy(update={"telegram_webhook_url": None}))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the bot token in URLs
    from telegram.error import InvalidToken, TelegramError

    bot = make_bot(settings)
    try:
        await bot.initialize()
    except InvalidToken:
        raise AgenticError("Telegram rejected AGENTIC_TELEGRAM_TOKEN (check it with @BotFather)") from None
    except TelegramError as exc:  # Telegram unreachable for now: notifications retry, the worker runs
        log.warning("Telegram not reachable at start (%s); notifications will retry", type(exc).__name__)
    stack.push_async_callback(bot.shutdown)
    log.info("notifications go to Telegram chat %s", chat_id)
    return TelegramNotifier(bot, ledger, chat_id, secret, Router(parse_routes(settings.telegram_routes)))


def build_rollout(settings: Settings, *, gateway: Any = None, client: Any = None) -> tuple[list[Any], list[type]]:
    """The rollout activities and workflow, when a cluster is configured; none otherwise. The
    agents' checks use the worker's tool gateway and its Temporal client (routing requests go to
    the worker's task queue)."""
    from activities.rollout.activities import RolloutActivities
    from workflows.rollout import RolloutWorkflow

    try:
        acts = RolloutActivities.build(
            kubeconfig=settings.kubeconfig,
            waves_file=settings.waves_file,
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
            postgres_dsn=settings.postgres_target(),
            gateway=gateway,
            temporal=client,
            task_queue=settings.task_queue,
        )
    except Exception as exc:
        log.warning("rollouts disabled on this worker: no Kubernetes cluster (%s); set AGENTIC_KUBECONFIG", exc)
        return [], []
    return list(acts.all()), [RolloutWorkflow]


def build_backup(settings: Settings, store: Any, pool: Any) -> tuple[list[Any], list[type]]:
    """`backup.create` and `backup.report_failure`, and BackupWorkflow (docs/disaster-recovery.md)."""
    from activities.backup.activities import BackupActivities, BackupConfig
    from workflows.backup import BackupWorkflow

    pg_bin = None
    try:  # pgserver's pg_dump when installed, else the one on PATH
        from workers.stack.postgres import postgres_bin

        pg_bin = postgres_bin()
    except AgenticError:
        pg_bin = None
    events = (
        settings.intake_url.rsplit("/alerts", 1)[0].rstrip("/") + "/events"
        if settings.intake_url
        else f"http://{settings.host}:{settings.intake_port}/events"
    )
    config = BackupConfig(
        data_dir=settings.data_path,
        backup_dir=settings.backup_path,
        postgres_dsn=settings.postgres_target(),
        pg_bin=pg_bin,
        temporal_db=settings.data_path / "temporal" / "temporal.db" if settings.temporal_embedded else None,
        key=settings.backup_key.get_secret_value() if settings.backup_key else None,
        keep=settings.backup_keep,
        intake_events_url=events,
        intake_token=settings.intake_token.get_secret_value() if settings.intake_token else None,
    )
    acts = BackupActivities(config, store, pool)
    return [acts.create, acts.report_failure], [BackupWorkflow]


async def refuse_newer_ledger(pool: Any) -> None:
    """A ledger migrated by a newer agentic: refuse to start (one clear line, exit 2)."""
    from activities.ledger.db import SchemaTooNewError, check_schema

    try:
        await check_schema(pool)
    except SchemaTooNewError as exc:
        raise AgenticError(str(exc)) from None


def queue_workers(
    settings: Settings, client: Any, orchestration: Worker, model_acts: list[Any], tool_acts: list[Any]
) -> list[Worker]:
    """One Worker per queue this process polls (`AGENTIC_WORKER_QUEUES`), sharing the client."""
    identity = f"agentic-worker@{os.uname().nodename}:{os.getpid()}"
    kinds = settings.polled_queues
    workers: list[Worker] = [orchestration] if "orchestration" in kinds else []
    for kind, queue, acts, slots in (
        ("model", settings.model_queue, model_acts, settings.worker_model_activities),
        ("tools", settings.tools_queue, tool_acts, settings.worker_tools_activities),
    ):
        if kind in kinds:
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=acts,
                    identity=f"{identity}/{kind}",
                    max_concurrent_activities=slots,
                    activity_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=settings.worker_activity_pollers),
                )
            )
    return workers


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    from activities.guardrails.activities import GuardrailActivities
    from activities.incident.activities import IncidentActivities
    from activities.inference.router import preload_lazy_modules
    from activities.knowledge.activities import KnowledgeActivities
    from activities.knowledge.kb import KnowledgeBase
    from activities.ledger.db import create_pool
    from activities.ledger.repository import Ledger
    from activities.reports.activities import ReportActivities
    from activities.trust.activities import TrustActivities
    from agentic_core.autonomy import TrustConfig
    from workers.temporal import connect
    from workers.wiring import (
        agent_activities,
        build_embedder_from,
        build_store,
        inference_router,
        planner_config,
        tool_gateway,
    )
    from workflows.agent import AgentWorkflow
    from workflows.approval import ApprovalWorkflow
    from workflows.digest import WeeklyDigestWorkflow
    from workflows.incident import IncidentWorkflow
    from workflows.knowledge import WORKFLOWS
    from workflows.promotion import RunbookPromotionWorkflow
    from workflows.route_probe import RouteProbeWorkflow
    from workflows.trust_review import TrustReviewWorkflow

    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.postgres_target(), max_size=settings.postgres_pool_max)
        stack.push_async_callback(pool.close)
        await refuse_newer_ledger(pool)  # before any work: old code never runs on a newer schema
        # telemetry (docs/observability.md): the SDK's metrics through the runtime, ours on a port
        from workers import telemetry

        runtime = telemetry.temporal_runtime(settings)
        client = await connect(settings.temporal_target, settings.temporal_namespace, runtime=runtime)
        metrics_url = telemetry.serve_metrics(settings)
        if metrics_url:
            log.info("metrics at %s", metrics_url)
        ledger = Ledger(pool)

        store = build_store(settings)
        stack.push_async_callback(store.close)
        embedder = build_embedder_from(settings)
        kb = KnowledgeBase(store, embedder)
        await kb.ensure()

        knowledge = KnowledgeActivities(kb, ledger)
        router = inference_router(settings)
        # not on the first model call, mid-burst; LiteLLM's only when a group goes through it
        await asyncio.to_thread(preload_lazy_modules, router.uses_litellm)
        notifier = await build_notifier(settings, ledger, stack)
        incident = IncidentActivities(kb, ledger, router, notifier, planner=planner_config(settings, router))
        tools = tool_gateway(ledger, settings)
        stack.push_async_callback(tools.aclose)  # its pooled MCP sessions, after the worker drains
        guardrails = GuardrailActivities(ledger)  # guardrail events the workflows record
        reports = ReportActivities(ledger, settings.data_path)
        rollout_activities, rollout_workflows = build_rollout(settings, gateway=tools, client=client)
        # the agent loop (docs/agents.md): AgentWorkflow, its activities, and the gateway's tools.call
        agents = agent_activities(ledger, router, settings, tools)
        agent_workflows: list[type] = [AgentWorkflow]
        agent_acts: list[Any] = [agents.start_run, agents.model_turn, agents.finish_run, tools.call]
        trust_acts = TrustActivities(
            ledger,
            kb,
            TrustConfig(
                approvers=settings.approver_list,
                remind_after_s=settings.remind_after_s,
                escalate_after_s=settings.escalate_after_s,
                expire_after_s=settings.expire_after_s,
            ),
            client=client,
            task_queue=settings.task_queue,
        )
        # The router (#13): `agents.route` (RouteProbeWorkflow, registered above, is the workflow
        # behind `agentic agents route` and the rollout's router check). Its exemplars are
        # indexed into the `routes` collection in the background once the worker polls (seconds
        # to a minute, once per data dir; then a scroll), so a fresh stack starts no slower and
        # the first route does not wait for it (a route that comes sooner waits on the same lock).
        from workers.wiring import route_activities

        routes = route_activities(store, embedder, router, settings)
        router_activities: list[Any] = [routes.route]

        # Backups (docs/disaster-recovery.md): on the worker, which owns the Qdrant Edge shards.
        backup_acts, backup_workflows = build_backup(settings, store, pool)
        from activities.backup.rebuild import RebuildActivities
        from workflows.backup import KnowledgeRebuildWorkflow

        backup_acts.append(RebuildActivities(kb, pool).rebuild)  # `agentic knowledge rebuild`
        backup_workflows.append(KnowledgeRebuildWorkflow)

        # Task queues (docs/scaling.md): the orchestration queue (the old single queue) gets the
        # workflows and every activity (one a run scheduled there before the split is still
        # served; runs started without queues use it for everything); the model and tools
        # queues get the calls that compete, each with its own concurrency.
        model_acts: list[Any] = [incident.propose, agents.model_turn, routes.route]
        tool_acts: list[Any] = [tools.execute, tools.call]
        orchestration = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[
                *WORKFLOWS,
                IncidentWorkflow,
                ApprovalWorkflow,
                RunbookPromotionWorkflow,
                TrustReviewWorkflow,
                WeeklyDigestWorkflow,
                *rollout_workflows,
                RouteProbeWorkflow,  # one routing decision through Temporal (the rollout's router check)
                *agent_workflows,
                *backup_workflows,
            ],
            activities=[
                knowledge.upsert_runbooks,
                knowledge.search,
                knowledge.list_runbooks,
                knowledge.ingest_docs,
                incident.triage,
                incident.stage,
                incident.recall,
                incident.propose,
                incident.notify,
                incident.record,
                tools.list_tools,
                tools.guard,
                tools.execute,
                # hardening (#17): an execute that gave up closes its ledger row; on this queue,
                # as the tools workers may be what is gone
                tools.give_up,
                guardrails.record,
                reports.compute_digest,
                reports.write_digest,
                *trust_acts.all(),
                *rollout_activities,
                *agent_acts,
                *router_activities,
                *backup_acts,
            ],
            identity=f"agentic-worker@{os.uname().nodename}:{os.getpid()}",
            max_concurrent_workflow_tasks=settings.worker_workflow_tasks,
            # A burst of new incidents: their first workflow tasks are on the normal queue,
            # which the SDK's default (5 polls, a fifth of them there) drains one at a time.
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=settings.worker_workflow_pollers),
            nonsticky_to_sticky_poll_ratio=0.5,
            max_concurrent_activities=settings.worker_orchestration_activities,
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=settings.worker_activity_pollers),
            workflow_runner=workflow_runner(settings.workflow_sandbox),
        )
        workers = queue_workers(settings, client, orchestration, model_acts, tool_acts)
        log.info(
            "worker polling task queues %s on %s",
            ", ".join(w.task_queue for w in workers),
            settings.temporal_target,
        )
        async with AsyncExitStack() as running:
            for w in workers:
                await running.enter_async_context(w)
            # The embedding model (5-7 s of imports and weights) loads in the embedder's thread once
            # the worker polls: after a restart, approvals, tool calls and agent runs resume at
            # once, and a recall that comes first queues behind the load. Loaded any sooner, while
            # the rest is built, its imports held up the building (the import lock, the GIL) by
            # 2-3 s and the model was not ready any earlier.
            warm_up = asyncio.create_task(embedder.embed_query("warm up"))
            running.callback(warm_up.cancel)
            router.open_clients()  # the first incident's plan and the first chat skip 0.2 s of client set-up
            warm = asyncio.create_task(index_route_exemplars(routes)) if settings.router_index_at_start else None
            # Agent runs that ended without closing their ledger row (terminated, timed out) are
            # closed, saying how (workers/agent_runs.py): by the workers that run the workflows.
            if "orchestration" in settings.polled_queues:
                from workers.agent_runs import reconcile_loop

                reconciling = asyncio.create_task(reconcile_loop(ledger, client, settings.agent_reconcile_s))
                running.callback(reconciling.cancel)
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({stopping, warm_up}, return_when=asyncio.FIRST_COMPLETED)
            if warm_up in done:
                failed = warm_up.exception()
                if failed is not None:  # the embedding model cannot load: the worker stops, saying why
                    stopping.cancel()
                    if warm is not None:
                        warm.cancel()
                    raise failed
                log.info("embedding model loaded")
                settle_heap(log)  # the model, the clients and the modules stay: out of the collector's walks
                await stopping
            if warm is not None:
                warm.cancel()
            log.info("stopping: draining the worker")


async def index_route_exemplars(routes: Any) -> None:
    """Index the router's exemplars ahead of the first `agents route` (a failure is logged and
    left to the first route, which tries again)."""
    try:
        report = await routes.ensure_index()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("indexing the router's exemplars failed; the first route will try again", exc_info=True)
        return
    log.info(
        "router exemplars indexed: %d added, %d removed, %d unchanged in %.1f s",
        report.added,
        report.removed,
        report.unchanged,
        report.seconds,
    )


def main() -> None:
    run_service("worker", run_worker)


if __name__ == "__main__":
    main()
