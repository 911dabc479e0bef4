"""The Bot API client from the settings (`make_bot`): the token, and the Bot API server
(AGENTIC_TELEGRAM_API_BASE: Telegram's, or a local Bot API server or a test emulator)."""

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
