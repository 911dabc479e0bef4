"""`agentic telegram …`: setting up the forum topics, and what the bot posted.

`agentic telegram setup` creates the standing topics (🔴 Critical Alerts, 🟡 Arr Suite,
🔵 Infrastructure, 🏠 Home Assistant, 📊 Weekly Reports, ✅ Resolved) in the configured forum
supergroup and stores their thread ids in the ledger (`kv` key `telegram.topics`). It is
idempotent: a topic whose thread id is stored is not created again. `agentic telegram log` lists
what the bot posted, edited and refused, from the ledger.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from workers.cli.options import DataDir, cli_settings
from workers.errors import AgenticError
from workers.settings import Settings
from workers.telegram.client import make_bot
from workers.telegram.routing import setup_topics

app = typer.Typer(help="Telegram: the operator's console (forum topics, buttons).", no_args_is_help=True)


async def _log(settings: Settings, incident_id: str | None, refused: bool, limit: int) -> list[Any]:
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings
    from workers.telegram.notifier import CHANNEL

    ledger = await Ledger.connect(platform_settings(settings).postgres_target(), max_size=1)
    try:
        return await ledger.recent_notifications(
            CHANNEL, kind="refused" if refused else None, incident_id=incident_id, limit=limit
        )
    finally:
        await ledger.close()


async def _setup(settings: Settings) -> list[tuple[str, str, int, bool]]:
    from telegram.error import InvalidToken, TelegramError

    from activities.ledger.db import LedgerError
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings

    bot = make_bot(settings)
    if settings.telegram_chat_id is None:
        raise AgenticError("no chat: set AGENTIC_TELEGRAM_CHAT_ID to the forum supergroup's id (-100…)")
    try:
        ledger = await Ledger.connect(platform_settings(settings).postgres_target(), max_size=2)
    except LedgerError as exc:
        raise AgenticError(f"{exc} (is `agentic up` running, or AGENTIC_POSTGRES_DSN set?)") from None
    try:
        async with bot:
            return await setup_topics(bot, ledger, settings.telegram_chat_id)
    except InvalidToken:  # its message holds the token: never show it
        raise AgenticError("Telegram rejected AGENTIC_TELEGRAM_TOKEN (check it with @BotFather)") from None
    except TelegramError as exc:
        raise AgenticError(f"Telegram refused the bot: {exc.message}") from exc
    finally:
        await ledger.close()


@app.command("setup")
def setup(data_dir: DataDir = None) -> None:
    """Create the standing forum topics (idempotent) and store their thread ids in the ledger."""
    rows = asyncio.run(_setup(cli_settings(data_dir)))
    for key, name, thread, created in rows:
        print(f"{name:<22} {key:<15} thread {thread:<8} {'created' if created else 'exists'}")


@app.command("log")
def log(
    incident_id: str | None = typer.Argument(None, help="only this incident's messages"),
    refused: bool = typer.Option(False, "--refused", help="only refused button presses"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    data_dir: DataDir = None,
) -> None:
    """What the bot posted, edited and refused (newest first), from the ledger."""
    rows = asyncio.run(_log(cli_settings(data_dir), incident_id, refused, limit))
    for r in rows:
        when = (r.edited_at or r.sent_at).strftime("%Y-%m-%d %H:%M:%S")
        first = r.text.splitlines()[0] if r.text else ""
        where = f"thread {r.thread}" if r.thread else "-"
        print(f"{when}  {r.kind:<10} {r.incident_id or '-':<24} {where:<12} {first[:100]}")
    if not rows:
        print("nothing recorded")
