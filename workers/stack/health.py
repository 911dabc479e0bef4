"""The parts' health checks: each answers `(healthy, detail)` and never raises (`agentic up` waits
on them, `agentic status` shows them)."""

from __future__ import annotations

import asyncio

from activities.tls import httpx_tls


async def check_postgres(dsn: str) -> tuple[bool, str]:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"
    try:
        version = await conn.fetchval("select current_setting('server_version')")
        migrated = await conn.fetchval(
            "select max(version) from schema_migrations"
            " where exists (select 1 from information_schema.tables where table_name = 'schema_migrations')"
        )
        return True, f"PostgreSQL {version}, schema {migrated or 'not migrated'}"
    except Exception:
        return True, "reachable"
    finally:
        await conn.close()


async def check_temporal(target: str, namespace: str) -> tuple[bool, str]:
    from temporalio.client import Client

    try:
        client = await asyncio.wait_for(Client.connect(target, namespace=namespace), timeout=5)
        ok = await asyncio.wait_for(client.service_client.check_health(), timeout=5)
        return bool(ok), "serving" if ok else "not serving"
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"


async def check_llm(base_url: str, api_key: str | None) -> tuple[bool, str]:
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=3, verify=httpx_tls()) as http:
            r = await http.get(f"{root}/health", headers=headers)
            if r.status_code == 200:
                return True, "ready"
            r = await http.get(f"{root}/v1/models", headers=headers)
            return r.status_code == 200, f"HTTP {r.status_code}"
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"


async def check_http(url: str, token: str | None, *, ok_below: int = 300) -> tuple[bool, str]:
    """A part that serves HTTP: healthy when it answers below `ok_below`."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=3, verify=httpx_tls()) as http:
            r = await http.get(url, headers=headers)
    except Exception as exc:
        return False, f"unreachable: {type(exc).__name__}"
    return r.status_code < ok_below, f"HTTP {r.status_code}" if r.status_code >= ok_below else "serving"


async def check_worker(target: str, namespace: str, task_queue: str, pid: int | None = None) -> tuple[bool, str]:
    """Healthy when a worker polls `task_queue`; with `pid`, only when that process does (its
    identity ends in `:<pid>`, workers/worker.py). Temporal keeps listing a poller for a minute or
    two after its process died, so without the pid a restarted worker counted as back from its
    dead predecessor's entry, long before it polled (chaos: "back in 1.5 s", polling 65 s later)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    try:
        client = await asyncio.wait_for(Client.connect(target, namespace=namespace), timeout=5)
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except Exception as exc:
        return False, f"cannot ask Temporal: {type(exc).__name__}"
    pollers = [p.identity for p in resp.pollers]
    if not pollers:
        return False, f"no worker polls task queue {task_queue}"
    if pid is not None and not any(p.endswith(f":{pid}") for p in pollers):
        return False, f"worker process {pid} does not poll task queue {task_queue} yet"
    return True, f"polling {task_queue} ({len(pollers)} poller{'s' if len(pollers) > 1 else ''})"
