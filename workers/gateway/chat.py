"""The OpenAI-compatible endpoint: `GET /v1/models` (the agents a key may use, as models) and
`POST /v1/chat/completions` (one `AgentWorkflow` per request; `stream: true` answers server-sent
events in OpenAI's chunk format with the run's progress as it happens, then the answer, then
`data: [DONE]`; `Idempotency-Key` or `X-Request-Id` reattaches to the same run). A run that ended
without an answer is `410 Gone` for its key (`workers.gateway.ended`), never a 503 to retry.

Long because following a run is one piece with its cases: the progress lines, the model's words
as they come (a gap, a retried turn, words that come after the result), keep-alives, and a run
that ends without an answer; the SSE endpoint and the console's agents page share it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.agents.stream import TextDelta
from activities.ledger.keys import ApiKey
from agentic_core.agents import (
    AGENT_WORKFLOW,
    QUERY_AGENT_PROGRESS,
    AgentProgress,
    AgentRequest,
    AgentResult,
    AgentStatus,
    RouteMethod,
    ToolCallRecord,
    agent_run_id,
)
from workers.agent_client import run_ended
from workers.gateway.core import (
    KEEPALIVE_S,
    MAX_REQUEST_ID,
    MODELS,
    POLL_S,
    Gateway,
    GatewayError,
    _audit,
    _bad,
    _json_body,
    _key,
    _unavailable,
)
from workers.gateway.deltas import NOT_THE_ANSWER, StreamedText
from workers.gateway.ended import ending, named_by, not_gone, run_gone, run_result
from workers.temporal import RunEnding


def models_for(key: ApiKey) -> list[str]:
    return [m for m, agent in MODELS.items() if key.may_use(agent)]


async def list_models(gw: Gateway, request: Request) -> Response:
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "agentic-platform"} for m in models_for(_key(request))
    ]
    return JSONResponse({"object": "list", "data": data})


def _text_of(content: Any, where: str) -> str:
    """A message's content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _bad(f"{where}: each content part must be an object with a type", "messages")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise _bad(f"{where}: a text part needs a string `text`", "messages")
                texts.append(part["text"])
        return "\n".join(texts)
    if content is None:
        return ""
    raise _bad(f"{where}: content must be a string or a list of parts", "messages")


@dataclass(frozen=True)
class ChatRequest:
    model: str
    agent: str | None
    text: str
    stream: bool


def parse_chat(doc: Any, key: ApiKey) -> ChatRequest:
    """The chat completion request, or a 4xx that says what is wrong with it."""
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object, got {type(doc).__name__}")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("`model` is required: one of " + ", ".join(models_for(key)), "model")
    if model not in MODELS:
        raise GatewayError(
            404,
            f"the model {model!r} does not exist: models are {', '.join(models_for(key))}",
            code="model_not_found",
            param="model",
        )
    agent = MODELS[model]
    if not key.may_use(agent):
        raise GatewayError(
            403,
            f"key {key.name!r} may not use {model}: it may use {', '.join(models_for(key)) or 'no model'}",
            kind="permission_error",
            code="model_not_allowed",
            param="model",
        )
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list of {role, content} objects", "messages")
    text = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise _bad(f"messages[{i}] must be an object with a string `role`", "messages")
        if msg["role"] == "user":
            text = _text_of(msg.get("content"), f"messages[{i}]")
    if text is None or not text.strip():
        raise _bad("no user message with text: the last user message is the request", "messages")
    stream = doc.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("`stream` must be true or false", "stream")
    return ChatRequest(model=model, agent=agent, text=text.strip()[:32_000], stream=stream)


_HEADER_OK = re.compile(r"^[\x21-\x7e]{1,200}$")


def request_id_for(key: ApiKey, request: Request) -> str:
    """The run's request id: derived from the key's name and `Idempotency-Key` (else `X-Request-Id`),
    so a retry with the same header reattaches, and two keys never share a run; else a new one."""
    return request_id_for_text(key, request.headers.get("idempotency-key") or request.headers.get("x-request-id"))


def request_id_for_text(key: ApiKey, given: str | None) -> str:
    """`request_id_for` of a given idempotency key (the console's form carries one)."""
    if given is None:
        return f"gw-{uuid.uuid4().hex}"
    if not _HEADER_OK.match(given):
        raise _bad(f"Idempotency-Key / X-Request-Id: 1-{MAX_REQUEST_ID} visible ASCII characters")
    digest = hashlib.sha256(f"{key.name}\n{given}".encode()).hexdigest()[:32]
    return f"gw-{digest}"


