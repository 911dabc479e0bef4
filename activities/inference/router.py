"""The inference router: LiteLLM in front of the inference pools, plus structured output.

Model groups (LiteLLM `model_name`s; `workers.wiring.inference_router` builds them from the
settings):

- `planner`: diagnoses and plans. Default: the embedded llama.cpp server (`workers.llm_server`)
  at `settings.planner_base_url`, model `openai/<planner_model>`.
- `code`: the code pool (`code_url`), else the planner's server.
- `embed`: only when `embed_url` is set (the default embedder runs in process).
- `cloud`: only when `cloud_model` is set and the mode is not LOCAL_ONLY; `cloud_base_url`
  names an OpenAI-compatible endpoint (else LiteLLM uses the provider's own). The planner
  (`IncidentActivities.propose`) asks it with LOCAL_FIRST when the local model fails, is busy
  or is not confident enough, and first with CLOUD_FIRST, always with the messages redacted
  (`agentic_core.redaction`): the router itself sends what it is given.

A group with one OpenAI-compatible endpoint (`openai/…` or `hosted_vllm/…` with one base URL:
the embedded llama.cpp, one vLLM Service) is called with the OpenAI client directly, the client
LiteLLM would use under it: LiteLLM's layers have nothing to choose there and cost such a call
about 4.5 ms before the request leaves (`direct_model`). Pools with replicas and other providers
go through LiteLLM's `Router`. LiteLLM itself is imported only when a group needs it (`_litellm`):
its import is 2-2.5 s of a core, which the embedded stack's worker (every group direct) paid at
every start before it polled.

Client-side retries are off everywhere (router, LiteLLM call and the OpenAI client under it):
Temporal retries activities, and a retry inside an activity would hide failures from it.
Failures come out as `InferenceUnavailable` (the pool cannot be reached or failed: retry
later), `StructuredOutputError` (the model answered, but not with valid JSON for the schema:
the caller decides) or `InferenceError` (a request the pool refused: fix the request).

Long because every model call of the platform goes through this one object: the groups, the
pools' replicas with their bound and queue timeout, structured output, tool calling and the
GenAI spans all wrap the same single call site.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import inspect
import json
import os
import re
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map

import httpx
import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from activities.telemetry import metrics, tracing
from activities.tls import httpx_tls
from agentic_core.generation import FINISH_REPETITION, runaway_cut
from agentic_core.models import InferenceMode

__all__ = [
    "ChatReply",
    "Completion",
    "GroupConfig",
    "InferenceError",
    "InferenceRouter",
    "InferenceUnavailable",
    "RawToolCall",
    "Structured",
    "StructuredOutputError",
    "generation_schema",
]

T = TypeVar("T", bound=BaseModel)

DEFAULT_TIMEOUT_S = 120.0  # one whole request; llama.cpp on one CPU thread does ~75 tokens/s
# Generation bounds for the embedded small model (see `generation_schema`). Measured with
# SmolLM2-135M on 18 alert prompts, max_tokens 256-768: strings capped at 120 characters gave
# 18/18 valid Proposals; 160-200 gave 14/18, 500 gave 10-13/18 (runaway strings, the JSON never
# closes before max_tokens).
EMBEDDED_MAX_STRING_LENGTH = 120
EMBEDDED_MAX_ITEMS = 8
HEALTH_TIMEOUT_S = 3.0
NO_KEY = "no-key"  # the OpenAI client insists on a key; llama.cpp without --api-key ignores it
_TRUNCATE = 2000


# Modules LiteLLM and the OpenAI client import on their first call, not at import time:
# about 0.8 s of imports under the GIL, which used to land on the worker in the middle of a
# burst of incidents (the first model call); LiteLLM 1.106 imports its OpenTelemetry integration
# (0.5 s more, 19 % of the worker's GIL time in an `alert_burst` window). `preload_lazy_modules`
# loads them at start; tests/integration/test_inference.py checks, in a fresh process, that the
# first call after it imports nothing.
LAZY_MODULES = (
    "openai.resources",
    "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm.integrations.otel.logger",
    "litellm.llms.openai.chat.gpt_audio_transformation",
    "litellm.llms.vertex_ai.vertex_ai_partner_models.anthropic.transformation",
    "litellm.router_utils.baseline_request",
    "ctypes",
    # the OpenAI client's HTTP stack (httpx over httpcore and anyio), on a direct group's first call
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "httpcore._async.connection_pool",
    "httpcore._async.http11",
    "httpcore._async.http2",
    "httpcore._backends.anyio",
    "httpcore._backends.auto",
    "httpcore._backends.trio",
    "ctypes.util",
)


def _litellm() -> Any:
    """LiteLLM, imported the first time a group needs it (`InferenceRouter.uses_litellm`)."""
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners in worker logs
    return litellm


def preload_lazy_modules(with_litellm: bool = True) -> list[str]:
    """Import `LAZY_MODULES` now (LiteLLM's only `with_litellm`: a router whose groups are all
    called directly never imports LiteLLM); return the ones that could be loaded."""
    loaded = []
    for name in LAZY_MODULES:
        if not with_litellm and name.split(".")[0] == "litellm":
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
            loaded.append(name)
    return loaded


class InferenceError(Exception):
    """An inference request failed. The base class; catch this to handle them all."""


class InferenceUnavailable(InferenceError):
    """The pool could not be reached, timed out, or failed on its side (5xx): try again later."""


class StructuredOutputError(InferenceError):
    """The model replied, but the reply is not valid JSON for the requested schema."""

    def __init__(self, message: str, *, raw: str = "", error: str = "") -> None:
        super().__init__(message)
        self.raw = raw[:_TRUNCATE]
        self.error = error[:_TRUNCATE]


class GroupConfig(BaseModel):
    """One model group. `api_key` is a secret: it never appears in `describe()` or reprs."""

    model_config = ConfigDict(frozen=True)

    name: str
    model: str  # LiteLLM model string, e.g. "openai/smollm2"
    api_base: str | None = None  # OpenAI-compatible base URL ending in /v1; None: the provider's own
    api_key: SecretStr | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    # bounds added to structured-output schemas for this group's model (None: none added)
    max_string_length: int | None = None
    max_items: int | None = None
    # send `"strict": true` with structured-output schemas. OpenAI's strict mode demands that
    # every property be required, which our models (fields with defaults) are not, so the
    # cloud group asks without it; the reply is validated against the model either way.
    strict_schema: bool = True
    # The pool's replicas (docs/scaling.md): base URLs LiteLLM routes among, least busy first
    # (empty: `api_base` alone). `max_parallel`: requests in flight per replica (0: unbounded);
    # a call waits at most `queue_timeout_s` for a slot, then fails as unavailable.
    api_bases: tuple[str, ...] = ()
    max_parallel: int = Field(default=0, ge=0)
    queue_timeout_s: float = Field(default=30.0, gt=0)
    # Sampler settings the server understands beyond OpenAI's, sent with free-text turns (`chat`)
    # and never with structured output, where a repeated `"` or `:` is the format, not a loop:
    # `{"repeat_penalty": 1.15}` for the embedded llama.cpp (`AGENTIC_LLM_REPEAT_PENALTY`).
    sampling: dict[str, float] = Field(default_factory=dict)

    @property
    def replicas(self) -> tuple[str | None, ...]:
        return self.api_bases or (self.api_base,)


class Completion(BaseModel):
    text: str
    model: str
    group: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float
    finish_reason: str | None = None


class RawToolCall(BaseModel):
    """A tool call as the model wrote it: `arguments` is the model's text (JSON, or not)."""

    id: str
    name: str
    arguments: str = ""


