"""A Telegram Bot API emulator for tests: an HTTP server speaking the real Bot API wire format.

`POST|GET /bot<TOKEN>/<method>` with form-encoded, JSON or multipart bodies (object
parameters such as `reply_markup` JSON-encoded inside form fields, as python-telegram-bot
sends them); answers `{"ok": true, "result": …}` or
`{"ok": false, "error_code": N, "description": …, "parameters": {"retry_after": N}}`.

Methods: getMe, getUpdates (long polling), setWebhook, deleteWebhook, getWebhookInfo,
sendMessage, editMessageText, editMessageCaption, editMessageReplyMarkup,
answerCallbackQuery, createForumTopic, sendPhoto, sendDocument (multipart: the file's bytes and
name; the Message has `document`). Like the real server it checks the HTML
(`parse_mode=HTML`: known tags only, entities well formed), the length limits (4096 text,
1024 caption) and "message is not modified".

State: messages per chat (with their topic thread, reply markup and edit history), callback
answers, topics, the webhook. Tests inject updates (`press`, `say`): they go to getUpdates,
or to the webhook with its `secret_token` when one is set; `fail(method, times, retry_after)`
answers the next calls with 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.env import free_port
from tests.support.http_server import LoopServer

BOT_ID = 7000000001
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def parse_html(text: str) -> str:
    """The plain text of a Bot API HTML message, or ApiError like the real server's."""
    stack: list[str] = []
    pos = 0
    out: list[str] = []
    for m in _TAG.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if tag not in ALLOWED_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
        if closing:
            if not stack or stack[-1] != tag:
                raise ApiError(400, f'Bad Request: can\'t parse entities: unmatched end tag "{tag}"')
            stack.pop()
        else:
            stack.append(tag)
    out.append(text[pos:])
    if stack:
        raise ApiError(400, f'Bad Request: can\'t parse entities: unclosed start tag "{stack[-1]}"')
    plain = "".join(out)
    if "<" in plain or ">" in plain:
        raise ApiError(400, "Bad Request: can't parse entities: unexpected '<' or '>'")
    for amp in re.finditer("&", plain):
        if not _ENTITY.match(plain, amp.start()):
            raise ApiError(400, "Bad Request: can't parse entities: unescaped '&'")
    return html.unescape(plain)


@dataclass
class Stored:
    chat_id: int
    message_id: int
    thread: int | None
    text: str  # plain text, as a client shows it
    html: str  # what the bot sent
    reply_markup: dict[str, Any] | None = None
    photo: bytes | None = None
    document: bytes | None = None
    file_name: str = ""
    reply_to: int | None = None
    date: int = field(default_factory=lambda: int(time.time()))
    edits: list[dict[str, Any]] = field(default_factory=list)  # earlier versions
    from_bot: bool = True
    from_user: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": {"id": self.chat_id, "type": "supergroup", "title": "homelab ops", "is_forum": True},
            "from": self.from_user
            or {"id": BOT_ID, "is_bot": True, "first_name": "agentic", "username": "agentic_bot"},
        }
        if self.thread is not None:
            msg["message_thread_id"] = self.thread
            msg["is_topic_message"] = True
        if self.photo is not None:
            msg["photo"] = [
                {
                    "file_id": f"photo-{self.message_id}",
                    "file_unique_id": f"u{self.message_id}",
                    "width": 800,
                    "height": 400,
                    "file_size": len(self.photo),
                }
            ]
            msg["caption"] = self.text
        elif self.document is not None:
            msg["document"] = {
                "file_id": f"document-{self.message_id}",
                "file_unique_id": f"d{self.message_id}",
                "file_name": self.file_name,
                "mime_type": "text/x-diff" if self.file_name.endswith(".diff") else "application/octet-stream",
                "file_size": len(self.document),
            }
            if self.text:
                msg["caption"] = self.text
        else:
            msg["text"] = self.text
        if self.reply_to is not None:
            msg["reply_to_message"] = {"message_id": self.reply_to, "date": self.date, "chat": msg["chat"]}
        if self.reply_markup and "inline_keyboard" in self.reply_markup:  # Message.reply_markup: inline only
            msg["reply_markup"] = self.reply_markup
        return msg


