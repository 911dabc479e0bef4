"""`TelegramNotifier`: the `Notifier` the worker uses when a bot token is configured.

- A message goes into the forum topic its route names (`routing.Router`). A question with a
  plan (`approval_id` and `plan_hash`) carries the inline keyboard ✅ Approve · 🚫 Ignore ·
  ✏️ Modify · 🔎 Details, each button's callback data signed (`signing`); a question with
  nothing to run (`choices` offer "acknowledged") has 👀 Acknowledge instead of ✅ Approve.
- `edit_of` edits the message (the card) instead of posting: the diagnosis, then "executed",
  then the outcome. The card (kind, text, history lines such as "approved by …") is kept in
  the ledger's `kv` (`tg:card:<chat>:<message id>`) so the bot and later edits re-render it.
- REMINDER and EXPIRED also mark the question's card; EXPIRED removes its buttons; RESOLVED
  posts the short line in ✅ Resolved and marks the incident's card.
- The diffs a question carries (`NotifyInput.diffs`: a GitOps change's, from `propose_edit`
  evidence) are shown whole: inline in the card (`<pre>`) when the card still fits one message
  (4096) with them, else each as a `.diff` file (sendDocument) replying to the card in its topic,
  with a short caption, once per notification (`tg:sent:<key>/diff/<n>`); a diff the evidence
  cut is read whole from the ledger (the call's recorded output).
- Every post and edit is a row of the ledger's `notifications` table (channel "telegram",
  target = chat id, thread = topic thread id, message_id = Telegram's), so
  `agentic incidents show` lists them.
- Deduplication: the activity's `key` (stable across retries) maps to the message it sent
  (`tg:sent:<key>`); a retried activity returns that message instead of posting again.
- Telegram's flood control (429 `retry_after`) becomes an `ApplicationError` with
  `next_retry_delay`, so Temporal retries the activity after exactly that delay.

Message refs look like `tg:<chat id>:<message id>`.

Long because posting, editing and marking a card share one card state and its ledger
bookkeeping (sent keys, links, topics), which must stay idempotent together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from temporalio.exceptions import ApplicationError

from activities.telemetry import tracing
from agentic_core.evidence import EvidenceDiff, diff_summary
from agentic_core.incident import NotifyInput, NotifyKind, NotifyResult
from agentic_core.models import ToolCall
from workers.telegram import signing
from workers.telegram.render import CAPTION_LIMIT, TEXT_LIMIT, TRUNCATED_NO_DETAILS, Card, fit, u16
from workers.telegram.routing import TOPICS_KEY, Router

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger

log = logging.getLogger("agentic.telegram")

CHANNEL = "telegram"
REF_PREFIX = "tg:"
RETRY_AFTER = "TelegramRetryAfter"
DETAILS_ID = "details"  # the 🔎 Details button names no approval: the bot reads the message it sits on
# After a successful post, the "sent" marker is what stops a retried activity from posting again:
# a failed write is retried here first (about 7 s in all) before the activity gives up.
SENT_MARK_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 3.5)
ASKING = {NotifyKind.QUESTION, NotifyKind.DIAGNOSIS, NotifyKind.REMINDER, NotifyKind.ESCALATION}


class CardState(BaseModel):
    """A message as the ledger keeps it (`tg:card:<chat>:<message id>`)."""

    chat_id: int
    message_id: int
    thread: int | None = None
    kind: NotifyKind
    text: str
    subject: str = ""
    incident_id: str | None = None
    approval_id: str | None = None
    plan_hash: str | None = None
    history: list[str] = Field(default_factory=list)
    buttons: bool = False
    photo: bool = False
    facts: str = ""
    choices: list[str] = Field(default_factory=list)  # the answers its buttons offer (empty: a plan's)
    pre: str = ""  # the diffs shown inline (short ones; long ones follow as files)

    def card(self) -> Card:
        return Card(
            kind=self.kind,
            text=self.text,
            subject=self.subject,
            plan_hash=self.plan_hash,
            history=self.history,
            facts=self.facts,
            pre=self.pre,
        )


class ApprovalLink(BaseModel):
    """What a button's `ref` stands for (`tg:ref:<ref>`): the approval and the plans shown for it."""

    approval_id: str
    incident_id: str | None = None
    hashes: dict[str, str] = Field(default_factory=dict)  # hash8 → full plan hash
    plans: dict[str, list[ToolCall]] = Field(default_factory=dict)  # hash8 → plan
    cards: list[str] = Field(default_factory=list)  # refs of the messages that carry its buttons
    trace: str = ""  # the question's traceparent: the press's span links to the incident's trace


