"""The tool gateway's MCP client, with the gateway's bearer token; every failure a `ServerError`
whose text says what to do (a refused token, a server that cannot be reached, a connection lost
during the call) and whether the call had been sent when it came.

Sessions are reused. Opening a streamable-HTTP session costs a handshake (`server/discover`, or
`initialize` with a server older than the 2026-07-28 protocol), a TCP connection and, for the
first call of a tool, a listing; an agent's read calls and the catalogue's listings go through a
pool of open sessions instead, one per server URL (the token is the client's own), opened on the
first use, shared by concurrent activities (the SDK's session multiplexes requests by id: each
is its own POST) and dropped when a call on it fails for any reason but an error the server
answered with (a call that times out ends the SDK's session: the next call opens a new one).
A session that was reused and fails before its request reached the server (a connection refused,
a server restarted since that no longer knows the session) is replaced and the call sent once
more on a new one; so a restarted server costs no failed call, and a server that is down fails
cleanly and the next call after it is back works. Each session is owned by its own task (the
SDK's transport lives in an anyio task group, which must be entered and left by one task);
`aclose` closes them all (the worker does, on shutdown). A session belongs to the event loop
that opened it; on another loop a new one is opened.

A call whose outcome must be known exactly (`McpClient.call_tool(..., reuse=False)`: the
gateway's `tools.execute`, the exactly-once path for tools that change something) opens a
session of its own, as before, so what `sent` means there has not changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult
from mcp_types import Tool as ListedTool

from activities.tls import httpx2_tls

__all__ = ["CLOSE_TIMEOUT_S", "CONNECT_TIMEOUT_S", "McpClient", "ServerError"]

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0  # closing one pooled session on shutdown

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


def _not_delivered(exc: BaseException) -> bool:
    """The request never reached a server that acted on it: the connection was refused, or the
    server answered that it does not know the session (it restarted; 404 "Session terminated")."""
    for leaf in _leaves(exc):
        if isinstance(leaf, httpx2.ConnectError):
            return True
        if isinstance(leaf, MCPError) and "session terminated" in str(leaf).lower():
            return True
    return False


def _timed_out(exc: BaseException) -> bool:
    return any(
        isinstance(leaf, httpx2.TimeoutException | TimeoutError)
        or (isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT)
        for leaf in _leaves(exc)
    )


def _answered(exc: BaseException) -> bool:
    """A failure of one call that says nothing about its session: a JSON-RPC error the server
    answered with, or the call's own timeout."""
    leaves = _leaves(exc)
    if _not_delivered(exc) or any(isinstance(leaf, httpx2.TransportError) for leaf in leaves):
        return _timed_out(exc)
    return _timed_out(exc) or all(isinstance(leaf, MCPError) and leaf.code != CONNECTION_CLOSED for leaf in leaves)


def _connection_lost(exc: BaseException) -> bool:
    """The session's connection broke (not an error the server answered with)."""
    return not _timed_out(exc) and any(
        isinstance(leaf, httpx2.TransportError) or (isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED)
        for leaf in _leaves(exc)
    )


class _Session:
    """One open client to one server, owned by its own task until `close`."""

    def __init__(self, opener: Callable[[list[int]], contextlib.AbstractAsyncContextManager[Client]]) -> None:
        self.statuses: list[int] = []  # HTTP statuses of every response on this session
        self.loop = asyncio.get_running_loop()
        self.uses = 0  # calls and listings started on it
        self._ready: asyncio.Future[Client] = self.loop.create_future()
        self._closing = asyncio.Event()
        self._opener = opener
        self.error: Exception | None = None  # why the session ended, when it broke
        self.task = asyncio.create_task(self._own(), name="mcp-session")

    async def _own(self) -> None:
        try:
            async with self._opener(self.statuses) as client:
                self._ready.set_result(client)
                await self._closing.wait()
        except Exception as exc:  # the transport broke (or never opened): whoever waits is told
            self.error = exc
            if not self._ready.done():
                self._ready.set_exception(exc)
        finally:
            if not self._ready.done():  # cancelled while opening
                self._ready.set_exception(ConnectionError("the MCP session was closed while it opened"))

    async def client(self) -> Client:
        return await asyncio.shield(self._ready)

    @property
    def alive(self) -> bool:
        return not self.task.done() and not self._closing.is_set()

    def close(self) -> None:
        self._closing.set()