class ChatReply(BaseModel):
    """A chat turn with tools offered: the text, and the tool calls the model asked for (none:
    the text is its answer)."""

    text: str = ""
    tool_calls: list[RawToolCall] = Field(default_factory=list)
    model: str
    group: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float
    finish_reason: str | None = None


class Structured(BaseModel, Generic[T]):
    """A validated structured reply: `.value` is the schema's model."""

    value: T
    model: str
    group: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float
    raw: str = Field(default="", description="the JSON text the model produced")


_UNBOUNDED_STRING_KEYS = {"maxLength", "enum", "const", "pattern", "format"}


def generation_schema(
    schema: dict[str, Any], *, max_string_length: int | None = None, max_items: int | None = None
) -> dict[str, Any]:
    """The JSON schema sent to constrain generation: the model's schema, tightened.

    Every reply this schema allows is also valid for the original. Objects with declared
    properties get `additionalProperties: false` (unless the schema says otherwise); with
    the bounds given, strings without a bound get `maxLength` and arrays `maxItems`, so a
    small model cannot run away: without the string bound SmolLM2 sometimes repeats a
    sentence or a digit until `max_tokens` and the JSON never closes.
    """
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "string" and max_string_length is not None and not (_UNBOUNDED_STRING_KEYS & node.keys()):
                node["maxLength"] = max_string_length
            elif kind == "array" and max_items is not None and "maxItems" not in node:
                node["maxItems"] = max_items
            elif kind == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


