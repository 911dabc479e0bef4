"""The gateway's traces and metrics (docs/observability.md), kept apart from its routes.

- Traces: an agent request (`POST /v1/chat/completions`, the approvals, the console's actions) is
  the root of its trace: the ASGI instrumentation's SERVER span (`workers.telemetry.TracedRequests`),
  under which the handler starts the `AgentWorkflow` (the Temporal client's interceptor carries the
  context), so the run's workflow, activity, model and MCP spans join it. Not traced: `GET /healthz`,
  `GET /metrics` and the console's GET pages (page views and htmx polls: a trace each would be
  noise), and nothing at all while the process does not trace.
- Metrics (`GET /metrics`, behind an API key like every route but /healthz): requests by method,
  route template and status; chat completion streams in flight; time to first token (a stream's
  first non-empty content delta; a non-streaming answer's response).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.telemetry import metrics
from workers.telemetry import TracedRequests, route_template

CHAT_ROUTE = "/v1/chat/completions"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNTRACED = frozenset({"/healthz", "/metrics"})
_CONTENT = re.compile(rb'"content": "(?!")')  # a chunk's non-empty content delta (json.dumps' spacing)


def traced(scope: Scope) -> bool:
    path = scope.get("path", "")
    if path in _UNTRACED:
        return False
    return not (path.startswith("/console") and scope.get("method") in ("GET", "HEAD"))


class Observe:
    """Around the whole gateway (outside `Authenticate`, so refusals are counted and traced too)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.routes = routes
        self.app = TracedRequests(app, routes, traced=traced)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = route_template(self.routes, scope)
        chat = route == CHAT_ROUTE and scope["method"] == "POST"
        status = 0
        streaming = first = False

        async def observed(message: Message) -> None:
            nonlocal status, streaming, first
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if chat and status == 200:
                    content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                    streaming = content_type.startswith(b"text/event-stream")
                    if streaming:
                        with metrics.safely():
                            metrics.GATEWAY_STREAMS.inc()
                    else:
                        first = True  # the whole answer is ready when its response starts
                        _ttft("false", started)
            elif streaming and not first and _CONTENT.search(message.get("body", b"")):
                first = True
                _ttft("true", started)
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            with metrics.safely():
                if streaming:
                    metrics.GATEWAY_STREAMS.dec()
                method = scope["method"] if scope["method"] in _METHODS else "other"
                metrics.GATEWAY_REQUESTS.labels(method, route, str(status or 499)).inc()


def _ttft(stream: str, started: float) -> None:
    with metrics.safely():
        metrics.GATEWAY_TTFT.labels(stream).observe(time.perf_counter() - started)
