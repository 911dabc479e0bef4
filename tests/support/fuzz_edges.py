"""Property-based fuzzing of every inbound edge, shared by the CI slice
(tests/integration/test_fuzz_edges.py) and the benchmark (benchmarks/fuzz_edges.py).

`Edges` starts the real pieces in a loop of its own thread: the Temporal dev server, PostgreSQL
(pgserver) with the ledger, and over real HTTP (uvicorn with the production `bounded_config`) the
intake (`POST /alerts`, `POST /events`), the Telegram bot's webhook (`POST /telegram`, its
`secret_token` header; the bot talks to the Bot API emulator) and the gateway (`/v1/*`, the
console's forms). Stand-in workflows under the real names (`IncidentWorkflow`, `AgentWorkflow`)
take what a 2xx starts, on task queues of their own, so Temporal can be asked afterwards what
every request started.

The strategies make near-valid requests (a valid document with fields mutated: wrong types,
huge or odd unicode strings, missing and extra keys, deep nesting; wrong content types, bad auth
headers, truncated JSON, oversized bodies) and garbage. `Edges.fire` sends one and checks the
per-request properties (never a 5xx, no transport failure, every 4xx a JSON error with a
message); `Edges.finish` checks the rest: each server still answers `/healthz`, and every
workflow that exists was started by an accepted (2xx) request.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import httpx
import uvicorn
from hypothesis import strategies as st
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.ledger.repository import Ledger
from agentic_core.agents import (
    AGENT_WORKFLOW,
    QUERY_AGENT_PROGRESS,
    AgentProgress,
    AgentRequest,
    AgentResult,
    AgentStatus,
)
from tests.support import intake as intake_support
from tests.support.env import free_port
from tests.support.pg import pg_server
from tests.support.telegram_emulator import BotApiEmulator
from tests.support.temporal import start_dev_server
from workers.gateway.app import create_app as create_gateway
from workers.http_limits import bounded_config
from workers.intake import create_app as create_intake
from workers.settings import Settings
from workers.telegram.bot import SECRET_HEADER, WEBHOOK_PATH, BotConfig, TelegramBot, build_application
from workers.telegram.webhook import MAX_UPDATE_BYTES
from workers.temporal import ensure_search_attributes

T = TypeVar("T")

EDGES = ("intake", "telegram", "gateway")
WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789"
BOT_CHAT = -1001234567890
INTAKE_MAX_BODY = 16_384
GATEWAY_MAX_BODY = 1_048_576


# --------------------------------------------------------------------------- stand-in workflows


@workflow.defn(name=AGENT_WORKFLOW)
class StandInAgent:
    """What the gateway starts: answers at once, and its progress query in the meantime."""

    def __init__(self) -> None:
        self._progress: AgentProgress | None = None

    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        self._progress = AgentProgress(run_id=workflow.info().workflow_id, request_id=req.request_id)
        return AgentResult(
            run_id=workflow.info().workflow_id, request_id=req.request_id, status=AgentStatus.DONE, answer="ok"
        )

    @workflow.query(name=QUERY_AGENT_PROGRESS)
    def progress(self) -> AgentProgress:
        assert self._progress is not None
        return self._progress


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Req:
    edge: str
    method: str
    path: str
    headers: tuple[tuple[str, bytes], ...]
    body: bytes

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(name.encode(), value) for name, value in self.headers]

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"Req({self.edge} {self.method} {self.path} headers={self.headers!r} body={self.body[:2000]!r})"


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
odd_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60),
    st.sampled_from(["", " ", "\x00", "\u202e", "💥" * 50, "a" * 20_000, "\ud800", "{{}}", "<b>x</b>", "\n\r\t"]),
)
mutant_values: st.SearchStrategy[Any] = st.one_of(
    json_values,
    odd_text,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
    st.builds(lambda n: {"x": n} if n == 0 else json.loads("[" * n + "]" * n), st.integers(0, 60)),
)


def mostly(common: T, rare: list[T], pct: int = 10) -> st.SearchStrategy[T]:
    """`common`, else (`pct` in 100) one of `rare`. Hypothesis favours the ends of a range and of a
    `sampled_from` list, so the rare choices sit in the middle of the range drawn."""
    return st.integers(0, 99).flatmap(
        lambda i: st.sampled_from(rare) if 40 <= i < 40 + pct else st.just(common)  # type: ignore[arg-type]
    )


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with 0-3 mutations: a value replaced, a key removed, an extra key added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "delete", "extra"]))
        if not path:
            if op == "replace":
                doc = copy.deepcopy(draw(mutant_values))
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if op == "replace":
            parent[last] = copy.deepcopy(draw(mutant_values))  # never a shared example object
        elif op == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = copy.deepcopy(draw(mutant_values))
    return doc


def _nan_json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).replace("0", "NaN", 1).encode("utf-8", "surrogatepass")


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def body_of(draw: st.DrawFn, doc: Any, limit: int) -> bytes:
    """`doc` as a body: mostly plain JSON; else truncated, NaN, invalid UTF-8, garbage, empty, oversized."""
    how = draw(mostly("json", ["ascii", "truncated", "nan", "latin1", "garbage", "empty", "oversized", "deep"], 30))
    if how == "json":
        return _encode(doc)
    if how == "ascii":
        return json.dumps(doc).encode()
    if how == "truncated":
        raw = _encode(doc)
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "nan":
        return _nan_json(doc)
    if how == "latin1":
        return json.dumps(doc, ensure_ascii=False).encode("latin-1", "replace") + b"\xff\xfe"
    if how == "garbage":
        return draw(st.binary(max_size=200))
    if how == "empty":
        return b""
    if how == "deep":  # past the JSON parser's recursion limit, within every size limit
        depth = min(limit // 3, 100_000)
        return b"[" * depth + b"]" * depth
    return b'{"pad": "' + b"x" * limit + b'"}'


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))
header_value = header_text.filter(lambda s: s.strip() == s and len(s) < 200)  # what a client can send


@st.composite
def content_type(draw: st.DrawFn) -> bytes | None:
    odd = ["application/json; charset=utf-8", "application/vnd.x+json", "text/plain", "", None, "junk"]
    ct = draw(mostly("application/json", odd, 20))
    if ct == "junk":
        return draw(header_value).encode("latin-1")
    return None if ct is None else ct.encode()


@st.composite
def auth_header(draw: st.DrawFn, good: str, scheme: str = "Bearer") -> tuple[tuple[str, bytes], ...]:
    kind = draw(mostly("good", ["none", "wrong", "basic", "empty", "odd"], 15))
    if kind == "none":
        return ()
    value = {
        "good": f"{scheme} {good}",
        "wrong": f"{scheme} {good}x",
        "basic": "Basic dXNlcjpwYXNz",
        "empty": scheme,
    }.get(kind)
    if value is None:
        return (("authorization", draw(header_value).encode("latin-1")),)
    return (("authorization", value.encode()),)


def _headers(*parts: tuple[tuple[str, bytes], ...], ct: bytes | None) -> tuple[tuple[str, bytes], ...]:
    out: list[tuple[str, bytes]] = [h for p in parts for h in p]
    if ct is not None:
        out.append(("content-type", ct))
    return tuple(out)


# --- the intake


def _event(source: str, title: str) -> dict[str, Any]:
    return {"source": source, "title": title, "severity": "warning", "labels": {"app": "sonarr"}, "message": "m"}


@st.composite
def intake_requests(draw: st.DrawFn, token: str) -> Req:
    path = draw(st.sampled_from(["/alerts", "/events"]).flatmap(lambda p: mostly(p, ["/nope"], 5)))
    receiver = "fuzz-" + draw(st.sampled_from(["a", "b", "c", "d"]))
    if path == "/events":
        base: Any = draw(
            st.sampled_from(
                [
                    _event("fuzz", "disk full"),
                    [_event("fuzz", "disk full"), _event("fuzz2", "cert expiring")],
                    [_event("fuzz", f"e{i}") for i in range(101)],
                ]
            )
        )
    else:
        base = intake_support.webhook(receiver, status=draw(st.sampled_from(["firing", "resolved"])))
    doc = draw(mutated(base)) if draw(st.booleans()) or path == "/nope" else base
    body = draw(body_of(doc, INTAKE_MAX_BODY))
    method = draw(mostly("POST", ["GET", "PUT"], 5))
    headers = _headers(draw(auth_header(token)), ct=draw(content_type()))
    return Req("intake", method, path, headers, body)


# --- the bot's webhook


def _update(kind: str, uid: int) -> dict[str, Any]:
    user = {"id": 111, "is_bot": False, "first_name": "Alice", "username": "alice"}
    chat = {"id": BOT_CHAT, "type": "supergroup", "title": "ops", "is_forum": True}
    message = {"message_id": 7, "date": 1_760_000_000, "chat": chat, "from": user, "text": "/incidents"}
    if kind == "message":
        return {"update_id": uid, "message": message}
    if kind == "reply":
        reply = {**message, "text": "scale it to 2", "reply_to_message": {**message, "message_id": 6, "text": "x"}}
        return {"update_id": uid, "message": reply}
    bot_msg = {**message, "from": {"id": 1, "is_bot": True, "first_name": "bot"}, "text": "card"}
    data = {"callback": "a:0123456789abcdef:approve:deadbeef", "details": "d:x:y"}.get(kind, "garbage")
    return {
        "update_id": uid,
        "callback_query": {"id": "cb1", "from": user, "chat_instance": "1", "message": bot_msg, "data": data},
    }


@st.composite
def telegram_requests(draw: st.DrawFn) -> Req:
    base = _update(draw(st.sampled_from(["message", "reply", "callback", "details"])), draw(st.integers(1, 10**9)))
    doc = draw(mutated(base)) if draw(st.booleans()) else base
    body = draw(body_of(doc, MAX_UPDATE_BYTES))
    secret = draw(mostly(WEBHOOK_SECRET, [None, "", WEBHOOK_SECRET + "x", "é"], 15))
    headers = () if secret is None else ((SECRET_HEADER.lower(), secret.encode("latin-1")),)
    method = draw(mostly("POST", ["GET"], 5))
    path = draw(mostly(WEBHOOK_PATH, ["/telegram/x"], 5))
    return Req("telegram", method, path, _headers(headers, ct=draw(content_type())), body)


# --- the gateway


@st.composite
def gateway_requests(draw: st.DrawFn, key: str) -> Req:
    route = draw(
        st.sampled_from(
            ["chat"] * 5
            + ["models", "run", "approve", "decision", "login", "decide", "ask", "run-decide", "gate", "report"]
        )
    )
    run = draw(st.sampled_from(["agent-gw-0", "x", "%2e%2e", "a" * 300, "ü"]))
    method, path = "POST", "/v1/chat/completions"
    base: dict[str, Any] | None = None
    extra: tuple[tuple[str, bytes], ...] = ()
    if route == "chat":
        model = draw(st.sampled_from(["agentic-router", "agentic-observability", "gpt-4"]))
        base = {"model": model, "messages": [{"role": "user", "content": "why is sonarr down?"}]}
        if draw(st.booleans()):
            base = {**base, "stream": draw(st.booleans())}
        if draw(st.booleans()):
            extra = (
                (
                    "idempotency-key",
                    draw(header_value).encode("latin-1"),
                ),
            )
    elif route == "models":
        method, path = "GET", "/v1/models"
    elif route == "run":
        method, path = "GET", f"/v1/runs/{run}"
    elif route == "approve":
        path = f"/v1/runs/{run}/{draw(st.sampled_from(['approve', 'deny']))}"
        base = {"reason": "ok"}
    elif route == "decision":
        path = f"/v1/incidents/{run}/decision"
        base = {"approval_id": "ap-1", "choice": "approved"}
    elif route == "login":
        path = "/console/login"
    elif route == "decide":
        path = f"/console/incidents/{run}/decide"
    elif route == "ask":
        path = "/console/agents"
    elif route == "run-decide":
        path = f"/console/agents/runs/{run}/decide"
    elif route == "gate":
        path = f"/console/rollouts/{run}/gate"
    else:
        method, path = "GET", draw(st.sampled_from([f"/console/reports/{run}", f"/console/reports/{run}/chart.png"]))
    if route in ("login", "decide", "ask", "run-decide", "gate"):
        form = {
            "key": key,
            "csrf": "x",
            "approval_id": "ap-1",
            "choice": "approved",
            "model": "agentic-observability",
            "text": "why is sonarr down?",
            "request_id": "r1",
            "plan_hash": "ab" * 32,
        }
        fields = draw(mutated(form)) if draw(st.booleans()) else form
        if isinstance(fields, dict):
            pairs = {str(k): str(v)[:5000] for k, v in fields.items()}
            body = urllib.parse.urlencode(pairs, errors="surrogatepass").encode()
        else:
            body = draw(st.binary(max_size=100))
        ct = draw(st.sampled_from([b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", None]))
        return Req("gateway", method, path, _headers(extra, ct=ct), body)
    doc = draw(mutated(base)) if base is not None and draw(st.booleans()) else base
    body = b"" if doc is None else draw(body_of(doc, GATEWAY_MAX_BODY))
    return Req("gateway", method, path, _headers(draw(auth_header(key)), extra, ct=draw(content_type())), body)


garbage_paths = st.sampled_from(["/", "//", "/%00", "/.." * 5, "/" + "a" * 3000, "/healthz/x"])


@st.composite
def garbage_requests(draw: st.DrawFn, edge: str) -> Req:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    headers = tuple(
        (name, value.encode("latin-1"))
        for name, value in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["content-type", "authorization", "x-junk", "idempotency-key", "cookie"]),
                    header_value,
                ),
                max_size=3,
                unique_by=lambda h: h[0],
            )
        )
    )
    return Req(edge, method, draw(garbage_paths), headers, draw(st.binary(max_size=300)))


def requests_for(edge: str, secrets: dict[str, str]) -> st.SearchStrategy[Req]:
    near: st.SearchStrategy[Req] = {
        "intake": intake_requests(secrets["intake"]),
        "telegram": telegram_requests(),
        "gateway": gateway_requests(secrets["gateway"]),
    }[edge]
    return mostly(0, [1], 15).flatmap(lambda g: garbage_requests(edge) if g else near)


# --------------------------------------------------------------------------- results


@dataclass
class EdgeReport:
    edge: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx
    dropped: list[str] = field(default_factory=list)  # a request's connection failed (transport error)
    dead: list[str] = field(default_factory=list)  # afterwards: /healthz gone, the server stopped
    unclear: list[str] = field(default_factory=list)  # a 4xx without a JSON error message
    logged_errors: list[str] = field(default_factory=list)  # ERROR log lines (unhandled exceptions)
    half_processed: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)  # workflow ids a 2xx named
    started: int = 0  # workflows Temporal has for this edge
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return self.server_errors + self.crashes + self.unclear + self.logged_errors + self.half_processed

    @property
    def crashes(self) -> list[str]:
        """A crash: a dropped connection, or the server not answering /healthz afterwards."""
        return self.dropped + self.dead

    def summary(self) -> dict[str, Any]:
        return {
            "edge": self.edge,
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "5xx": len(self.server_errors),
            "crashes": len(self.crashes),
            "unclear_4xx": len(self.unclear),
            "logged_errors": len(self.logged_errors),
            "half_processed": len(self.half_processed),
            "accepted_workflows": len(self.accepted),
            "started_workflows": self.started,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else None,
        }


class _ErrorLog(logging.Handler):
    """ERROR records of the platform's loggers (an unexpected exception answered 503, a bot handler failing)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("agentic", "telegram", "uvicorn")):
            self.records.append(f"{record.name}: {record.getMessage()[:300]}")


