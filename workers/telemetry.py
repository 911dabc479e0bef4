"""Telemetry in the platform's processes (docs/observability.md): traces set up once per process
(`setup`), the Temporal client's tracing interceptor, the worker's metrics ports, and the
`/metrics` endpoint every HTTP server of the platform adds.

- Traces: `activities.telemetry.tracing` builds the provider: OTLP/HTTP when
  `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the local span file `DATA_DIR/traces/<process>.jsonl`
  (AGENTIC_TRACES_LOCAL, on by default: `agentic incidents trace ID` reads it).
- Temporal: `temporalio.contrib.opentelemetry.TracingInterceptor` on the client; the worker
  takes it from its client. It makes the workflow's spans only when the workflow is not
  replaying, parented on the trace context its start carried (kept in history), so a worker
  restart that replays an incident adds no duplicate spans and its later spans still join the
  incident's trace. (The experimental `OpenTelemetryPlugin` gives workflow spans real durations
  but needs its own replay-safe provider wrapping every exporter; the interceptor works with the
  process's one provider and the passthrough sandbox.)
- Metrics: prometheus_client's registry. The worker serves it on AGENTIC_WORKER_METRICS_PORT
  (8098); Temporal's Rust core serves its own SDK metrics with its own exporter and registry on
  AGENTIC_WORKER_TEMPORAL_METRICS_PORT (8099): two endpoints, both listed by `agentic status`,
  rather than a bridge that would proxy one scrape through the other (a second failure mode on
  every scrape) or re-export the core's buffered metrics by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send
    from temporalio.runtime import Runtime

    from workers.settings import Settings

log = logging.getLogger("agentic.telemetry")

_tracing = False


def tracing_on() -> bool:
    """Whether this process set up tracing (then its Temporal clients carry the interceptor)."""
    return _tracing


def setup(service: str, settings: Settings) -> None:
    """Traces for this process (`service`: its name, e.g. `agentic-worker`), unless
    AGENTIC_TELEMETRY_ENABLED is false. Never fails the process: a problem is logged."""
    global _tracing
    if not settings.telemetry_enabled:
        return
    # the stable HTTP conventions (http.request.method, url.path, http.response.status_code, http.route)
    # for the ASGI and httpx instrumentations, unless the operator chose otherwise
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from activities.telemetry import tracing

    try:
        spans_dir = settings.data_path / "traces" if settings.traces_local else None
        tracing.install(tracing.build_provider(service, spans_dir=spans_dir))
        tracing.set_capture_content(settings.trace_content)
        from activities.telemetry import libraries

        libraries.instrument()  # httpx and asyncpg spans inside a trace
    except Exception as exc:
        log.warning("tracing is off in this process: %s", exc)
        return
    _tracing = True


def shutdown() -> None:
    """Flush the spans still queued (bounded) before the process exits."""
    if _tracing:
        from activities.telemetry import tracing

        tracing.shutdown()


def client_interceptors() -> list[Any]:
    """The Temporal client's interceptors: tracing when this process traces."""
    if not _tracing:
        return []
    return [_tracing_interceptor()]


def _tracing_interceptor() -> Any:
    """`TracingInterceptor`, less its spans for queries: a query reads state and changes nothing,
    and the platform polls with them (a gateway stream every 0.25 s, the console, the CLI's
    waits): a span each would bury an agent run's trace under hundreds of `QueryWorkflow` spans
    and make a one-span trace of every poll outside a request. Without the client's span the
    query carries no context header, so the worker makes no `HandleQuery` span either."""
    import temporalio.client
    from temporalio.contrib.opentelemetry import TracingInterceptor

    class _QueriesUntraced(temporalio.client.OutboundInterceptor):
        def __init__(self, traced: temporalio.client.OutboundInterceptor, plain: temporalio.client.OutboundInterceptor):
            super().__init__(traced)
            self._plain = plain

        async def query_workflow(self, input: temporalio.client.QueryWorkflowInput) -> Any:
            return await self._plain.query_workflow(input)

    class PlatformTracingInterceptor(TracingInterceptor):
        def intercept_client(
            self, next: temporalio.client.OutboundInterceptor
        ) -> temporalio.client.OutboundInterceptor:
            return _QueriesUntraced(super().intercept_client(next), next)

    return PlatformTracingInterceptor()


