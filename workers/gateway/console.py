"""The web console, served by the gateway under `/console` (docs/gateway.md#console): server-rendered
Jinja2 pages with htmx (vendored in `static/`, no CDN, no build step).

- Login with an API key: the key is checked like a bearer key and a **session cookie** is set:
  `agentic_console`, HttpOnly, SameSite=Strict, path /console, Secure over HTTPS; its value is the
  key's name, the key's prefix, a CSRF token and an expiry, signed with HMAC-SHA256
  (AGENTIC_GATEWAY_SESSION_SECRET, else a random key per process). Every request re-reads the key
  from the ledger: a revoked key ends its sessions at once.
- Without a valid session every `/console` path answers `401` with the login form (the check is in
  `Authenticate`, before any route is looked up).
- Every form carries the session's CSRF token; a POST without it, or with another, is `403`.
- Pages: incidents (from the ledger, filtered by status, severity, category in SQL; the table
  refreshes itself every 5 s),
  one incident (stages, evidence, diagnosis, plan with its hash, decision, actions, outcome;
  Approve / Acknowledge / Ignore / Modify through the same `decide` update as Telegram, answered
  as `key:<name>`), runbooks, guardrail events; links to the Temporal Web UI. The agents chat,
  rollouts and reports pages are in `pages`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote, urlencode

import jinja2
from pydantic import BaseModel
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.types import Scope
from temporalio.service import RPCError, RPCStatusCode

from activities.ledger.keys import ApiKey
from activities.ledger.models import IncidentStatus as LedgerIncidentStatus
from agentic_core.incident import QUERY_STATE, Category, IncidentState, IncidentStatus
from workers.gateway.approvals import INCIDENT_CHOICES, answer_incident, may_approve
from workers.gateway.core import Gateway, GatewayError, _audit, _key

COOKIE = "agentic_console"
SESSION_S = 12 * 3600
PREFIX = "/console"
LOGIN = "/console/login"
HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)


def _dump(value: Any) -> str:
    """A model, or a list of them, as indented JSON (what the incident page shows)."""
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


_ENV.filters["dump"] = _dump


@dataclass(frozen=True)
class Session:
    key_name: str
    prefix: str
    csrf: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison that takes any text: `hmac.compare_digest` raises TypeError on a
    str with non-ASCII characters (a cookie or a form field can carry them), and that was a 503."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_cookie(secret: bytes, key: ApiKey, now: float | None = None) -> tuple[str, Session]:
    session = Session(key.name, key.prefix, secrets.token_urlsafe(24), int((now or time.time()) + SESSION_S))
    payload = _b64(json.dumps([session.key_name, session.prefix, session.csrf, session.expires]).encode())
    return f"{payload}.{_sign(secret, payload)}", session


def read_cookie(secret: bytes, value: str, now: float | None = None) -> Session | None:
    """The session a cookie holds, if its signature is ours and it has not expired."""
    payload, _, sig = value.partition(".")
    if not payload or not sig or not _same(sig, _sign(secret, payload)):
        return None
    try:
        name, prefix, csrf, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(expires, int) or expires < (now or time.time()):
        return None
    return Session(str(name), str(prefix), str(csrf), expires)


def _cookie_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    return v
    return None


async def session_key(gw: Gateway, scope: Scope) -> tuple[ApiKey, Session] | None:
    """The active key behind the request's console session, else None."""
    value = _cookie_of(scope)
    if value is None:
        return None
    session = read_cookie(gw.session_secret, value)
    if session is None:
        return None
    key = await gw.ledger.api_key_named(session.key_name)
    if key is None or not key.active or key.prefix != session.prefix:
        return None
    return key, session


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


# No framing (the approve buttons cannot be clickjacked), scripts and forms from here only.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(name).render(**ctx), status_code=status, headers=HEADERS)


def login_page(error: str = "", status: int = 401) -> HTMLResponse:
    return render("login.html", status=status, error=error, title="Sign in")


# --------------------------------------------------------------------------- pages


def _session(request: Request) -> Session:
    s: Session = request.scope["state"]["session"]
    return s


def _page(request: Request, gw: Gateway, name: str, **ctx: Any) -> HTMLResponse:
    key = _key(request)
    return render(
        name,
        key=key,
        csrf=_session(request).csrf,
        ui=_temporal_ui(gw),
        message=request.query_params.get("msg", ""),
        **ctx,
    )


def _temporal_ui(gw: Gateway) -> str:
    s = gw.settings
    if not s.temporal_embedded:
        return ""
    return f"http://{s.host}:{s.temporal_ui_port}/namespaces/{quote(s.temporal_namespace)}/workflows/"


async def read_form(request: Request) -> FormData:
    """The posted form, or a 400 that says why it cannot be read (a multipart body that is not
    multipart, a missing boundary, too many fields): never the 503 of an unexpected error."""
    try:
        return await request.form()
    except (HTTPException, MultiPartException) as exc:
        detail = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise GatewayError(400, f"the form cannot be read: {detail}") from None


