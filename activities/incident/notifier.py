"""Where incident notifications go.

`Notifier` is what the incident activities need from a channel. `LedgerNotifier` is the
embedded default: every message becomes a row of the ledger's `notifications` table (edits
update the row) and a log line with a timestamp, so a stack without Telegram still shows
what it would have said and when. With a bot token the worker uses the Telegram one instead
(`TelegramNotifier`, workers/telegram/notifier.py), the same protocol.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from activities.ledger.db import NotFound
from agentic_core.incident import NotifyInput, NotifyResult

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger

log = logging.getLogger("agentic.notify")

LEDGER_CHANNEL = "ledger"
_REF_PREFIX = "ledger:"


class Notifier(Protocol):
    async def notify(self, inp: NotifyInput, key: str | None = None) -> NotifyResult:
        """Post `inp` (or edit `inp.edit_of`) and return a reference for later edits.

        `key` is stable across retries of the same notification (the activity passes its
        workflow id and activity id): a channel that can deduplicate uses it so a retried
        activity never posts twice.
        """
        ...


class LedgerNotifier:
    """Notifications as ledger rows and log lines (the embedded default).

    Message refs look like `ledger:<row id>`. An edit of a ledger ref updates that row's text
    (its kind stays the first message's, `edited_at` marks the edit); an edit of a ref from
    another channel is posted anew.
    """

    def __init__(self, ledger: Ledger, *, channel: str = LEDGER_CHANNEL) -> None:
        self.ledger = ledger
        self.channel = channel

    async def notify(self, inp: NotifyInput, key: str | None = None) -> NotifyResult:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        row_id = _row_id(inp.edit_of)
        text = with_diffs(inp)
        if row_id is not None:
            try:
                row = await self.ledger.update_notification(row_id, text=text)
            except NotFound:
                log.warning("%s notify: message %s to edit is gone; posting anew", now, inp.edit_of)
            else:
                log.info("%s notify edit %s [%s] %s: %s", now, inp.kind.value, inp.route, inp.incident_id, inp.text)
                return NotifyResult(message_ref=f"{_REF_PREFIX}{row.id}")
        row = await self.ledger.record_notification(
            self.channel,
            incident_id=inp.incident_id,
            target=inp.route,
            message_id=key or f"{inp.incident_id or '-'}/{inp.kind.value}/{now}",
            kind=inp.kind.value,
            text=text,
        )
        log.info("%s notify %s [%s] %s: %s", now, inp.kind.value, inp.route, inp.incident_id, inp.text)
        return NotifyResult(message_ref=f"{_REF_PREFIX}{row.id}")


def with_diffs(inp: NotifyInput) -> str:
    """The message's text with the diffs it carries (a GitOps change's) after it, whole."""
    parts = [inp.text]
    for d in inp.diffs:
        cut = " (cut: the whole diff is in the ledger under " + d.key + ")" if d.cut else ""
        parts.append(f"Diff of {d.title}{cut}:\n{d.diff.rstrip()}")
    return "\n\n".join(parts)


def _row_id(ref: str | None) -> int | None:
    if not ref or not ref.startswith(_REF_PREFIX):
        return None
    try:
        return int(ref[len(_REF_PREFIX) :])
    except ValueError:
        return None