def message_ref(chat_id: int, message_id: int) -> str:
    return f"{REF_PREFIX}{chat_id}:{message_id}"


def parse_ref(ref: str | None) -> tuple[int, int] | None:
    if not ref or not ref.startswith(REF_PREFIX):
        return None
    try:
        chat, mid = ref[len(REF_PREFIX) :].rsplit(":", 1)
        return int(chat), int(mid)
    except ValueError:
        return None


def now_hm() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def keyboard(
    secret: bytes,
    approval_id: str | None,
    plan_hash_: str | None,
    *,
    details: bool,
    choices: Sequence[str] = (),
) -> InlineKeyboardMarkup | None:
    """The buttons of a card: ✅ Approve (or 👀 Acknowledge when `choices` offer it: a question with
    nothing to run) · 🚫 Ignore · ✏️ Modify · 🔎 Details while it asks; 🔎 Details alone when cut."""
    rows: list[list[InlineKeyboardButton]] = []
    if approval_id and plan_hash_:
        first = (
            InlineKeyboardButton(
                "👀 Acknowledge", callback_data=signing.sign(secret, approval_id, plan_hash_, "acknowledged")
            )
            if "acknowledged" in choices
            else InlineKeyboardButton(
                "✅ Approve", callback_data=signing.sign(secret, approval_id, plan_hash_, "approved")
            )
        )
        rows.append(
            [
                first,
                InlineKeyboardButton(
                    "🚫 Ignore", callback_data=signing.sign(secret, approval_id, plan_hash_, "ignored")
                ),
            ]
        )
        rows.append(
            [
                InlineKeyboardButton(
                    "✏️ Modify", callback_data=signing.sign(secret, approval_id, plan_hash_, "modified")
                ),
                InlineKeyboardButton("🔎 Details", callback_data=signing.sign(secret, DETAILS_ID, None, "details")),
            ]
        )
    elif details:
        rows.append(
            [InlineKeyboardButton("🔎 Details", callback_data=signing.sign(secret, DETAILS_ID, None, "details"))]
        )
    return InlineKeyboardMarkup(rows) if rows else None


def telegram_failure(what: str, exc: TelegramError) -> ApplicationError:
    """A Bot API error as Temporal should see it: flood control retries after `retry_after`;
    a refused request (bad token, bot not in the chat, bad request) does not retry."""
    if isinstance(exc, RetryAfter):
        delay = exc._retry_after  # the timedelta behind the deprecated int property
        return ApplicationError(
            f"{what}: Telegram flood control, retry in {delay.total_seconds():.0f}s",
            type=RETRY_AFTER,
            next_retry_delay=max(delay, timedelta(seconds=1)),
        )
    if isinstance(exc, (Forbidden, InvalidToken, BadRequest)):
        return ApplicationError(
            f"{what}: Telegram refused it: {exc.message}", type=type(exc).__name__, non_retryable=True
        )
    return ApplicationError(f"{what}: {type(exc).__name__}: {exc.message}", type=type(exc).__name__)


