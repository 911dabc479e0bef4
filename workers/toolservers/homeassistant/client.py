"""Home Assistant's REST API for its MCP server (`Authorization: Bearer <long-lived access
token>`): the errors a human can act on (an unknown entity, a service Home Assistant rejects)
are tool errors that say what to do."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from workers.toolservers.app_api import AppApi, body_message
from workers.toolservers.homeassistant.models import CheckConfigResult

__all__ = ["HomeAssistant"]


class HomeAssistant:
    """Home Assistant's REST API (`Authorization: Bearer <long-lived access token>`)."""

    def __init__(self, url: str, token: str, **kwargs: Any) -> None:
        self.api = AppApi(
            "Home Assistant",
            url,
            {"Authorization": f"Bearer {token}"},
            url_setting="AGENTIC_HA_URL",
            key_setting="AGENTIC_HA_TOKEN (a long-lived access token: profile → Security)",
            **kwargs,
        )

    @property
    def url(self) -> str:
        return self.api.base_url

    async def close(self) -> None:
        await self.api.close()

    async def states(self) -> list[dict[str, Any]]:
        body = (await self.api.send("GET", "/api/states")).body
        return [s for s in body if isinstance(s, dict)] if isinstance(body, list) else []

    async def state(self, entity_id: str) -> dict[str, Any]:
        answer = await self.api.send("GET", f"/api/states/{entity_id}", ok=(200, 404))
        if answer.status == 404:
            domain = entity_id.split(".")[0]
            raise ToolError(
                f"entity {entity_id} not found in Home Assistant: list the {domain} entities with "
                f'ha_states(domain="{domain}") and use an existing entity_id'
            )
        return answer.body if isinstance(answer.body, dict) else {}

    async def check_config(self) -> CheckConfigResult:
        body = (await self.api.send("POST", "/api/config/core/check_config")).body
        body = body if isinstance(body, dict) else {}
        result = str(body.get("result", "unknown"))
        return CheckConfigResult(
            valid=result == "valid", result=result, errors=body.get("errors"), warnings=body.get("warnings")
        )

    async def call(self, domain: str, service: str, data: dict[str, Any], *, sent_ok: bool = False) -> list[Any]:
        answer = await self.api.send(
            "POST", f"/api/services/{domain}/{service}", json=data, ok=(200, 201, 400), sent_ok=sent_ok
        )
        if answer.status == 400:
            raise ToolError(
                f"Home Assistant rejected {domain}.{service} with {data} (400: {body_message(answer)}): "
                "the service does not exist here (is its integration loaded?) or its data is wrong "
                "(see Developer tools → Actions in Home Assistant)"
            )
        body = answer.body
        if isinstance(body, dict):  # ?return_response shape
            body = body.get("changed_states", [])
        return body if isinstance(body, list) else []
