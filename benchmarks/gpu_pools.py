"""The chart's vLLM planner and embedding pools on a GPU machine, through the platform's inference router.

    python benchmarks/gpu_pools.py [--requests 64] [--concurrency 16] [--models-dir DIR]

One command, ready for a GPU machine (docs/scaling.md). What it does:

1. Reads the chart's pool choices (deploy/helm/agentic-platform/values.yaml, `inference.pools`):
   the planner (model, served name, max model length, extra args) and the embed pool.
2. Starts `vllm serve` for each on free ports of this machine (both on one GPU: their
   `--gpu-memory-utilization` is scaled down to share it; `--models-dir` holds local copies of
   the weights when the machine cannot reach Hugging Face: DIR/<org>/<name>).
3. Builds the platform's router with `workers.wiring.inference_router` from Settings pointing at
   them (AGENTIC_PLANNER_URL, AGENTIC_EMBED_URL, the served names): the same router
   configuration and structured-output path the worker uses (one endpoint per pool: the OpenAI
   client directly, as `direct_model` decides; LiteLLM routes pools with replicas).
4. Drives the planner with `--requests` incident prompts, `--concurrency` at a time: each a
   streamed completion (time to first token, output tokens/s) and a structured `Proposal`
   (valid JSON for the schema or not); then the embed pool with batches of runbook texts.

It prints tokens/s (aggregate and per request), time to first token p50/p95, structured-output
validity, embeddings/s, and exits 0. Without a GPU or without vllm installed it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "deploy" / "helm" / "agentic-platform" / "values.yaml"
PROMPT = (
    "Alert: KubePodCrashLooping: pod checkout-{i} in namespace shop is restarting (CrashLoopBackOff). "
    "Recent logs: OOMKilled after the last deploy. Propose a diagnosis and a plan."
)
SYSTEM = (
    "You are an SRE assistant for a Kubernetes cluster. Answer with a JSON object: summary (one line), "
    "diagnosis (a few sentences), runbook_id (or null), actions (list of MCP tool calls), confidence (0 to 1), "
    "risk (low, medium or high)."
)


def gpu_present() -> str | None:
    """Why this machine cannot run the pools, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm on the GPU machine)"
    smi = shutil.which("nvidia-smi")
    if smi is None or subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode != 0:
        return "no NVIDIA GPU visible (nvidia-smi -L failed or is missing)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pools() -> dict[str, dict[str, Any]]:
    values = yaml.safe_load(VALUES.read_text())
    return {name: values["inference"]["pools"][name] for name in ("planner", "embed")}


def serve(pool: dict[str, Any], port: int, share: float, models_dir: Path | None, log: Path) -> subprocess.Popen[bytes]:
    model = str(models_dir / pool["model"]) if models_dir else pool["model"]
    cmd = [
        sys.executable,
        *("-m", "vllm.entrypoints.openai.api_server"),
        *("--model", model, "--served-model-name", pool["servedModelName"]),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--max-model-len", str(pool["maxModelLen"]), "--max-num-seqs", str(pool["maxNumSeqs"])),
        *("--gpu-memory-utilization", f"{share:.2f}"),
        *[str(a) for a in pool.get("extraArgs", [])],
    ]
    print("starting:", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = await asyncio.to_thread(log.read_text)
                raise SystemExit(f"vllm exited with {proc.returncode}:\n{tail[-3000:]}")
            try:
                if (await http.get(f"{url}/models")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)
    raise SystemExit(f"vllm at {url} not ready within {timeout_s:.0f} s")


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else (values[0] if values else float("nan"))


async def drive(router: Any, requests: int, concurrency: int) -> None:
    from activities.inference.router import StructuredOutputError
    from agentic_core.models import Proposal

    sem = asyncio.Semaphore(concurrency)
    ttft: list[float] = []
    rates: list[float] = []
    tokens = 0
    valid = 0

    async def one(i: int) -> None:
        nonlocal tokens, valid
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT.format(i=i)}]
        async with sem:
            started = time.perf_counter()
            first: float | None = None
            n = 0
            stream = await router._router.acompletion(model="planner", messages=messages, stream=True, max_tokens=256)
            async for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    first = first or time.perf_counter()
                    n += 1  # one chunk per token from vLLM's stream
            done = time.perf_counter()
            if first is not None:
                ttft.append(first - started)
                rates.append(n / max(done - first, 1e-6))
            tokens += n
            try:
                await router.structured("planner", messages, Proposal)
                valid += 1
            except StructuredOutputError:
                pass

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - t0
    print()
    print(f"| planner ({requests} requests, {concurrency} at a time) | value |")
    print("|---|---|")
    print(f"| output tokens/s, aggregate (streamed part) | {tokens / wall:.0f} |")
    print(f"| output tokens/s per request p50 | {pct(rates, 50):.0f} |")
    print(f"| time to first token p50 / p95 | {pct(ttft, 50) * 1000:.0f} ms / {pct(ttft, 95) * 1000:.0f} ms |")
    print(f"| structured output valid (Proposal) | {valid}/{requests} |")

    texts = [f"Runbook {i}: restart the deployment when pods crash loop after an OOM kill." for i in range(256)]
    t0 = time.perf_counter()
    for k in range(0, len(texts), 32):
        await router._router.aembedding(model="embed", input=texts[k : k + 32])
    took = time.perf_counter() - t0
    print(f"| embed pool: embeddings/s (batches of 32) | {len(texts) / took:.0f} |")


async def run(args: argparse.Namespace) -> None:
    from workers.settings import Settings
    from workers.wiring import inference_router

    chosen = pools()
    ports = {name: free_port() for name in chosen}
    shares = {"planner": 0.6, "embed": 0.2}  # one GPU for both (the chart gives each its own)
    logs = Path(tempfile.mkdtemp(prefix="gpu-pools-"))
    procs = {
        name: serve(pool, ports[name], shares[name], args.models_dir, logs / f"{name}.log")
        for name, pool in chosen.items()
    }
    try:
        urls = {name: f"http://127.0.0.1:{port}/v1" for name, port in ports.items()}
        for name, url in urls.items():
            await wait_ready(url, procs[name], logs / f"{name}.log")
            print(f"{name} ready at {url}", flush=True)
        settings = Settings(
            planner_url=urls["planner"],
            planner_model=chosen["planner"]["servedModelName"],
            embed_url=urls["embed"],
            embed_model=chosen["embed"]["servedModelName"],
            pool_max_parallel=int(chosen["planner"]["maxNumSeqs"]),
        )
        await drive(inference_router(settings), args.requests, args.concurrency)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64, help="planner requests")
    ap.add_argument("--concurrency", type=int, default=16, help="planner requests in flight at once")
    ap.add_argument("--models-dir", type=Path, default=None, help="local weights: DIR/<org>/<name> per pool model")
    args = ap.parse_args()
    why = gpu_present()
    if why is not None:
        print(f"gpu_pools: nothing to run here: {why}. Run it on a GPU machine with vllm installed.")
        raise SystemExit(0)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
