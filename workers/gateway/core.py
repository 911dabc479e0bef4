"""What every part of the gateway shares: its state (settings, the key ledger, the lazily connected
Temporal client, the rate limiter), its OpenAI-style errors, and reading a request's JSON body."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from temporalio.client import Client

from activities.ledger.keys import ApiKey
from activities.ledger.repository import Ledger
from agentic_core.agents import AgentName
from workers.errors import AgenticError
from workers.gateway.deltas import DeltaHub
from workers.settings import Settings

log = logging.getLogger("agentic.gateway")

ROUTER_MODEL = "agentic-router"
MODEL_PREFIX = "agentic-"
MODELS: dict[str, str | None] = {ROUTER_MODEL: None, **{f"{MODEL_PREFIX}{a.value}": a.value for a in AgentName}}
POLL_S = 0.25  # how often a stream reads the run's progress
KEEPALIVE_S = 15.0  # an SSE comment this often while nothing changes
MAX_BODY = 1_048_576
MAX_REQUEST_ID = 200
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz"})  # the only path that answers without a key

ClientFactory = Callable[[], Awaitable[Client]]


KeyLedger = Ledger  # the keys, the audit, and what the console reads


# --------------------------------------------------------------------------- errors


class GatewayError(Exception):
    """An answer with an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_value" if param else None)


def _unavailable(message: str) -> GatewayError:
    return GatewayError(503, message, kind="server_error", code="unavailable", headers={"Retry-After": "5"})


# --------------------------------------------------------------------------- rate limit


@dataclass
class RateLimiter:
    """A token bucket per key: `per_min` requests a minute, a burst of as many."""

    per_min: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key → (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """0 when the request may go; else the seconds until it may."""
        now = time.monotonic() if now is None else now
        rate = self.per_min / 60.0
        tokens, at = self._buckets.get(key, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


# --------------------------------------------------------------------------- state


@dataclass
class Gateway:
    settings: Settings
    ledger: KeyLedger
    client_factory: ClientFactory
    task_queue: str
    limiter: RateLimiter
    session_secret: bytes = b""  # signs the console's session cookies
    deltas: DeltaHub = field(init=False)  # the model's text as it is written (`workers.gateway.deltas`)
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.deltas = DeltaHub(self.ledger.pool)

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(10):
                        self._client = await self.client_factory()
                except AgenticError as exc:
                    raise _unavailable(str(exc)) from None
                except Exception as exc:
                    raise _unavailable(f"cannot reach Temporal: {type(exc).__name__}") from None
            return self._client


def _key(request: Request) -> ApiKey:
    key: ApiKey = request.scope["state"]["key"]
    return key


def _audit(request: Request, action: str, subject: str = "", detail: str = "") -> None:
    """What the handler did, for the audit row `Authenticate` writes."""
    request.scope["state"]["audit"] = (action, subject, detail)


async def _json_body(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise GatewayError(413, f"the request body is larger than {MAX_BODY} bytes")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise GatewayError(413, f"the request body is larger than {MAX_BODY} bytes")
    if not body:
        raise _bad("the request has no body: send a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # was the 503 of an unexpected error
        raise _bad("the body is not valid JSON: it nests too deeply") from None
