"""One arr app's REST API (Sonarr and Radarr API v3, Prowlarr API v1; `X-Api-Key`), for the
arr-suite MCP server: the URL and API key settings its errors name, the API version per app."""

from __future__ import annotations

from typing import Any

from workers.toolservers.app_api import AppApi

__all__ = ["API_VERSION", "APPS", "TITLES", "ArrApp"]

APPS = ("sonarr", "radarr", "prowlarr")
API_VERSION = {"sonarr": "v3", "radarr": "v3", "prowlarr": "v1"}
TITLES = {"sonarr": "Sonarr", "radarr": "Radarr", "prowlarr": "Prowlarr"}


class ArrApp:
    """One arr app's API (`X-Api-Key`)."""

    def __init__(self, app: str, url: str, api_key: str, **kwargs: Any) -> None:
        self.app = app
        self.version = API_VERSION[app]
        self.api = AppApi(
            TITLES[app],
            url,
            {"X-Api-Key": api_key},
            url_setting=f"AGENTIC_{app.upper()}_URL",
            key_setting=f"AGENTIC_{app.upper()}_API_KEY",
            **kwargs,
        )

    def path(self, rest: str) -> str:
        return f"/api/{self.version}/{rest}"

    async def get(self, rest: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.api.send("GET", self.path(rest), params=params)).body

    async def close(self) -> None:
        await self.api.close()
