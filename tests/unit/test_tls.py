"""The shared TLS contexts (activities/tls.py): made once per process and verifying, and used by
the clients the platform opens often (an MCP session per exactly-once tool call, a health check
every 0.25 s while the stack starts), where a fresh context cost ~44 ms of CPU each."""

from __future__ import annotations

import ssl
from typing import Any

import httpx2
import pytest

from activities.tls import httpx2_tls, httpx_tls
from activities.tools.mcp_client import McpClient


@pytest.mark.parametrize("make", [httpx_tls, httpx2_tls])
def test_one_verifying_context_per_process(make: Any) -> None:
    ctx = make()
    assert make() is ctx  # made once
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # certificates are still checked


async def test_an_mcp_session_uses_the_shared_context(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []
    real = httpx2.AsyncClient

    def client(**kw: Any) -> httpx2.AsyncClient:
        made.append(kw)
        return real(**kw)

    monkeypatch.setattr(httpx2, "AsyncClient", client)
    mcp = McpClient(token="t", call_timeout_s=1.0)
    for _ in range(2):
        with pytest.raises(ExceptionGroup):  # nobody listens there: only the client's making matters here
            async with mcp._client("http://127.0.0.1:9/mcp", []):
                pass
    assert len(made) == 2 and all(kw["verify"] is httpx2_tls() for kw in made)
