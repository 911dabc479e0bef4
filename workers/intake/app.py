"""The intake as an ASGI app: the routes (`POST /alerts`, `POST /events`, `GET /healthz`,
`GET /`), every error answered with its status (never a 500), and one access line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.telemetry import metrics
from agentic_core.alerts import (
    AmWebhook,
    GenericEvent,
    group_from_event,
    group_from_webhook,
)
from workers.errors import AgenticError
from workers.intake.delivery import ClientFactory, Intake, _accepted, _redacted, _unique, incident_config
from workers.intake.errors import (
    RETRY_AFTER_S,
    IntakeError,
    TemporalUnavailable,
    _kind,
    _schema_error,
)
from workers.settings import Settings
from workers.telemetry import TracedRequests, metrics_endpoint

log = logging.getLogger("agentic.intake")
access_log = logging.getLogger("agentic.intake.access")

MAX_EVENTS = 100  # events in one `POST /events` list

_WEBHOOK = TypeAdapter(AmWebhook)
_EVENT = TypeAdapter(GenericEvent)
_EVENTS = TypeAdapter(list[GenericEvent])


# --------------------------------------------------------------------------- routes


def _guarded(
    handler: Callable[[Intake, Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Answer IntakeErrors with their status, and anything unexpected with a logged 503, never a 500."""

    async def endpoint(request: Request) -> Response:
        return await _answer(request.app.state.intake, request)

    async def _answer(intake: Intake, request: Request) -> Response:
        try:
            return await handler(intake, request)
        except TemporalUnavailable as exc:
            log.warning("%s %s: 503: %s", request.method, request.url.path, exc.message)
            _rejected(request, 503)
            return exc.response()
        except IntakeError as exc:
            _rejected(request, exc.status)
            log.log(
                logging.WARNING if exc.status == 401 else logging.INFO,
                "%s %s: %d: %s",
                request.method,
                request.url.path,
                exc.status,
                exc.message,
            )
            return exc.response()
        except Exception:
            log.exception("%s %s: unexpected error (answered 503)", request.method, request.url.path)
            _rejected(request, 503)
            return TemporalUnavailable("the intake failed unexpectedly; retry later").response()

    return endpoint


_REJECT_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    415: "not_json",
    422: "invalid",
    503: "unavailable",
}


def _rejected(request: Request, status: int) -> None:
    """Count a refused POST by endpoint and reason (bounded labels; GET routes are not alerts)."""
    if request.method == "POST":
        endpoint = request.url.path.strip("/") or "root"
        metrics.ALERTS_REJECTED.labels(endpoint, _REJECT_REASONS.get(status, "other")).inc()


async def _post_alerts(intake: Intake, request: Request) -> Response:
    intake.authorize(request)
    doc = await intake.read_json(request)
    if not isinstance(doc, dict):
        raise IntakeError(400, f"expected a JSON object (an Alertmanager webhook, version 4), got {_kind(doc)}")
    try:
        hook = _WEBHOOK.validate_python(doc)
    except ValidationError as exc:
        raise _schema_error("Alertmanager webhook", exc) from None
    group, secrets = intake.protect(group_from_webhook(hook))
    [delivery] = await intake.deliver_all([group])
    metrics.ALERTS_RECEIVED.labels("alerts").inc(len(group.alerts))
    log.info(
        "alerts: receiver %s, %s, %d alert(s) → incident %s%s%s",
        group.receiver,
        group.status.value,
        len(group.alerts),
        group.incident_id,
        "" if delivery.signalled else " (not open: ignored)",
        _redacted(secrets),
    )
    return _accepted([delivery], alerts=len(group.alerts))


async def _post_events(intake: Intake, request: Request) -> Response:
    intake.authorize(request)
    doc = await intake.read_json(request)
    try:
        if isinstance(doc, dict):
            events = [_EVENT.validate_python(doc)]
        elif isinstance(doc, list):
            if not doc:
                raise IntakeError(422, "invalid events: the list is empty (send 1 to 100 events)")
            if len(doc) > MAX_EVENTS:
                raise IntakeError(422, f"invalid events: {len(doc)} events in one request (at most {MAX_EVENTS})")
            events = _EVENTS.validate_python(doc)
        else:
            raise IntakeError(400, f"expected a JSON object or an array of objects (events), got {_kind(doc)}")
    except ValidationError as exc:
        raise _schema_error("event" if isinstance(doc, dict) else "events", exc) from None
    now = datetime.now(UTC)
    protected = [intake.protect(group_from_event(ev, now)) for ev in events]
    deliveries = await intake.deliver_all([g for g, _n in protected])
    metrics.ALERTS_RECEIVED.labels("events").inc(len(events))
    log.info(
        "events: %d event(s) from %s → incident(s) %s%s",
        len(events),
        ",".join(_unique(g.source for g, _n in protected))[:200],
        ",".join(_unique(d.incident_id for d in deliveries)),
        _redacted(sum(n for _g, n in protected)),
    )
    return _accepted(deliveries, events=len(events))


async def _healthz(intake: Intake, request: Request) -> Response:
    ok, detail = await intake.temporal_health()
    body = {"status": "ok" if ok else "unavailable", "temporal": detail}
    if ok:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _index(intake: Intake, request: Request) -> Response:
    return JSONResponse(
        {
            "service": "agentic-platform alert intake",
            "auth": "Authorization: Bearer <AGENTIC_INTAKE_TOKEN> (POST routes)",
            "routes": {
                "POST /alerts": "Alertmanager webhook (version 4): one alert group → one IncidentWorkflow",
                "POST /events": f"generic event, or a list of up to {MAX_EVENTS}: each its own incident",
                "GET /healthz": "200 when Temporal is reachable, else 503",
                "GET /metrics": "Prometheus metrics",
            },
            "max_body_bytes": intake.settings.intake_max_body,
        }
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    headers = getattr(exc, "headers", None)
    message = {404: "no such route (see GET /)", 405: f"method {request.method} not allowed here"}.get(
        status, "bad request"
    )
    return JSONResponse({"accepted": False, "error": message}, status_code=status, headers=headers)


class AccessLog:
    """One line per request: client, method, path (no query string), status, milliseconds. No headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.1fms',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )


def create_app(client_factory: ClientFactory, settings: Settings) -> Starlette:
    """The intake as an ASGI app. `client_factory` connects to Temporal (called lazily, retried)."""
    token = settings.intake_token.get_secret_value().strip() if settings.intake_token else ""
    if not token:
        raise AgenticError(
            "AGENTIC_INTAKE_TOKEN is not set: the intake refuses to run without a bearer token "
            "(`agentic up` generates one into DATA_DIR/secrets/intake.token)"
        )
    app = Starlette(
        routes=[
            Route("/alerts", _guarded(_post_alerts), methods=["POST"]),
            Route("/events", _guarded(_post_events), methods=["POST"]),
            Route("/healthz", _guarded(_healthz), methods=["GET"]),
            Route("/", _guarded(_index), methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),  # Prometheus (docs/observability.md)
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.intake = Intake(
        client_factory=client_factory,
        settings=settings,
        token=token.encode("utf-8", "surrogateescape"),
        config=incident_config(settings),
    )
    app.add_middleware(AccessLog)
    # a POST is the root of its incident's trace: the ASGI instrumentation's SERVER span
    app.add_middleware(TracedRequests, routes=app.routes, traced=lambda scope: scope["method"] == "POST")
    return app
