"""What the bot's webhook accepts: the shape of an update in the fields the bot's handlers read,
checked strictly before python-telegram-bot sees it, so a malformed call is a 400 that says what is
wrong (python-telegram-bot's `Update.de_json` trusts its input: a list where an object belongs is an
AttributeError, a list as a chat id an error in the handler, long after the 200)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.requests import Request

MAX_UPDATE_BYTES = 1_048_576  # Telegram's updates are kilobytes; a bigger body is not one


class WebhookRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def read_payload(request: Request) -> Any:
    """The body as JSON, read up to MAX_UPDATE_BYTES (a declared or streamed larger one is a 413)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPDATE_BYTES:
        raise WebhookRefusal(413, f"the body is over the limit of {MAX_UPDATE_BYTES} bytes for an update")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPDATE_BYTES:
            raise WebhookRefusal(413, f"the body is over the limit of {MAX_UPDATE_BYTES} bytes for an update")
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly deep
        raise WebhookRefusal(400, "not a Telegram update: the body is not JSON") from None


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _User(_Part):
    id: StrictInt
    is_bot: StrictBool
    first_name: StrictStr
    username: StrictStr | None = None


class _Chat(_Part):
    id: StrictInt
    type: StrictStr
    title: StrictStr | None = None
    is_forum: StrictBool | None = None


class _Message(_Part):
    message_id: StrictInt
    date: StrictInt
    chat: _Chat
    from_: _User | None = Field(default=None, alias="from")
    text: StrictStr | None = None
    message_thread_id: StrictInt | None = None
    reply_to_message: _Message | None = None


class _Callback(_Part):
    id: StrictStr
    from_: _User = Field(alias="from")
    chat_instance: StrictStr
    data: StrictStr | None = None
    message: _Message | None = None


class _Update(_Part):
    update_id: StrictInt
    message: _Message | None = None
    edited_message: _Message | None = None
    callback_query: _Callback | None = None


def update_problem(payload: Any) -> str | None:
    """None when `payload` has an update's shape where the bot reads it; else what is wrong."""
    if not isinstance(payload, dict):
        return f"a Telegram update is a JSON object, not {type(payload).__name__}"
    try:
        _Update.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        lines = [f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in errors[:5]]
        return "not a Telegram update: " + "; ".join(lines)
    return None
