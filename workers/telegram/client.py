"""The Bot API client from the settings (`make_bot`: the token, and the Bot API server,
AGENTIC_TELEGRAM_API_BASE: Telegram's, a local Bot API server or a test emulator), and the bot's
credentials (`secrets_from`), for the bot process and the worker's notifier alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.errors import AgenticError
from workers.settings import Settings

if TYPE_CHECKING:
    from telegram import Bot


def make_bot(settings: Settings) -> Bot:
    from telegram import Bot

    if settings.telegram_token is None:
        raise AgenticError("no Telegram bot: set AGENTIC_TELEGRAM_TOKEN (from @BotFather)")
    base = settings.telegram_api_base.rstrip("/")
    return Bot(settings.telegram_token.get_secret_value(), base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")


def secrets_from(settings: Settings) -> tuple[str, int, bytes]:
    if settings.telegram_token is None:
        raise AgenticError("AGENTIC_TELEGRAM_TOKEN is not set: the bot has nothing to run as")
    if settings.telegram_chat_id is None:
        raise AgenticError("AGENTIC_TELEGRAM_CHAT_ID is not set: the id of the forum supergroup (-100…)")
    if settings.telegram_callback_secret is None:
        raise AgenticError(
            "AGENTIC_TELEGRAM_CALLBACK_SECRET is not set (`agentic up` generates one; in a cluster set it "
            "for the bot and the worker alike)"
        )
    if settings.telegram_webhook_url and settings.telegram_webhook_secret is None:
        raise AgenticError("webhook mode needs AGENTIC_TELEGRAM_WEBHOOK_SECRET (Telegram's secret_token)")
    return (
        settings.telegram_token.get_secret_value(),
        settings.telegram_chat_id,
        settings.telegram_callback_secret.get_secret_value().encode(),
    )