class CardStore:
    """Cards, approval links, topics and sent keys in the ledger's `kv` table."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def card(self, chat_id: int, message_id: int) -> CardState | None:
        raw = await self.ledger.kv_get(f"tg:card:{chat_id}:{message_id}")
        return CardState.model_validate(raw) if raw is not None else None

    async def save_card(self, card: CardState) -> None:
        await self.ledger.kv_set(f"tg:card:{card.chat_id}:{card.message_id}", card.model_dump(mode="json"))

    @contextlib.asynccontextmanager
    async def editing(self, chat_id: int, message_id: int) -> AsyncIterator[CardState | None]:
        """The card to change, None when it is unknown. It stays locked until the block ends and is
        saved then as the block left it, so the edits of two writers (the worker's notification, a
        button press in the bot's process) are made one after the other, each on the other's
        state, and the message shows both. No other ledger call inside the block."""
        async with self.ledger.kv_locked(f"tg:card:{chat_id}:{message_id}") as slot:
            card = CardState.model_validate(slot.value) if slot.value is not None else None
            yield card
            if card is not None:
                slot.set(card.model_dump(mode="json"))

    async def link(self, ref: str) -> ApprovalLink | None:
        raw = await self.ledger.kv_get(f"tg:ref:{ref}")
        return ApprovalLink.model_validate(raw) if raw is not None else None

    async def add_link(
        self, approval_id: str, incident_id: str | None, plan: list[ToolCall], full_hash: str, card: str
    ) -> None:
        ref = signing.approval_ref(approval_id)
        trace = tracing.current_traceparent()

        def merged(raw: Any) -> Any:  # under the row lock: concurrent links are both kept
            link = (
                ApprovalLink.model_validate(raw)
                if raw is not None
                else ApprovalLink(approval_id=approval_id, incident_id=incident_id, trace=trace)
            )
            link.hashes[full_hash[:8]] = full_hash
            link.plans[full_hash[:8]] = list(plan)
            if card not in link.cards:
                link.cards.append(card)
            return link.model_dump(mode="json")

        await self.ledger.kv_update(f"tg:ref:{ref}", merged)

    async def topics(self) -> dict[str, int]:
        raw = await self.ledger.kv_get(TOPICS_KEY, {})
        return {str(k): int(v) for k, v in (raw or {}).items()}

    async def incident_card(self, incident_id: str) -> str | None:
        ref = await self.ledger.kv_get(f"tg:incident:{incident_id}")
        return str(ref) if ref else None


class TelegramNotifier:
    def __init__(self, bot: Bot, ledger: Ledger, chat_id: int, secret: bytes, router: Router | None = None) -> None:
        self.bot = bot
        self.ledger = ledger
        self.chat_id = chat_id
        self.secret = secret
        self.router = router or Router()
        self.store = CardStore(ledger)

    # -- the protocol ------------------------------------------------------------------------

    async def notify(self, inp: NotifyInput, key: str | None = None) -> NotifyResult:
        if key is not None:
            sent = await self.ledger.kv_get(f"tg:sent:{key}")
            if sent:
                return NotifyResult(message_ref=str(sent))
        attrs = {"messaging.system": "telegram", "agentic.notify_kind": inp.kind.value}
        with tracing.tracer().start_as_current_span("telegram send", kind=SpanKind.CLIENT, attributes=attrs) as span:
            try:
                ref = await self._deliver(inp, key)
            except TelegramError as exc:
                tracing.set_error(span, exc)
                raise telegram_failure(f"telegram {inp.kind.value}", exc) from exc
        return NotifyResult(message_ref=ref)

    async def facts(self, inp: NotifyInput) -> str:
        """The runbook's level and record (from the ledger) and the planner's confidence."""
        bits: list[str] = []
        if inp.runbook_id:
            row = await self.ledger.get_runbook(inp.runbook_id)
            stats = await self.ledger.runbook_stats(inp.runbook_id) if row is not None else None
            bits.append(f"📘 {inp.runbook_id}")
            if row is not None:
                bits.append(row.automation_level.value)
            if stats is not None:
                bits.append(f"record {stats.successes}/{stats.executions} succeeded")
        if inp.confidence is not None:
            bits.append(f"confidence {inp.confidence:.2f}")
        return " · ".join(bits)

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver(self, inp: NotifyInput, key: str | None) -> str:
        """Edit or post; then remember the message for `key`, then mark earlier cards (best effort:
        once the message is out, a failure must not make a retry post it again)."""
        full_hash = inp.plan_hash
        asking = bool(inp.approval_id and full_hash and inp.kind in ASKING)
        target = parse_ref(inp.edit_of)
        ref: str | None = None
        if target is not None and target[0] == self.chat_id:
            ref = await self._edit(inp, target[1], asking)
        if ref is None:
            ref = await self._post_new(inp, asking, key)
        elif key is not None:
            await self._mark_sent(key, ref)
        if inp.diffs:
            await self._diff_files(inp, ref, key)
        try:
            await self._marks(inp, ref)
        except TelegramError as exc:
            log.warning("telegram: %s sent, but earlier messages were not marked: %s", inp.kind.value, exc.message)
        return ref

    async def _mark_sent(self, key: str, ref: str) -> None:
        await self._after_send(ref, lambda: self.ledger.kv_set(f"tg:sent:{key}", ref))

    async def _after_send(self, ref: str, bookkeeping: Callable[[], Awaitable[None]]) -> None:
        """Run the ledger bookkeeping of a message that is already out. A ledger hiccup here must
        not fail the activity (its retry would post a second message, or leave the buttons of
        this one without their link), so the idempotent steps are retried for a while; only a
        ledger that stays down fails the activity."""
        for delay in (*SENT_MARK_DELAYS_S, None):
            try:
                await bookkeeping()
                return
            except Exception as exc:  # asyncpg and connection errors alike
                if delay is None:
                    log.error("telegram: %s was sent but not recorded; a retry may post it again: %s", ref, exc)
                    raise
                log.warning("telegram: recording %s failed (%s); retrying in %gs", ref, exc, delay)
                await asyncio.sleep(delay)

    async def _marks(self, inp: NotifyInput, ref: str) -> None:
        """Earlier cards learn what happened: the incident's card that it resolved, the
        question's cards that it was reminded, escalated or expired (not `ref`, the new post)."""
        if inp.kind == NotifyKind.RESOLVED and inp.incident_id:
            await self.mark_incident(inp.incident_id, f"✅ resolved at {now_hm()}")
        marks = {
            NotifyKind.REMINDER: "⏰ reminded at",
            NotifyKind.ESCALATION: "📣 escalated to Critical Alerts at",
            NotifyKind.EXPIRED: "⌛ expired at",
        }
        if inp.kind in marks and inp.approval_id:
            await self.mark_approval(
                inp.approval_id,
                f"{marks[inp.kind]} {now_hm()}",
                keep_buttons=inp.kind != NotifyKind.EXPIRED,
                skip=ref,
            )

    async def _post_new(self, inp: NotifyInput, asking: bool, key: str | None) -> str:
        full_hash = inp.plan_hash
        topics = await self.store.topics()
        thread = topics.get(self.router.topic_for(inp))
        card = CardState(
            chat_id=self.chat_id,
            message_id=0,
            thread=thread,
            kind=inp.kind,
            text=inp.text,
            subject=inp.incident_id or inp.approval_id or "",
            incident_id=inp.incident_id,
            approval_id=inp.approval_id if asking else None,
            plan_hash=full_hash if asking else None,
            buttons=asking,
            photo=bool(inp.photo),
            facts=await self.facts(inp),
            choices=list(inp.choices) if asking else [],
        )
        place_diffs(inp, card)
        msg = await self._post(card, inp.photo)
        card.message_id = msg.message_id
        ref = message_ref(self.chat_id, msg.message_id)

        async def bookkeeping() -> None:  # every step idempotent: `_after_send` may run it again
            if key is not None:  # first: a retry from here on returns this message instead of posting again
                await self.ledger.kv_set(f"tg:sent:{key}", ref)
            await self.store.save_card(card)
            if asking and inp.approval_id and full_hash:
                await self.store.add_link(inp.approval_id, inp.incident_id, list(inp.plan), full_hash, ref)
            first_card = inp.kind in (NotifyKind.QUESTION, NotifyKind.DIAGNOSIS, NotifyKind.DONE)
            if inp.incident_id and first_card and await self.store.incident_card(inp.incident_id) is None:
                await self.ledger.kv_set(f"tg:incident:{inp.incident_id}", ref)
            await self.ledger.record_notification(
                CHANNEL,
                incident_id=inp.incident_id,
                target=str(self.chat_id),
                thread=str(card.thread) if card.thread is not None else None,
                message_id=str(msg.message_id),
                kind=inp.kind.value,
                text=inp.text,
            )

        await self._after_send(ref, bookkeeping)
        return ref

    async def _post(self, card: CardState, photo: str | None) -> Message:
        try:
            return await self._send(card, photo)
        except BadRequest as exc:
            if card.thread is None or "thread not found" not in exc.message.lower():
                raise
            log.warning(
                "telegram: topic %s is gone; posting in the group's General topic (run `agentic telegram setup`)",
                card.thread,
            )
            card.thread = None
            return await self._send(card, photo)

    async def _send(self, card: CardState, photo: str | None) -> Message:
        if photo:
            caption, cut = card.card().render(CAPTION_LIMIT)
            try:
                data = await _read(photo)
            except OSError as exc:
                raise ApplicationError(f"telegram report: cannot read {photo}: {exc}", non_retryable=True) from exc
            return await self.bot.send_photo(
                chat_id=card.chat_id,
                message_thread_id=card.thread,
                photo=data,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(self.secret, None, None, details=cut),
            )
        html, cut = card.card().render(TEXT_LIMIT)
        markup = keyboard(self.secret, card.approval_id, card.plan_hash, details=cut, choices=card.choices)
        return await self.bot.send_message(
            chat_id=card.chat_id,
            message_thread_id=card.thread,
            text=html,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            disable_web_page_preview=True,
        )

    async def _edit(self, inp: NotifyInput, message_id: int, asking: bool) -> str | None:
        """Edit the card; None when it is gone (the caller posts anew)."""
        facts = await self.facts(inp)
        async with self.store.editing(self.chat_id, message_id) as card:
            if card is None:
                return None
            card.kind, card.text = inp.kind, inp.text
            card.approval_id = inp.approval_id if asking else None
            card.plan_hash = inp.plan_hash if asking else None
            card.buttons = asking
            card.choices = list(inp.choices) if asking else []
            card.facts = facts or card.facts
            if inp.incident_id and not card.incident_id:
                card.incident_id = inp.incident_id
            place_diffs(inp, card)
            try:
                await self.render_card(card)
            except BadRequest as exc:
                if "not found" in exc.message.lower():
                    log.warning("telegram: message %s to edit is gone; posting anew", message_id)
                    return None
                raise
        ref = message_ref(self.chat_id, message_id)
        if asking and inp.approval_id and inp.plan_hash:
            await self.store.add_link(inp.approval_id, inp.incident_id, list(inp.plan), inp.plan_hash, ref)
        await self._record_edit(card)
        return ref

    async def _diff_files(self, inp: NotifyInput, ref: str, key: str | None) -> None:
        """The diffs that did not fit the card, each as a file (sendDocument) replying to it in
        its topic, with a short caption; once per notification (`tg:sent:<key>/diff/<n>`)."""
        target = parse_ref(ref)
        card = await self.store.card(*target) if target is not None else None
        if card is None or card.pre:  # inline, or the card is unknown
            return
        for n, d in enumerate(inp.diffs, 1):
            mark = f"tg:sent:{key or ref}/diff/{n}"
            if await self.ledger.kv_get(mark):
                continue
            text = await self._whole_diff(d)
            name = re.sub(r"[^A-Za-z0-9._-]+", "-", inp.incident_id or "change").strip("-") or "change"
            caption = f"📎 {d.title}: {diff_summary(text)}" + (f" · for {inp.incident_id}" if inp.incident_id else "")
            caption += " · the change the plan commits, for the question above"
            caption_html, _ = fit(caption, CAPTION_LIMIT, TRUNCATED_NO_DETAILS)
            msg = await self.bot.send_document(
                chat_id=card.chat_id,
                message_thread_id=card.thread,
                document=text.encode(),
                filename=f"{name}-{n}.diff",
                caption=caption_html,
                parse_mode=ParseMode.HTML,
                reply_parameters=ReplyParameters(message_id=card.message_id, allow_sending_without_reply=True),
            )

            async def bookkeeping(doc_id: int = msg.message_id, caption: str = caption, mark: str = mark) -> None:
                await self.ledger.kv_set(mark, message_ref(card.chat_id, doc_id))
                await self.ledger.record_notification(
                    CHANNEL,
                    incident_id=inp.incident_id,
                    target=str(card.chat_id),
                    thread=str(card.thread) if card.thread is not None else None,
                    message_id=str(doc_id),
                    kind=inp.kind.value,
                    text=caption,
                )

            await self._after_send(message_ref(card.chat_id, msg.message_id), bookkeeping)

    async def _whole_diff(self, d: EvidenceDiff) -> str:
        """The diff, whole: a cut one from the ledger (the evidence call's recorded output)."""
        if not d.cut or not d.key:
            return d.diff
        row = await self.ledger.get_action(d.key)
        record = row.result if row is not None and isinstance(row.result, dict) else {}
        structured = record.get("structured")
        whole = structured.get("diff") if isinstance(structured, dict) else None
        if isinstance(whole, str) and whole.startswith(d.diff[:200]):
            return whole
        return d.diff + "\n… (cut: the ledger no longer holds the whole diff)\n"

    async def render_card(self, card: CardState) -> None:
        """Push the card's current state to its message (its buttons only while it asks); inside
        `CardStore.editing`, which saves it."""
        if card.photo:
            caption, cut = card.card().render(CAPTION_LIMIT)
            await _ignore_unchanged(
                self.bot.edit_message_caption(
                    chat_id=card.chat_id,
                    message_id=card.message_id,
                    caption=caption,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(self.secret, None, None, details=cut),
                )
            )
            return
        html, cut = card.card().render(TEXT_LIMIT)
        markup = keyboard(
            self.secret,
            card.approval_id if card.buttons else None,
            card.plan_hash,
            details=cut,
            choices=card.choices,
        )
        await _ignore_unchanged(
            self.bot.edit_message_text(
                chat_id=card.chat_id,
                message_id=card.message_id,
                text=html,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                disable_web_page_preview=True,
            )
        )

    async def _record_edit(self, card: CardState) -> None:
        """The card's text as it now stands (another writer's change may have followed this one's)
        onto its notification row."""
        card = await self.store.card(card.chat_id, card.message_id) or card
        row = await self.ledger.find_notification(CHANNEL, str(card.chat_id), str(card.message_id))
        text = "\n".join([*card.history, card.text])
        if row is not None:
            await self.ledger.update_notification(row.id, text=text, kind=card.kind.value)

    # -- marks on earlier cards ----------------------------------------------------------------

    async def add_history(self, chat_id: int, message_id: int, line: str, *, keep_buttons: bool) -> CardState | None:
        async with self.store.editing(chat_id, message_id) as card:
            if card is None:
                return None
            if line not in card.history:  # a retried mark does not repeat itself
                card.history.append(line)
            card.buttons = card.buttons and keep_buttons
            try:
                await self.render_card(card)
            except BadRequest as exc:
                log.warning("telegram: cannot mark message %s: %s", message_id, exc.message)
        await self._record_edit(card)
        return card

    async def mark_approval(self, approval_id: str, line: str, *, keep_buttons: bool, skip: str | None = None) -> None:
        link = await self.store.link(signing.approval_ref(approval_id))
        for ref in link.cards if link is not None else []:
            if ref == skip:
                continue
            target = parse_ref(ref)
            if target is not None:
                await self.add_history(target[0], target[1], line, keep_buttons=keep_buttons)

    async def mark_incident(self, incident_id: str, line: str) -> None:
        target = parse_ref(await self.store.incident_card(incident_id))
        if target is not None:
            await self.add_history(target[0], target[1], line, keep_buttons=False)


def place_diffs(inp: NotifyInput, card: CardState) -> None:
    """Show the notification's diffs in the card when the card still fits one message with them
    whole (`card.pre`); otherwise they go as files (`_diff_files`) and the card says so."""
    card.pre = ""
    if not inp.diffs:
        return
    if not any(d.cut for d in inp.diffs):
        card.pre = "\n".join(f"# {d.title}\n{d.diff.rstrip()}" for d in inp.diffs)
        html, cut = card.card().render(TEXT_LIMIT)
        if not cut and u16(html) <= TEXT_LIMIT:
            return
        card.pre = ""
    n = len(inp.diffs)
    note = f"📎 {'The diff follows' if n == 1 else f'The {n} diffs follow'} as {'a file' if n == 1 else 'files'}."
    if note not in card.text:
        card.text = f"{card.text}\n{note}"


async def _ignore_unchanged(call: Any) -> None:
    try:
        await call
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise


async def _read(path: str) -> bytes:
    return await asyncio.to_thread(Path(path).read_bytes)


# The bot's working state in the ledger's kv table (cards, button links, sent keys, pending
# modify prompts, incident cards). It is only needed while questions can still be answered;
# `purge_state` drops what was not touched for a retention period (the topics stay).
STATE_PREFIXES = ("tg:card:", "tg:ref:", "tg:sent:", "tg:modify:", "tg:incident:")


async def purge_state(ledger: Ledger, older_than: timedelta) -> int:
    """Delete the Telegram state not written for `older_than`; return the number of keys."""
    return sum([await ledger.kv_purge(prefix, older_than) for prefix in STATE_PREFIXES])
