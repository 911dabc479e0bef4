"""SearXNG's JSON API as the web server calls it: `GET {base}/search?q=…&format=json` →
`{"query", "number_of_results", "results": [{"url", "title", "content", "engine", "engines",
"score", "category", "publishedDate"?}], "answers", "suggestions", "unresponsive_engines"}`.

The instance is the operator's (AGENTIC_SEARXNG_URL, usually inside the cluster): it is not
subject to the fetch allow-list. Every failure is a tool error that says what to do (a 403 is
SearXNG refusing the JSON format: `search.formats` in its settings.yml must list `json`).
"""

from __future__ import annotations

from typing import Any

import httpx
from mcp.server.mcpserver.exceptions import ToolError


class SearxNG:
    def __init__(self, base_url: str, *, timeout_s: float = 15.0, user_agent: str = "agentic-platform-web") -> None:
        self.url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            trust_env=False,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def search(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self._http.get(f"{self.url}/search", params={**params, "format": "json"})
        except httpx.TimeoutException:
            raise ToolError(
                f"SearXNG at {self.url} did not answer in time; try again or check AGENTIC_SEARXNG_URL"
            ) from None
        except httpx.HTTPError as exc:
            raise ToolError(
                f"cannot reach SearXNG at {self.url} ({type(exc).__name__}: {exc}); check AGENTIC_SEARXNG_URL"
            ) from None
        if resp.status_code == 403:
            raise ToolError(
                f"SearXNG at {self.url} refused the JSON format (403): add `json` to `search.formats` in its "
                "settings.yml"
            )
        if resp.status_code == 429:
            raise ToolError(f"SearXNG at {self.url} is rate-limiting this client (429): wait and try again")
        if resp.status_code >= 400:
            raise ToolError(f"SearXNG at {self.url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            data = resp.json()
        except ValueError:
            raise ToolError(
                f"SearXNG at {self.url} did not answer JSON (is AGENTIC_SEARXNG_URL its base URL?)"
            ) from None
        if not isinstance(data, dict):
            raise ToolError(f"SearXNG at {self.url} answered JSON that is not an object")
        return data
