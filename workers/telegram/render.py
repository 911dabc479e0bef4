"""Messages as Telegram HTML: escaping, the card layout, and the length limits.

Every piece of alert or model text goes through `html.escape` (the Bot API's HTML mode knows
only `&lt; &gt; &amp; &quot;`), so any label or annotation is shown as typed. Telegram allows
4096 characters of text per message and 1024 per photo caption (counted in UTF-16 code
units after entity parsing); `fit` truncates the escaped body at a line or character boundary that never cuts an
entity, and says so: the full text is one 🔎 Details press away.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from agentic_core.incident import NotifyKind

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
TRUNCATED = "… (truncated: press 🔎 Details for the full text)"
TRUNCATED_NO_DETAILS = "… (truncated)"

HEADERS: dict[NotifyKind, str] = {
    NotifyKind.QUESTION: "🚨 New incident",
    NotifyKind.DIAGNOSIS: "🩺 Approval needed",
    NotifyKind.UPDATE: "🔄 Update",
    NotifyKind.DONE: "🤖 Done: a standard runbook ran",
    NotifyKind.REMINDER: "⏰ Reminder: still waiting for an answer",
    NotifyKind.ESCALATION: "📣 Escalation: no answer yet",
    NotifyKind.EXPIRED: "⌛ Expired: nothing was run",
    NotifyKind.RESOLVED: "✅ Resolved",
    NotifyKind.REPORT: "📊 Report",
    NotifyKind.NOTICE: "📢 Notice",
}


_RAN = re.compile(r"^(\s*\d+\. \S+): (succeeded|failed|refused|skipped)\b", re.MULTILINE)
_MARK = {"succeeded": "✓", "failed": "✗", "refused": "⛔", "skipped": "–"}


def marked(text: str) -> str:
    """`1. rollout_restart: succeeded` → `1. rollout_restart: ✓ succeeded` (the executed list)."""
    return _RAN.sub(lambda m: f"{m.group(1)}: {_MARK[m.group(2)]} {m.group(2)}", text)


def u16(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji may count 2)."""
    return len(text.encode("utf-16-le")) // 2


def esc(text: str) -> str:
    return html.escape(text, quote=False)


@dataclass
class Card:
    """What a message shows; kept in the ledger so edits can re-render it whole."""

    kind: NotifyKind
    text: str
    subject: str = ""  # incident or approval id
    plan_hash: str | None = None
    history: list[str] = field(default_factory=list)  # plain lines: who decided, when, …
    facts: str = ""  # e.g. "runbook x · prompted · 7/7 succeeded · confidence 0.80"
    pre: str = ""  # shown whole after the body, preformatted (a short diff of a GitOps change)

    def render(self, limit: int = TEXT_LIMIT, *, details: bool = True) -> tuple[str, bool]:
        """The HTML and whether the body was truncated (`pre` is never cut: the caller sends
        a `pre` that does not fit as a file instead)."""
        head = f"<b>{esc(HEADERS.get(self.kind, self.kind.value))}</b>"
        if self.subject:
            head += f" · <code>{esc(self.subject)}</code>"
        top = [head, *([esc(self.facts)] if self.facts else []), *(f"<i>{esc(h)}</i>" for h in self.history)]
        tail = [f"Plan <code>{esc(self.plan_hash[:12])}</code>"] if self.plan_hash else []
        pre = f"\n\n<pre>{esc(self.pre)}</pre>" if self.pre else ""
        frame = "\n".join(top) + "\n\n" + "{body}" + pre + ("\n\n" + "\n".join(tail) if tail else "")
        room = limit - (u16(frame) - len("{body}"))
        body, cut = fit(marked(self.text), max(room, 0), TRUNCATED if details else TRUNCATED_NO_DETAILS)
        return frame.replace("{body}", body), cut


def fit(text: str, limit: int, marker: str = TRUNCATED) -> tuple[str, bool]:
    """`text` escaped and cut to at most `limit` characters (marker included)."""
    escaped = esc(text)
    if u16(escaped) <= limit:
        return escaped, False
    budget = max(limit - u16(marker) - 1, 0)
    cut = escaped[:budget]
    while u16(cut) > budget:  # astral characters count twice
        cut = cut[: len(cut) - max(1, (u16(cut) - budget) // 2)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never split an entity such as &amp;
    nl = cut.rfind("\n")
    if nl > budget * 0.6:
        cut = cut[:nl]
    return cut + "\n" + marker, True


def chunks(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Plain text split into escaped messages of at most `limit` (for 🔎 Details)."""
    out: list[str] = []
    rest = text
    while rest:
        size = min(len(rest), limit)
        while u16(esc(rest[:size])) > limit:  # escaping and astral characters grow it
            size = max(1, size * 3 // 4)
        piece = rest[:size]
        if size < len(rest) and "\n" in piece[size // 2 :]:
            piece = piece[: piece.rfind("\n") + 1]
        out.append(esc(piece))
        rest = rest[len(piece) :]
    return [p for p in out if p.strip()] or [esc("(empty)")]
