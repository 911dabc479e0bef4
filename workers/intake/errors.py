"""The intake's refusals: `IntakeError` (a status and the one line the caller sees), the
503 that tells Alertmanager to retry, schema errors that name every failing field, and the
checks of a request's content type and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.responses import JSONResponse

RETRY_AFTER_S = 10  # what a 503 tells Alertmanager
MAX_ERRORS_SHOWN = 20  # schema errors named in one 422


# --------------------------------------------------------------------------- errors and answers


class IntakeError(Exception):
    """A request the intake refuses: its status and the one-line message the caller sees."""

    def __init__(
        self, status: int, message: str, *, details: Sequence[str] = (), headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"accepted": False, "error": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class TemporalUnavailable(IntakeError):
    def __init__(self, message: str, *, delivered: Sequence[str] = ()) -> None:
        super().__init__(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.delivered = list(delivered)

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.delivered:  # a partly delivered /events list: sending all of it again is safe
            body["delivered"] = self.delivered
        return body


def _unauthorized(message: str, *, invalid: bool) -> IntakeError:
    challenge = 'Bearer realm="agentic-intake"' + (', error="invalid_token"' if invalid else "")
    return IntakeError(401, message, headers={"WWW-Authenticate": challenge})


MAX_KEY_SHOWN = 64  # characters of a label or annotation name shown in an error


def _shown_key(part: str) -> str:
    """A label or annotation name as an error shows it: control characters, surrogates and
    other unprintable characters escaped (`\\ud800`), so the answer is always valid UTF-8 JSON."""
    if len(part) > MAX_KEY_SHOWN:
        part = part[:MAX_KEY_SHOWN] + "…"
    if part.isprintable():  # surrogates and control characters are not
        return part
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in part)


def _field_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            shown = _shown_key(part)
            path += f".{shown}" if path else shown
    return path or "(body)"


def _error_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`alerts[0].fingerprint: field required` for each error; the offending values are never echoed."""
    lines = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        msg = err["msg"]
        lines.append(f"{_field_path(err['loc'])}: {msg[:1].lower()}{msg[1:]}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"(and {len(errors) - MAX_ERRORS_SHOWN} more)")
    return lines


def _schema_error(what: str, exc: ValidationError) -> IntakeError:
    lines = _error_lines(exc.errors(include_input=False, include_url=False))
    return IntakeError(422, f"invalid {what}: " + "; ".join(lines), details=lines)


# --------------------------------------------------------------------------- request checks


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise IntakeError(400, "the request body is empty: send a JSON document")
    try:
        return json.loads(body, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise IntakeError(
            400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # bad encoding, NaN, absurd nesting or number size
        raise IntakeError(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None


def _kind(doc: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(doc), "a number"
    )
