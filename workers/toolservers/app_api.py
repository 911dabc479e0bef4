"""The home applications' REST APIs (Home Assistant, Sonarr, Radarr, Prowlarr) as their MCP tool
servers call them (workers/toolservers/homeassistant/, workers/toolservers/arr/): one
`httpx.AsyncClient` per server process, every failure turned into a `ToolError` whose text says
what to do (an app that does not answer, refused credentials, a redirect: which setting to fix).
The app-specific wording (what a 404 means) is the caller's: `AppApi.send` gives the status and
body, `body_message` the human part of an error body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from mcp.server.mcpserver.exceptions import ToolError

MAX_ERROR_BODY = 600


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, else the text
    text: str


def body_message(answer: Answer) -> str:
    """The human part of an error body: `{"message": ...}`, a list of validation failures
    (`[{"propertyName", "errorMessage"}]`, as the arr apps send), else the text."""
    body = answer.body
    if isinstance(body, dict):
        for key in ("message", "errorMessage", "error", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])[:MAX_ERROR_BODY]
    if isinstance(body, list):
        msgs = [str(item.get("errorMessage") or item) for item in body if isinstance(item, dict)]
        if msgs:
            return "; ".join(msgs)[:MAX_ERROR_BODY]
    return answer.text.strip()[:MAX_ERROR_BODY] or "no message"


class AppApi:
    """One application's REST API. `headers` carry its credential (never logged or returned)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        headers: dict[str, str],
        *,
        url_setting: str,
        key_setting: str,
        timeout_s: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.url_setting = url_setting
        self.key_setting = key_setting
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Accept": "application/json", **headers},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        sent_ok: bool = False,
    ) -> Answer:
        """Send one request; a status outside `ok` and 401/403 raise `ToolError`s that say what to
        do, except the statuses the caller handles (pass them in `ok`). `sent_ok`: a connection
        lost after the request was sent is an `Answer` with status 0 (the caller decides)."""
        try:
            r = await self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            if sent_ok and not isinstance(exc, httpx.ConnectTimeout):
                return Answer(0, None, "")
            raise ToolError(
                f"{self.name} at {self.base_url} did not answer {method} {path} in time ({type(exc).__name__}): "
                "is it overloaded or restarting? try again later"
            ) from None
        except httpx.ConnectError as exc:
            raise ToolError(
                f"cannot reach {self.name} at {self.base_url} ({_first_line(exc)}): is it running, "
                f"and is {self.url_setting} right?"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if sent_ok:
                return Answer(0, None, "")
            raise ToolError(
                f"{self.name} at {self.base_url} closed the connection during {method} {path} "
                f"({type(exc).__name__}): is it restarting?"
            ) from None
        except httpx.HTTPError as exc:
            what = f"{type(exc).__name__}: {_first_line(exc)}"
            raise ToolError(f"{method} {path} to {self.name} failed: {what}") from None
        text = r.text
        try:
            body: Any = r.json() if text.strip() else None
        except ValueError:
            body = text
        answer = Answer(r.status_code, body, text)
        if r.status_code in ok:
            return answer
        if r.status_code in (401, 403):
            raise ToolError(
                f"{self.name} at {self.base_url} refused the credentials ({r.status_code}): "
                f"check {self.key_setting} (the MCP server's environment)"
            )
        if r.status_code in (301, 302, 307, 308):
            raise ToolError(
                f"{self.name} at {self.base_url} redirects {path} to {r.headers.get('location', '?')}: "
                f"set {self.url_setting} to the URL it redirects to (with its URL base)"
            )
        raise ToolError(f"{self.name} answered {r.status_code} to {method} {path}: {body_message(answer)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
