"""The bot: a python-telegram-bot `Application` that turns button presses into Temporal updates.

A press on ✅ Approve, 🚫 Ignore or ✏️ Modify is checked in this order, and the first failure
refuses it (the callback is answered with the reason, shown as an alert, and the refusal is a
ledger `notifications` row of kind "refused"):

1. the callback data parses (`signing.parse`): else "not a button of this platform";
2. it comes from the configured chat: else "wrong chat";
3. the user is in `AGENTIC_TELEGRAM_APPROVERS` (when set): else "not allowed";
4. its ref names a question this platform asked (`tg:ref:<ref>` in the ledger's kv) and its
   signature is right for that approval: else "forged button";
5. the `decide` update to the `ApprovalWorkflow`; its validator's reason is passed on as it
   is ("plan changed …", "already decided by …", "… expired …", "… may not answer …"). An
   approval that has already closed is queried for why ("already decided", "expired",
   "withdrawn").

Telegram users answer as `tg:<user id>`. An accepted answer edits every card of the question
("✅ Approved by @name at …") and removes its buttons. ✏️ Modify asks for the changed
arguments as a reply (`memory=2Gi value="512Mi"`), validates them against the tools' input
schemas, then sends the decision as `modified` and shows the new plan and its hash.
🔎 Details posts the card's full text. Commands: /incidents, /status ID, /runbooks.

Long because the press checks, the Modify conversation, the commands and the webhook's
strict reading share one Application and its refusal bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from jsonschema import Draft202012Validator
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import ForceReply, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.telemetry import tracing
from agentic_core.incident import (
    QUERY_APPROVAL,
    UPDATE_DECIDE,
    ApprovalState,
    DecideInput,
    DecideResult,
    plan_hash,
)
from agentic_core.models import ToolCall
from workers.errors import AgenticError
from workers.telegram import signing
from workers.telegram.commands import GroupCommands
from workers.telegram.modify import apply_arguments, call_text, parse_assignments
from workers.telegram.notifier import CHANNEL, DETAILS_ID, CardStore, TelegramNotifier, now_hm
from workers.telegram.render import chunks, esc
from workers.telegram.webhook import WebhookRefusal, read_payload, update_problem
from workers.telemetry import metrics_endpoint

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger

log = logging.getLogger("agentic.telegram.bot")

T = TypeVar("T")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram"
SchemaSource = Callable[[str], Awaitable[dict[str, Any] | None]]
OPEN_WAIT_TRIES = 4  # a press that beats the question's start waits for it, up to 4 × 0.5 s
OPEN_WAIT_S = 0.5
VERBS = {
    "approved": "✅ Approved",
    "acknowledged": "👀 Acknowledged",
    "ignored": "🚫 Ignored",
    "modified": "✏️ Modified",
}


class PendingModify(BaseModel):
    approval_id: str
    incident_id: str | None = None
    plan_hash: str
    plan: list[ToolCall] = Field(default_factory=list)
    user_id: int


@dataclass
class Outcome:
    accepted: bool
    text: str
    approval_id: str | None = None
    incident_id: str | None = None


@dataclass
class BotConfig:
    chat_id: int
    secret: bytes
    approvers: list[int] = field(default_factory=list)  # empty: nobody (the process refuses to start so)
    webhook_secret: str | None = None


def build_application(token: str, api_base: str, *, polling: bool) -> Application[Any, Any, Any, Any, Any, Any]:
    base = api_base.rstrip("/")
    builder = (
        Application.builder()
        .token(token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .concurrent_updates(True)
    )
    if not polling:
        builder = builder.updater(None)
    return builder.build()


async def flood_retry(call: Callable[[], Awaitable[T]], tries: int = 3, max_wait_s: float = 15.0) -> T:
    """Run a Bot API call again after Telegram's `retry_after` (429), a few times, when the wait is short."""
    for attempt in range(tries):
        try:
            return await call()
        except RetryAfter as exc:
            wait = exc._retry_after.total_seconds()
            if attempt == tries - 1 or wait > max_wait_s:
                raise
            log.warning("Telegram flood control: retrying in %.0fs", wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class TelegramBot(GroupCommands):
    """The handlers, the Temporal client and the ledger; `app` is the PTB Application."""

    cfg: BotConfig

    def __init__(
        self,
        app: Application[Any, Any, Any, Any, Any, Any],
        client: Client,
        ledger: Ledger,
        cfg: BotConfig,
        *,
        schemas: SchemaSource | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.ledger = ledger
        self.cfg = cfg
        self.schemas = schemas
        self.store = CardStore(ledger)
        self.cards = TelegramNotifier(app.bot, ledger, cfg.chat_id, cfg.secret)
        app.add_handler(CallbackQueryHandler(self.on_callback))
        app.add_handler(CommandHandler("incidents", self.cmd_incidents))
        app.add_handler(CommandHandler("status", self.cmd_status))
        app.add_handler(CommandHandler("runbooks", self.cmd_runbooks))
        app.add_handler(MessageHandler(filters.REPLY & filters.TEXT & ~filters.COMMAND, self.on_reply))
        app.add_error_handler(self.on_error)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, poll_timeout: float = 10.0, webhook_url: str | None = None) -> None:
        try:
            await self.app.initialize()
        except InvalidToken:  # its message holds the token: never show it
            raise AgenticError("Telegram rejected AGENTIC_TELEGRAM_TOKEN (check it with @BotFather)") from None
        await self.app.start()
        if webhook_url is not None:
            await self.app.bot.set_webhook(
                webhook_url, secret_token=self.cfg.webhook_secret, allowed_updates=["message", "callback_query"]
            )
        else:
            assert self.app.updater is not None
            await self.app.updater.start_polling(
                timeout=int(poll_timeout), allowed_updates=["message", "callback_query"], drop_pending_updates=False
            )

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    def http_app(self, health: Callable[[], Awaitable[tuple[bool, str]]] | None = None) -> Starlette:
        """GET /healthz, and POST /telegram (the webhook; checks the secret_token header)."""

        async def healthz(request: Request) -> Response:
            ok, detail = await health() if health is not None else (True, "ok")
            return JSONResponse({"ok": ok, "detail": detail}, status_code=200 if ok else 503)

        async def webhook(request: Request) -> Response:
            expected = self.cfg.webhook_secret
            given = request.headers.get(SECRET_HEADER, "")
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning("webhook: refused a call with a wrong secret_token")
                return JSONResponse({"error": "wrong secret_token"}, status_code=403)
            try:
                payload = await read_payload(request)
            except WebhookRefusal as exc:
                log.info("webhook: %d: %s", exc.status, exc.message)
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            problem = update_problem(payload)
            if problem is None:
                try:
                    update = Update.de_json(payload, self.app.bot)
                except Exception as exc:  # what python-telegram-bot cannot read, past the shape checked
                    problem = f"not a Telegram update: {type(exc).__name__}"
            if problem is not None:
                log.info("webhook: 400: %s", problem)
                return JSONResponse({"error": problem[:500]}, status_code=400)
            await self.app.update_queue.put(update)
            return JSONResponse({"ok": True})

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 404
            message = {404: f"no such route (the webhook is POST {WEBHOOK_PATH})", 405: "method not allowed here"}
            return JSONResponse({"error": message.get(status, "bad request")}, status_code=status)

        return Starlette(
            routes=[
                Route("/healthz", healthz, methods=["GET"]),
                Route("/metrics", metrics_endpoint, methods=["GET"]),  # Prometheus (docs/observability.md)
                Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            ],
            exception_handlers={HTTPException: http_error},
        )

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram handler failed: %s", context.error, exc_info=context.error)

    # -- presses -------------------------------------------------------------------------------

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        q = update.callback_query
        if q is None:
            return
        msg = q.message
        chat_id = msg.chat.id if msg is not None else None
        message_id = msg.message_id if msg is not None else None
        thread = getattr(msg, "message_thread_id", None) if msg is not None else None
        try:
            out = await self.press(q.data or "", q.from_user.id, q.from_user.username, chat_id, message_id, thread)
        except Exception as exc:  # answer anyway: a press left unanswered spins on the phone
            log.exception("press not handled")
            out = Outcome(
                False, f"Not recorded: the platform cannot be reached right now ({type(exc).__name__}); retry"
            )
        if not out.accepted:  # the audit row first: once the presser sees the refusal, it is on record
            await self._record_refusal(q.id, q.from_user.id, chat_id, out)
        with contextlib.suppress(TelegramError):
            await flood_retry(lambda: q.answer(out.text[:200], show_alert=not out.accepted))

    async def press(
        self,
        data: str,
        user_id: int,
        username: str | None,
        chat_id: int | None,
        message_id: int | None,
        thread: int | None,
    ) -> Outcome:
        try:
            cb = signing.parse(data)
        except signing.BadCallback as exc:
            return Outcome(False, f"Refused: {exc}")
        link = await self.store.link(cb.ref) if cb.choice != "details" else None
        aid = link.approval_id if link is not None else None
        iid = link.incident_id if link is not None else None
        if chat_id != self.cfg.chat_id:
            return Outcome(False, "Refused: wrong chat: this bot answers only in its operations group", aid, iid)
        if user_id not in self.cfg.approvers:
            return Outcome(False, f"Refused: not allowed: tg:{user_id} is not an approver", aid, iid)
        if cb.choice == "details":
            if not signing.verify(self.cfg.secret, DETAILS_ID, cb):
                return Outcome(False, "Refused: forged button (bad signature)")
            return await self._details(chat_id, message_id, thread)
        if link is None:
            return Outcome(False, "Refused: forged button (no question of this platform has it)")
        if not signing.verify(self.cfg.secret, link.approval_id, cb):
            return Outcome(False, "Refused: forged button (bad signature)", aid, iid)
        full_hash = link.hashes.get(cb.hash8, cb.hash8)
        who = f"@{username}" if username else f"tg:{user_id}"
        if cb.choice == "modified":
            closed = await self._not_answerable(link.approval_id, full_hash)
            if closed:
                return Outcome(False, f"Refused: {closed}", aid, iid)
            return await self._ask_modify(
                link.approval_id, iid, full_hash, link.plans.get(cb.hash8, []), user_id, who, thread, message_id
            )
        attrs = {"agentic.approval_id": link.approval_id, "agentic.decision": cb.choice}
        if iid:
            attrs["agentic.incident_id"] = iid
        # the press's own trace, linked to the incident's (the question's span, kept with the buttons)
        with tracing.tracer().start_as_current_span(
            "telegram press", kind=SpanKind.SERVER, links=tracing.links_to(link.trace), attributes=attrs
        ):
            return await self.decide(
                link.approval_id,
                iid,
                DecideInput(choice=cb.choice, by=f"tg:{user_id}", plan_hash=full_hash, comment=f"Telegram {who}"),
                who,
            )

    async def decide(self, approval_id: str, incident_id: str | None, inp: DecideInput, who: str) -> Outcome:
        handle = self.client.get_workflow_handle(approval_id)
        for attempt in range(OPEN_WAIT_TRIES + 1):
            try:
                res = await handle.execute_update(UPDATE_DECIDE, inp, result_type=DecideResult)
                break
            except WorkflowUpdateFailedError as exc:
                cause = exc.cause
                reason = getattr(cause, "message", None) or str(cause)
                return Outcome(False, f"Refused: {reason}", approval_id, incident_id)
            except RPCError as exc:
                reason, not_yet = await self._closed_reason(approval_id, exc)
                if not_yet and attempt < OPEN_WAIT_TRIES:
                    # The buttons go out with the diagnosis, just before the question opens.
                    await asyncio.sleep(OPEN_WAIT_S)
                    continue
                return Outcome(False, f"Refused: {reason}", approval_id, incident_id)
        else:  # pragma: no cover - the loop always breaks or returns
            raise AssertionError("unreachable")
        line = f"{VERBS.get(res.choice, res.choice)} by {who} ({inp.by}) at {now_hm()}"
        if res.choice == "modified" and inp.modified_plan is not None:
            line += f": new plan {plan_hash(inp.modified_plan)[:12]}"
        try:
            await flood_retry(lambda: self.cards.mark_approval(approval_id, line, keep_buttons=False))
        except TelegramError as exc:
            log.warning("decision on %s recorded, but its message was not edited: %s", approval_id, exc)
        return Outcome(
            True, f"{VERBS.get(res.choice, res.choice)}: recorded for {approval_id}", approval_id, incident_id
        )

    async def _not_answerable(self, approval_id: str, full_hash: str) -> str | None:
        """Before asking for a modification: why the question cannot take an answer, if it cannot."""
        try:
            st = await self.client.get_workflow_handle(approval_id).query(QUERY_APPROVAL, result_type=ApprovalState)
        except RPCError:
            return None  # not open yet: the answer will tell
        if st.result is not None:
            if st.result.choice == "expired":
                return f"approval {approval_id} expired at {st.result.decided_at}"
            return f"approval {approval_id} was already decided by {st.result.by} ({st.result.choice})"
        if st.request.plan_hash != full_hash:
            shown, asked = full_hash[:12], st.request.plan_hash[:12]
            return f"plan changed: the button is for plan {shown}, the question is about {asked}"
        return None

    async def _closed_reason(self, approval_id: str, exc: RPCError) -> tuple[str, bool]:
        """Why an update could not reach the approval: it closed (decided, expired, withdrawn) or
        is not open; the flag says "no such workflow (yet)"."""
        try:
            st = await self.client.get_workflow_handle(approval_id).query(QUERY_APPROVAL, result_type=ApprovalState)
        except RPCError as qexc:
            if qexc.status == RPCStatusCode.NOT_FOUND:
                return f"approval {approval_id} is not open (not asked yet, or gone)", True
            return f"cannot reach approval {approval_id}: {exc.message}", False
        done = st.result
        if done is None:
            return f"approval {approval_id} was withdrawn (the alert resolved before an answer)", False
        if done.choice == "expired":
            return f"approval {approval_id} expired at {done.decided_at}", False
        return f"approval {approval_id} was already decided by {done.by} ({done.choice})", False

    async def _record_refusal(self, press_id: str, user_id: int, chat_id: int | None, out: Outcome) -> None:
        try:
            await self.ledger.record_notification(
                CHANNEL,
                incident_id=out.incident_id,
                target=str(chat_id if chat_id is not None else ""),
                message_id=_pg_text(f"refused:{press_id}"),
                kind="refused",
                text=_pg_text(f"tg:{user_id} on {out.approval_id or '?'}: {out.text}"),
            )
        except Exception as exc:  # the answer was given; the audit row is best effort, loudly
            log.error("refusal not recorded in the ledger: %s", exc)

    # -- details -------------------------------------------------------------------------------

    async def _details(self, chat_id: int | None, message_id: int | None, thread: int | None) -> Outcome:
        card = await self.store.card(chat_id, message_id) if chat_id is not None and message_id is not None else None
        if card is None:
            return Outcome(False, "No details kept for this message")
        for piece in chunks("\n".join([*card.history, card.text])):
            await self.app.bot.send_message(
                chat_id=card.chat_id,
                message_thread_id=card.thread,
                text=piece,
                parse_mode=ParseMode.HTML,
                reply_to_message_id=card.message_id,
            )
        return Outcome(True, "🔎 Full text posted below")

    # -- modify --------------------------------------------------------------------------------

    async def _ask_modify(
        self,
        approval_id: str,
        incident_id: str | None,
        full_hash: str,
        plan: list[ToolCall],
        user_id: int,
        who: str,
        thread: int | None,
        message_id: int | None,
    ) -> Outcome:
        args = sorted({k for c in plan for k in c.arguments})
        example = f"{args[0]}=…" if args else "name=value"
        lines = [
            f"✏️ {esc(who)}: reply to this message with the changed arguments, e.g. <code>{esc(example)}</code>",
            f"Plan <code>{esc(full_hash[:12])}</code>:",
            *(f"  {i + 1}. <code>{esc(call_text(c))}</code>" for i, c in enumerate(plan)),
        ]
        prompt = await self.app.bot.send_message(
            chat_id=self.cfg.chat_id,
            message_thread_id=thread,
            text="\n".join(lines),
            parse_mode=ParseMode.HTML,
            reply_to_message_id=message_id,
            reply_markup=ForceReply(selective=True, input_field_placeholder=example),
        )
        pending = PendingModify(
            approval_id=approval_id, incident_id=incident_id, plan_hash=full_hash, plan=plan, user_id=user_id
        )
        await self.ledger.kv_set(f"tg:modify:{self.cfg.chat_id}:{prompt.message_id}", pending.model_dump(mode="json"))
        return Outcome(True, "✏️ Reply to the prompt with the changed arguments", approval_id, incident_id)

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is None or msg.reply_to_message is None or msg.from_user is None or msg.chat.id != self.cfg.chat_id:
            return
        key = f"tg:modify:{msg.chat.id}:{msg.reply_to_message.message_id}"
        raw = await self.ledger.kv_get(key)
        if raw is None:
            return
        pending = PendingModify.model_validate(raw)
        user = msg.from_user
        who = f"@{user.username}" if user.username else f"tg:{user.id}"
        out = await self.modify(pending, user.id, who, msg.text or "")
        if out.accepted:
            await self.ledger.kv_set(key, None)
        else:
            await self._record_refusal(f"{msg.chat.id}:{msg.message_id}", user.id, msg.chat.id, out)
        await flood_retry(lambda: msg.reply_text(out.text, parse_mode=ParseMode.HTML))

    async def modify(self, pending: PendingModify, user_id: int, who: str, text: str) -> Outcome:
        aid, iid = pending.approval_id, pending.incident_id
        if user_id != pending.user_id:
            return Outcome(False, f"Refused: only tg:{pending.user_id} answers this prompt", aid, iid)
        if user_id not in self.cfg.approvers:
            return Outcome(False, f"Refused: not allowed: tg:{user_id} is not an approver", aid, iid)
        try:
            new_plan = apply_arguments(pending.plan, parse_assignments(text))
        except ValueError as exc:
            return Outcome(False, f"❌ {esc(str(exc))}. Reply again to try once more.", aid, iid)
        problems = await self._schema_problems(new_plan)
        if problems:
            return Outcome(
                False, "❌ invalid arguments: " + esc("; ".join(problems)) + ". Reply again to try once more.", aid, iid
            )
        out = await self.decide(
            aid,
            iid,
            DecideInput(
                choice="modified",
                by=f"tg:{user_id}",
                plan_hash=pending.plan_hash,
                modified_plan=new_plan,
                comment=f"Telegram {who}: {text}",
            ),
            who,
        )
        if not out.accepted:
            out.text = esc(out.text)
            return out
        new_hash = plan_hash(new_plan)
        lines = [
            f"✏️ Modified plan <code>{esc(new_hash[:12])}</code>, recorded as <b>modified</b> by {esc(who)}:",
            *(f"  {i + 1}. <code>{esc(call_text(c))}</code>" for i, c in enumerate(new_plan)),
        ]
        return Outcome(True, "\n".join(lines), aid, iid)

    async def _schema_problems(self, plan: list[ToolCall]) -> list[str]:
        problems: list[str] = []
        if self.schemas is None:
            return problems
        for c in plan:
            schema = await self.schemas(c.tool)
            if not schema:
                continue
            for err in sorted(Draft202012Validator(schema).iter_errors(c.arguments), key=lambda e: list(e.path)):
                where = ".".join(str(p) for p in err.path) or "arguments"
                problems.append(f"{c.tool}.{where}: {err.message}")
        return problems


def _pg_text(text: str) -> str:
    """Text PostgreSQL can store: a NUL (which an update's strings may carry) becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


async def temporal_health(client: Client) -> tuple[bool, str]:
    try:
        await client.service_client.check_health()
    except Exception as exc:  # any failure means "not ready"
        return False, f"Temporal unreachable: {type(exc).__name__}"
    return True, "ok"