def _schema_name(schema: type[BaseModel]) -> str:
    """OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for json_schema.name."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "reply"


_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def _strip_fences(text: str) -> str:
    """Cloud models sometimes wrap JSON in a Markdown fence; llama.cpp with a schema never does."""
    m = _FENCE_RE.match(text)
    return m.group(1) if m else text


def _short(text: str, n: int = 300) -> str:
    """One line, at most n characters (LiteLLM's messages span several lines)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


async def _assembled(stream: Any, on_text: Callable[[str], None]) -> Any:
    """A streamed chat completion read to its end, each text piece given to `on_text` as it comes,
    and put together in the shape of a whole one (`model`, `choices[0].message` with `content` and
    `tool_calls`, `finish_reason`, `usage`): what `chat` and the span read of a reply. A runaway
    repetition (`runaway_cut`) ends the reading there: the content is cut after the loop's first
    copy and the finish reason is `repetition` (what was given to `on_text` stays given)."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    model = None
    usage = None
    cut: int | None = None
    try:
        async for chunk in stream:
            before = len(text)
            model, usage, finish = _take_chunk(chunk, text, calls, on_text, model, usage, finish)
            if len(text) > before and (cut := runaway_cut("".join(text))) is not None:
                break  # a loop: closing the stream stops the server generating it
    finally:  # however the reading ends (on_text raising included), the response is closed
        closing = getattr(stream, "close", None)
        if callable(closing):
            done = closing()
            if inspect.isawaitable(done):
                await done
    tool_calls = [
        SimpleNamespace(id=c["id"], function=SimpleNamespace(name=c["name"], arguments=c["arguments"]))
        for _i, c in sorted(calls.items())
    ]
    content = "".join(text)
    if cut is not None:
        content, finish = content[:cut], FINISH_REPETITION
    message = SimpleNamespace(content=content, tool_calls=tool_calls)
    return SimpleNamespace(model=model, usage=usage, choices=[SimpleNamespace(message=message, finish_reason=finish)])


def _take_chunk(
    chunk: Any,
    text: list[str],
    calls: dict[int, dict[str, Any]],
    on_text: Callable[[str], None],
    model: Any,
    usage: Any,
    finish: Any,
) -> tuple[Any, Any, Any]:
    """One chunk of a stream into the pieces `_assembled` keeps: (model, usage, finish_reason)."""
    model = getattr(chunk, "model", None) or model
    usage = getattr(chunk, "usage", None) or usage
    for choice in getattr(chunk, "choices", None) or []:
        finish = getattr(choice, "finish_reason", None) or finish
        delta = getattr(choice, "delta", None)
        if delta is None:
            continue
        piece = getattr(delta, "content", None)
        if piece:
            text.append(piece)
            on_text(piece)
        for i, tc in enumerate(getattr(delta, "tool_calls", None) or []):
            index = getattr(tc, "index", None)
            call = calls.setdefault(i if index is None else int(index), {"id": "", "name": "", "arguments": ""})
            call["id"] = getattr(tc, "id", None) or call["id"]
            fn = getattr(tc, "function", None)
            call["name"] = call["name"] or getattr(fn, "name", None) or ""
            call["arguments"] += getattr(fn, "arguments", None) or ""
    return model, usage, finish


# LiteLLM maps provider errors onto OpenAI's exception types. A refused connection arrives as
# InternalServerError (not APIConnectionError), so every 5xx counts as "unavailable".
# The direct OpenAI client (below) raises OpenAI's own types, of which LiteLLM's are subclasses.
_OPENAI_UNAVAILABLE: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # APITimeoutError is one
    openai.InternalServerError,  # any 5xx
    openai.RateLimitError,
    httpx.TransportError,
)


def _unavailable() -> tuple[type[BaseException], ...]:
    """The errors that mean "the pool cannot answer now"; LiteLLM's once it is imported (nothing
    raises them before)."""
    lm = sys.modules.get("litellm")
    if lm is None:
        return _OPENAI_UNAVAILABLE
    return (
        *_OPENAI_UNAVAILABLE,
        lm.APIConnectionError,
        lm.Timeout,
        lm.InternalServerError,
        lm.ServiceUnavailableError,
        lm.BadGatewayError,
        lm.RateLimitError,
    )


# Model strings whose server speaks OpenAI's API as it is (llama.cpp, vLLM, the test fakes):
# a group of these with one endpoint is called with the OpenAI client directly (`_direct`).
_OPENAI_COMPATIBLE = ("openai/", "hosted_vllm/")


def direct_model(g: GroupConfig) -> str | None:
    """The model name to send when `g` is called with the OpenAI client directly, else None.

    A pool with one OpenAI-compatible endpoint (the embedded llama.cpp, one vLLM Service) has
    nothing for LiteLLM's router to choose, retry or translate, and LiteLLM's layers cost that
    call about 4.5 ms before the request leaves and 13 ms of CPU in all for a short streamed
    reply (benchmarks/gateway_stack.py; docs/gateway.md): such a group is called with the same
    OpenAI client LiteLLM would use under it. Pools with replicas (least-busy routing, a
    failing replica cooled down) and other providers (the cloud group's own API) go through
    LiteLLM's `Router`."""
    if not g.api_base or len(g.replicas) != 1:
        return None
    prefix = next((p for p in _OPENAI_COMPATIBLE if g.model.startswith(p)), None)
    return g.model[len(prefix) :] if prefix else None


class InferenceRouter:
    """LiteLLM `Router` over the configured model groups; a group with one OpenAI-compatible
    endpoint is called with the OpenAI client directly (`direct_model`)."""

    def __init__(self, groups: list[GroupConfig], *, mode: InferenceMode = InferenceMode.LOCAL_FIRST) -> None:
        if not groups:
            raise ValueError("an inference router needs at least one model group")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model group names: {names}")
        self.mode = mode
        self._groups = {g.name: g for g in groups}
        model_list = []
        # A pool's slots: `max_parallel` per replica, waited for up to `queue_timeout_s` (LiteLLM's
        # own max_parallel_requests answers 429 at once instead of queueing).
        self._slots: dict[str, asyncio.Semaphore] = {}
        for g in groups:
            for base in g.replicas:
                params: dict[str, Any] = {
                    "model": g.model,
                    "api_key": g.api_key.get_secret_value() if g.api_key else (NO_KEY if base else None),
                    "timeout": g.timeout_s,
                    "max_retries": 0,  # the OpenAI client's own retries, pinned too (tests count requests)
                }
                if base:
                    params["api_base"] = base
                model_list.append({"model_name": g.name, "litellm_params": params})
            if g.max_parallel:
                self._slots[g.name] = asyncio.Semaphore(g.max_parallel * len(g.replicas))
        # the direct groups' clients, one per event loop (an HTTP connection belongs to its loop)
        self._direct: dict[str, str] = {g.name: m for g in groups if (m := direct_model(g)) is not None}
        self._clients: dict[tuple[str, int], openai.AsyncOpenAI] = {}
        self._router_args: dict[str, Any] = {
            "model_list": model_list,
            "routing_strategy": "least-busy",  # among a pool's replicas: the one with the fewest calls in flight
            "num_retries": 0,
            "max_fallbacks": 0,
            "timeout": max(g.timeout_s for g in groups),
            # One deployment per group: a cooldown would only turn errors into "no deployments".
            # With replicas, a failing one is cooled down and the others take its calls.
            "disable_cooldowns": all(len(g.replicas) == 1 for g in groups),
            "set_verbose": False,
        }
        # built now when a group goes through it, so a configuration LiteLLM refuses fails at start
        self._litellm_router: Any = self._new_litellm_router() if self.uses_litellm else None

    def _new_litellm_router(self) -> Any:
        return _litellm().Router(**self._router_args)

    @property
    def uses_litellm(self) -> bool:
        """Whether a group goes through LiteLLM (replicas, another provider), not only direct ones."""
        return len(self._direct) < len(self._groups)

    @property
    def _router(self) -> Any:
        """LiteLLM's `Router` over every group, built (and LiteLLM imported) on first need."""
        if self._litellm_router is None:
            self._litellm_router = self._new_litellm_router()
        return self._litellm_router

    # --- introspection -------------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        return list(self._groups)

    def describe(self) -> list[dict[str, Any]]:
        """Groups, models and endpoints for `agentic status`. Never the keys."""
        return [
            {
                "group": g.name,
                "model": g.model,
                "api_base": g.api_base,
                "api_key_set": g.api_key is not None,
                "timeout_s": g.timeout_s,
                "replicas": len(g.replicas),
                "max_parallel": g.max_parallel,
            }
            for g in self._groups.values()
        ]

    def _group(self, group: str) -> GroupConfig:
        try:
            return self._groups[group]
        except KeyError:
            raise InferenceError(f"unknown model group {group!r} (configured: {', '.join(self._groups)})") from None

    # --- calls ---------------------------------------------------------------------------
    def _client(self, g: GroupConfig) -> openai.AsyncOpenAI:
        """The OpenAI client of a direct group, for the running event loop."""
        key = (g.name, id(asyncio.get_running_loop()))
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) > 32:  # loops come and go in tests; a worker has one
                self._clients.clear()
            client = openai.AsyncOpenAI(
                base_url=g.api_base,
                api_key=g.api_key.get_secret_value() if g.api_key else NO_KEY,
                timeout=g.timeout_s,
                max_retries=0,  # Temporal retries (the module doc)
            )
            self._clients[key] = client
        return client

    def open_clients(self) -> list[str]:
        """Build the direct groups' clients for the running event loop now (the worker does, once
        it polls), so the first model call does not pay for them: the OpenAI client's first
        construction imports its lazy modules and loads the CA bundle into an SSL context, 160 ms
        on the reference machine, each later one about 20 ms. Returns the groups opened."""
        for name in self._direct:
            self._client(self._groups[name])
        return list(self._direct)

    async def _request(self, g: GroupConfig, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """One chat completion (a stream with `stream=True`), directly or through LiteLLM."""
        model = self._direct.get(g.name)
        if model is not None:
            return await self._client(g).chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]  # plain OpenAI-style dicts
                **kwargs,
            )
        return await self._router.acompletion(
            model=g.name,
            messages=messages,  # type: ignore[arg-type]  # plain OpenAI-style dicts
            num_retries=0,
            timeout=g.timeout_s,
            **kwargs,
        )

    async def _acompletion(
        self,
        g: GroupConfig,
        messages: list[dict[str, Any]],
        on_text: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        slot = self._slots.get(g.name)
        if slot is not None:
            await self._take_slot(g, slot)
        try:
            return await self._call_pool(g, messages, on_text, **kwargs)
        finally:
            if slot is not None:
                slot.release()

    async def _take_slot(self, g: GroupConfig, slot: asyncio.Semaphore) -> None:
        """A slot in the pool, within its queue timeout (the wait is measured either way)."""
        waited = time.perf_counter()
        try:
            await asyncio.wait_for(slot.acquire(), timeout=g.queue_timeout_s)
        except TimeoutError:
            raise InferenceUnavailable(
                f"{g.name}: every replica busy ({g.max_parallel} calls each, {len(g.replicas)} replicas);"
                f" no slot within {g.queue_timeout_s:g}s"
            ) from None
        finally:
            with metrics.safely():
                metrics.MODEL_SLOT_WAIT.labels(g.name, "pool").observe(time.perf_counter() - waited)

    async def _call_pool(
        self,
        g: GroupConfig,
        messages: list[dict[str, Any]],
        on_text: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        # telemetry (docs/observability.md): one gen_ai span and the pool's metrics per call
        started = time.perf_counter()
        outcome = "error"
        with tracing.model_span(g.name, g.model, messages, kwargs) as span:
            try:
                if on_text is not None:
                    kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
                resp = await self._request(g, messages, **kwargs)
                if on_text is not None:
                    resp = await _assembled(resp, on_text)
                outcome = "ok"
            except _unavailable() as exc:
                outcome = "unavailable"
                tracing.set_error(span, exc)
                raise InferenceUnavailable(
                    f"{g.name}: {g.model} at {g.api_base or 'provider'} unavailable: {_short(str(exc))}"
                ) from exc
            except Exception as exc:
                tracing.set_error(span, exc)
                raise InferenceError(f"{g.name}: {g.model} refused the request: {_short(str(exc))}") from exc
            finally:
                with metrics.safely():
                    metrics.MODEL_CALLS.labels(g.name, outcome).inc()
                    metrics.MODEL_LATENCY.labels(g.name).observe(time.perf_counter() - started)
            input_tokens, output_tokens = self._usage(resp)
            tracing.record_response(span, resp, input_tokens, output_tokens)
            with metrics.safely():
                metrics.MODEL_TOKENS.labels(g.name, "input").inc(input_tokens)
                metrics.MODEL_TOKENS.labels(g.name, "output").inc(output_tokens)
            return resp

    @staticmethod
    def _choice(g: GroupConfig, resp: Any) -> Any:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise InferenceError(f"{g.name}: {g.model} returned no choices")
        return choices[0]

    @staticmethod
    def _usage(resp: Any) -> tuple[int, int]:
        usage = getattr(resp, "usage", None)
        if usage is None:
            return 0, 0
        return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)

    async def complete(
        self, group: str, messages: list[dict[str, Any]], *, max_tokens: int = 512, temperature: float = 0.2
    ) -> Completion:
        g = self._group(group)
        start = time.perf_counter()
        resp = await self._acompletion(g, messages, max_tokens=max_tokens, temperature=temperature)
        latency_ms = (time.perf_counter() - start) * 1000
        choice = self._choice(g, resp)
        prompt_tokens, completion_tokens = self._usage(resp)
        return Completion(
            text=choice.message.content or "",
            model=str(resp.model or g.model),
            group=group,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            finish_reason=choice.finish_reason,
        )

    async def chat(
        self,
        group: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        on_text: Callable[[str], None] | None = None,
    ) -> ChatReply:
        """One chat turn with `tools` offered (OpenAI function-tool dicts; None or empty: none).

        With `on_text`, the model is asked to stream: each piece of the reply's text is given to
        `on_text` as it arrives (it must not block; a failure in it is the caller's to avoid), and
        the reply is assembled from the stream as the same `ChatReply` a call without it returns.

        The reply's tool calls come back as the model wrote them (the caller validates names and
        arguments). A model or server that does not do tool calling (the embedded llama.cpp with a
        135M model mostly answers in prose) gives a reply without tool calls: that is an answer.
        Retries are off (Temporal retries the activity); errors as in `complete`.
        """
        g = self._group(group)
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        if g.sampling:
            kwargs["extra_body"] = dict(g.sampling)
        start = time.perf_counter()
        resp = await self._acompletion(g, messages, on_text, **kwargs)
        latency_ms = (time.perf_counter() - start) * 1000
        choice = self._choice(g, resp)
        message = choice.message
        calls: list[RawToolCall] = []
        for i, tc in enumerate(getattr(message, "tool_calls", None) or []):
            fn = getattr(tc, "function", None)
            name = str(getattr(fn, "name", "") or "")
            arguments = getattr(fn, "arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            calls.append(RawToolCall(id=str(getattr(tc, "id", "") or f"call_{i}"), name=name, arguments=arguments))
        prompt_tokens, completion_tokens = self._usage(resp)
        text, finish = message.content or "", choice.finish_reason
        if (cut := runaway_cut(text)) is not None:  # a whole reply (a stream was cut as it came)
            text, finish = text[:cut], FINISH_REPETITION
        return ChatReply(
            text=text,
            tool_calls=calls,
            model=str(resp.model or g.model),
            group=group,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            finish_reason=finish,
        )

    async def structured(
        self,
        group: str,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        max_tokens: int = 768,
        temperature: float = 0.0,
        narrow: dict[str, Any] | None = None,
    ) -> Structured[T]:
        """Ask for JSON constrained by `schema`'s JSON schema and validate the reply into it.

        llama.cpp turns `response_format.json_schema.schema` into a grammar with its built-in
        JSON-schema converter (vLLM and cloud providers do the same their way), so the reply
        is JSON of the right shape unless it runs out of `max_tokens`. llama.cpp's converter
        does not enforce every keyword (number `minimum`/`maximum` are not), so the reply is
        always validated; a reply that does not validate raises `StructuredOutputError`.
        The group's `max_string_length`/`max_items` tighten the schema sent (never the one
        validated against): see `generation_schema`. `narrow`, for a group with those bounds (the
        embedded small model), is the JSON schema generated with in place of `schema`'s own: a
        narrower one the caller knows (every reply it allows must be valid for `schema`), e.g. the
        planner's with only the offered tools and their argument names. Other groups ignore it.
        """
        g = self._group(group)
        bounded = g.max_string_length is not None or g.max_items is not None
        json_schema = generation_schema(
            narrow if narrow is not None and bounded else schema.model_json_schema(),
            max_string_length=g.max_string_length,
            max_items=g.max_items,
        )
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(schema), "schema": json_schema, "strict": g.strict_schema},
        }
        start = time.perf_counter()
        resp = await self._acompletion(
            g, messages, max_tokens=max_tokens, temperature=temperature, response_format=response_format
        )
        latency_ms = (time.perf_counter() - start) * 1000
        choice = self._choice(g, resp)
        raw = choice.message.content or ""
        try:
            value = schema.model_validate_json(_strip_fences(raw))
        except ValidationError as exc:
            cut = " (the reply was cut off at max_tokens)" if choice.finish_reason == "length" else ""
            # pydantic's own lines only ("1 validation error for Proposal", the error), not its
            # "For further information visit https://errors.pydantic.dev/…" links
            error = "\n".join(ln for ln in str(exc).splitlines() if "errors.pydantic.dev" not in ln)
            raise StructuredOutputError(
                f"{group}: the reply is not a valid {schema.__name__}{cut}: {_short(error)}; "
                f"reply: {_short(raw, 200)!r}",
                raw=raw,
                error=error,
            ) from None
        prompt_tokens, completion_tokens = self._usage(resp)
        return Structured[schema](  # type: ignore[valid-type]
            value=value,
            model=str(resp.model or g.model),
            group=group,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            raw=raw,
        )

    async def health(self, group: str = "planner") -> bool:
        """True when the group's server answers `/health` (llama.cpp, vLLM) or `/v1/models`.

        Groups without an api_base (a cloud provider) are not probed and report False.
        """
        g = self._group(group)
        if not g.api_base:
            return False
        base = g.api_base.rstrip("/")
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        headers = {"Authorization": f"Bearer {g.api_key.get_secret_value()}"} if g.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S, headers=headers, verify=httpx_tls()) as client:
                resp = await client.get(f"{root}/health")
                if resp.status_code == 200:
                    return True
                if resp.status_code in (404, 405):
                    resp = await client.get(f"{base}/models")
                    return resp.status_code == 200
                return False
        except httpx.HTTPError:
            return False
