"""The alert intake: Alertmanager (and other detectors) in, one IncidentWorkflow per alert group out.

    AGENTIC_INTAKE_TOKEN=... python -m workers.intake

Routes (every answer is JSON):

- `POST /alerts`: an Alertmanager webhook (version 4). One webhook is one alert group, so one
  signal-with-start of `IncidentWorkflow` (id = `AlertGroup.incident_id`, signal `alerts`).
  202 `{"accepted": true, "incidents": [id], "alerts": N}`.
- `POST /events`: a generic event (`GenericEvent`) or a list of up to 100; each is its own
  group. 202 `{"accepted": true, "incidents": [ids], "events": N}`.
- `GET /healthz` (no auth): 200 when Temporal answers its health check (cached a few
  seconds), else 503.
- `GET /`: what this is and which routes it has.

Status codes, checked in this order; nothing reaches Temporal unless the whole payload is
valid, so a bad request never leaves a half-processed incident:

    401  no bearer token, or the wrong one (constant-time compare; `WWW-Authenticate: Bearer`)
    415  Content-Type is not JSON (`application/json` or `application/*+json`)
    413  body larger than AGENTIC_INTAKE_MAX_BODY: by Content-Length, or counted while reading
    408  headers not complete within 5 s, or the body within 10 s of them; the connection is
         closed (workers/http_limits.py). Content-Length with Transfer-Encoding: 400, closed
    400  Content-Length not a number, body not JSON, or JSON of the wrong kind
         (`/alerts` needs an object; `/events` an object or a list)
    422  schema violation; the message names every failing field, e.g.
         `alerts[0].fingerprint: field required`; text or a time no store can hold (a lone
         surrogate, a NUL, a time outside years 1-9999 in UTC) is one too
         (`agentic_core.alerts.Text`, `Timestamp`)
    503  Temporal unreachable or failing (with `Retry-After`, so Alertmanager retries). This
         is the only 5xx: an unexpected error also answers 503 (logged with its traceback),
         never 500, because a retry is always safe (see below).

Secrets: before a group goes anywhere, the secrets in its texts (label and annotation values,
the group key, the URLs; an event's title, description, labels and annotations with them) are
replaced by `[SECRET_n]` placeholders (`agentic_core.alerts.redact_group`), so the workflow
input, Temporal's history, the ledger, Telegram and the CLI never hold them. The incident id
and fingerprints come from the raw values. AGENTIC_INTAKE_KEEP_SECRETS=true keeps them.

How a group reaches its incident:

- firing (or mixed): `start_workflow(..., start_signal=...)`, i.e. signal-with-start. If the
  incident runs, only the signal is delivered; otherwise a run starts with the signal as
  its first event. Repeats and retries of a group are therefore just more signals to the
  same incident, and a request that timed out and is retried at worst delivers a signal
  twice (delivery is at least once; the workflow treats a repeat as a repeat).
- an incident that already closed (resolved, expired, ignored) and fires again: the id
  reuse policy is ALLOW_DUPLICATE, so signal-with-start starts a **new run under the same
  workflow id**: a new incident for the same group, with the old run's history kept.
- `status: resolved` (every alert of the group resolved): a plain signal to the running
  incident, never a start: a resolution must not open an incident to ask a human about a
  problem that is already gone. With no incident running (it closed, or never existed) the
  request is still a 202 and the answer lists the group under `ignored`.

Process: `python -m workers.intake` starts like every platform process
(`workers.process.run_service`): the settings from the environment (AGENTIC_*), completed like
every part of `agentic up` gets them (the token in DATA_DIR/secrets when none is set). It
refuses to start without AGENTIC_INTAKE_TOKEN, listens on AGENTIC_HOST:AGENTIC_INTAKE_PORT
and talks to Temporal at AGENTIC_TEMPORAL_ADDRESS (default: the embedded one) on
AGENTIC_TASK_QUEUE. It starts even when Temporal is down: `/healthz` and the POST routes
answer 503 until Temporal is reachable, then it carries on without a restart (a supervisor
or Alertmanager sees a clear 503, not a crash loop). Start-up problems (bad settings, no
token, port in use) give one `error:` line on stderr and exit code 2. SIGTERM or SIGINT
stops accepting connections, lets requests in flight finish, and exits 0.

Logging: one access line per request (client, method, path without the query string,
status, duration) and one line per delivered group (incident id, status, alert count, how
many secrets were redacted).
Headers, the token and payload contents (labels, annotations) are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

import uvicorn
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentic_core.alerts import (
    AlertGroup,
    AlertStatus,
    AmWebhook,
    GenericEvent,
    group_from_event,
    group_from_webhook,
    redact_group,
)
from agentic_core.incident import SIGNAL_ALERTS, AlertsSignal, IncidentConfig, IncidentInput
from workers.errors import AgenticError
from workers.http_limits import bounded_config
from workers.process import bind_listener, run_service
from workers.settings import Settings
from workflows.incident import IncidentWorkflow

__all__ = ["MAX_EVENTS", "ClientFactory", "Intake", "create_app", "incident_config", "main"]

log = logging.getLogger("agentic.intake")
access_log = logging.getLogger("agentic.intake.access")

MAX_EVENTS = 100  # events in one `POST /events` list
TEMPORAL_TIMEOUT_S = 10.0  # one signal-with-start, connecting included (the SDK retries inside it)
CONNECT_TIMEOUT_S = 5.0
CONNECT_BACKOFF_S = 1.0  # after a failed connect, answer 503 at once for this long
HEALTH_TTL_S = 3.0  # `/healthz` answers from a cached check this long
RETRY_AFTER_S = 10  # what a 503 tells Alertmanager
MAX_ERRORS_SHOWN = 20  # schema errors named in one 422
EVENT_CONCURRENCY = 8  # incidents signalled at once for one `/events` list

ClientFactory = Callable[[], Awaitable[Client]]

_WEBHOOK = TypeAdapter(AmWebhook)
_EVENT = TypeAdapter(GenericEvent)
_EVENTS = TypeAdapter(list[GenericEvent])


# --------------------------------------------------------------------------- errors and answers


class IntakeError(Exception):
    """A request the intake refuses: its status and the one-line message the caller sees."""

    def __init__(
        self, status: int, message: str, *, details: Sequence[str] = (), headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"accepted": False, "error": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class TemporalUnavailable(IntakeError):
    def __init__(self, message: str, *, delivered: Sequence[str] = ()) -> None:
        super().__init__(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.delivered = list(delivered)

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.delivered:  # a partly delivered /events list: sending all of it again is safe
            body["delivered"] = self.delivered
        return body


def _unauthorized(message: str, *, invalid: bool) -> IntakeError:
    challenge = 'Bearer realm="agentic-intake"' + (', error="invalid_token"' if invalid else "")
    return IntakeError(401, message, headers={"WWW-Authenticate": challenge})


MAX_KEY_SHOWN = 64  # characters of a label or annotation name shown in an error


def _shown_key(part: str) -> str:
    """A label or annotation name as an error shows it: control characters, surrogates and
    other unprintable characters escaped (`\\ud800`), so the answer is always valid UTF-8 JSON."""
    if len(part) > MAX_KEY_SHOWN:
        part = part[:MAX_KEY_SHOWN] + "…"
    if part.isprintable():  # surrogates and control characters are not
        return part
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in part)


def _field_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            shown = _shown_key(part)
            path += f".{shown}" if path else shown
    return path or "(body)"


def _error_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`alerts[0].fingerprint: field required` for each error; the offending values are never echoed."""
    lines = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        msg = err["msg"]
        lines.append(f"{_field_path(err['loc'])}: {msg[:1].lower()}{msg[1:]}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"(and {len(errors) - MAX_ERRORS_SHOWN} more)")
    return lines


def _schema_error(what: str, exc: ValidationError) -> IntakeError:
    lines = _error_lines(exc.errors(include_input=False, include_url=False))
    return IntakeError(422, f"invalid {what}: " + "; ".join(lines), details=lines)


# --------------------------------------------------------------------------- request checks


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise IntakeError(400, "the request body is empty: send a JSON document")
    try:
        return json.loads(body, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise IntakeError(
            400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # bad encoding, NaN, absurd nesting or number size
        raise IntakeError(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None


def _kind(doc: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(doc), "a number"
    )


# --------------------------------------------------------------------------- the intake


def incident_config(settings: Settings) -> IncidentConfig:
    """The knobs every new incident starts with (workflows never read the environment)."""
    return IncidentConfig(
        approval_mode=settings.approval_mode,
        approvers=settings.approver_list,
        confidence_threshold=settings.confidence_threshold,
        remind_after_s=settings.remind_after_s,
        escalate_after_s=settings.escalate_after_s,
        expire_after_s=settings.expire_after_s,
        verify_window_s=settings.verify_window_s,
    )


@dataclass
class Delivery:
    """What happened to one group."""

    incident_id: str
    signalled: bool  # False: a resolution with no incident running, nothing delivered
    run_id: str | None = None


@dataclass
class Intake:
    """The app's state: settings, the lazily connected Temporal client, the cached health check."""

    client_factory: ClientFactory
    settings: Settings
    token: bytes
    config: IncidentConfig
    _client: Client | None = None
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _connect_failure: tuple[float, str] | None = None
    _health: tuple[float, bool, str] | None = None
    _health_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # ---- Temporal ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Where Temporal is: the connected client's address, else the configured one."""
        return self._client.service_client.config.target_host if self._client else self.settings.temporal_target

    async def client(self) -> Client:
        """The client, connecting on first use, and again after a failure once CONNECT_BACKOFF_S has passed
        (so a burst of requests while Temporal is down gets quick 503s, not a queue of connect attempts)."""
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            if self._connect_failure is not None and time.monotonic() - self._connect_failure[0] < CONNECT_BACKOFF_S:
                raise TemporalUnavailable(self._connect_failure[1])
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self._client = await self.client_factory()
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    message = f"Temporal at {self.target} did not answer within {CONNECT_TIMEOUT_S:g}s"
                elif isinstance(exc, AgenticError):
                    message = str(exc)
                else:
                    message = f"cannot reach Temporal at {self.target}: {_one_line(exc)}"
                self._connect_failure = (time.monotonic(), message)
                raise TemporalUnavailable(message) from None
            self._connect_failure = None
            log.info("connected to Temporal at %s", self.target)
            return self._client

    async def temporal_health(self) -> tuple[bool, str]:
        """(reachable, detail), from a check at most HEALTH_TTL_S old."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_TTL_S:
            return self._health[1], self._health[2]
        async with self._health_lock:
            if self._health is not None and time.monotonic() - self._health[0] < HEALTH_TTL_S:
                return self._health[1], self._health[2]
            try:
                client = await self.client()
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    ok = await client.service_client.check_health(timeout=timedelta(seconds=3))
                result = (bool(ok), "serving" if ok else "not serving")
            except TemporalUnavailable as exc:
                result = (False, exc.message)
            except Exception as exc:
                result = (False, f"Temporal at {self.target} is unreachable: {_one_line(exc)}")
            self._health = (time.monotonic(), *result)
            return result

    async def deliver(self, group: AlertGroup) -> Delivery:
        """Signal-with-start the group's incident; a resolution only signals a running one."""
        client = await self.client()
        signal_arg = AlertsSignal(group=group)
        try:
            async with asyncio.timeout(TEMPORAL_TIMEOUT_S):
                if group.status == AlertStatus.RESOLVED:
                    handle = client.get_workflow_handle(group.incident_id)
                    try:
                        await handle.signal(SIGNAL_ALERTS, signal_arg)
                    except RPCError as exc:
                        if exc.status == RPCStatusCode.NOT_FOUND:  # closed, or never opened
                            return Delivery(group.incident_id, signalled=False)
                        raise
                    return Delivery(group.incident_id, signalled=True)
                handle = await client.start_workflow(
                    IncidentWorkflow.run,
                    IncidentInput(incident_id=group.incident_id, group=group, config=self.config),
                    id=group.incident_id,
                    task_queue=self.settings.task_queue,
                    start_signal=SIGNAL_ALERTS,
                    start_signal_args=[signal_arg],
                    # a closed incident that fires again is a new run under the same id
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    static_summary=_summary(group),
                )
                return Delivery(group.incident_id, signalled=True, run_id=handle.result_run_id)
        except TimeoutError:
            raise TemporalUnavailable(
                f"Temporal at {self.target} did not answer within {TEMPORAL_TIMEOUT_S:g}s"
            ) from None
        except RPCError as exc:
            raise TemporalUnavailable(
                f"Temporal at {self.target} refused or failed the request "
                f"({exc.status.name if exc.status is not None else 'unknown'}): {_one_line(exc)}"
            ) from None

    # ---- requests ------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized(
                "missing bearer token: send `Authorization: Bearer <AGENTIC_INTAKE_TOKEN>`", invalid=False
            )
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _unauthorized("the Authorization header must be `Bearer <token>`", invalid=True)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.token):
            raise _unauthorized("invalid bearer token", invalid=True)

    async def read_json(self, request: Request) -> Any:
        """The body as JSON, after the content-type and size checks."""
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            shown = content_type.split(";", 1)[0].strip()[:100] or "none"
            raise IntakeError(415, f"Content-Type must be application/json (got {shown})")
        limit = self.settings.intake_max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise IntakeError(400, "Content-Length is not a number") from None
            if length < 0:
                raise IntakeError(400, "Content-Length is negative")
            if length > limit:
                raise IntakeError(413, f"request body of {length} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:  # a missing or lying Content-Length, or a chunked body
                    raise IntakeError(413, f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # gone, or cut off by the server's body deadline (http_limits)
            raise IntakeError(408, "the request body did not arrive in full") from None
        return _load_json(b"".join(chunks))

    def protect(self, group: AlertGroup) -> tuple[AlertGroup, int]:
        """The group with its secrets redacted (`redact_group`), and how many; as it came with
        AGENTIC_INTAKE_KEEP_SECRETS."""
        if self.settings.intake_keep_secrets:
            return group, 0
        return redact_group(group)

    async def deliver_all(self, groups: list[AlertGroup]) -> list[Delivery]:
        """Deliver every group: one incident's groups in order, different incidents concurrently."""
        if len(groups) == 1:
            return [await self.deliver(groups[0])]
        by_incident: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_incident.setdefault(g.incident_id, []).append(i)
        results: list[Delivery | None] = [None] * len(groups)
        gate = asyncio.Semaphore(EVENT_CONCURRENCY)

        async def one_incident(indexes: list[int]) -> None:
            async with gate:
                for i in indexes:
                    results[i] = await self.deliver(groups[i])

        outcome = await asyncio.gather(*(one_incident(ix) for ix in by_incident.values()), return_exceptions=True)
        failures = [r for r in outcome if isinstance(r, BaseException)]
        if failures:
            delivered = _unique(r.incident_id for r in results if r is not None and r.signalled)
            first = failures[0]
            if isinstance(first, TemporalUnavailable):
                raise TemporalUnavailable(first.message, delivered=delivered)
            raise first
        return [r for r in results if r is not None]


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _redacted(secrets: int) -> str:
    return f"; {secrets} secret(s) redacted" if secrets else ""


def _summary(group: AlertGroup) -> str:
    """One line for the Temporal UI: alert name and summary (labels, not secrets)."""
    name = group.labels.get("alertname", "") or group.group_key
    first = group.alerts[0].summary if group.alerts else ""
    text = f"{name}: {first}" if first and first != name else name
    return text.replace("\n", " ")[:200]


def _accepted(deliveries: list[Delivery], **counts: int) -> JSONResponse:
    body: dict[str, Any] = {
        "accepted": True,
        "incidents": _unique(d.incident_id for d in deliveries if d.signalled),
        **counts,
    }
    ignored = _unique(d.incident_id for d in deliveries if not d.signalled)
    if ignored:
        body["ignored"] = [
            {"incident_id": i, "reason": "resolved, and no incident of this group is open: nothing to do"}
            for i in ignored
        ]
    return JSONResponse(body, status_code=202)


# --------------------------------------------------------------------------- routes


def _guarded(
    handler: Callable[[Intake, Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Answer IntakeErrors with their status, and anything unexpected with a logged 503, never a 500."""

    async def endpoint(request: Request) -> Response:
        intake: Intake = request.app.state.intake
        try:
            return await handler(intake, request)
        except TemporalUnavailable as exc:
            log.warning("%s %s: 503: %s", request.method, request.url.path, exc.message)
            return exc.response()
        except IntakeError as exc:
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
            return TemporalUnavailable("the intake failed unexpectedly; retry later").response()

    return endpoint


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
    protected = [intake.protect(group_from_event(ev)) for ev in events]
    deliveries = await intake.deliver_all([g for g, _n in protected])
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
    return app


# --------------------------------------------------------------------------- the process


class _Server(uvicorn.Server):
    """uvicorn minus its own signal capture: `run_service`'s stop event stops it gracefully and
    the process exits 0 (uvicorn re-raises a captured SIGTERM after its shutdown, which would end
    us with -15)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """The intake process (run by `run_service`): refuse to start without a token, claim the port,
    serve until `stop` is set, then let the requests in flight finish."""
    from workers.temporal import connect

    async def factory() -> Client:
        return await connect(settings.temporal_target, settings.temporal_namespace)

    app = create_app(factory, settings)  # no token: refused before the port is claimed
    sock = bind_listener(settings.host, settings.intake_port, "AGENTIC_INTAKE_PORT")
    config = bounded_config(  # headers within 5 s, the body within 10 s (workers/http_limits.py)
        app,
        lifespan="off",
        log_config=None,  # run_service's logging; uvicorn's access log is replaced by AccessLog
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=15,
    )
    server = _Server(config)

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    intake: Intake = app.state.intake
    ok, detail = await intake.temporal_health()
    port = sock.getsockname()[1]
    print(
        f"intake: listening on http://{settings.host}:{port} (POST /alerts, POST /events, GET /healthz); "
        f"Temporal {settings.temporal_target} namespace {settings.temporal_namespace} "
        f"task queue {settings.task_queue}: " + ("reachable" if ok else f"NOT reachable yet, answering 503 ({detail})"),
        file=sys.stderr,
        flush=True,
    )
    stopping = asyncio.create_task(exit_on_stop())
    try:
        await server.serve(sockets=[sock])
    finally:
        stopping.cancel()
    print("intake: stopped", file=sys.stderr, flush=True)


def main() -> None:
    run_service("intake", serve)


if __name__ == "__main__":
    main()
