"""The MCP arr-suite server: Sonarr, Radarr (API v3) and Prowlarr (API v1) as tools over
streamable HTTP at /mcp.

    AGENTIC_SONARR_API_KEY=... AGENTIC_RADARR_API_KEY=... python -m workers.toolservers.arr \\
        --host 127.0.0.1 --port 8094 --sonarr-url http://sonarr:8989 --radarr-url http://radarr:7878 \\
        [--prowlarr-url http://prowlarr:9696] [--token-env AGENTIC_MCP_TOKEN]

Each app is configured on its own: a URL (`--<app>-url`, default $AGENTIC_<APP>_URL) and an API
key in the environment variable AGENTIC_<APP>_API_KEY (sent as `X-Api-Key`; never on the
command line). Tools take an `app` argument whose JSON schema is the enum of the configured apps.

  read-only   arr_status(app)                      GET /api/v3/system/status (Prowlarr: /api/v1/…)
              arr_health(app)                      GET /api/v3/health (Prowlarr: /api/v1/health)
              arr_queue(app, page?, page_size?, problems_only?)   GET /api/v3/queue (Sonarr, Radarr)
              prowlarr_indexers()                  GET /api/v1/indexer + GET /api/v1/indexerstatus
  mutating    arr_command(app, name, wait_s?)      POST /api/v3/command {"name": …} (Prowlarr: /api/v1/command)
              arr_remove_queue_item(app, id, blocklist?, remove_from_client?)
                                                   DELETE /api/v3/queue/{id}?removeFromClient=…&blocklist=…
              prowlarr_test_indexer(id)            GET /api/v1/indexer/{id}, POST /api/v1/indexer/test

Annotations (what the tool gateway's exactly-once logic reads):
- `arr_command` only runs the commands of `COMMANDS` (per app: refresh monitored downloads, RSS
  sync, scan the download folder, search missing items, check health, sync indexers to the
  apps). Each queues a background job whose repeat has no further effect on the library:
  idempotentHint=true, destructiveHint=false, openWorldHint=true (searches reach indexers).
- `arr_remove_queue_item` removes a download (and blocklists the release when asked):
  destructiveHint=true, idempotentHint=true — removing an item that is already gone answers
  `removed: false, already_gone: true`, not an error, so a repeated call ends the same way.
- `prowlarr_test_indexer` changes no configuration (Prowlarr records the test's outcome in the
  indexer's status): readOnlyHint=false, destructiveHint=false, idempotentHint=true.

Errors are MCP tool errors a human can act on: the app unreachable (check AGENTIC_<APP>_URL),
401 (check AGENTIC_<APP>_API_KEY), an unknown queue item or indexer (list them first), a command
that is not on the app's list.
"""

