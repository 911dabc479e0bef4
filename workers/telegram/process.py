"""The Telegram bot process: `python -m workers.telegram` (started by `agentic up` when
`AGENTIC_TELEGRAM_TOKEN` is set; the Helm chart's `bot` Deployment in a cluster). The bot's
logic is workers/telegram/bot.py; this module runs it: settings, the ledger, Temporal, the HTTP
server for `/healthz` and the webhook, housekeeping.

- Long polling by default (homelab: no inbound port needed); webhook mode when
  `AGENTIC_TELEGRAM_WEBHOOK_URL` is set: it registers the webhook with
  `AGENTIC_TELEGRAM_WEBHOOK_SECRET` as Telegram's `secret_token` and refuses (403) any call to
  `POST /telegram` without it.
- `GET /healthz` on `AGENTIC_BOT_PORT` answers 503 while Temporal is unreachable.
- Start-up problems print one line starting with `error:` and exit 2. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import uvicorn

from workers.errors import AgenticError
from workers.http_limits import bounded_config
from workers.process import run_service
from workers.settings import Settings
from workers.telegram.client import secrets_from

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger

log = logging.getLogger("agentic.bot")


async def mcp_schemas(settings: Settings, ledger: Any) -> Any:
    """The tools' input schemas from the MCP gateway (cached); None for a tool it cannot tell."""
    from agentic_core.incident import ListToolsInput
    from workers.wiring import tool_gateway

    tools = tool_gateway(ledger, settings)
    cache: dict[str, dict[str, Any]] = {}

    async def schema(tool: str) -> dict[str, Any] | None:
        if tool not in cache:
            try:
                listed = await tools.list_tools(ListToolsInput(agent="incident"))
            except Exception as exc:  # no MCP server: the modify is still checked against the plan
                log.warning("cannot read the tools' schemas (%s): modify checks argument names only", exc)
                return None
            cache.update({t.name: t.input_schema for t in listed.tools})
        return cache.get(tool)

    return schema


HOUSEKEEPING_EVERY_S = 6 * 3600


async def housekeep(ledger: Ledger, keep: timedelta, every_s: float = HOUSEKEEPING_EVERY_S) -> None:
    """Purge the bot's stale working state now and every `every_s`; a failed purge is logged
    and tried again next time (it never stops the bot)."""
    from workers.telegram.notifier import purge_state

    while True:
        try:
            n = await purge_state(ledger, keep)
            if n:
                log.info("purged %d Telegram state key(s) unchanged for %s", n, keep)
        except Exception as exc:
            log.warning("Telegram state purge failed (next try in %.0fs): %s", every_s, exc)
        await asyncio.sleep(every_s)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    from telegram.error import InvalidToken, TelegramError

    from activities.ledger.db import LedgerError
    from activities.ledger.repository import Ledger
    from workers.telegram.bot import BotConfig, TelegramBot, build_application, temporal_health
    from workers.temporal import connect

    token, chat_id, secret = secrets_from(settings)
    if not settings.telegram_approver_ids:
        raise AgenticError(
            "AGENTIC_TELEGRAM_APPROVERS is empty: list the Telegram user ids allowed to answer "
            "(comma-separated); the bot does not take presses from just anyone in the group"
        )
    webhook = settings.telegram_webhook_url
    app = build_application(token, settings.telegram_api_base, polling=webhook is None)
    try:
        await app.initialize()  # checks the token first (getMe)
    except InvalidToken:  # its message holds the token: never show it
        raise AgenticError("Telegram rejected AGENTIC_TELEGRAM_TOKEN (check it with @BotFather)") from None
    except TelegramError as exc:
        raise AgenticError(
            f"cannot reach the Bot API at {settings.telegram_api_base} ({type(exc).__name__}); "
            "see AGENTIC_TELEGRAM_API_BASE"
        ) from None
    client = await connect(settings.temporal_target, settings.temporal_namespace)
    try:
        ledger = await Ledger.connect(settings.postgres_target(), max_size=4)
    except LedgerError as exc:
        raise AgenticError(f"{exc} (AGENTIC_POSTGRES_DSN)") from None
    cfg = BotConfig(
        chat_id=chat_id,
        secret=secret,
        approvers=settings.telegram_approver_ids,
        webhook_secret=settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret
        else None,
    )
    bot = TelegramBot(app, client, ledger, cfg, schemas=await mcp_schemas(settings, ledger))
    server = uvicorn.Server(
        bounded_config(  # headers within 5 s, the body within 10 s (workers/http_limits.py)
            bot.http_app(lambda: temporal_health(client)),
            host=settings.host,
            port=settings.bot_port,
            log_level="warning",
            lifespan="off",
        )
    )
    http = asyncio.create_task(server.serve())
    housekeeping = asyncio.create_task(housekeep(ledger, timedelta(days=settings.telegram_state_days)))
    try:
        await bot.start(webhook_url=webhook)
        log.info(
            "bot running (%s) for chat %s on port %s", "webhook" if webhook else "polling", chat_id, settings.bot_port
        )
        done, _ = await asyncio.wait([http, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if http in done:
            raise AgenticError(f"the bot's HTTP server stopped (is port {settings.bot_port} free? AGENTIC_BOT_PORT)")
    finally:
        log.info("stopping the bot")
        housekeeping.cancel()
        await bot.stop()
        server.should_exit = True
        await asyncio.gather(http, return_exceptions=True)
        await ledger.close()


def main() -> None:
    # httpx's INFO lines carry the token in URLs
    run_service("bot", serve, quiet=("httpx",))