class McpClient:
    """Lists and calls the tools of MCP servers (`token`: the bearer token they expect;
    `call_timeout_s`: how long an answer may take), over pooled sessions (see the module doc)."""

    def __init__(self, token: str | None, call_timeout_s: float) -> None:
        self._token = token
        self.call_timeout_s = call_timeout_s
        self._pool: dict[str, _Session] = {}
        self._closing: set[asyncio.Task[None]] = set()  # dropped sessions' tasks, until they end

    @contextlib.asynccontextmanager
    async def _client(self, url: str, statuses: list[int]) -> AsyncIterator[Client]:
        async def on_response(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        http = httpx2.AsyncClient(
            headers=headers,
            verify=httpx2_tls(),  # made once: a new one costs ~44 ms of CPU (activities/tls.py)
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

    # --- the pool -------------------------------------------------------------------------------

    def _session(self, url: str) -> _Session:
        """The pooled session to `url` (opened, or being opened, by its own task)."""
        loop = asyncio.get_running_loop()
        session = self._pool.get(url)
        if session is not None and session.alive and session.loop is loop:
            return session
        if session is not None:
            self._drop(url, session)
        session = _Session(lambda statuses: self._client(url, statuses))
        self._pool[url] = session
        return session

    def _drop(self, url: str, session: _Session) -> None:
        if self._pool.get(url) is session:
            del self._pool[url]
        session.close()
        if session.loop is asyncio.get_running_loop() and not session.task.done():
            self._closing.add(session.task)
            session.task.add_done_callback(self._closing.discard)

    @property
    def open_sessions(self) -> int:
        """Sessions in the pool (open or being opened)."""
        return sum(1 for s in self._pool.values() if s.alive)

    async def __aenter__(self) -> McpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled session (those of this event loop; others are forgotten)."""
        loop = asyncio.get_running_loop()
        for url, session in list(self._pool.items()):
            self._drop(url, session)
        tasks = [t for t in self._closing if t.get_loop() is loop]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for task in tasks:
            if not task.done():
                task.cancel()

    async def _pooled(self, server: str, url: str, use: Callable[[Client], Any], *, repeat_safe: bool) -> Any:
        """`use(client)` on the pooled session to `url`. A failure drops the session; on a reused
        one, when the request did not reach the server (or `repeat_safe` and the connection was
        lost), it is sent once more on a new session."""
        for attempt in (0, 1):
            session = self._session(url)
            reused = session.uses > 0
            session.uses += 1
            mark = len(session.statuses)
            try:
                client = await session.client()
            except Exception as exc:
                self._drop(url, session)
                raise self._failure(server, url, exc, session.statuses[mark:], sent=False) from None
            try:
                return await use(client)
            except Exception as exc:
                if _answered(exc) and not _timed_out(exc) and not session.task.done():
                    # The server answered with an error: the session is fine and other calls may
                    # be using it; only this call failed.
                    raise self._failure(server, url, exc, session.statuses[mark:], sent=True) from None
                if _timed_out(exc):
                    # This call timed out: the SDK's transport ends the session with it (the next
                    # call on it failed at once, "lost the connection"), so the next call opens a
                    # new one. The call itself was sent: it is not sent again.
                    self._drop(url, session)
                    raise self._failure(server, url, exc, session.statuses[mark:], sent=True) from None
                self._drop(url, session)
                # The transport's own failure (a refused connection, say) ends the session's task;
                # the call itself sees only "Connection closed". Both say what happened.
                if not session.task.done():
                    await asyncio.wait([session.task], timeout=1.0)
                seen: Exception = ExceptionGroup("MCP call", [session.error, exc]) if session.error else exc
                statuses = session.statuses[mark:]
                undelivered = _not_delivered(seen)
                retry = reused and attempt == 0 and (undelivered or (repeat_safe and _connection_lost(seen)))
                if retry and 401 not in statuses and 403 not in statuses:
                    continue
                raise self._failure(server, url, seen, statuses, sent=not undelivered) from None
        raise AssertionError("unreachable")

    # --- listing and calling --------------------------------------------------------------------

    async def list_tools(self, server: str, url: str, each: Callable[[ListedTool], _T]) -> list[_T]:
        """Every tool `server` (at `url`) offers, page by page, each as `each` makes it; a server
        that cannot be listed (or a tool `each` cannot make) is a `ServerError`."""

        async def pages(client: Client) -> list[ListedTool]:
            listed: list[ListedTool] = []
            cursor: str | None = None
            for _ in range(100):  # pages
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            return listed

        listed: list[ListedTool] = await self._pooled(server, url, pages, repeat_safe=True)
        try:
            return [each(t) for t in listed]
        except Exception as exc:
            raise ServerError(f"MCP server {server!r} at {url} failed: {_describe(exc)}") from None

    async def call_tool(
        self,
        server: str,
        url: str,
        name: str,
        arguments: dict[str, Any],
        *,
        reuse: bool = True,
        repeat_safe: bool = False,
    ) -> CallToolResult:
        """Call the tool `name` of `server` (at `url`). A failure before the answer is a
        `ServerError` (`sent` once the request may have reached the server).

        `reuse` (the default): on a pooled session (see the module doc); `repeat_safe`: a read
        that may be sent again when a reused session's connection is lost mid-call.
        `reuse=False`: on a session of its own, opened and closed around the call (`sent` once
        the session was open); a failure only in closing the session after the answer is not
        a failure."""
        if reuse:
            result: CallToolResult = await self._pooled(
                server,
                url,
                lambda client: client.call_tool(name, arguments, read_timeout_seconds=self.call_timeout_s),
                repeat_safe=repeat_safe,
            )
            return result
        statuses: list[int] = []
        sent = False
        once: CallToolResult | None = None
        try:
            async with self._client(url, statuses) as client:
                sent = True
                once = await client.call_tool(name, arguments, read_timeout_seconds=self.call_timeout_s)
        except Exception as exc:
            if once is None:
                raise self._failure(server, url, exc, statuses, sent=sent) from None
            # The answer arrived; only closing the session failed.
        assert once is not None
        return once
