"""The tool gateway's MCP client: one streamable-HTTP session per listing or call, with the
gateway's bearer token; every failure a `ServerError` whose text says what to do (a refused
token, a server that cannot be reached, a connection lost during the call) and whether the
call had been sent when it came."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from mcp_types import Tool as ListedTool

__all__ = ["CONNECT_TIMEOUT_S", "McpClient", "ServerError"]

CONNECT_TIMEOUT_S = 10.0

_T = TypeVar("_T")


class ServerError(Exception):
    """An MCP server could not be used. `sent`: the failure came after the call was sent."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaf = _leaves(exc)[0]
    text = str(leaf).strip().splitlines()[0] if str(leaf).strip() else ""
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


class McpClient:
    """Lists and calls the tools of MCP servers (`token`: the bearer token they expect;
    `call_timeout_s`: how long an answer may take)."""

    def __init__(self, token: str | None, call_timeout_s: float) -> None:
        self._token = token
        self.call_timeout_s = call_timeout_s

    @contextlib.asynccontextmanager
    async def _client(self, url: str, statuses: list[int]) -> AsyncIterator[Client]:
        async def on_response(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        http = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(CONNECT_TIMEOUT_S, read=self.call_timeout_s),
            event_hooks={"response": [on_response]},
        )
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            yield client

    def _failure(self, server: str, url: str, exc: BaseException, statuses: list[int], *, sent: bool) -> ServerError:
        if 401 in statuses or 403 in statuses:
            code = 401 if 401 in statuses else 403
            return ServerError(
                f"MCP server {server!r} at {url} refused the gateway's bearer token ({code}): "
                "give the worker the server's token (AGENTIC_MCP_TOKEN)",
                sent=False,
            )
        if any(isinstance(leaf, httpx2.ConnectError) for leaf in _leaves(exc)):
            return ServerError(
                f"cannot reach MCP server {server!r} at {url} ({_describe(exc)}): is it running? (agentic status)",
                sent=False,
            )
        what = "lost the connection during the call" if sent else "failed"
        return ServerError(f"MCP server {server!r} at {url} {what}: {_describe(exc)}", sent=sent)

    async def list_tools(self, server: str, url: str, each: Callable[[ListedTool], _T]) -> list[_T]:
        """Every tool `server` (at `url`) offers, page by page, each as `each` makes it; a server
        that cannot be listed (or a tool `each` cannot make) is a `ServerError`."""
        statuses: list[int] = []
        tools: list[_T] = []
        try:
            async with self._client(url, statuses) as client:
                cursor: str | None = None
                for _ in range(100):  # pages
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(each(t) for t in page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except Exception as exc:
            raise self._failure(server, url, exc, statuses, sent=False) from None
        return tools

    async def call_tool(self, server: str, url: str, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call the tool `name` of `server` (at `url`) once. A failure before the answer is a
        `ServerError` (`sent` once the session was open); one only in closing the session after
        the answer is not."""
        statuses: list[int] = []
        sent = False
        result: CallToolResult | None = None
        try:
            async with self._client(url, statuses) as client:
                sent = True
                result = await client.call_tool(name, arguments, read_timeout_seconds=self.call_timeout_s)
        except Exception as exc:
            if result is None:
                raise self._failure(server, url, exc, statuses, sent=sent) from None
            # The answer arrived; only closing the session failed.
        assert result is not None
        return result
