"""The standing forum topics and which notification goes to which.

A notification's `route` (from triage: "critical", "infrastructure", "arr", "home_assistant",
"platform"; "weekly" for reports; "resolved" for the closing lines) names a topic key through
`DEFAULT_ROUTES`, overridable with `AGENTIC_TELEGRAM_ROUTES` (`route=topic,…`). Escalations
travel on the "critical" route, so they reach 🔴 Critical Alerts whatever the override says,
and RESOLVED lines always land in ✅ Resolved. Thread ids live in the ledger's `kv` under
`TOPICS_KEY`, written by `setup_topics` (`agentic telegram setup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentic_core.incident import NotifyInput, NotifyKind
from workers.errors import AgenticError

if TYPE_CHECKING:
    from telegram import Bot

    from activities.ledger.repository import Ledger

TOPICS_KEY = "telegram.topics"


@dataclass(frozen=True)
class Topic:
    key: str
    name: str
    icon_color: int  # one of the six colours the Bot API accepts for createForumTopic


TOPICS: tuple[Topic, ...] = (
    Topic("critical", "🔴 Critical Alerts", 0xFF93B2),
    Topic("arr", "🟡 Arr Suite", 0xFFD67E),
    Topic("infrastructure", "🔵 Infrastructure", 0x6FB9F0),
    Topic("home-assistant", "🏠 Home Assistant", 0x8EEE98),
    Topic("weekly", "📊 Weekly Reports", 0xCB86DB),
    Topic("resolved", "✅ Resolved", 0x8EEE98),
)
TOPIC_KEYS = frozenset(t.key for t in TOPICS)

DEFAULT_ROUTES: dict[str, str] = {
    "critical": "critical",
    "arr": "arr",
    "infrastructure": "infrastructure",
    "platform": "infrastructure",
    "home_assistant": "home-assistant",
    "home-assistant": "home-assistant",
    "weekly": "weekly",
    "report": "weekly",
    "resolved": "resolved",
}
FALLBACK_TOPIC = "infrastructure"


def parse_routes(spec: str) -> dict[str, str]:
    """`route=topic,…` → a map; unknown topic keys are an error that names the valid ones."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        route, sep, topic = item.partition("=")
        route, topic = route.strip(), topic.strip()
        if not sep or not route or not topic:
            raise ValueError(f"AGENTIC_TELEGRAM_ROUTES: {item!r} is not route=topic")
        if topic not in TOPIC_KEYS:
            raise ValueError(
                f"AGENTIC_TELEGRAM_ROUTES: unknown topic {topic!r} (topics: {', '.join(sorted(TOPIC_KEYS))})"
            )
        out[route] = topic
    return out


class Router:
    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.routes = {**DEFAULT_ROUTES, **(overrides or {})}

    def topic_for(self, inp: NotifyInput) -> str:
        if inp.kind == NotifyKind.RESOLVED:
            return "resolved"
        if inp.kind == NotifyKind.ESCALATION or inp.route == "critical":
            return "critical"  # critical always reaches Critical Alerts
        if inp.kind == NotifyKind.REPORT and inp.route not in self.routes:
            return "weekly"
        return self.routes.get(inp.route, FALLBACK_TOPIC)


async def setup_topics(bot: Bot, ledger: Ledger, chat_id: int) -> list[tuple[str, str, int, bool]]:
    """Create the missing standing topics; returns (key, name, thread id, created) per topic."""
    from telegram.error import TelegramError

    stored = {str(k): int(v) for k, v in ((await ledger.kv_get(TOPICS_KEY)) or {}).items()}
    out: list[tuple[str, str, int, bool]] = []
    for topic in TOPICS:
        if topic.key in stored:
            out.append((topic.key, topic.name, stored[topic.key], False))
            continue
        try:
            created = await bot.create_forum_topic(chat_id, topic.name, icon_color=topic.icon_color)
        except TelegramError as exc:
            raise AgenticError(
                f"cannot create topic {topic.name}: {exc.message} (is chat {chat_id} a forum supergroup, "
                "and the bot an admin allowed to manage topics?)"
            ) from exc
        stored[topic.key] = created.message_thread_id
        await ledger.kv_set(TOPICS_KEY, stored)  # after each, so a failure half-way loses nothing
        out.append((topic.key, topic.name, created.message_thread_id, True))
    return out
