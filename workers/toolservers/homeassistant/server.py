"""The MCP Home Assistant server: Home Assistant's REST API as tools over streamable HTTP at /mcp.

    AGENTIC_HA_TOKEN=... python -m workers.toolservers.homeassistant --host 127.0.0.1 --port 8093 \\
        --ha-url http://homeassistant.local:8123 [--services CSV] [--token-env AGENTIC_MCP_TOKEN]

Tools (typed arguments and results, like the infrastructure server's):

  read-only   ha_states(domain?, entity_prefix?, state?, limit?)    GET /api/states
              ha_entity(entity_id)                                   GET /api/states/<entity_id>
              ha_error_log(lines?, contains?)                        GET /api/error_log
              ha_check_config()                                      POST /api/config/core/check_config
  mutating    ha_call_service(domain, service, entity_id?, data?)    POST /api/services/<domain>/<service>
              ha_restart()                                           check_config, then homeassistant.restart

`ha_call_service` only calls the `domain.service` pairs on the allow-list (`--services`,
AGENTIC_HA_SERVICES) that set a state, so calling one twice has the effect of calling it once
(turn_on, turn_off, reload...): it is annotated idempotentHint=true and the tool gateway may
repeat an interrupted call. Services that are not (toggle, press, trigger, running a script,
stop) are refused at start-up. `homeassistant.restart` is not idempotent: it is its own tool,
`ha_restart` (idempotentHint=false, so an interrupted restart is never repeated blindly), listed
only when the allow-list holds it; it refuses to restart on a configuration that does not pass
`check_config`. A service call first reads the entity (Home Assistant answers 200 to a call on
an entity that does not exist and does nothing), then returns the entity's new state.

Errors are MCP tool errors a human can act on: Home Assistant unreachable (check
AGENTIC_HA_URL), 401 (check AGENTIC_HA_TOKEN), an unknown entity (list them with ha_states), a
400 (the service and data Home Assistant rejected), a service off the allow-list.

- Home Assistant's long-lived access token comes from the environment variable named by
  `--ha-token-env` (AGENTIC_HA_TOKEN), never from the command line.
- Authentication of MCP clients, /healthz, start-up errors (exit 2) and SIGTERM as in
  workers.toolservers.infra.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from workers.process import StartupError, secret_from_env
from workers.toolservers.common import (
    MUTATING,
    MUTATING_IDEMPOTENT,
    READ_ONLY,
    env_default,
    new_server,
    tool,
)
from workers.toolservers.homeassistant.client import HomeAssistant
from workers.toolservers.homeassistant.models import (
    CheckConfigResult,
    EntityBrief,
    EntityDetail,
    ErrorLogResult,
    RestartResult,
    ServiceResult,
    StatesResult,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["DEFAULT_SERVICES", "build_server", "main", "parse_services"]

SERVER_NAME = "agentic-homeassistant"
DEFAULT_SERVICES = (
    "homeassistant.reload_config_entry,homeassistant.reload_core_config,automation.reload,script.reload,"
    "scene.reload,switch.turn_on,switch.turn_off,light.turn_on,light.turn_off,homeassistant.restart"
)
RESTART = "homeassistant.restart"
MAX_ATTRIBUTE_CHARS = 4_000
MAX_LOG_CHARS = 64_000

log = logging.getLogger("workers.toolservers.homeassistant")

IDENT = r"^[a-z0-9_]+$"
ENTITY_ID = r"^[a-z0-9_]+\.[a-z0-9_]+$"
SERVICE_NAME = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
# Services whose repeat has a further effect: ha_call_service promises the opposite.
_NOT_IDEMPOTENT_SERVICES = {"toggle", "press", "trigger", "stop", "restart", "reboot", "shutdown"}
# Services that act on the whole instance or a config entry, not on one entity of their domain.
_TARGET_ANY_DOMAIN = {"homeassistant"}


def parse_services(csv: str) -> list[str]:
    """The allow-list, checked: `domain.service` items, none that is not idempotent (except
    homeassistant.restart, which `ha_restart` calls)."""
    items = [item.strip() for item in csv.split(",") if item.strip()]
    for item in items:
        if not SERVICE_NAME.match(item):
            raise StartupError(f"error: AGENTIC_HA_SERVICES: {item!r} is not a domain.service name")
        domain, service = item.split(".")
        if item == RESTART:
            continue
        if service in _NOT_IDEMPOTENT_SERVICES or (domain == "script" and service not in ("reload", "turn_off")):
            raise StartupError(
                f"error: AGENTIC_HA_SERVICES: {item} has a further effect each time it is called; "
                "ha_call_service only calls services that set a state (turn_on, turn_off, reload...): remove it"
            )
    return items


def _brief(s: dict[str, Any]) -> EntityBrief:
    attrs = s.get("attributes") if isinstance(s.get("attributes"), dict) else {}
    name = attrs.get("friendly_name") if isinstance(attrs, dict) else None
    return EntityBrief(
        entity_id=str(s.get("entity_id", "")),
        state=str(s.get("state", "")),
        friendly_name=str(name) if name is not None else None,
        last_changed=s.get("last_changed"),
    )


# --------------------------------------------------------------------------- argument types

Domain = Annotated[
    str, Field(description="Home Assistant domain, e.g. switch, light, automation", max_length=64, pattern=IDENT)
]
EntityId = Annotated[
    str, Field(description="entity id, e.g. switch.garage_heater or light.kitchen", max_length=255, pattern=ENTITY_ID)
]


def build_server(
    ha: HomeAssistant,
    services: list[str],
    *,
    token: str | None = None,
    issuer_url: str = "http://127.0.0.1",
) -> MCPServer:
    """The MCP server with its tools over `ha`; `services` is the allow-list of `domain.service`."""
    allowed = [s for s in services if s != RESTART]

    async def ha_states(
        domain: Annotated[
            str | None, Field(description="only entities of this domain, e.g. switch", max_length=64, pattern=IDENT)
        ] = None,
        entity_prefix: Annotated[
            str | None,
            Field(description="only entity ids starting with this, e.g. light.living_", max_length=255),
        ] = None,
        state: Annotated[
            str | None, Field(description='only entities in this state, e.g. "unavailable" or "off"', max_length=255)
        ] = None,
        limit: Annotated[int, Field(description="most entities to return", ge=1, le=500)] = 100,
    ) -> StatesResult:
        """List Home Assistant entities with their state (filter by domain, entity id prefix or
        state); entities that are unavailable or unknown are listed apart (a dead Zigbee device,
        an integration that failed to load)."""
        matched = [
            s
            for s in await ha.states()
            if (domain is None or str(s.get("entity_id", "")).startswith(f"{domain}."))
            and (entity_prefix is None or str(s.get("entity_id", "")).startswith(entity_prefix))
            and (state is None or s.get("state") == state)
        ]
        matched.sort(key=lambda s: str(s.get("entity_id", "")))
        bad = [str(s.get("entity_id")) for s in matched if s.get("state") in ("unavailable", "unknown")]
        return StatesResult(
            entities=[_brief(s) for s in matched[:limit]],
            matched=len(matched),
            truncated=len(matched) > limit,
            unavailable=bad[:50],
        )

    async def ha_entity(entity_id: EntityId) -> EntityDetail:
        """One entity's state and attributes (e.g. a switch's last change, a sensor's unit, an
        automation's last_triggered)."""
        s = await ha.state(entity_id)
        attrs = s.get("attributes") if isinstance(s.get("attributes"), dict) else {}
        kept: dict[str, Any] = {}
        size, cut = 0, False
        for key, value in (attrs or {}).items():
            size += len(key) + len(str(value))
            if size > MAX_ATTRIBUTE_CHARS:
                cut = True
                break
            kept[key] = value
        brief = _brief(s)
        return EntityDetail(
            **brief.model_dump(), last_updated=s.get("last_updated"), attributes=kept, attributes_truncated=cut
        )

    async def ha_error_log(
        lines: Annotated[int, Field(description="how many of the last lines to return", ge=1, le=2000)] = 200,
        contains: Annotated[
            str | None,
            Field(description='only lines containing this text, e.g. "zha" or "ERROR"', max_length=200),
        ] = None,
    ) -> ErrorLogResult:
        """The last lines of Home Assistant's error log (integrations that failed to set up,
        automations that failed), newest last, at most 64 KiB."""
        text = (await ha.api.send("GET", "/api/error_log")).text
        all_lines = [ln for ln in text.splitlines() if ln.strip()]
        if contains:
            all_lines = [ln for ln in all_lines if contains.lower() in ln.lower()]
        tail = all_lines[-lines:]
        while tail and sum(len(ln) + 1 for ln in tail) > MAX_LOG_CHARS:
            tail = tail[1:]
        return ErrorLogResult(lines=tail, total_lines=len(all_lines), truncated=len(tail) < len(all_lines))

    async def ha_check_config() -> CheckConfigResult:
        """Check Home Assistant's configuration files (configuration.yaml and what it includes)
        as a restart would load them: valid, or the errors to fix first."""
        return await ha.check_config()

    async def ha_call_service(
        domain: Domain,
        service: Annotated[
            str,
            Field(description="service of the domain, e.g. turn_on, turn_off, reload", max_length=64, pattern=IDENT),
        ],
        entity_id: Annotated[
            str | None,
            Field(
                description="the entity to act on (required except for reload services such as automation.reload)",
                max_length=255,
                pattern=ENTITY_ID,
            ),
        ] = None,
        data: Annotated[
            dict[str, Any] | None,
            Field(description='extra service data, e.g. {"brightness_pct": 50} for light.turn_on'),
        ] = None,
    ) -> ServiceResult:
        """Call a Home Assistant service (action) that sets a state, e.g. switch.turn_on,
        light.turn_off, automation.reload, homeassistant.reload_config_entry (reloads the
        integration of entity_id). Only the services on the allow-list AGENTIC_HA_SERVICES."""
        name = f"{domain}.{service}"
        if name == RESTART:
            raise ToolError("homeassistant.restart is not called through ha_call_service: use ha_restart")
        if name not in allowed:
            raise ToolError(
                f"{name} is not on the Home Assistant allow-list ({', '.join(allowed) or 'empty'}): "
                "add it to AGENTIC_HA_SERVICES if it sets a state and should be allowed"
            )
        extra = dict(data or {})
        for key in ("entity_id", "device_id", "area_id"):
            if key in extra:
                raise ToolError(f"give the target as the entity_id argument, not in data ({key!r})")
        if len(str(extra)) > 2_000:
            raise ToolError("data is too large (at most 2000 characters)")
        reload_only = service.startswith("reload") and service != "reload_config_entry"
        before: dict[str, Any] | None = None
        if entity_id is None and not reload_only and not (service == "reload_config_entry" and "entry_id" in extra):
            raise ToolError(f"{name} needs an entity_id (the entity to act on)")
        if entity_id is not None:
            target_domain = entity_id.split(".")[0]
            if domain not in _TARGET_ANY_DOMAIN and target_domain != domain:
                raise ToolError(
                    f"{name} cannot act on {entity_id}: use a {domain} entity, or {target_domain}.{service}"
                )
            before = await ha.state(entity_id)  # 404 → a clear error; a call on it would do nothing
        body = {**extra, **({"entity_id": entity_id} if entity_id else {})}
        changed = await ha.call(domain, service, body)
        after = _brief(await ha.state(entity_id)) if entity_id else None
        was = str(before.get("state")) if before else None
        message = f"{name} on {entity_id}: {was} → {after.state}" if after is not None else f"{name} done"
        log.info("ha_call_service %s", message)
        return ServiceResult(
            service=name,
            entity_id=entity_id,
            changed=[_brief(s) for s in changed if isinstance(s, dict)][:50],
            state_after=after,
            message=message,
        )

    async def ha_restart() -> RestartResult:
        """Restart Home Assistant (a few minutes without automations). Checks the configuration
        first and refuses to restart on one that does not pass (fix the errors it names)."""
        config = await ha.check_config()
        if not config.valid:
            raise ToolError(
                f"not restarting: Home Assistant's configuration does not pass check_config "
                f"({config.result}): {config.errors or 'no details'}; fix it first"
            )
        await ha.call("homeassistant", "restart", {}, sent_ok=True)
        log.info("ha_restart requested")
        return RestartResult(requested=True, config=config, message="Home Assistant is restarting")

    tools = [
        tool(ha_states, "Home Assistant entities", READ_ONLY),
        tool(ha_entity, "A Home Assistant entity", READ_ONLY),
        tool(ha_error_log, "Home Assistant error log", READ_ONLY),
        tool(ha_check_config, "Check Home Assistant's configuration", READ_ONLY),
        tool(ha_call_service, "Call a Home Assistant service", MUTATING_IDEMPOTENT),
    ]
    if RESTART in services:
        tools.append(tool(ha_restart, "Restart Home Assistant", MUTATING))

    return new_server(
        SERVER_NAME,
        title="agentic-platform Home Assistant tools",
        instructions="Home Assistant tools: read entity states and the error log, check the configuration, "
        "call allow-listed services that set a state, restart Home Assistant.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {"tools": len(tools), "home_assistant": ha.url},
    )


