"""How the worker (and the bot) build the activities' clients from the settings.

Activities take plain values (`activities/` never imports `workers/`); this module is where the
one typed settings object becomes those values: the knowledge store and embedder, the inference
router's groups, the tool gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from activities.incident.planner import CLOUD_GROUP, PlannerConfig
from activities.inference.router import (
    DEFAULT_TIMEOUT_S,
    EMBEDDED_MAX_ITEMS,
    EMBEDDED_MAX_STRING_LENGTH,
    GroupConfig,
    InferenceRouter,
)
from agentic_core.models import InferenceMode
from workers.settings import Settings

if TYPE_CHECKING:
    from activities.agents.activities import AgentActivities
    from activities.agents.router import RouteActivities
    from activities.ledger.repository import Ledger
    from activities.tools.gateway import ToolActivities


def build_store(settings: Settings):  # type: ignore[no-untyped-def]
    """Qdrant Edge in the data dir by default; a Qdrant server when AGENTIC_QDRANT_URL is set."""
    if settings.qdrant_embedded:
        from activities.knowledge.edge_store import EdgeStore

        return EdgeStore(settings.qdrant_path)
    from activities.knowledge.server_store import ServerStore

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return ServerStore(url=settings.qdrant_url, api_key=key)


def build_embedder_from(settings: Settings):  # type: ignore[no-untyped-def]
    from activities.knowledge.embeddings import build_embedder

    key = settings.pool_api_key.get_secret_value() if settings.pool_api_key else None
    return build_embedder(
        settings.embedder,
        url=settings.embed_url,
        model=settings.embed_model,
        api_key=key,
        threads=settings.embed_threads,
    )


def inference_router(settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> InferenceRouter:
    """The groups the settings describe. Groups served by the embedded llama.cpp server get
    the small-model generation bounds and its repeat penalty; external pools and the cloud get
    none (a vLLM pool samples with the model's own generation config)."""
    embedded = settings.llm_embedded
    small: dict[str, Any] = (
        {"max_string_length": EMBEDDED_MAX_STRING_LENGTH, "max_items": EMBEDDED_MAX_ITEMS} if embedded else {}
    )
    if embedded and settings.llm_repeat_penalty > 1.0:  # llama.cpp's default is off: the small model loops
        small["sampling"] = {"repeat_penalty": settings.llm_repeat_penalty}
    planner_key = settings.llm_api_key if embedded else settings.pool_api_key
    # each pool's replicas (least-busy routing) and its per-replica bound (docs/scaling.md)
    par, queue_s = settings.pool_max_parallel, settings.pool_queue_timeout_s
    groups = [
        GroupConfig(
            name="planner",
            model=f"openai/{settings.planner_model}",
            api_base=settings.planner_base_url,
            api_key=planner_key,
            timeout_s=timeout_s,
            api_bases=tuple(settings.replicas(settings.planner_replicas)),
            max_parallel=par,
            queue_timeout_s=queue_s,
            **small,
        ),
        GroupConfig(
            name="code",
            model=f"openai/{settings.code_model}",
            api_base=settings.code_url or settings.planner_base_url,
            api_key=settings.pool_api_key if settings.code_url else planner_key,
            timeout_s=timeout_s,
            api_bases=tuple(settings.replicas(settings.code_replicas)),
            max_parallel=par,
            queue_timeout_s=queue_s,
            **({} if settings.code_url or settings.code_replicas else small),
        ),
    ]
    if settings.embed_url or settings.embed_replicas:
        groups.append(
            GroupConfig(
                name="embed",
                model=f"openai/{settings.embed_model}",
                api_base=settings.embed_url,
                api_key=settings.pool_api_key,
                timeout_s=timeout_s,
                api_bases=tuple(settings.replicas(settings.embed_replicas)),
                max_parallel=par,
                queue_timeout_s=queue_s,
            )
        )
    if settings.cloud_model and settings.inference_mode != InferenceMode.LOCAL_ONLY:
        groups.append(
            GroupConfig(
                name="cloud",
                model=settings.cloud_model,
                api_base=settings.cloud_base_url,
                api_key=settings.cloud_api_key,
                timeout_s=min(timeout_s, settings.cloud_timeout_s),
                strict_schema=False,
            )
        )
    return InferenceRouter(groups, mode=settings.inference_mode)


def planner_config(settings: Settings, router: InferenceRouter) -> PlannerConfig:
    """The planner's bounds: the model's slots (1 for the embedded llama.cpp, 16 for a pool,
    unless AGENTIC_PLANNER_SLOTS says), the burst that cuts a call in flight short (5 refused
    incidents for the embedded llama.cpp, which shares the worker's CPU; never for a pool, unless
    AGENTIC_PLANNER_BURST_CUT says), the inference mode, and the cloud group when the router has
    one, with its timeout and spending bounds."""
    return PlannerConfig(
        model_slots=settings.planner_slots or (1 if settings.llm_embedded else 16),
        mode=settings.inference_mode,
        cloud_group=CLOUD_GROUP if CLOUD_GROUP in router.groups else None,
        escalate_below=settings.cloud_escalate_below,
        cloud_timeout_s=settings.cloud_timeout_s,
        cloud_max_concurrent=settings.cloud_max_concurrent,
        cloud_max_per_hour=settings.cloud_max_per_hour,
        burst_cut=(5 if settings.llm_embedded else 0)
        if settings.planner_burst_cut is None
        else settings.planner_burst_cut,
    )


def tool_gateway(ledger: Ledger, settings: Settings) -> ToolActivities:
    """The tool gateway as the platform's processes build it: the configured servers, the MCP
    token, each agent's allow-list (AGENTIC_<AGENT>_TOOLS) and the read-only agents, the
    protected namespaces, and refusals that say what to configure."""
    from activities.tools.gateway import ToolActivities
    from agentic_core.tools import tool_server_hint

    token = settings.mcp_token.get_secret_value() if settings.mcp_token else None
    return ToolActivities(
        ledger,
        servers=settings.mcp_servers,
        token=token,
        allow=settings.agent_tool_lists,
        hint=tool_server_hint,
        protected_namespaces=settings.protected_namespace_list,
        read_only_agents=settings.read_only_agent_list,
    )


def agent_activities(
    ledger: Ledger, router: InferenceRouter, settings: Settings, gateway: ToolActivities
) -> AgentActivities:
    """The agent loop's activities: the planner group plays the agents; the agents this platform
    runs (those with tools allowed) with their limits (AGENTIC_AGENT_MAX_*, AGENTIC_AGENT_LIMITS);
    the tools' schemas from the gateway."""
    from activities.agents.activities import AgentActivities

    return AgentActivities(
        ledger, router, planner_group="planner", agents=settings.agent_limit_map, tool_specs=gateway.offered
    )


def route_activities(store: Any, embedder: Any, router: InferenceRouter, settings: Settings) -> RouteActivities:
    """The router's `agents.route` activity: the worker's vector store (its `routes` collection)
    and embedder, the planner group for requests below the threshold, and the threshold setting."""
    from activities.agents.router import RouteActivities

    return RouteActivities(
        store,
        embedder,
        router,
        threshold=settings.route_threshold,
        model_timeout_s=settings.route_model_timeout_s,
    )
