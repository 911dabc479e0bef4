"""Raw-socket probes of an HTTP server's read deadlines (workers/http_limits.py): what a slow or
malformed client gets, and how soon its connection is closed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from workers.http_limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

SLACK_S = 2.0  # scheduling on a busy 2-core machine


@dataclass
class Outcome:
    name: str
    status: int | None  # the answer's status, None when closed without one
    closed_after_s: float | None  # None: still open when the probe gave up
    raw: bytes


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: probe", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def probe(
    port: int, name: str, data: bytes, *, trickle_s: float = 0.0, give_up_s: float = BODY_TIMEOUT_S + 8
) -> Outcome:
    """Send `data` (one byte every `trickle_s` seconds if set), then read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    got = b""

    async def send() -> None:
        if trickle_s:
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(trickle_s)
        elif data:
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(give_up_s):
            while chunk := await reader.read(4096):
                got += chunk
        closed: float | None = time.monotonic() - started
    except TimeoutError:
        closed = None
    except ConnectionResetError:
        closed = time.monotonic() - started
    finally:
        sender.cancel()
        writer.close()
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else None
    return Outcome(name, status, closed, got)


async def slow_clients(port: int, path: str, *headers: str) -> dict[str, Outcome]:
    """The slow and malformed clients, at once, against `path` (a POST route) with `headers`."""
    full = head("POST", path, "Content-Type: application/json", *headers, "Content-Length: 100") + b'{"a":'
    cases = {
        "connects, sends nothing": probe(port, "nothing", b""),
        "half the headers": probe(port, "half", f"POST {path} HTTP/1.1\r\nHost: probe\r\n".encode()),
        "headers one byte a second": probe(port, "trickle", head("GET", "/healthz"), trickle_s=1.0),
        "Content-Length and chunked": probe(
            port,
            "cl+te",
            head("POST", path, "Content-Type: application/json", *headers, "Content-Length: 10")[:-2]
            + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":',
        ),
        "chunked, never ends": probe(
            port,
            "chunked",
            head("POST", path, "Content-Type: application/json", *headers, "Transfer-Encoding: chunked")
            + b'5\r\n{"a":',
        ),
        "body shorter than Content-Length": probe(port, "short", full),
    }
    results = await asyncio.gather(*cases.values())
    return dict(zip(cases, results, strict=True))


def assert_bounded(outcomes: dict[str, Outcome], body_status: int = 408) -> None:
    """Every slow client is answered or closed within its deadline (and a little slack); a body
    that never arrives is answered `body_status` (408: cut off at the deadline)."""
    header_bound, body_bound = HEADER_TIMEOUT_S + SLACK_S, HEADER_TIMEOUT_S + BODY_TIMEOUT_S + SLACK_S
    o = outcomes
    report = {k: (v.status, None if v.closed_after_s is None else round(v.closed_after_s, 1)) for k, v in o.items()}
    for name in ("connects, sends nothing", "half the headers", "headers one byte a second"):
        closed = o[name].closed_after_s
        assert closed is not None and closed <= header_bound, report
    assert o["connects, sends nothing"].status is None and o["connects, sends nothing"].raw == b"", report
    assert o["half the headers"].status == 408 and o["headers one byte a second"].status == 408, report
    cl_te = o["Content-Length and chunked"]
    assert cl_te.status == 400 and cl_te.closed_after_s is not None and cl_te.closed_after_s <= SLACK_S, report
    assert b"both Content-Length and Transfer-Encoding" in cl_te.raw, report
    for name in ("chunked, never ends", "body shorter than Content-Length"):
        closed = o[name].closed_after_s
        assert closed is not None and closed <= body_bound, report
        assert o[name].status == body_status, report