def _explained(req: Req, r: httpx.Response) -> bool:
    """A 4xx says what is wrong: a JSON error with a message (console pages: a non-empty HTML page)."""
    if req.method == "HEAD":  # no body, by definition
        return True
    if (
        req.edge == "gateway"
        and req.path.startswith("/console")
        and r.headers.get("content-type", "").startswith("text/html")
    ):
        return bool(r.text.strip())
    try:
        doc = r.json()
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    err = doc.get("error")
    if isinstance(err, dict):
        err = err.get("message")
    return isinstance(err, str) and bool(err.strip())


# --------------------------------------------------------------------------- the edges


class Edges:
    """The three servers and what they stand on, in an event loop of their own thread."""

    def __init__(self, *, progress_every: int = 0) -> None:
        self.progress_every = progress_every  # a line on stderr every so many requests (0: none)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-edges", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.base: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.reports = {e: EdgeReport(e) for e in EDGES}
        self._servers: dict[str, uvicorn.Server] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._errors = _ErrorLog()
        self.http = httpx.Client(timeout=30)
        self.intake_queue = "fuzz-intake-" + uuid.uuid4().hex[:8]
        self.gateway_queue = "fuzz-gateway-" + uuid.uuid4().hex[:8]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Edges:
        self._thread.start()
        logging.getLogger().addHandler(self._errors)
        try:
            self.call(self._start(), timeout=180)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self._errors)
        self.http.close()
        with contextlib.suppress(Exception):
            self.call(self._stack.aclose(), timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    async def _serve(self, name: str, app: Any) -> None:
        port = free_port()
        server = uvicorn.Server(bounded_config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        self._servers[name], self._tasks[name] = server, task
        self.base[name] = f"http://127.0.0.1:{port}"

        async def stop() -> None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)

        self._stack.push_async_callback(stop)

    async def _start(self) -> None:
        stack = self._stack
        pg_iter = pg_server("agentic-fuzz-pg-")
        pg = next(pg_iter)
        stack.callback(lambda: next(pg_iter, None))
        admin = await asyncpg.connect(pg.get_uri())
        await admin.execute('CREATE DATABASE "fuzz"')
        await admin.close()
        ledger = await Ledger.connect(str(pg.get_uri("fuzz")), max_size=6)
        stack.push_async_callback(ledger.close)
        self.ledger = ledger

        env: WorkflowEnvironment = await start_dev_server()
        stack.push_async_callback(env.shutdown)
        client: Client = env.client
        self.client = client
        await ensure_search_attributes(client, "default")
        for queue, wf in ((self.intake_queue, intake_support.StandInIncident), (self.gateway_queue, StandInAgent)):
            worker = Worker(client, task_queue=queue, workflows=[wf], workflow_runner=UnsandboxedWorkflowRunner())
            await stack.enter_async_context(worker)

        async def factory() -> Client:
            return client

        # The intake.
        self.secrets["intake"] = intake_support.TOKEN
        intake_settings = intake_support.settings(task_queue=self.intake_queue, intake_max_body=INTAKE_MAX_BODY)
        await self._serve("intake", create_intake(factory, intake_settings))

        # The gateway: one key that may do anything, no rate limit in the way.
        _row, key = await ledger.create_api_key("fuzzer", agents=[], read_only=False)
        self.secrets["gateway"] = key
        gw_settings = Settings(
            temporal_address=client.service_client.config.target_host,
            task_queue=self.gateway_queue,
            gateway_approvers="fuzzer",
            gateway_rate_per_min=10**9,
            _env_file=None,  # type: ignore[call-arg]
        )
        await self._serve("gateway", create_gateway(gw_settings, ledger, factory, self.gateway_queue))

        # The bot: webhook mode against the Bot API emulator.
        emu = BotApiEmulator()
        await emu.start()
        stack.push_async_callback(emu.stop)
        app = build_application(emu.token, emu.base_url, polling=False)
        cfg = BotConfig(
            chat_id=BOT_CHAT, secret=b"fuzz-callback-secret", approvers=[111], webhook_secret=WEBHOOK_SECRET
        )
        bot = TelegramBot(app, client, ledger, cfg)
        self.secrets["telegram"] = WEBHOOK_SECRET
        await self._serve("telegram", bot.http_app())
        await bot.start(webhook_url=self.base["telegram"] + WEBHOOK_PATH)
        stack.push_async_callback(bot.stop)
        self.bot = bot

    # ---- one request --------------------------------------------------------------------

    def fire(self, req: Req) -> int:
        """Send `req`; record its status and whatever property it broke. The status, or 0."""
        report = self.reports[req.edge]
        report.requests += 1
        if self.progress_every and report.requests % self.progress_every == 0:
            print(f"  {req.edge}: {report.requests} requests", file=sys.stderr, flush=True)
        before = len(self._errors.records)
        try:
            r = self.http.request(
                req.method, self.base[req.edge] + req.path, headers=req.raw_headers(), content=req.body
            )
        except httpx.HTTPError as exc:
            report.dropped.append(f"{req!r}: {type(exc).__name__}: {exc}")
            return 0
        report.statuses[r.status_code] += 1
        if r.status_code >= 500:
            report.server_errors.append(f"{req!r}: {r.status_code} {r.text[:300]}")
        elif r.status_code >= 400 and not _explained(req, r):
            report.unclear.append(f"{req!r}: {r.status_code} {r.text[:300]}")
        elif 200 <= r.status_code < 300:
            self._accepted(req, r)
        if len(self._errors.records) > before:
            report.logged_errors.extend(f"{req!r}: {line}" for line in self._errors.records[before:])
        return r.status_code

    def _accepted(self, req: Req, r: httpx.Response) -> None:
        report = self.reports[req.edge]
        if req.edge == "intake" and req.method == "POST":
            report.accepted.update(r.json().get("incidents", []))
        elif req.edge == "gateway" and req.path == "/v1/chat/completions" and "x-agentic-run" in r.headers:
            report.accepted.add(r.headers["x-agentic-run"])

    # ---- afterwards ---------------------------------------------------------------------

    def finish(self, within_s: float = 30.0) -> dict[str, EdgeReport]:
        """Let the bot work off its queue, then check each server's health and what Temporal holds
        (again from scratch at each call)."""
        self.call(self._drain())
        for edge in EDGES:
            report = self.reports[edge]
            report.dead = []
            try:
                health = self.http.get(self.base[edge] + "/healthz", timeout=10)
                if health.status_code != 200:
                    report.dead.append(f"/healthz answered {health.status_code} after the fuzz")
            except httpx.HTTPError as exc:
                report.dead.append(f"/healthz failed after the fuzz: {exc}")
            if self._tasks[edge].done():
                report.dead.append("the server stopped serving")
        self.call(self._workflows(within_s))
        return self.reports

    async def _drain(self) -> None:
        deadline = time.monotonic() + 30
        while not self.bot.app.update_queue.empty() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the last updates' handlers

    async def _list(self, query: str) -> list[str]:
        return [w.id async for w in self.client.list_workflows(query)]

    async def _workflows(self, within_s: float) -> None:
        """Every workflow on an edge's queue was named by a 2xx of that edge, and each 2xx's is there;
        nothing else in the namespace (the bot starts nothing)."""
        expected = {"intake": self.intake_queue, "gateway": self.gateway_queue}
        for edge, queue in expected.items():
            report = self.reports[edge]
            deadline = time.monotonic() + within_s
            while True:  # visibility lags a little behind the starts
                ids = set(await self._list(f"TaskQueue = '{queue}'"))
                if ids >= report.accepted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            report.started = len(ids)
            report.half_processed += [
                f"workflow {i} started, but no 2xx named it" for i in sorted(ids - report.accepted)
            ]
            report.half_processed += [f"a 2xx named {i}, but no workflow has it" for i in sorted(report.accepted - ids)]
        others = set(await self._list("")) - set(
            await self._list(f"TaskQueue = '{self.intake_queue}' OR TaskQueue = '{self.gateway_queue}'")
        )
        self.reports["telegram"].started = len(others)
        self.reports["telegram"].half_processed = [f"workflow {i} started by nobody's request" for i in sorted(others)]


def run_edge(edges: Edges, edge: str, examples: int, *, seed: int | None = 0, derandomize: bool = True) -> EdgeReport:
    """`examples` generated requests to `edge` through hypothesis (no shrinking: every failure is kept)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seed_of

    strategy = requests_for(edge, edges.secrets)
    started = time.perf_counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(req: Req) -> None:
        edges.fire(req)

    test: Callable[[], None] = fuzz
    if seed is not None and not derandomize:
        test = seed_of(seed)(fuzz)
    with warnings.catch_warnings():
        # The strategies here draw nothing from `random`; the servers under test run in this
        # process's other threads, and a connection they open meanwhile (asyncpg picks its host
        # with `random.choice`) changes the global random state while Hypothesis draws, which it
        # then blames on the strategy (a HypothesisDeprecationWarning, in some runs only).
        warnings.filterwarnings("ignore", message="Do not use the `random` module inside strategies")
        test()
    report = edges.reports[edge]
    report.seconds += time.perf_counter() - started
    return report
