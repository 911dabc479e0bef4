"""What the platform's MCP servers share: the bearer-token verifier, strict tools (unknown
arguments refused), and the loopback test for binding without TLS in front."""

from __future__ import annotations

import hmac
import inspect
import ipaddress
from collections.abc import Callable
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import ToolAnnotations
from pydantic import ConfigDict


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