# --------------------------------------------------------------------------- the process


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ha-url",
        default=env_default("AGENTIC_HA_URL"),
        help="Home Assistant base URL (default: $AGENTIC_HA_URL)",
    )
    p.add_argument(
        "--ha-token-env",
        default="AGENTIC_HA_TOKEN",
        metavar="VAR",
        help="environment variable holding Home Assistant's long-lived access token (default: %(default)s)",
    )
    p.add_argument(
        "--services",
        default=env_default("AGENTIC_HA_SERVICES", DEFAULT_SERVICES),
        help="comma-separated domain.service allow-list (default: $AGENTIC_HA_SERVICES, else the built-in list)",
    )


def configure(args: argparse.Namespace) -> Launch:
    if not args.ha_url or not args.ha_url.startswith(("http://", "https://")):
        raise StartupError(
            "error: no Home Assistant URL: set AGENTIC_HA_URL (--ha-url), e.g. http://homeassistant:8123"
        )
    ha_token = secret_from_env(args.ha_token_env, "--ha-token-env")
    assert ha_token is not None
    services = parse_services(args.services)

    def launch(token: str | None, issuer: str) -> Serving:
        ha = HomeAssistant(args.ha_url, ha_token)
        server = build_server(ha, services, token=token, issuer_url=issuer)
        return Serving(server, f"Home Assistant: {ha.url}; {len(services)} services allowed", on_stop=ha.close)

    return launch


PROCESS = ToolServer(
    "mcp_homeassistant",
    "Home Assistant",
    port=8093,
    port_setting="AGENTIC_MCP_HA_PORT",
    serves="Home Assistant tools",
    configure=configure,
    options=_options,
)
main = PROCESS.main