class BotApiEmulator:
    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.port = free_port()
        self.messages: dict[tuple[int, int], Stored] = {}
        self._ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._topic_ids = itertools.count(100)
        self.topics: dict[int, dict[str, Any]] = {}  # thread id → ForumTopic
        self.answers: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[int]] = defaultdict(list)  # method → retry_after of the next 429s
        self.rejected_429: dict[str, int] = defaultdict(int)
        self.webhook: dict[str, Any] | None = None
        self.webhook_status: list[int] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._callback_ids = itertools.count(1)
        self._http = LoopServer()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `AGENTIC_TELEGRAM_API_BASE` should be."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])
        await self._http.start(app, self.port)

    async def stop(self) -> None:
        await self._http.stop(on_exit=self._new_update.set)  # wake long polls so the server can drain

    # -- test controls -------------------------------------------------------------------------

    def fail(self, method: str, times: int, retry_after: int = 1) -> None:
        """The next `times` calls of `method` get 429 Too Many Requests with `retry_after`."""
        self.failures[method] += [retry_after] * times

    def user(self, user_id: int, username: str | None = None) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": username or f"user{user_id}",
            "username": username or f"user{user_id}",
        }

    async def press(self, user_id: int, chat_id: int, message_id: int, data: str, username: str | None = None) -> str:
        """A user presses a button with `data` under message `message_id` (which may belong to another chat)."""
        msg = self.messages.get((chat_id, message_id))
        message = msg.as_json() if msg is not None else Stored(chat_id, message_id, None, "", "").as_json()
        cq_id = str(next(self._callback_ids))
        await self.push(
            {
                "callback_query": {
                    "id": cq_id,
                    "from": self.user(user_id, username),
                    "message": message,
                    "chat_instance": str(chat_id),
                    "data": data,
                }
            }
        )
        return cq_id

    async def say(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        thread: int | None = None,
        reply_to: int | None = None,
        username: str | None = None,
    ) -> Stored:
        """A user writes a message (a command, or a reply to `reply_to`)."""
        mid = next(self._ids[chat_id])
        stored = Stored(
            chat_id,
            mid,
            thread,
            text,
            html.escape(text),
            reply_to=reply_to,
            from_bot=False,
            from_user=self.user(user_id, username),
        )
        self.messages[(chat_id, mid)] = stored
        msg = stored.as_json()
        if text.startswith("/"):
            cmd = text.split()[0]
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(cmd)}]
        if reply_to is not None and (chat_id, reply_to) in self.messages:
            msg["reply_to_message"] = self.messages[(chat_id, reply_to)].as_json()
        await self.push({"message": msg})
        return stored

    async def push(self, update: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), **update}
        if self.webhook is not None:
            headers = {"Content-Type": "application/json"}
            if self.webhook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.post(self.webhook["url"], content=json.dumps(update), headers=headers)
            self.webhook_status.append(r.status_code)
            return
        self._updates.append(update)
        self._new_update.set()

    def answer_for(self, callback_query_id: str) -> dict[str, Any] | None:
        return next((a for a in self.answers if a["callback_query_id"] == callback_query_id), None)

    async def wait_answer(self, callback_query_id: str, within_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while (a := self.answer_for(callback_query_id)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to callback {callback_query_id}; answers: {self.answers}")
            await asyncio.sleep(0.02)
        return a

    def in_thread(self, chat_id: int, thread: int | None) -> list[Stored]:
        return sorted(
            (m for m in self.messages.values() if m.chat_id == chat_id and m.thread == thread and m.from_bot),
            key=lambda m: m.message_id,
        )

    def bot_messages(self, chat_id: int) -> list[Stored]:
        return sorted(
            (m for m in self.messages.values() if m.chat_id == chat_id and m.from_bot), key=lambda m: m.message_id
        )

    # -- the API -------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        method = request.path_params["method"]
        params = await _params(request)
        self.calls.append((method, params))
        try:
            if self.failures.get(method):
                retry_after = self.failures[method].pop(0)
                self.rejected_429[method] += 1
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as exc:
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            return JSONResponse(body, status_code=exc.code)
        return JSONResponse({"ok": True, "result": result})

    async def _m_getMe(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "agentic",
            "username": "agentic_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getUpdates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        timeout = float(p.get("timeout") or 0)
        if not self._updates and timeout > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout)
        limit = int(p.get("limit") or 100)
        return self._updates[:limit]

    async def _m_setWebhook(self, p: dict[str, Any]) -> bool:
        self.webhook = {"url": p["url"], "secret_token": p.get("secret_token")}
        return True

    async def _m_deleteWebhook(self, p: dict[str, Any]) -> bool:
        self.webhook = None
        if _truthy(p.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _render(self, text: str, parse_mode: str | None, limit: int, what: str) -> str:
        plain = parse_html(text) if (parse_mode or "").upper() == "HTML" else text
        if not plain.strip():
            raise ApiError(400, f"Bad Request: {what} is empty")
        if len(plain.encode("utf-16-le")) // 2 > limit:  # Telegram counts UTF-16 code units
            raise ApiError(
                400,
                "Bad Request: message is too long"
                if what == "message text"
                else "Bad Request: message caption is too long",
            )
        return plain

    async def _m_sendMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        plain = self._render(p["text"], p.get("parse_mode"), 4096, "message text")
        thread = int(p["message_thread_id"]) if p.get("message_thread_id") not in (None, "") else None
        if thread is not None and thread not in self.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        reply_to = _reply_to(p)
        mid = next(self._ids[chat_id])
        stored = Stored(chat_id, mid, thread, plain, p["text"], reply_markup=_markup(p), reply_to=reply_to)
        self.messages[(chat_id, mid)] = stored
        return stored.as_json()

    async def _m_sendPhoto(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        photo = p.get("photo")
        if not isinstance(photo, bytes) or not photo:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        caption = p.get("caption") or ""
        plain = self._render(caption, p.get("parse_mode"), 1024, "caption") if caption else ""
        thread = int(p["message_thread_id"]) if p.get("message_thread_id") not in (None, "") else None
        mid = next(self._ids[chat_id])
        stored = Stored(chat_id, mid, thread, plain, caption, reply_markup=_markup(p), photo=photo)
        self.messages[(chat_id, mid)] = stored
        return stored.as_json()

    async def _m_sendDocument(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        document = p.get("document")
        if not isinstance(document, bytes) or not document:
            raise ApiError(400, "Bad Request: there is no document in the request")
        if len(document) > 50 * 1024 * 1024:
            raise ApiError(413, "Request Entity Too Large")
        caption = p.get("caption") or ""
        plain = self._render(caption, p.get("parse_mode"), 1024, "caption") if caption else ""
        thread = int(p["message_thread_id"]) if p.get("message_thread_id") not in (None, "") else None
        if thread is not None and thread not in self.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        reply_to = _reply_to(p)
        if reply_to is not None and (chat_id, reply_to) not in self.messages:
            raise ApiError(400, "Bad Request: message to be replied not found")
        mid = next(self._ids[chat_id])
        stored = Stored(
            chat_id,
            mid,
            thread,
            plain,
            caption,
            reply_markup=_markup(p),
            document=document,
            file_name=str(p.get("document#filename") or "document"),
            reply_to=reply_to,
        )
        self.messages[(chat_id, mid)] = stored
        return stored.as_json()

    def _message(self, p: dict[str, Any]) -> Stored:
        key = (int(p["chat_id"]), int(p["message_id"]))
        if key not in self.messages:
            raise ApiError(400, "Bad Request: message to edit not found")
        return self.messages[key]

    def _edit(self, msg: Stored, text: str, html_: str, markup: dict[str, Any] | None) -> dict[str, Any]:
        if text == msg.text and markup == msg.reply_markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup"
                " are exactly the same as a current content and reply markup of the message",
            )
        msg.edits.append({"text": msg.text, "html": msg.html, "reply_markup": msg.reply_markup})
        msg.text, msg.html, msg.reply_markup = text, html_, markup
        return msg.as_json()

    async def _m_editMessageText(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(p)
        plain = self._render(p["text"], p.get("parse_mode"), 4096, "message text")
        return self._edit(msg, plain, p["text"], _markup(p))

    async def _m_editMessageCaption(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(p)
        caption = p.get("caption") or ""
        plain = self._render(caption, p.get("parse_mode"), 1024, "caption") if caption else ""
        return self._edit(msg, plain, caption, _markup(p))

    async def _m_editMessageReplyMarkup(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(p)
        return self._edit(msg, msg.text, msg.html, _markup(p))

    async def _m_answerCallbackQuery(self, p: dict[str, Any]) -> bool:
        if len(p.get("text") or "") > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.answers.append(
            {
                "callback_query_id": str(p["callback_query_id"]),
                "text": p.get("text") or "",
                "show_alert": _truthy(p.get("show_alert")),
            }
        )
        return True

    async def _m_createForumTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: invalid topic name")
        thread = next(self._topic_ids)
        topic = {"message_thread_id": thread, "name": name, "icon_color": int(p.get("icon_color") or 7322096)}
        self.topics[thread] = topic
        return topic


def _truthy(v: Any) -> bool:
    return v is True or str(v).lower() in ("true", "1")


def _markup(p: dict[str, Any]) -> dict[str, Any] | None:
    raw = p.get("reply_markup")
    if raw in (None, ""):
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in value.get("inline_keyboard", []):
        for button in row:
            if len(str(button.get("callback_data", "")).encode()) > 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return value


def _reply_to(p: dict[str, Any]) -> int | None:
    if p.get("reply_to_message_id") not in (None, ""):
        return int(p["reply_to_message_id"])
    raw = p.get("reply_parameters")
    if raw:
        value = json.loads(raw) if isinstance(raw, str) else raw
        return int(value["message_id"])
    return None


async def _params(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    out: dict[str, Any] = dict(request.query_params)
    if "application/json" in ctype:
        body = await request.body()
        if body:
            out.update(json.loads(body))
        return out
    if request.method == "POST":
        form = await request.form()
        for k, v in form.multi_items():
            if hasattr(v, "read"):  # a file part: its bytes, and its name beside it
                out[f"{k}#filename"] = getattr(v, "filename", None)
                out[k] = await v.read()
            else:
                out[k] = v
    # multipart files are sent as attach://name references by python-telegram-bot
    for k, v in list(out.items()):
        if isinstance(v, str) and v.startswith("attach://"):
            out[k] = out.get(v.removeprefix("attach://"))
            out[f"{k}#filename"] = out.get(v.removeprefix("attach://") + "#filename")
    return out


@contextlib.asynccontextmanager
async def emulator(token: str = "123456:TEST-token") -> AsyncIterator[BotApiEmulator]:
    emu = BotApiEmulator(token)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()