def temporal_runtime(settings: Settings) -> Runtime | None:
    """The worker's Temporal runtime with the core's Prometheus exporter on
    AGENTIC_WORKER_TEMPORAL_METRICS_PORT (None: the default runtime, no SDK metrics endpoint)."""
    port = settings.worker_temporal_metrics_port
    if not settings.telemetry_enabled or port == 0:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{settings.host}:{port}")))
    except Exception as exc:  # the port is taken: incidents matter more than the SDK's metrics
        log.warning("Temporal SDK metrics are off: cannot serve them on %s:%d (%s)", settings.host, port, exc)
        return None


def serve_metrics(settings: Settings) -> str | None:
    """The worker's platform metrics (prometheus_client) on AGENTIC_WORKER_METRICS_PORT, from a
    daemon thread; None when off or the port is taken (logged: the worker runs on)."""
    port = settings.worker_metrics_port
    if not settings.telemetry_enabled or port == 0:
        return None
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=settings.host)
    except OSError as exc:
        log.warning("worker metrics are off: cannot listen on %s:%d (%s)", settings.host, port, exc)
        return None
    return f"http://{settings.host}:{port}/metrics"


async def metrics_endpoint(_request: Request) -> Response:
    """`GET /metrics`: this process's registry in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from starlette.responses import Response

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class ToolCallMetrics:
    """An MCP server middleware (the `mcp` SDK's `ServerMiddleware`): counts the `tools/call`
    requests this server answers, by outcome (ok, error: the tool said so, failed: it raised)."""

    def __init__(self, server: str) -> None:
        self.server = server

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if getattr(ctx, "method", None) != "tools/call":
            return await call_next(ctx)
        from activities.telemetry import metrics

        outcome = "failed"
        try:
            result = await call_next(ctx)
            is_error = getattr(result, "is_error", None)
            if is_error is None and isinstance(result, dict):
                is_error = result.get("isError")
            outcome = "error" if is_error is True else "ok"
            return result
        finally:
            with metrics.safely():
                metrics.MCP_SERVER_CALLS.labels(metrics.label(self.server), outcome).inc()


# --------------------------------------------------------------------------- HTTP servers


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The route a request goes to, as its template (`/v1/runs/{run}`), or `other`: a bounded
    name for spans and metric labels, never the path (which holds ids)."""
    from starlette.routing import Match

    partial = None
    for route in routes:
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
        if match == Match.PARTIAL and partial is None:  # the path, another method: a 405
            partial = str(getattr(route, "path", "other"))
    return partial or "other"


class TracedRequests:
    """The ASGI instrumentation (`opentelemetry-instrumentation-asgi`'s `OpenTelemetryMiddleware`)
    around an app, for the requests `traced` picks: one SERVER span each, named `METHOD template`,
    continuing an incoming `traceparent`, with the stable HTTP attributes; no header is captured
    (the redacting processor drops any, and every query value). Requests it does not pick (health
    checks, scrapes, polling pages), and all of them while this process does not trace, pass as
    they are."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], traced: Callable[[Scope], bool]) -> None:
        # the instrumentations read this once per process, when the first of them is made: set it
        # here too, so a middleware built before `setup()` (an app made in a test) has the same names
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        self.app = app
        self.routes = routes
        self.traced = traced
        self.instrumented = OpenTelemetryMiddleware(
            app, default_span_details=self._span_details, exclude_spans=["receive", "send"]
        )

    def _span_details(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        template = route_template(self.routes, scope)
        return f"{scope.get('method', 'HTTP')} {template}", {"http.route": template}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _tracing and scope["type"] == "http" and self.traced(scope):
            await self.instrumented(scope, receive, send)
        else:
            await self.app(scope, receive, send)
