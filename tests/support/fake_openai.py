"""A fake OpenAI-compatible chat server for tests: the real wire format over HTTP (starlette on
uvicorn, a free port), so the real `InferenceRouter` (LiteLLM and the OpenAI client) talks to
it as to vLLM, llama.cpp or a cloud provider.

`POST /v1/chat/completions` records the request (body and headers) and answers a chat
completion whose content is `reply(body)` (a `Proposal` JSON, say), or an error with
`status`; `delay_s` holds the answer back. `GET /v1/models` lists the one model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.env import free_port
from tests.support.http_server import LoopServer


@dataclass
class FakeChatServer:
    name: str = "fake"
    reply: Callable[[dict[str, Any]], str] = lambda body: ""
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"body": …, "headers": …}
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

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return JSONResponse(
                {"error": {"message": f"{self.name}: fake error {self.status}", "type": "server_error"}},
                status_code=self.status,
            )
        return JSONResponse(
            {
                "id": f"chatcmpl-{self.name}-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", self.name),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": self.reply(body)}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            }
        )

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