async def check_csrf(request: Request) -> dict[str, str]:
    """The form, once its CSRF token is the session's (else 403)."""
    form = await read_form(request)
    sent = form.get("csrf")
    if not isinstance(sent, str) or not _same(sent, _session(request).csrf):
        raise GatewayError(403, "the form's CSRF token is missing or not this session's: reload the page")
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def login(gw: Gateway, request: Request) -> Response:
    form = await read_form(request)
    token = form.get("key")
    key = await gw.ledger.authenticate_api_key(token.strip()) if isinstance(token, str) else None
    if key is None:
        return login_page("That key is not valid (unknown, revoked or mistyped).")
    value, _session_made = make_cookie(gw.session_secret, key)
    resp = RedirectResponse(f"{PREFIX}/", status_code=303)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    resp.set_cookie(COOKIE, value, max_age=SESSION_S, path=PREFIX, httponly=True, samesite="strict", secure=secure)
    await gw.ledger.record_gateway_audit(
        key_name=key.name, method="POST", path=request.url.path, status=303, action="console login"
    )
    return resp


async def logout(gw: Gateway, request: Request) -> Response:
    await check_csrf(request)
    _audit(request, "console logout")
    resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
    resp.delete_cookie(COOKIE, path=PREFIX)
    return resp


async def login_form(gw: Gateway, request: Request) -> Response:
    """Signed in already (the middleware let the request through): to the incidents."""
    return RedirectResponse(f"{PREFIX}/", status_code=303)


FILTERS = ("status", "severity", "category")
STATUSES: tuple[str, ...] = get_args(LedgerIncidentStatus)
LIST_LIMIT = 200


async def _incidents(gw: Gateway, request: Request) -> tuple[list[Any], dict[str, str]]:
    """The newest incidents from the ledger (written by the incident's activities at each stage),
    filtered in SQL, at most `LIST_LIMIT`."""
    chosen = {f: request.query_params.get(f, "") for f in FILTERS}
    if chosen["status"] and chosen["status"] not in STATUSES:
        raise GatewayError(400, f"status must be one of {', '.join(STATUSES)}")
    rows = await gw.ledger.list_incidents(
        chosen["status"] or None,  # type: ignore[arg-type]
        limit=LIST_LIMIT,
        severity=chosen["severity"] or None,
        category=chosen["category"] or None,
    )
    return rows, chosen


async def incidents(gw: Gateway, request: Request) -> Response:
    rows, chosen = await _incidents(gw, request)
    options = {
        "status": list(STATUSES),
        "severity": ["critical", "warning", "info"],
        "category": [c.value for c in Category],
    }
    return _page(
        request, gw, "incidents.html", title="Incidents", rows=rows, chosen=chosen, options=options,
        query=urlencode({k: v for k, v in chosen.items() if v}),
    )  # fmt: skip


async def incidents_table(gw: Gateway, request: Request) -> Response:
    rows, chosen = await _incidents(gw, request)
    return _page(
        request, gw, "_incidents_table.html", rows=rows, query=urlencode({k: v for k, v in chosen.items() if v})
    )


async def incident(gw: Gateway, request: Request) -> Response:
    incident_id = request.path_params["incident"]
    handle = (await gw.client()).get_workflow_handle(incident_id)
    try:
        state = await handle.query(QUERY_STATE, result_type=IncidentState)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise GatewayError(404, f"no incident {incident_id}", code="not_found") from None
        raise
    key = _key(request)
    try:
        may_approve(gw, key)
        why_not = "" if not key.agents else "this key is limited to some agents"
    except GatewayError as exc:
        why_not = exc.message
    waiting = state.status == IncidentStatus.AWAITING_APPROVAL and bool(state.approval_id)
    choices = ["acknowledged", "ignored", "modified"] if not state.plan else ["approved", "ignored", "modified"]
    return _page(
        request, gw, "incident.html", title=f"Incident {incident_id}", s=state, waiting=waiting,
        why_not=why_not, choices=choices,
    )  # fmt: skip


async def decide(gw: Gateway, request: Request) -> Response:
    incident_id = request.path_params["incident"]
    _audit(request, "answer incident", incident_id)
    form = await check_csrf(request)
    choice = form.get("choice", "")
    if choice not in INCIDENT_CHOICES:
        raise GatewayError(400, f"choice must be one of {', '.join(INCIDENT_CHOICES)}")
    args = form.get("args", "").strip() or None
    result = await answer_incident(gw, _key(request), incident_id, choice, args if choice == "modified" else None)
    _audit(request, f"answer incident: {result.choice}", incident_id, f"plan {result.plan_hash[:12]} by {result.by}")
    msg = f"{result.choice} by {result.by}"
    return RedirectResponse(f"{PREFIX}/incidents/{quote(incident_id)}?{urlencode({'msg': msg})}", status_code=303)


async def runbooks(gw: Gateway, request: Request) -> Response:
    rows = await gw.ledger.list_runbooks()
    stats = {r.id: await gw.ledger.runbook_stats(r.id) for r in rows}
    return _page(request, gw, "runbooks.html", title="Runbooks", rows=rows, stats=stats)


async def guardrails(gw: Gateway, request: Request) -> Response:
    rows = await gw.ledger.list_guardrail_events(limit=200)
    return _page(request, gw, "guardrails.html", title="Guardrail events", rows=rows)


STATIC = frozenset({"htmx.min.js", "chat.js"})


async def static(gw: Gateway, request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        raise GatewayError(404, "no such file", code="not_found")
    return FileResponse(HERE / "static" / name, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


def error_page(request: Request, err: GatewayError) -> HTMLResponse:
    session = request.scope.get("state", {}).get("session")
    if session is None:  # no session (a failed login is answered by `login`): the bare message
        return HTMLResponse(
            f"<!doctype html><title>Error</title><p>{err.status}: {escape(err.message)}</p>", err.status
        )
    return render(
        "error.html", status=err.status, title=f"Error {err.status}", error=err.message, key=_key(request),
        csrf=session.csrf, message="",
    )  # fmt: skip