async def start_run(
    gw: Gateway, key: ApiKey, chat: ChatRequest, request_id: str
) -> tuple[WorkflowHandle[Any, AgentResult], bool]:
    """Start the request's run, or find it (a retry): (its handle, whether it was there already).
    A streamed request's run publishes its model's text as it is written (`AgentRequest.stream`)."""
    client = await gw.client()
    req = AgentRequest(
        request_id=request_id,
        text=chat.text,
        agent=chat.agent,
        requested_by=f"key:{key.name}",
        source="gateway",
        approvers=gw.settings.approver_list,
        model_queue=gw.settings.run_model_queue,
        tools_queue=gw.settings.run_tools_queue,
        stream=chat.stream,
    )
    run_id = agent_run_id(request_id)
    try:
        handle = await client.start_workflow(
            AGENT_WORKFLOW,
            req,
            id=run_id,
            task_queue=gw.task_queue,
            result_type=AgentResult,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return handle, False
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(run_id, result_type=AgentResult), True
    except RPCError as exc:
        raise _unavailable(f"cannot start the agent run: {exc.message}") from None


def _completion_id(run_id: str) -> str:
    return "chatcmpl-" + run_id.removeprefix("agent-")


def _extra(res: AgentProgress) -> dict[str, Any]:
    return {
        "run_id": res.run_id,
        "status": res.status.value,
        "agent": res.agent,
        "approval_id": res.approval_id,
        "tool_calls": [
            {"step": r.step, "tool": r.call.tool, "arguments": r.call.arguments, "status": r.status, "reason": r.reason}
            for r in res.tool_calls
        ],
    }


class _ClosingStream(StreamingResponse):
    """A stream that ends its subscription to the run's words however the response ends: also
    when the client left before the body started (Starlette then never runs the body's generator,
    so its `finally` never closed the subscription, and the listener kept it)."""

    def __init__(self, content: AsyncIterator[str], *, closing: contextlib.AsyncExitStack, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._closing.aclose()


async def chat_completions(gw: Gateway, request: Request) -> Response:
    key = _key(request)
    chat = parse_chat(await _json_body(request), key)
    request_id = request_id_for(key, request)
    listening = contextlib.AsyncExitStack()
    deltas = None
    if chat.stream:  # listen before the run starts: its first words cannot come before
        deltas = await listening.enter_async_context(gw.deltas.subscribe(agent_run_id(request_id)))
    header = named_by(request)
    try:
        handle, again = await start_run(gw, key, chat, request_id)
        _audit(request, "reattach agent run" if again else "start agent run", handle.id, f"model {chat.model}")
        headers = {"X-Agentic-Run": handle.id, "X-Agentic-Reattached": "true" if again else "false"}
        if chat.stream and again:
            await not_gone(handle, header, headers)
    except BaseException:
        await listening.aclose()
        raise
    created = int(time.time())
    if chat.stream:
        return _ClosingStream(
            _stream(
                handle, chat.model, created, deltas, named=chat.agent is not None, listening=listening, header=header
            ),
            closing=listening,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    res = await run_result(handle, header, headers)
    body = {
        "id": _completion_id(res.run_id),
        "object": "chat.completion",
        "created": created,
        "model": chat.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": res.answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "agentic": _extra(res),
    }
    return JSONResponse(body, headers=headers)


def _args(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, separators=(", ", ": "), default=str)
    return text if len(text) <= 300 else text[:297] + "…"


def progress_lines(run_id: str, now: AgentProgress, seen: dict[tuple[int, str], str], routed: list[bool]) -> list[str]:
    """What changed in the run since `seen` (each tool call's last status), as lines for the stream."""
    out: list[str] = []
    if not routed[0] and now.route is not None and now.agent:
        routed[0] = True
        if now.route.method == RouteMethod.EXPLICIT:  # the model named the agent: nothing to say
            return out + _tool_lines(run_id, now, seen)
        out.append(f"> routed to **{now.agent}** ({now.route.method.value}, score {now.route.score:.2f})\n")
    return out + _tool_lines(run_id, now, seen)


def _tool_lines(run_id: str, now: AgentProgress, seen: dict[tuple[int, str], str]) -> list[str]:
    out: list[str] = []
    for rec in now.tool_calls:
        ident = (rec.step, rec.call.call_id)
        if seen.get(ident) == rec.status:
            continue
        seen[ident] = rec.status
        out.append(_call_line(run_id, rec))
    return out


def _call_line(run_id: str, rec: ToolCallRecord) -> str:
    call = f"`{rec.call.tool}` {_args(rec.call.arguments)}"
    if rec.status == "running":
        return f"> calling {call}\n"
    if rec.status == "awaiting_approval":
        return (
            f"> **waiting for approval** of {call}: approve with `agentic agents approve {run_id}` "
            f"(or POST /v1/runs/{run_id}/approve; deny: …/deny)\n"
        )
    if rec.status == "ok":
        size = f" ({rec.result.size} characters)" if rec.result is not None else ""
        return f"> {call}: ok{size}\n"
    if rec.status == "approved":
        return f"> {call}: approved, ran\n"
    reason = rec.reason.splitlines()[0][:300] if rec.reason else ""
    return f"> {call}: {rec.status}" + (f": {reason}" if reason else "") + "\n"


def _chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    doc = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(doc)}\n\n"


@dataclass(frozen=True)
class RunEvent:
    """One thing to tell a client that follows a run: a progress `line` (`progress` is the run's
    state then: its status, its pending approval), `text` the model is writing (only when the run's
    text is heard: `follow_run`'s `deltas`), a `keepalive`, the `answer` (the run ended; `progress`
    is its result; after streamed text, what is left of the answer), or `failed` (the run ended
    without an answer, `ended` says how, or it cannot be followed: `ended` None)."""

    kind: Literal["line", "text", "keepalive", "answer", "failed"]
    text: str = ""
    progress: AgentProgress | None = None
    ended: RunEnding | None = None


_ENDED = object()  # a progress query that lost the race with the run's end


def _ended_result(result_task: asyncio.Future[AgentResult], step: int) -> AgentProgress | None:
    """The run's progress before `step` from its result, when it has ended well and a progress
    query lost the race with its end: the lines due before that turn's words still go first (the
    later turns' lines after them, as they happened); an ended run's failure is `follow_run`'s."""
    if not result_task.done() or result_task.cancelled() or result_task.exception() is not None:
        return None
    res = result_task.result()
    return res.model_copy(update={"tool_calls": [rec for rec in res.tool_calls if rec.step < step]})


# The run's result and its last words come by two ways (Temporal's answer, PostgreSQL's NOTIFY):
# when the result comes first and what was shown is not the start of the answer (a retried turn
# whose new words are still on their way), the stream waits this long for them before it says
# so and sends the whole answer.
LATE_WORDS_S = 0.5


async def follow_run(
    handle: WorkflowHandle[Any, AgentResult],
    deltas: asyncio.Queue[TextDelta] | None = None,
    *,
    named: bool = False,
) -> AsyncGenerator[RunEvent, None]:
    """The run as it happens: its progress lines (from the progress query, every `POLL_S`), a
    keep-alive when nothing was said for `KEEPALIVE_S`, then the answer, the moment the run ends.
    With `deltas` (the run's text as the model writes it, `DeltaHub.subscribe`), that text as it
    comes (`StreamedText` keeps it honest), and at the end only what is left of the answer; before
    a turn's first words, a progress query puts the lines due before them first (not before the
    first turn of a run whose agent was `named`: nothing can be due then).
    What the SSE endpoint and the console's agents page both stream (one path, two formats)."""
    seen: dict[tuple[int, str], str] = {}
    routed = [False]
    written = ""  # the last text sent (its end decides the blank line before the answer)
    streamed = StreamedText()
    result_task = asyncio.ensure_future(handle.result())
    getter: asyncio.Future[TextDelta] | None = None
    last_sent = time.monotonic()
    # No query at once: a run just started has nothing to show yet, and a query that reaches it
    # mid-task slows the run itself (benchmarks/gateway.py, docs/gateway.md#cost); a run that
    # ends within `POLL_S` is answered without a single query.
    next_poll = last_sent + POLL_S

    async def query() -> Any:
        # the query and the result raced: the answer goes out the moment the run ends, never
        # behind a query of a run that just closed (which the worker answers by replaying it)
        q = asyncio.ensure_future(handle.query(QUERY_AGENT_PROGRESS, result_type=AgentProgress))
        await asyncio.wait({result_task, q}, return_when=asyncio.FIRST_COMPLETED)
        if not q.done():
            q.cancel()
            return _ENDED
        try:
            return q.result()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return _ENDED  # the result task says why
            return None  # its first workflow task has not run yet, or it just ended

    def sep() -> str:
        return "" if not written else "\n" if written.endswith("\n") else "\n\n"

    try:
        while not result_task.done():
            waits: set[asyncio.Future[Any]] = {result_task}
            if deltas is not None:
                getter = getter or asyncio.ensure_future(deltas.get())
                waits.add(getter)
            wait_s = max(0.0, next_poll - time.monotonic())
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            if getter is not None and getter.done() and deltas is not None:
                batch = [getter.result()]
                getter = None
                while not deltas.empty():
                    batch.append(deltas.get_nowait())
                for d in batch:
                    shown = streamed.take(d)
                    if shown is None:
                        continue
                    text, first = shown
                    if first and (d.step > 1 or not named):  # the lines due before this turn's words
                        now = await query()
                        if not isinstance(now, AgentProgress):
                            now = _ended_result(result_task, d.step)  # the run ended meanwhile
                        if isinstance(now, AgentProgress):
                            for line in progress_lines(handle.id, now, seen, routed):
                                written = line
                                yield RunEvent("line", line, now)
                    if first:
                        text = sep() + text
                    written = text
                    last_sent = time.monotonic()
                    yield RunEvent("text", text)
                continue
            if result_task.done() or time.monotonic() < next_poll:
                continue
            now = await query()
            if now is _ENDED:
                break
            if isinstance(now, AgentProgress):
                for line in progress_lines(handle.id, now, seen, routed):
                    written = line
                    last_sent = time.monotonic()
                    yield RunEvent("line", line, now)
            if time.monotonic() - last_sent > KEEPALIVE_S:
                last_sent = time.monotonic()
                yield RunEvent("keepalive")
            next_poll = time.monotonic() + POLL_S
        try:
            res = await result_task
        except (WorkflowFailureError, RPCError) as exc:
            yield RunEvent("failed", run_ended(handle.id, exc), ended=ending(exc))
            return
        for line in progress_lines(handle.id, res, seen, routed):
            written = line
            yield RunEvent("line", line, res)
        if getter is not None:
            getter.cancel()
            getter = None
        while deltas is not None and not deltas.empty():  # the last words, heard as the run ended
            shown = streamed.take(deltas.get_nowait())
            if shown is not None:
                text = (sep() if shown[1] else "") + shown[0]
                written = text
                yield RunEvent("text", text, res)
        answer = res.answer
        if res.status not in (AgentStatus.DONE, AgentStatus.LIMITED) and not res.answer:
            answer += f"(the run ended {res.status.value})"
        late_until = time.monotonic() + LATE_WORDS_S
        while deltas is not None and (streamed.rest(res.steps, answer) or "").startswith(NOT_THE_ANSWER):
            try:
                d = await asyncio.wait_for(deltas.get(), max(0.0, late_until - time.monotonic()))
            except TimeoutError:
                break
            shown = streamed.take(d)
            if shown is not None:
                text = (sep() if shown[1] else "") + shown[0]
                written = text
                yield RunEvent("text", text, res)
        rest = streamed.rest(res.steps, answer)
        yield RunEvent("answer", sep() + answer if rest is None else rest, res)
    finally:
        if getter is not None:
            getter.cancel()
        if not result_task.done():
            result_task.cancel()


async def _stream(
    handle: WorkflowHandle[Any, AgentResult],
    model: str,
    created: int,
    deltas: asyncio.Queue[TextDelta] | None = None,
    *,
    named: bool = False,
    listening: contextlib.AsyncExitStack | None = None,
    header: str | None = None,
) -> AsyncIterator[str]:
    """The run as server-sent chunks: its progress as it happens, the model's text as it is
    written (with `deltas`), then the answer (or what is left of it), then [DONE]; a run that ends
    without an answer: the error object a request waiting on it gets (`run_gone`: the headers went
    out with 200 already), then [DONE]. A client that goes away leaves the run going (the same
    Idempotency-Key reattaches)."""
    cid = _completion_id(handle.id)
    events = follow_run(handle, deltas, named=named)
    try:
        yield _chunk(cid, model, created, {"role": "assistant", "content": ""})
        async for ev in events:
            if ev.kind in ("line", "text"):
                yield _chunk(cid, model, created, {"content": ev.text})
            elif ev.kind == "keepalive":
                yield ": keep-alive\n\n"
            elif ev.kind == "failed":
                yield f"data: {json.dumps(run_gone(ev.text, ev.ended, header).body())}\n\n"
                yield "data: [DONE]\n\n"
                return
            else:
                if ev.text:
                    yield _chunk(cid, model, created, {"content": ev.text})
                yield _chunk(cid, model, created, {}, finish="stop")
                yield "data: [DONE]\n\n"
    finally:
        await events.aclose()
        if listening is not None:
            await listening.aclose()
