"""The process around an MCP server (`ToolServer`): the options every server takes (--host,
--port, --token-env), its start-up in one order (the client token, its own settings checked by
`configure`, the listener bound, the server made by the `Launch` that `configure` returned),
serving it over streamable HTTP on the bound socket until SIGTERM/SIGINT, one line on stderr
where it serves and one when it stopped, a start-up error as its one line and exit 2. A server
declares only its name, its own options and how it starts from them."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from mcp.server.mcpserver import MCPServer

from workers.process import StartupError, bind_listener, secret_from_env

EXIT_OK = 0
EXIT_STARTUP = 2  # the process could not start: its one line says why

log = logging.getLogger("workers.toolservers")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_token(args: argparse.Namespace, what: str) -> str | None:
    """The bearer token clients must send (from `--token-env`). Without one the server only
    listens on loopback: anything else is refused at start, saying so."""
    token = secret_from_env(args.token_env, "--token-env")
    if token is None and not is_loopback(args.host):
        raise StartupError(
            f"error: refusing to serve {what} on {args.host} without a token: "
            "set --token-env VAR (AGENTIC_MCP_TOKEN) or listen on 127.0.0.1"
        )
    return token


def url_host(host: str) -> str:
    """`host` as it stands in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


def issuer_url(args: argparse.Namespace) -> str:
    """The server's own base URL from `--host` and `--port` (the MCP auth issuer)."""
    return f"http://{url_host(args.host)}:{args.port}"


def serve_http(
    server: MCPServer, sock: socket.socket, host: str, on_stop: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Serve `server` over streamable HTTP at /mcp on the bound `sock` until SIGTERM/SIGINT;
    then run `on_stop` (in the same event loop) and close the socket."""
    import uvicorn

    from workers.http_limits import bounded_config

    app = server.streamable_http_app(host=host)
    config = bounded_config(  # headers within 5 s, the body within 10 s (workers/http_limits.py)
        app,
        log_config=None,  # use this process's logging set-up
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    userver = uvicorn.Server(config)

    # uvicorn handles SIGTERM/SIGINT during serve() and re-raises them afterwards: these
    # handlers receive the re-raised signal, so a requested stop ends with exit code 0.
    def _stopped(_signum: int, _frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)

    async def run() -> None:
        try:
            await userver.serve(sockets=[sock])
        finally:
            if on_stop is not None:
                await on_stop()

    try:
        asyncio.run(run())
    finally:
        sock.close()


def server_main(name: str, serve: Callable[[], int]) -> int:
    """A server process's `main`: its log lines prefixed with `name`, the SDK's and uvicorn's
    chatter at WARNING, an `AgenticError` (a `StartupError` is one) as its one line and exit 2."""
    import logging
    import sys

    from agentic_core.redaction import install_log_redaction
    from workers.errors import AgenticError

    logging.basicConfig(level=logging.INFO, format=f"{name}: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    install_log_redaction()
    for noisy in ("uvicorn.error", "mcp.server.streamable_http_manager", "mcp.server.streamable_http", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _telemetry(name)
    try:
        return serve()
    except AgenticError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        from workers import telemetry

        telemetry.shutdown()


@dataclass(frozen=True)
class Serving:
    """A server ready to serve, as its `launch` makes it once the listener is bound."""

    server: MCPServer
    detail: str
    """What it serves, for its start-up line (`...; <detail>; token required`)."""
    on_stop: Callable[[], Awaitable[None]] | None = None
    """Run in the server's event loop once it has stopped (close its clients)."""
    close: Callable[[], None] | None = None
    """Run after serving, however serving ended."""


Launch = Callable[[str | None, str], Serving]
"""Makes the server from the client token and the issuer URL, once its listener is bound."""


def _no_options(_parser: argparse.ArgumentParser) -> None:
    pass


@dataclass(frozen=True)
class ToolServer:
    """One MCP server process, `python -m workers.toolservers.<package>`: the options every server
    takes (--host, --port, --token-env) and its own (`options`), its start-up in one order (the
    client token, its settings checked by `configure`, the listener bound, the server made by the
    `Launch` that `configure` returned), one line on stderr where it serves and one when it
    stopped, a start-up error as its one line and exit 2 (`main`)."""

    name: str
    """`mcp_<package>`: its log lines' prefix and its telemetry service (`agentic-<package>`)."""
    tools: str
    """What its `--help` says it serves: `Serve the <tools> MCP tools ...`."""
    port: int
    port_setting: str
    """The variable that changes its port, named when the port is taken."""
    serves: str
    """What the refusal to serve off loopback without a token names."""
    configure: Callable[[argparse.Namespace], Launch]
    """Reads and checks its settings (a `StartupError` before anything is bound)."""
    options: Callable[[argparse.ArgumentParser], None] = _no_options

    @property
    def module(self) -> str:
        return "workers.toolservers." + self.name.removeprefix("mcp_")

    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m {self.module}",
            description=f"Serve the {self.tools} MCP tools over streamable HTTP at /mcp.",
        )
        p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
        p.add_argument("--port", type=int, default=self.port, help="TCP port (default: %(default)s)")
        p.add_argument(
            "--token-env",
            default=None,
            metavar="VAR",
            help="name of the environment variable holding the bearer token clients must send (default: none)",
        )
        self.options(p)
        return p

    def serve(self, args: argparse.Namespace) -> int:
        """Start as `args` say, serve until told to stop; the process's exit status."""
        token = client_token(args, self.serves)
        launch = self.configure(args)
        sock = bind_listener(args.host, args.port, self.port_setting)
        try:
            serving = launch(token, issuer_url(args))
        except BaseException:
            sock.close()
            raise
        try:
            auth = "required" if token else "off"
            print(
                f"{self.name}: serving {serving.server.name} at {issuer_url(args)}/mcp; {serving.detail}; token {auth}",
                file=sys.stderr,
                flush=True,
            )
            serve_http(serving.server, sock, args.host, on_stop=serving.on_stop)
            print(f"{self.name}: stopped", file=sys.stderr, flush=True)
            return EXIT_OK
        finally:
            if serving.close is not None:
                serving.close()

    def main(self, argv: Sequence[str] | None = None) -> int:
        args = self.parser().parse_args(argv)
        return server_main(self.name, lambda: self.serve(args))


def _telemetry(name: str) -> None:
    """Traces for this tool server (the mcp SDK makes the spans of the calls it serves), as the
    platform's settings in the environment say; a server run by hand with no settings traces
    only when OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    from pydantic import ValidationError

    from workers import telemetry
    from workers.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        log.warning("tracing settings not read (%s): tracing off", exc.errors()[0].get("msg", "invalid"))
        return
    if "AGENTIC_DATA_DIR" not in os.environ:
        settings = settings.model_copy(update={"traces_local": False})  # not part of a stack: no span file
    telemetry.setup(f"agentic-{name.replace('_', '-')}", settings)
