"""What every server process of the platform needs at start: one-line errors, secrets from the
environment (never argv), and a listening socket claimed up front so a port in use is one clear
line instead of a traceback."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from workers.errors import AgenticError, StartupError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from workers.settings import Settings

__all__ = ["StartupError", "bind_listener", "one_line", "run_service", "secret_from_env", "settings_error"]


def secret_from_env(var: str | None, flag: str) -> str | None:
    """The secret held by the environment variable `var` (named by `flag`), or None when no var is named."""
    if var is None:
        return None
    value = os.environ.get(var, "").strip()
    if not value:
        raise StartupError(f"{flag} {var}: the environment variable {var} is not set or empty")
    return value


def bind_listener(host: str, port: int, port_setting: str) -> socket.socket:
    """Bind and listen on host:port; `port_setting` names the variable that changes the port."""
    if not 0 < port < 65536:
        raise StartupError(f"port {port} is outside 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r} to listen on: {exc.strerror}") from None
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (set {port_setting} to another port)"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def settings_error(exc: ValidationError) -> str:
    """A settings error as the operator reads it: each failing variable (up to three) and why."""
    errs = exc.errors(include_input=False, include_url=False)
    parts = [f"AGENTIC_{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}" for e in errs[:3]]
    return "invalid settings: " + "; ".join(parts)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's text (at most 200 characters), or its type's name."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def settle_heap(log: logging.Logger) -> int:
    """Once a process has loaded what it keeps for its life (modules, models, clients): collect,
    then freeze what is left out of the collector's reach (`gc.freeze`), and return how many
    objects were frozen.

    Python's full collection walks every tracked object. The worker keeps about 820,000 after its
    start (torch, transformers, LiteLLM, temporalio); a full collection then held the GIL for
    about 0.4 s on the reference machine, and one came every few hundred thousand new objects:
    in an alert burst, or in an agent run's first token. Frozen, a full collection walks only
    what came after the start (measured: 391 ms -> under 1 ms for the start's objects). What is
    frozen is never freed, so this is called once, when the start is done; later garbage is
    collected as before."""
    gc.collect()
    frozen = len(gc.get_objects())
    gc.freeze()
    log.info("heap settled: %d objects from the start left out of garbage collection", frozen)
    return frozen


def run_service(
    name: str, serve: Callable[[Settings, asyncio.Event], Awaitable[None]], *, quiet: Sequence[str] = ()
) -> NoReturn:
    """Run a platform process (`serve(settings, stop)`) until SIGINT or SIGTERM sets `stop`.

    Settings come from the environment, completed the way every part of `agentic up` gets them
    (`workers.stack.env.platform_settings`: the data dir's generated secrets, the running stack's
    addresses), and set up logging (`quiet` loggers at WARNING; secrets
    redacted from every record, `agentic_core.redaction.RedactingFilter`). Errors
    are one line on stderr for the operator (the supervisor shows the log's tail): exit 2 for
    bad configuration (`error: invalid settings: AGENTIC_X: …`, naming each variable, or a log
    level that is none) and `AgenticError`, 1 for anything unexpected (its first line; the
    traceback in the log).
    """
    from pydantic import ValidationError

    from agentic_core.redaction import install_log_redaction
    from workers.settings import Settings
    from workers.stack.env import platform_settings

    log = logging.getLogger(f"agentic.{name}")
    code = 0
    try:
        try:
            settings = platform_settings(Settings())
        except ValidationError as exc:
            raise AgenticError(settings_error(exc)) from None
        try:
            logging.basicConfig(
                level=settings.log_level.upper(),
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                stream=sys.stderr,
            )
        except ValueError:
            raise AgenticError(f"AGENTIC_LOG_LEVEL {settings.log_level!r} is not a log level") from None
        install_log_redaction()  # secrets never reach the log, whoever logs them
        for noisy in quiet:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from workers import telemetry

        telemetry.setup(f"agentic-{name}", settings)  # traces (docs/observability.md)

        async def _main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(settings, stop)

        asyncio.run(_main())
    except AgenticError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Exception as exc:
        log.exception("%s failed", name)
        print(f"error: {name} failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        code = 1
    from workers import telemetry

    telemetry.shutdown()  # the spans still queued, bounded
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python issue 300: no crash at interpreter exit
