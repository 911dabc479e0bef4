"""The gateway as an ASGI app (docs/gateway.md): an OpenAI-compatible endpoint over the agents,
and answers to the approvals an agent run or an incident waits on, behind API keys.

- `Authenticate` (pure ASGI, around the whole app) checks the key of every request but
  `GET /healthz` before any route is looked up, so a route added later cannot be forgotten (an
  unknown path without a key is a 401 too); then the key's rate limit; then, for every request
  that may change anything (any method but GET/HEAD/OPTIONS), one row in the ledger's
  `gateway_audit` with the key's name, the path, the status and what the handler says it did.
- `GET /v1/models`: the agents the key may use, as models (`agentic-router`, `agentic-<agent>`).
- `POST /v1/chat/completions`: one `AgentWorkflow` per request (the last user message is the
  request; the model picks the agent, `agentic-router` lets the router pick). `stream: true`
  answers server-sent events in OpenAI's chunk format: the run's progress (route, tool calls,
  a pending approval) as it happens, from the progress query, then the answer, then
  `data: [DONE]`. `Idempotency-Key` (or `X-Request-Id`) names the run: the same key and header
  reattach to the same run instead of starting another.
- `GET /v1/runs/{run}`, `POST /v1/runs/{run}/approve|deny`, `POST /v1/incidents/{id}/decision`:
  progress and answers through the same `decide` update as Telegram and the CLI, answered as
  `key:<name>`; only keys that are not read-only and are in AGENTIC_GATEWAY_APPROVERS.

Bad input is a 4xx with OpenAI's error object (`{"error": {"message", "type", "param",
"code"}}`), anything unexpected a logged 503, never a 500.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.ledger.keys import ApiKey
from workers.gateway import console, pages
from workers.gateway.approvals import approve_run, decide_incident, deny_run, run_progress
from workers.gateway.chat import MODELS, chat_completions, list_models
from workers.gateway.core import (
    OPEN_PATHS,
    SAFE_METHODS,
    ClientFactory,
    Gateway,
    GatewayError,
    KeyLedger,
    RateLimiter,
    _unavailable,
)
from workers.gateway.observe import Observe
from workers.settings import Settings
from workers.telemetry import metrics_endpoint

__all__ = ["MODELS", "Authenticate", "RateLimiter", "create_app"]

log = logging.getLogger("agentic.gateway")


# --------------------------------------------------------------------------- authentication


class Authenticate:
    """Every request but `GET /healthz` needs an active key (`Authorization: Bearer <key>`), or, under
    `/console`, a console session of an active key; then the key's rate limit; a request that may
    change anything is audited with the key's name."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, err: GatewayError) -> None:
        await err.response()(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS and scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if console.is_console(scope["path"]):
            await self._console(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await self._answer(scope, receive, send, _unauthorized("no API key: send `Authorization: Bearer <key>`"))
            return
        try:
            key = await self.gateway.ledger.authenticate_api_key(token)
        except Exception as exc:
            log.warning("%s %s: 503: the ledger cannot check the key: %s", scope["method"], scope["path"], exc)
            await self._answer(
                scope, receive, send, _unavailable("the gateway cannot check API keys now (the ledger is unreachable)")
            )
            return
        if key is None:
            await self._answer(
                scope, receive, send, _unauthorized("the API key is not valid (unknown, revoked or mistyped)")
            )
            return
        wait = self.gateway.limiter.take(key.name)
        if wait > 0:
            retry = str(max(1, int(wait + 0.999)))
            err = GatewayError(
                429,
                f"rate limit: {self.gateway.limiter.per_min} requests a minute for key {key.name!r}; retry in {retry}s",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry},
            )
            await self._answer(scope, receive, send, err)
            return
        scope.setdefault("state", {})["key"] = key
        await self._pass(scope, receive, send, key)

    async def _console(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The console: a valid session (its key still active), else 401 with the login form; a
        POST to /console/login is let through to the login handler, which checks the key sent."""
        try:
            found = await console.session_key(self.gateway, scope)
        except Exception as exc:
            log.warning("%s %s: 503: the ledger cannot check the session: %s", scope["method"], scope["path"], exc)
            await console.login_page("The ledger cannot be reached: try again shortly.", 503)(scope, receive, send)
            return
        if found is None:
            if scope["path"] == console.LOGIN and scope["method"] == "POST":
                await self.app(scope, receive, send)
                return
            await console.login_page()(scope, receive, send)
            return
        key, session = found
        if self.gateway.limiter.take(key.name) > 0:
            await HTMLResponse("<p>Too many requests: wait a moment and reload.</p>", 429)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["key"], state["session"] = key, session
        await self._pass(scope, receive, send, key)

    async def _pass(self, scope: Scope, receive: Receive, send: Send, key: ApiKey) -> None:
        """The request, on to the routes; one audit row when it may change anything."""
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            action, subject, detail = scope["state"].get("audit", ("", "", ""))
            try:
                await self.gateway.ledger.record_gateway_audit(
                    key_name=key.name,
                    method=scope["method"],
                    path=scope["path"],
                    status=status or 499,
                    action=action,
                    subject=subject,
                    detail=detail,
                )
            except Exception as exc:  # the answer was given; say loudly that its audit is missing
                log.error(
                    "AUDIT NOT RECORDED: key %s %s %s %d %s %s: %s",
                    key.name,
                    scope["method"],
                    scope["path"],
                    status,
                    action,
                    subject,
                    exc,
                )


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401, message, kind="invalid_request_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
    )


# --------------------------------------------------------------------------- routes


def _guarded(handler: Callable[[Gateway, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        try:
            return await handler(gw, request)
        except GatewayError as exc:
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            log.log(level, "%s %s: %d: %s", request.method, request.url.path, exc.status, exc.message)
            return exc.response()
        except Exception:
            log.exception("%s %s: unexpected error (answered 503)", request.method, request.url.path)
            return _unavailable("the gateway failed unexpectedly; retry later").response()

    return endpoint


def _page(handler: Callable[[Gateway, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A console page: errors as an HTML page with their status, anything unexpected a logged 503."""

    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        try:
            return await handler(gw, request)
        except GatewayError as exc:
            log.info("%s %s: %d: %s", request.method, request.url.path, exc.status, exc.message)
            return console.error_page(request, exc)
        except Exception:
            log.exception("%s %s: unexpected error (answered 503)", request.method, request.url.path)
            return console.error_page(request, _unavailable("the console failed unexpectedly; retry later"))

    return endpoint


async def _healthz(gw: Gateway, request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    message = {404: "no such route", 405: f"method {request.method} not allowed here"}.get(status, "bad request")
    return GatewayError(status, message, code="not_found" if status == 404 else None).response()


def create_app(settings: Settings, ledger: KeyLedger, client_factory: ClientFactory, task_queue: str) -> ASGIApp:
    """The gateway: the routes behind `Authenticate`. `app.state.gateway` of the inner Starlette app
    holds the state; `routes_of(app)` lists the route table (the security tests walk it)."""
    gw = Gateway(
        settings=settings,
        ledger=ledger,
        client_factory=client_factory,
        task_queue=task_queue,
        limiter=RateLimiter(settings.gateway_rate_per_min),
        session_secret=(
            settings.gateway_session_secret.get_secret_value().encode()
            if settings.gateway_session_secret
            else secrets.token_bytes(32)
        ),
    )
    inner = Starlette(
        routes=[
            Route("/healthz", _guarded(_healthz), methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),  # behind a key (docs/observability.md)
            Route("/v1/models", _guarded(list_models), methods=["GET"]),
            Route("/v1/chat/completions", _guarded(chat_completions), methods=["POST"]),
            Route("/v1/runs/{run}", _guarded(run_progress), methods=["GET"]),
            Route("/v1/runs/{run}/approve", _guarded(approve_run), methods=["POST"]),
            Route("/v1/runs/{run}/deny", _guarded(deny_run), methods=["POST"]),
            Route("/v1/incidents/{incident}/decision", _guarded(decide_incident), methods=["POST"]),
            Route("/console", _page(console.login_form), methods=["GET"]),
            Route("/console/", _page(console.incidents), methods=["GET"]),
            Route(console.LOGIN, _page(console.login_form), methods=["GET"]),
            Route(console.LOGIN, _page(console.login), methods=["POST"]),
            Route("/console/logout", _page(console.logout), methods=["POST"]),
            Route("/console/incidents/table", _page(console.incidents_table), methods=["GET"]),
            Route("/console/incidents/{incident}", _page(console.incident), methods=["GET"]),
            Route("/console/incidents/{incident}/decide", _page(console.decide), methods=["POST"]),
            Route("/console/runbooks", _page(console.runbooks), methods=["GET"]),
            Route("/console/guardrails", _page(console.guardrails), methods=["GET"]),
            Route("/console/agents", _page(pages.agents), methods=["GET"]),
            Route("/console/agents", _page(pages.ask), methods=["POST"]),
            Route("/console/agents/runs/{run}", _page(pages.agent_run), methods=["GET"]),
            Route("/console/agents/runs/{run}/stream", _page(pages.agent_run_stream), methods=["GET"]),
            Route("/console/agents/runs/{run}/decide", _page(pages.agent_run_decide), methods=["POST"]),
            Route("/console/rollouts", _page(pages.rollouts), methods=["GET"]),
            Route("/console/rollouts/{rollout}", _page(pages.rollout), methods=["GET"]),
            Route("/console/rollouts/{rollout}/gate", _page(pages.rollout_gate), methods=["POST"]),
            Route("/console/reports", _page(pages.reports), methods=["GET"]),
            Route("/console/reports/{week}", _page(pages.report), methods=["GET"]),
            Route("/console/reports/{week}/chart.png", _page(pages.report_chart), methods=["GET"]),
            Route("/console/static/{name}", _page(console.static), methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    inner.state.gateway = gw
    app = Observe(Authenticate(inner, gw), inner.routes)  # traces and metrics (workers/gateway/observe.py)
    return app
