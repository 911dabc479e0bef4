"""What the platform's MCP servers share: the bearer-token verifier, strict tools (unknown
arguments refused), the annotations that say what a tool does to the world, one error wrapper,
their settings from the environment, and the server with its auth, `/healthz` and `/metrics`.
The process around a server (options, start-up, serving, exit codes) is `serving.py`."""

from __future__ import annotations

import contextlib
import hmac
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import ToolAnnotations
from pydantic import ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from workers.process import StartupError

log = logging.getLogger("workers.toolservers")


class StaticTokenVerifier:
    """The MCP SDK's `TokenVerifier` for one shared bearer token (constant-time comparison)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token="<redacted>", client_id="agentic", scopes=[])
        return None


def tool(fn: Callable[..., Any], title: str, annotations: ToolAnnotations, meta: dict[str, Any] | None = None) -> Tool:
    description = " ".join(inspect.cleandoc(fn.__doc__ or "").split())
    return strict(Tool.from_function(fn, title=title, description=description, annotations=annotations, meta=meta))


# What a tool does to the world, as its MCP annotations say it. The tool gateway reads them
# (activities/tools/gateway.py): a tool that is read-only or idempotent is called again after an
# interrupted call; any other is never repeated blindly.


def tool_annotations(
    *, read_only: bool, destructive: bool, idempotent: bool, open_world: bool = False
) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


READ_ONLY = tool_annotations(read_only=True, destructive=False, idempotent=True)
"""Looks, changes nothing."""
READ_ONLY_OPEN = tool_annotations(read_only=True, destructive=False, idempotent=True, open_world=True)
"""Looks, and reaches beyond the app it serves (e.g. talosctl to every node)."""
MUTATING_IDEMPOTENT = tool_annotations(read_only=False, destructive=True, idempotent=True)
"""Changes something to an absolute value: calling it twice has the effect of calling it once."""
MUTATING = tool_annotations(read_only=False, destructive=True, idempotent=False)
"""Changes something, and a repeat has a further effect (a restart)."""


@contextlib.contextmanager
def tool_errors(
    errors: Mapping[type[Exception], Callable[[Any], str]],
    *,
    tool: str | None = None,
    logger: logging.Logger = log,
) -> Iterator[None]:
    """Turn what the app or backend raises into a tool error the model (and the human reading the
    action's outcome) can act on. `errors`: an exception type → the tool error's text (the first
    type that matches, in order); a `ToolError` passes as it is. With `tool`, any other exception
    is a bug: logged on `logger` with its traceback and answered `internal error in <tool>: ...`
    rather than crashing the call; without, it goes to the SDK (`Error executing tool ...`)."""
    try:
        yield
    except ToolError:
        raise
    except Exception as exc:
        for kind, text in errors.items():
            if isinstance(exc, kind):
                raise ToolError(text(exc)) from None
        if tool is None:
            raise
        logger.exception("%s failed unexpectedly", tool)
        raise ToolError(f"internal error in {tool}: {type(exc).__name__}: {exc}") from None


def strict(tool: Tool) -> Tool:
    """Refuse unknown arguments: an argument the model made up must not be silently dropped."""
    base = tool.fn_metadata.arg_model
    strict: type[ArgModelBase] = type(
        base.__name__,
        (base,),
        {"model_config": ConfigDict(extra="forbid", arbitrary_types_allowed=True), "__module__": base.__module__},
    )
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema(by_alias=True)
    return tool


# A server's settings are its command-line options, each defaulting to its AGENTIC_* variable
# (`env_default`). A secret (a token, an API key) is never an option, where `ps` shows it: an
# option names the variable that holds it (`--token-env VAR`, `--ha-token-env VAR`: read with
# `workers.process.secret_from_env`, as `client_token` does), or it has a fixed variable of its
# own (`env_secret`). Unset or empty, a secret that is needed stops the start with one line that
# names the variable.


def env_default(var: str, fallback: str | None = None) -> str | None:
    """An option's default: `$var` when it is set and not empty, else `fallback`."""
    return os.environ.get(var) or fallback


def env_secret(var: str, missing: str) -> str:
    """The secret in the environment variable `var`; unset or empty, a `StartupError` whose line
    is `missing`."""
    value = os.environ.get(var, "").strip()
    if not value:
        raise StartupError(missing)
    return value


def new_server(
    name: str,
    *,
    title: str,
    instructions: str,
    tools: list[Tool],
    token: str | None,
    issuer_url: str,
    health: Callable[[], dict[str, Any]],
) -> MCPServer:
    """An MCP server with `tools`, bearer-token auth when `token` is set, and `GET /healthz`
    answering `{"status": "ok", **health()}`."""
    auth: dict[str, Any] = {}
    if token:
        auth = {
            "auth": AuthSettings(issuer_url=issuer_url, resource_server_url=None),  # type: ignore[arg-type]
            "token_verifier": StaticTokenVerifier(token),
        }
    from workers.telemetry import ToolCallMetrics

    server: MCPServer = MCPServer(
        name,
        title=title,
        instructions=instructions,
        tools=tools,
        log_level="INFO",
        middleware=[ToolCallMetrics(name)],  # agentic_mcp_server_tool_calls_total (docs/observability.md)
        **auth,
    )

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", **health()})

    server.custom_route("/healthz", methods=["GET"])(healthz)
    from workers.telemetry import metrics_endpoint

    server.custom_route("/metrics", methods=["GET"])(metrics_endpoint)  # Prometheus (docs/observability.md)
    return server