import argparse
import asyncio
import logging
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from workers.process import StartupError
from workers.toolservers.app_api import body_message
from workers.toolservers.arr.client import APPS, TITLES, ArrApp
from workers.toolservers.arr.models import (
    CommandResult,
    HealthIssue,
    HealthResult,
    IndexerInfo,
    IndexersResult,
    IndexerTestResult,
    QueueItem,
    QueueResult,
    RemoveResult,
    StatusResult,
)
from workers.toolservers.common import (
    MUTATING_IDEMPOTENT,
    READ_ONLY,
    env_default,
    env_secret,
    new_server,
    tool,
    tool_annotations,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["COMMANDS", "build_server", "main"]

SERVER_NAME = "agentic-arr"
QUEUE_APPS = ("sonarr", "radarr")
COMMANDS: dict[str, tuple[str, ...]] = {
    "sonarr": ("RefreshMonitoredDownloads", "RssSync", "DownloadedEpisodesScan", "MissingEpisodeSearch", "CheckHealth"),
    "radarr": ("RefreshMonitoredDownloads", "RssSync", "DownloadedMoviesScan", "MissingMoviesSearch", "CheckHealth"),
    "prowlarr": ("ApplicationIndexerSync", "CheckHealth"),
}
_UNKNOWN_ITEMS = {"sonarr": "includeUnknownSeriesItems", "radarr": "includeUnknownMovieItems"}
_PROBLEM_STATES = {"importBlocked", "importPending", "failedPending", "failed"}
_FINISHED = {"completed", "failed", "aborted", "cancelled", "orphaned"}

log = logging.getLogger("workers.toolservers.arr")

# A queued background job, or an indexer test: no change to the library or the configuration
# (a repeat has no further effect), and it reaches beyond the app (indexers).
COMMAND = tool_annotations(read_only=False, destructive=False, idempotent=True, open_world=True)
TESTS = tool_annotations(read_only=False, destructive=False, idempotent=True, open_world=True)


# --------------------------------------------------------------------------- helpers


def _messages(record: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for sm in record.get("statusMessages") or []:
        if not isinstance(sm, dict):
            continue
        title = str(sm.get("title") or "").strip()
        msgs = [str(m) for m in sm.get("messages") or []]
        out.extend(f"{title}: {m}" if title else m for m in msgs) if msgs else out.append(title)
    return [m for m in out if m][:20]


def _queue_item(r: dict[str, Any]) -> QueueItem:
    status = str(r.get("status", "unknown"))
    tds = r.get("trackedDownloadStatus")
    state = r.get("trackedDownloadState")
    problem = status in ("warning", "failed") or tds in ("warning", "error") or state in _PROBLEM_STATES
    return QueueItem(
        id=int(r.get("id", 0)),
        title=str(r.get("title", "")),
        status=status,
        tracked_download_status=tds,
        tracked_download_state=state,
        problem=bool(problem),
        messages=_messages(r),
        error_message=r.get("errorMessage") or None,
        download_client=r.get("downloadClient"),
        indexer=r.get("indexer"),
        protocol=r.get("protocol"),
        size=r.get("size"),
        size_left=r.get("sizeleft"),
        time_left=r.get("timeleft"),
        added=r.get("added"),
    )


def _future(when: str | None) -> bool:
    if not when:
        return False
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")) > datetime.now(UTC)
    except ValueError:
        return False


# --------------------------------------------------------------------------- the server


def build_server(
    apps: dict[str, ArrApp],
    *,
    token: str | None = None,
    issuer_url: str = "http://127.0.0.1",
    poll_every_s: float = 1.0,
) -> MCPServer:
    """The MCP server with its tools over the configured `apps` (name → client)."""
    if not apps:
        raise ValueError("no arr app configured")
    names = tuple(a for a in APPS if a in apps)
    queue_names = tuple(a for a in QUEUE_APPS if a in apps)
    queue_choice = queue_names or ("sonarr",)  # the queue tools are not listed without one
    all_commands = tuple(dict.fromkeys(c for a in names for c in COMMANDS[a]))

    AppName = Annotated[
        Literal[names],  # type: ignore[valid-type]
        Field(description=f"which app: {', '.join(names)}"),
    ]
    QueueApp = Annotated[
        Literal[queue_choice],  # type: ignore[valid-type]
        Field(description=f"which app's download queue: {', '.join(queue_names)}"),
    ]
    per_app = "; ".join(f"{a}: {', '.join(COMMANDS[a])}" for a in names)
    CommandName = Annotated[
        Literal[all_commands],  # type: ignore[valid-type]
        Field(description=f"the command to queue ({per_app})"),
    ]

    def client(app: str) -> ArrApp:
        found = apps.get(app)
        if found is None:  # the schema's enum prevents this; a direct call may not
            raise ToolError(f"{app} is not configured here: set AGENTIC_{app.upper()}_URL and _API_KEY")
        return found

    async def arr_status(app: AppName) -> StatusResult:
        """The app's version, branch, start time and platform (a quick "is it up and which one")."""
        body = await client(app).get("system/status")
        b = body if isinstance(body, dict) else {}
        return StatusResult(
            app=app,
            app_name=b.get("appName"),
            instance_name=b.get("instanceName"),
            version=b.get("version"),
            branch=b.get("branch"),
            start_time=b.get("startTime"),
            os_name=b.get("osName"),
            is_docker=b.get("isDocker"),
            url_base=b.get("urlBase"),
        )

    async def arr_health(app: AppName) -> HealthResult:
        """The app's health checks: download client unavailable, indexers failing, root folder
        missing, import failures... each with its message and wiki link."""
        body = await client(app).get("health")
        issues = [
            HealthIssue(
                source=str(h.get("source", "")),
                type=str(h.get("type", "")),
                message=str(h.get("message", "")),
                wiki_url=h.get("wikiUrl"),
            )
            for h in (body if isinstance(body, list) else [])
            if isinstance(h, dict)
        ]
        return HealthResult(app=app, healthy=not any(i.type in ("warning", "error") for i in issues), issues=issues)

    async def arr_queue(
        app: QueueApp,
        page: Annotated[int, Field(description="page number, from 1", ge=1, le=1000)] = 1,
        page_size: Annotated[int, Field(description="items per page", ge=1, le=200)] = 50,
        problems_only: Annotated[
            bool, Field(description="only stalled, failed or import-blocked items (of this page)")
        ] = False,
    ) -> QueueResult:
        """The download queue of Sonarr or Radarr, with each item's status, tracked download
        state and the app's status messages (why it is stalled, failed or not imported). Use an
        item's id with arr_remove_queue_item."""
        a = client(app)
        params = {"page": page, "pageSize": page_size, _UNKNOWN_ITEMS[app]: "true"}
        body = await a.get("queue", params)
        b = body if isinstance(body, dict) else {}
        items = [_queue_item(r) for r in b.get("records") or [] if isinstance(r, dict)]
        problems = sum(1 for i in items if i.problem)
        if problems_only:
            items = [i for i in items if i.problem]
        return QueueResult(
            app=app,
            page=int(b.get("page", page)),
            page_size=int(b.get("pageSize", page_size)),
            total_records=int(b.get("totalRecords", len(items))),
            items=items,
            problems=problems,
        )

    async def prowlarr_indexers() -> IndexersResult:
        """Prowlarr's indexers with their status: which are enabled, and which Prowlarr has
        disabled after failures (until when, since when)."""
        p = client("prowlarr")
        indexers, statuses = await asyncio.gather(p.get("indexer"), p.get("indexerstatus"))
        by_id = {s.get("indexerId"): s for s in statuses or [] if isinstance(s, dict)}
        out: list[IndexerInfo] = []
        for ix in indexers if isinstance(indexers, list) else []:
            if not isinstance(ix, dict):
                continue
            st = by_id.get(ix.get("id"), {})
            out.append(
                IndexerInfo(
                    id=int(ix.get("id", 0)),
                    name=str(ix.get("name", "")),
                    enable=bool(ix.get("enable", False)),
                    protocol=ix.get("protocol"),
                    implementation=ix.get("implementation"),
                    priority=ix.get("priority"),
                    failing=_future(st.get("disabledTill")),
                    disabled_till=st.get("disabledTill"),
                    most_recent_failure=st.get("mostRecentFailure"),
                    initial_failure=st.get("initialFailure"),
                )
            )
        return IndexersResult(indexers=out, failing=sum(1 for i in out if i.failing))

    async def arr_command(
        app: AppName,
        name: CommandName,
        wait_s: Annotated[
            int,
            Field(description="wait up to this many seconds for the command to finish (0: do not wait)", ge=0, le=60),
        ] = 10,
    ) -> CommandResult:
        """Queue one of the app's maintenance commands: RefreshMonitoredDownloads (re-check the
        download clients), RssSync, DownloadedEpisodesScan / DownloadedMoviesScan (import what is
        in the download folder), MissingEpisodeSearch / MissingMoviesSearch, CheckHealth, and for
        Prowlarr ApplicationIndexerSync (push indexers to Sonarr/Radarr)."""
        if name not in COMMANDS[app]:
            raise ToolError(f"{name} is not a command for {app}: use one of {', '.join(COMMANDS[app])}")
        a = client(app)
        body = (await a.api.send("POST", a.path("command"), json={"name": name})).body
        cmd = body if isinstance(body, dict) else {}
        cmd_id = cmd.get("id")
        waited = 0.0
        while wait_s and isinstance(cmd_id, int) and cmd.get("status") not in _FINISHED and waited < wait_s:
            await asyncio.sleep(poll_every_s)
            waited += poll_every_s
            polled = await a.get(f"command/{cmd_id}")
            cmd = polled if isinstance(polled, dict) else cmd
        result = CommandResult(
            app=app,
            id=cmd_id if isinstance(cmd_id, int) else None,
            name=name,
            status=str(cmd.get("status", "queued")),
            message=cmd.get("message"),
            queued=cmd.get("queued"),
        )
        log.info("arr_command %s %s: %s", app, name, result.status)
        if result.status in ("failed", "aborted"):
            raise ToolError(f"{app} command {name} {result.status}: {result.message or 'no message'}")
        return result

    async def arr_remove_queue_item(
        app: QueueApp,
        id: Annotated[int, Field(description="the queue item's id (from arr_queue)", ge=1)],
        blocklist: Annotated[
            bool, Field(description="also blocklist the release so it is not grabbed again (e.g. a fake or dead one)")
        ] = False,
        remove_from_client: Annotated[
            bool, Field(description="also remove the download (and its data) from the download client")
        ] = True,
    ) -> RemoveResult:
        """Remove an item from Sonarr's or Radarr's download queue (a stalled or failed
        download); optionally blocklist the release so the app searches for another one."""
        a = client(app)
        params = {"removeFromClient": str(remove_from_client).lower(), "blocklist": str(blocklist).lower()}
        answer = await a.api.send("DELETE", a.path(f"queue/{id}"), params=params, ok=(200, 204, 404))
        if answer.status == 404:
            return RemoveResult(
                app=app,
                id=id,
                removed=False,
                already_gone=True,
                message=f"queue item {id} is not in {app}'s queue (already removed, or imported): nothing to do",
            )
        log.info("arr_remove_queue_item %s %d (blocklist=%s)", app, id, blocklist)
        what = " and blocklisted its release" if blocklist else ""
        return RemoveResult(
            app=app, id=id, removed=True, blocklisted=blocklist, message=f"removed queue item {id}{what}"
        )

    async def prowlarr_test_indexer(
        id: Annotated[int, Field(description="the indexer's id (from prowlarr_indexers)", ge=1)],
    ) -> IndexerTestResult:
        """Test one Prowlarr indexer (as the Test button does): reachable, credentials accepted,
        search answers. Says why it fails."""
        p = client("prowlarr")
        got = await p.api.send("GET", p.path(f"indexer/{id}"), ok=(200, 404))
        if got.status == 404 or not isinstance(got.body, dict):
            raise ToolError(f"Prowlarr has no indexer {id}: list them with prowlarr_indexers")
        indexer = got.body
        name = str(indexer.get("name", id))
        answer = await p.api.send("POST", p.path("indexer/test"), json=indexer, ok=(200, 201, 204, 400))
        if answer.status == 400:
            failures = body_message(answer).split("; ")
            return IndexerTestResult(id=id, name=name, ok=False, failures=failures)
        return IndexerTestResult(id=id, name=name, ok=True)

    tools: list[Tool] = [
        tool(arr_status, "arr app status", READ_ONLY),
        tool(arr_health, "arr app health checks", READ_ONLY),
    ]
    if queue_names:
        tools.append(tool(arr_queue, "arr download queue", READ_ONLY))
    if "prowlarr" in apps:
        tools.append(tool(prowlarr_indexers, "Prowlarr indexers", READ_ONLY))
    tools.append(tool(arr_command, "Run an arr command", COMMAND))
    if queue_names:
        tools.append(tool(arr_remove_queue_item, "Remove an arr queue item", MUTATING_IDEMPOTENT))
    if "prowlarr" in apps:
        tools.append(tool(prowlarr_test_indexer, "Test a Prowlarr indexer", TESTS))

    return new_server(
        SERVER_NAME,
        title="agentic-platform arr-suite tools",
        instructions=f"Sonarr/Radarr/Prowlarr tools ({', '.join(names)} configured): status, health, download "
        "queue, indexers; allow-listed commands, removing a queue item, testing an indexer.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {"tools": len(tools), "apps": list(names)},
    )


# --------------------------------------------------------------------------- the process


def _options(p: argparse.ArgumentParser) -> None:
    for app in APPS:
        var = f"AGENTIC_{app.upper()}_URL"
        p.add_argument(
            f"--{app}-url",
            default=env_default(var),
            help=f"{TITLES[app]} base URL (default: ${var}); its API key: $AGENTIC_{app.upper()}_API_KEY",
        )


def load_apps(args: argparse.Namespace) -> dict[str, ArrApp]:
    apps: dict[str, ArrApp] = {}
    for app in APPS:
        url = getattr(args, f"{app}_url")
        if not url:
            continue
        if not url.startswith(("http://", "https://")):
            raise StartupError(f"error: AGENTIC_{app.upper()}_URL: {url!r} is not an http(s) URL")
        var = f"AGENTIC_{app.upper()}_API_KEY"
        key = env_secret(var, f"error: {TITLES[app]} is configured ({url}) but {var} is not set or empty")
        apps[app] = ArrApp(app, url, key)
    if not apps:
        raise StartupError(
            "error: no arr app configured: set AGENTIC_SONARR_URL and AGENTIC_SONARR_API_KEY (and/or RADARR, PROWLARR)"
        )
    return apps


def configure(args: argparse.Namespace) -> Launch:
    apps = load_apps(args)

    def launch(token: str | None, issuer: str) -> Serving:
        server = build_server(apps, token=token, issuer_url=issuer)
        where = ", ".join(f"{a} {c.api.base_url}" for a, c in apps.items())

        async def close() -> None:
            for c in apps.values():
                await c.close()

        return Serving(server, f"apps: {where}", on_stop=close)

    return launch


PROCESS = ToolServer(
    "mcp_arr",
    "Sonarr/Radarr/Prowlarr",
    port=8094,
    port_setting="AGENTIC_MCP_ARR_PORT",
    serves="arr tools",
    configure=configure,
    options=_options,
)
main = PROCESS.main
