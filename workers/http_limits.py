"""Read-time bounds for the platform's HTTP servers: the alert intake, the Telegram bot's
webhook and `/healthz`, and the MCP servers (all uvicorn with its h11 protocol).

uvicorn bounds neither how long a client may take to send a request's headers nor its body:
its keep-alive timer only runs between requests, and any byte a client sends stops it. A
client that connects and sends nothing, sends half its headers, promises a body longer than
it sends, or sends `Content-Length` with `Transfer-Encoding: chunked` and never ends the chunks,
held a connection (and, for a body, a request task) for as long as it liked. Here:

- `BoundedH11Protocol`: the request line and headers must be complete within
  HEADER_TIMEOUT_S of the connection opening or of the previous response (sending bytes
  slowly does not extend it); the body within BODY_TIMEOUT_S of the headers. Past the
  deadline the client gets `408 Request Timeout` (when a request had begun and no answer
  has started) and the connection is closed; the application sees the client disconnect.
  Time the application itself takes to answer is not bounded here.
- `RequestGuard`: a request with both `Content-Length` and `Transfer-Encoding` (ambiguous
  framing, the shape of request smuggling) gets `400` at once and the connection is closed;
  an application that gives up on a request because its client went away (starlette's
  `ClientDisconnect`, e.g. after a body deadline) ends quietly instead of with a traceback.
- `bounded_config`: a `uvicorn.Config` with both, which every server of the platform uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "BoundedH11Protocol", "RequestGuard", "bounded_config"]

log = logging.getLogger("agentic.http")

HEADER_TIMEOUT_S = 5.0  # request line and headers, from the connection (or the last response)
BODY_TIMEOUT_S = 10.0  # the whole body, from the end of the headers

_HEAD, _BODY = "headers", "body"


def _json_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers and for its body."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # -- uvicorn's hooks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._track()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    # -- the deadlines -------------------------------------------------------------------

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None

    def _track(self) -> None:
        """Start the deadline of what the client owes now; a phase already running keeps its own."""
        if self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = _HEAD if state is h11.IDLE else _BODY if state is h11.SEND_BODY else None
        if phase == self._phase:
            return
        self._cancel()
        if phase is not None:
            seconds = self.header_timeout_s if phase == _HEAD else self.body_timeout_s
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing() or self._phase != phase:
            return
        self._phase = None
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        if phase == _HEAD:
            started = bool(self.conn.trailing_data[0])
            if started:  # part of a request came: say why it is closed
                message = f"the request headers did not arrive within {self.header_timeout_s:g}s"
                self.transport.write(_json_response(408, "Request Timeout", message))
                log.info("%s: 408: request headers not complete within %gs; closed", client, self.header_timeout_s)
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started and not cycle.disconnected:
            message = f"the request body did not arrive within {self.body_timeout_s:g}s"
            body = json.dumps({"error": message}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                out = self.conn.send(h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"))
                out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
                out += self.conn.send(h11.EndOfMessage()) or b""
                self.transport.write(out)
            except h11.LocalProtocolError:
                pass
        if cycle is not None:  # the application's receive() answers http.disconnect; its sends are dropped
            cycle.disconnected = True
            cycle.message_event.set()
        log.info("%s: 408: request body not complete within %gs; closed", client, self.body_timeout_s)
        self.transport.close()


class RequestGuard:
    """ASGI middleware: a request with both Content-Length and Transfer-Encoding gets a 400 and
    the connection is closed (RFC 9112 6.1: such a message may be an attempt at smuggling);
    a `ClientDisconnect` out of the application ends the request quietly (nobody to answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            names = {name.lower() for name, _value in scope["headers"]}
            if b"content-length" in names and b"transfer-encoding" in names:
                client = scope.get("client")
                log.info("%s: 400: Content-Length with Transfer-Encoding; closed", client[0] if client else "-")
                body = json.dumps(
                    {"error": "a request must not carry both Content-Length and Transfer-Encoding"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.info("%s %s: the client went away before its request was read", scope["method"], scope["path"])


def bounded_config(app: ASGIApp, **kwargs: Any) -> uvicorn.Config:
    """`uvicorn.Config(app, **kwargs)` with the read deadlines and the framing guard."""
    return uvicorn.Config(RequestGuard(app), http=BoundedH11Protocol, **kwargs)
