"""Prometheus's HTTP API (`/api/v1/...`) and Alertmanager's (`/api/v2/alerts`) for the metrics MCP
server, and the times and durations its tools take (`parse_time`, `parse_duration`). The errors a
human can act on are tool errors that say what to do: a query Prometheus refuses says what
Prometheus said, one it cannot run says how to narrow it, a Prometheus that does not answer
names its URL and the setting."""

from __future__ import annotations

import base64
import math
import re
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from workers.toolservers.app_api import Answer, AppApi, body_message

__all__ = ["TIME_FORMATS", "Alertmanager", "Prometheus", "auth_headers", "parse_duration", "parse_time"]

PROMETHEUS_URL_SETTING = "AGENTIC_PROMETHEUS_URL"
PROMETHEUS_KEY_SETTING = "AGENTIC_PROMETHEUS_TOKEN (or AGENTIC_PROMETHEUS_USERNAME and AGENTIC_PROMETHEUS_PASSWORD)"


# Times and durations as the tools take them (and Prometheus writes them).

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
TIME_FORMATS = "RFC 3339 (2026-01-01T12:00:00Z), unix seconds, now, or now-1h / -30m"


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (`1h30m`, `5m`, `250ms`) or a plain number of seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m, or a number of seconds)") from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m, or a number of seconds)")
    return value


def parse_time(text: str, now: float) -> float:
    """Unix seconds for `text`: RFC 3339, unix seconds, `now`, `now-1h`, `now+5m`, `-30m`."""
    raw = text.strip()
    rel = raw[3:] if raw.lower().startswith("now") else raw if raw.startswith("-") else None
    if rel is not None:
        if not rel:
            return now
        sign = -1.0 if rel[0] == "-" else 1.0 if rel[0] == "+" else 0.0
        if sign == 0.0:
            raise ValueError(f"time {text!r}: expected {TIME_FORMATS}")
        try:
            return now + sign * parse_duration(rel[1:])
        except ValueError:
            raise ValueError(f"time {text!r}: expected {TIME_FORMATS}") from None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"time {text!r}: expected {TIME_FORMATS}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def auth_headers(token: str | None, username: str | None, password: str | None) -> dict[str, str]:
    """The `Authorization` header of a secured Prometheus: a bearer token, or basic auth."""
    if token:
        return {"Authorization": f"Bearer {token}"}
    if username:
        pair = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def _api_error(answer: Answer) -> tuple[str, str]:
    """Prometheus's `{"status": "error", "errorType": ..., "error": ...}`: (type, message)."""
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body.get("errorType") or "error"), body["error"]
    return "error", body_message(answer)


class Prometheus:
    """Prometheus's HTTP API (read endpoints only)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.api = AppApi(
            "Prometheus",
            url,
            headers or {},
            url_setting=PROMETHEUS_URL_SETTING,
            key_setting=PROMETHEUS_KEY_SETTING,
            **kwargs,
        )

    @property
    def url(self) -> str:
        return self.api.base_url

    async def close(self) -> None:
        await self.api.close()

    async def get(
        self, path: str, params: dict[str, Any] | None = None, *, query: str | None = None
    ) -> tuple[Any, list[str]]:
        """`data` of a successful answer and its warnings. `query`: the PromQL sent, for the error's wording."""
        answer = await self.api.send("GET", f"/api/v1/{path}", params=params, ok=(200, 400, 422, 503))
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("status") == "success":
            data = answer.body.get("data")
            warnings = answer.body.get("warnings") or []
            return data, [str(w) for w in warnings] if isinstance(warnings, list) else []
        kind, message = _api_error(answer)
        what = f"the query {query!r}" if query is not None else f"/api/v1/{path}"
        if answer.status == 400:
            hint = "fix the PromQL" if query is not None else "check the arguments"
            raise ToolError(f"Prometheus refused {what} ({kind}): {message}; {hint}")
        if answer.status == 422:
            raise ToolError(
                f"Prometheus could not run {what} ({kind}): {message}; narrow it "
                "(fewer series, a shorter range or a larger step)"
            )
        if answer.status == 503:
            raise ToolError(
                f"Prometheus at {self.url} is unavailable ({kind}: {message}): it is starting, overloaded or "
                "shutting down; try again later"
            )
        raise ToolError(f"Prometheus at {self.url} answered {answer.status} to /api/v1/{path} without data: {message}")


class Alertmanager:
    """Alertmanager's API v2 (its active alerts)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.api = AppApi(
            "Alertmanager",
            url,
            headers or {},
            url_setting="AGENTIC_ALERTMANAGER_URL",
            key_setting="the Alertmanager's access (the metrics server sends no credentials to it)",
            **kwargs,
        )

    @property
    def url(self) -> str:
        return self.api.base_url

    async def close(self) -> None:
        await self.api.close()

    async def alerts(self, alertname: str | None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"active": "true", "silenced": "true", "inhibited": "true"}
        if alertname:
            params["filter"] = f'alertname="{alertname}"'
        body = (await self.api.send("GET", "/api/v2/alerts", params=params)).body
        return [a for a in body if isinstance(a, dict)] if isinstance(body, list) else []
