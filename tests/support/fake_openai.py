"""A fake OpenAI-compatible chat server for tests: the real wire format over HTTP (starlette on
uvicorn, a free port), so the real `InferenceRouter` (LiteLLM and the OpenAI client) talks to
it as to vLLM, llama.cpp or a cloud provider.

`POST /v1/chat/completions` records the request (body and headers) and answers a chat
completion whose content is `reply(body)` (a `Proposal` JSON, say), or an error with
`status`; `delay_s` holds the answer back. `GET /v1/models` lists the one model.

`reply` may also return a message dict, `{"content": …, "tool_calls": [tool_call(…), …]}`: the
completion then carries those tool calls (finish_reason `tool_calls`), as an OpenAI-compatible
server that does tool calling answers. `scripted(turns)` makes a `reply` that answers the n-th
model turn of a conversation (counted from the assistant messages the request carries, so a
retried turn gets the same answer) with `turns[n]`.

A request with `"stream": true` is answered in OpenAI's server-sent chunks (`chat.completion.chunk`,
then `data: [DONE]`): the content word by word, the first after `first_token_s` (the "prefill"),
each next one `token_s` later; tool calls in one chunk after the content; the usage in a last
chunk when `stream_options.include_usage` asks for it. A request without streaming waits as long
as the whole stream would take. `cut_streams`: the n-th streamed request (first come, first used)
sends that many words and then breaks the connection, as a pool that died mid-answer.

With `upstream` set, it passes every request on to a real OpenAI-compatible server (the embedded
llama.cpp) and answers what that one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.env import free_port
from tests.support.http_server import LoopServer

Reply = str | dict[str, Any]


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> dict[str, Any]:
    """One tool call as an OpenAI-compatible server sends it (arguments as a JSON string; a str
    is sent as it is, e.g. to send JSON that does not parse)."""
    return {
        "id": call_id or f"call_{uuid.uuid4().hex[:8]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


_DROPPED_TURNS = re.compile(r"^\[(\d+) earlier model turn\(s\)")


def turn_number(body: dict[str, Any]) -> int:
    """Which model turn of its conversation a request is (0 for the first): the assistant messages
    it carries, and the turns the agent's context says it dropped to fit its limit."""
    messages = body.get("messages", [])
    dropped = sum(
        int(m.group(1))
        for msg in messages
        if msg.get("role") == "system" and (m := _DROPPED_TURNS.match(msg.get("content") or ""))
    )
    return dropped + sum(1 for m in messages if m.get("role") == "assistant")


def scripted(turns: list[Reply | Callable[[dict[str, Any]], Reply]]) -> Callable[[dict[str, Any]], Reply]:
    """A `reply` that answers turn n with `turns[n]` (a reply, or a function of the request),
    and the last one for any turn after."""

    def reply(body: dict[str, Any]) -> Reply:
        step = turns[min(turn_number(body), len(turns) - 1)]
        return step(body) if callable(step) else step

    return reply


def _words(text: str) -> list[str]:
    """The text as the stream sends it: each word with the blanks after it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


@dataclass
class FakeChatServer:
    name: str = "fake"
    reply: Callable[[dict[str, Any]], Reply] = lambda body: ""
    status: int = 200
    delay_s: float = 0.0
    first_token_s: float = 0.0  # streaming: the first word after this (the prefill)
    token_s: float = 0.0  # streaming: each next word this much later
    cut_streams: list[int] = field(default_factory=list)  # streamed requests that break after n words
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"body": …, "headers": …}
    answer_ms: list[float] = field(default_factory=list)  # how long each answer took inside the server
    arrived_at: list[float] = field(default_factory=list)  # when each request came (perf_counter)
    first_word_at: list[float] = field(default_factory=list)  # streaming: when each first word went (perf_counter)
    upstream: str | None = None  # set: every request is passed on to this real server (`…/v1`) as it is
    upstream_key: str | None = None
    port: int = 0
    _http: LoopServer = field(default_factory=LoopServer)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def sent_text(self) -> str:
        """Everything the server received, as one string (bodies and headers)."""
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in self.requests)

    def answer(self, content: str) -> None:
        self.reply = lambda body: content

    async def _chat(self, request: Request) -> Response:
        t0 = time.perf_counter()
        self.arrived_at.append(t0)
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        try:
            return await self._answer(body)
        finally:
            self.answer_ms.append((time.perf_counter() - t0) * 1000)

    async def _answer(self, body: dict[str, Any]) -> Response:
        if self.upstream is not None:
            return await self._pass_on(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if body.get("stream") and self.status == 200:
            return self._stream(body, self.reply(body))
        if self.status != 200:
            return JSONResponse(
                {"error": {"message": f"{self.name}: fake error {self.status}", "type": "server_error"}},
                status_code=self.status,
            )
        out = self.reply(body)
        words = _words(out if isinstance(out, str) else out.get("content") or "")
        if self.first_token_s or self.token_s:
            await asyncio.sleep(self.first_token_s + self.token_s * max(0, len(words) - 1))
        message: dict[str, Any] = {"role": "assistant", "content": out if isinstance(out, str) else out.get("content")}
        if not isinstance(out, str) and out.get("tool_calls"):
            message["tool_calls"] = out["tool_calls"]
        finish = "tool_calls" if "tool_calls" in message else "stop"
        return JSONResponse(
            {
                "id": f"chatcmpl-{self.name}-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", self.name),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": finish,
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            }
        )

    def _stream(self, body: dict[str, Any], out: Reply) -> StreamingResponse:
        cid = f"chatcmpl-{self.name}-{len(self.requests)}"
        model = body.get("model", self.name)
        words = _words(out if isinstance(out, str) else out.get("content") or "")
        calls = [] if isinstance(out, str) else out.get("tool_calls") or []
        cut = self.cut_streams.pop(0) if self.cut_streams else None
        usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            doc = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model}
            doc["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
            return f"data: {json.dumps(doc)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            await asyncio.sleep(self.first_token_s)
            for i, word in enumerate(words):
                if cut is not None and i >= cut:
                    raise ConnectionResetError("fake: the stream breaks here")
                if i:
                    await asyncio.sleep(self.token_s)
                else:
                    self.first_word_at.append(time.perf_counter())
                yield chunk({"content": word})
            if calls:
                yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
            yield chunk({}, "tool_calls" if calls else "stop")
            if usage:
                doc = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": []}
                doc["usage"] = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
                yield f"data: {json.dumps(doc)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _pass_on(self, body: dict[str, Any]) -> Response:
        """The real server's answer (a real model behind a stack that was started with this fake)."""
        headers = {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else {}
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as http:
            resp = await http.post(f"{self.upstream}/chat/completions", json=body, headers=headers)
        # as it is: a chat completion, or a stream's chunks (read whole here: the test's pace is enough)
        return Response(resp.content, status_code=resp.status_code, media_type=resp.headers.get("content-type"))

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": self.name, "object": "model"}]})

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self.port = self.port or free_port()
        await self._http.start(app, self.port)

    async def stop(self) -> None:
        await self._http.stop()


@contextlib.asynccontextmanager
async def chat_server(name: str) -> AsyncIterator[FakeChatServer]:
    server = FakeChatServer(name=name)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
