"""Fake Home Assistant and arr apps (Sonarr, Radarr, Prowlarr) for tests: their real REST wire
format over HTTP (starlette on uvicorn, a free port), so the real MCP servers talk to them as to
the real apps. Each checks its credential the way the app does (Home Assistant:
`Authorization: Bearer <long-lived token>`, 401 "401: Unauthorized"; the arr apps: `X-Api-Key`,
401 with an empty body), answers real-shaped JSON, and records every authorised call in `calls`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.env import free_port
from tests.support.http_server import LoopServer

T0 = "2024-05-01T10:00:00.000000+00:00"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class _FakeServer:
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    _http: LoopServer = field(default_factory=LoopServer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.calls.append(Call(request.method, request.url.path, dict(request.query_params), body))
        return body

    def made(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    async def start(self) -> None:
        self.port = self.port or free_port()
        await self._http.start(Starlette(routes=self.routes()), self.port)

    async def stop(self) -> None:
        await self._http.stop()


# --------------------------------------------------------------------------- Home Assistant


def ha_state(entity_id: str, state: str, **attributes: Any) -> dict[str, Any]:
    return {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes,
        "last_changed": T0,
        "last_reported": T0,
        "last_updated": T0,
        "context": {"id": "01HX0000000000000000000000", "parent_id": None, "user_id": None},
    }


@dataclass
class FakeHomeAssistant(_FakeServer):
    token: str = "ha-long-lived-token"
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_log: str = ""
    config_errors: str | None = None
    # The services this instance has (a call to another is a 400, as in Home Assistant).
    services: set[str] = field(
        default_factory=lambda: {
            "switch.turn_on",
            "switch.turn_off",
            "light.turn_on",
            "light.turn_off",
            "automation.reload",
            "homeassistant.reload_config_entry",
            "homeassistant.restart",
        }
    )

    def __post_init__(self) -> None:
        if not self.states:
            for s in (
                ha_state("switch.garage_heater", "off", friendly_name="Garage heater"),
                ha_state("switch.aquarium_pump", "unavailable", friendly_name="Aquarium pump", restored=True),
                ha_state("light.kitchen", "on", friendly_name="Kitchen", brightness=180, color_mode="brightness"),
                ha_state("sensor.zigbee_coordinator", "unknown", friendly_name="Zigbee coordinator"),
                ha_state("automation.night_lights", "on", friendly_name="Night lights", last_triggered=T0),
            ):
                self.states[s["entity_id"]] = s
        if not self.error_log:
            self.error_log = "\n".join(
                [
                    "2024-05-01 09:59:58.123 INFO (MainThread) [homeassistant.setup] Setting up zha",
                    "2024-05-01 10:00:01.456 ERROR (MainThread) [homeassistant.components.zha] "
                    "Couldn't start EZSP coordinator (attempt 1 of 3)",
                    "2024-05-01 10:00:02.789 WARNING (MainThread) [homeassistant.config_entries] "
                    "Config entry 'Zigbee' for zha integration not ready yet: retrying",
                    "2024-05-01 10:00:03.000 ERROR (MainThread) [homeassistant.components.automation.night_lights] "
                    "Error while executing automation automation.night_lights",
                ]
            )

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def _guarded(self, request: Request) -> Response:
        if not self._authorised(request):
            return PlainTextResponse("401: Unauthorized", status_code=401)
        body = await self.record(request)
        path = request.url.path
        if path == "/api/":
            return JSONResponse({"message": "API running."})
        if path == "/api/config":
            return JSONResponse(
                {
                    "components": ["zha", "automation", "switch", "light"],
                    "config_dir": "/config",
                    "location_name": "Home",
                    "time_zone": "Europe/Amsterdam",
                    "version": "2024.5.0",
                    "state": "RUNNING",
                    "safe_mode": False,
                    "unit_system": {"length": "km", "mass": "g", "temperature": "°C", "volume": "L"},
                }
            )
        if path == "/api/states":
            return JSONResponse(list(self.states.values()))
        if path.startswith("/api/states/"):
            entity = path.removeprefix("/api/states/")
            if entity not in self.states:
                return JSONResponse({"message": "Entity not found."}, status_code=404)
            return JSONResponse(self.states[entity])
        if path == "/api/error_log":
            return PlainTextResponse(self.error_log)
        if path == "/api/config/core/check_config":
            if self.config_errors:
                return JSONResponse({"result": "invalid", "errors": self.config_errors, "warnings": None})
            return JSONResponse({"result": "valid", "errors": None, "warnings": None})
        if path.startswith("/api/services/"):
            domain, service = path.removeprefix("/api/services/").split("/", 1)
            if f"{domain}.{service}" not in self.services:
                return PlainTextResponse("400: Bad Request", status_code=400)
            changed: list[dict[str, Any]] = []
            entity = (body or {}).get("entity_id")
            if service in ("turn_on", "turn_off") and entity in self.states:
                new = "on" if service == "turn_on" else "off"
                if self.states[entity]["state"] != new:
                    self.states[entity] = {**self.states[entity], "state": new, "last_changed": T0}
                    changed.append(self.states[entity])
            return JSONResponse(changed)
        return JSONResponse({"message": "Not found"}, status_code=404)

    def routes(self) -> list[Route]:
        return [Route("/api/{rest:path}", self._guarded, methods=["GET", "POST"])]

    def service_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.startswith("/api/services/")]


# --------------------------------------------------------------------------- the arr apps


def queue_record(rid: int, title: str, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": rid,
        "title": title,
        "status": "downloading",
        "trackedDownloadStatus": "ok",
        "trackedDownloadState": "downloading",
        "statusMessages": [],
        "downloadId": f"HASH{rid:04d}",
        "protocol": "torrent",
        "downloadClient": "qBittorrent",
        "indexer": "NZBgeek",
        "outputPath": f"/downloads/{title}",
        "size": 1_500_000_000.0,
        "sizeleft": 500_000_000.0,
        "timeleft": "00:12:00",
        "estimatedCompletionTime": "2024-05-01T10:12:00Z",
        "added": "2024-05-01T09:00:00Z",
    }
    rec.update(over)
    return rec


@dataclass
class FakeArr(_FakeServer):
    app: str = "sonarr"  # sonarr, radarr or prowlarr
    api_key: str = "0123456789abcdef0123456789abcdef"
    queue: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    indexers: list[dict[str, Any]] = field(default_factory=list)
    indexer_status: list[dict[str, Any]] = field(default_factory=list)
    failing_indexers: set[int] = field(default_factory=set)
    commands: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return "v1" if self.app == "prowlarr" else "v3"

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    async def _api(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response(status_code=401)
        body = await self.record(request)
        rest = request.url.path.removeprefix(f"/api/{self.version}/")
        m = request.method
        if rest == "system/status":
            return JSONResponse(
                {
                    "appName": self.app.capitalize(),
                    "instanceName": self.app.capitalize(),
                    "version": {"sonarr": "4.0.4.1491", "radarr": "5.4.6.8723", "prowlarr": "1.16.2.4435"}[self.app],
                    "buildTime": "2024-04-28T00:00:00Z",
                    "isDebug": False,
                    "isProduction": True,
                    "isAdmin": False,
                    "isUserInteractive": False,
                    "startupPath": "/app/bin",
                    "appData": "/config",
                    "osName": "alpine",
                    "osVersion": "3.19.1",
                    "isDocker": True,
                    "mode": "console",
                    "branch": "main",
                    "authentication": "forms",
                    "urlBase": "",
                    "runtimeVersion": "6.0.29",
                    "runtimeName": ".NET",
                    "startTime": "2024-05-01T08:00:00Z",
                }
            )
        if rest == "health":
            return JSONResponse(self.health)
        if rest == "queue" and m == "GET":
            page, size = int(request.query_params.get("page", 1)), int(request.query_params.get("pageSize", 10))
            records = self.queue[(page - 1) * size : page * size]
            return JSONResponse(
                {
                    "page": page,
                    "pageSize": size,
                    "sortKey": "timeleft",
                    "sortDirection": "ascending",
                    "totalRecords": len(self.queue),
                    "records": records,
                }
            )
        if rest.startswith("queue/") and m == "DELETE":
            rid = int(rest.removeprefix("queue/"))
            if not any(r["id"] == rid for r in self.queue):
                return JSONResponse({"message": "Not Found"}, status_code=404)
            self.queue = [r for r in self.queue if r["id"] != rid]
            return JSONResponse({})
        if rest == "command" and m == "POST":
            cid = 1000 + len(self.commands)
            name = (body or {}).get("name")
            cmd = {
                "name": name,
                "commandName": name,
                "body": {"sendUpdatesToClient": False, "name": name, "trigger": "manual"},
                "priority": "normal",
                "status": "queued",
                "queued": "2024-05-01T10:00:00Z",
                "trigger": "manual",
                "sendUpdatesToClient": False,
                "updateScheduledTask": True,
                "id": cid,
            }
            self.commands[cid] = cmd
            return JSONResponse(cmd, status_code=201)
        if rest.startswith("command/") and m == "GET":
            cmd = self.commands.get(int(rest.removeprefix("command/")))
            if cmd is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            cmd.update(status="completed", message="Completed", ended="2024-05-01T10:00:02Z")
            return JSONResponse(cmd)
        if rest == "indexer" and m == "GET":
            return JSONResponse(self.indexers)
        if rest == "indexerstatus":
            return JSONResponse(self.indexer_status)
        if rest.startswith("indexer/") and rest != "indexer/test" and m == "GET":
            iid = int(rest.removeprefix("indexer/"))
            found = next((i for i in self.indexers if i["id"] == iid), None)
            return JSONResponse(found) if found else JSONResponse({"message": "NotFound"}, status_code=404)
        if rest == "indexer/test" and m == "POST":
            if (body or {}).get("id") in self.failing_indexers:
                return JSONResponse(
                    [
                        {
                            "propertyName": "",
                            "errorMessage": "Unable to connect to indexer, check the log above for more details",
                            "attemptedValue": None,
                            "severity": "error",
                            "isWarning": False,
                        }
                    ],
                    status_code=400,
                )
            return Response(status_code=200)
        return JSONResponse({"message": "NotFound"}, status_code=404)

    def routes(self) -> list[Route]:
        return [Route("/api/{rest:path}", self._api, methods=["GET", "POST", "DELETE", "PUT"])]


def prowlarr_indexer(iid: int, name: str, **over: Any) -> dict[str, Any]:
    ix: dict[str, Any] = {
        "id": iid,
        "name": name,
        "enable": True,
        "redirect": False,
        "supportsRss": True,
        "supportsSearch": True,
        "protocol": "torrent",
        "privacy": "public",
        "priority": 25,
        "appProfileId": 1,
        "added": "2024-01-01T00:00:00Z",
        "implementation": "Cardigann",
        "implementationName": "Cardigann",
        "configContract": "CardigannSettings",
        "definitionName": name.lower(),
        "fields": [{"order": 0, "name": "definitionFile", "value": name.lower(), "type": "textbox", "advanced": False}],
        "tags": [],
    }
    ix.update(over)
    return ix
