"""Callback data of the inline buttons: signed, and at most 64 bytes (Telegram's limit).

Layout (ASCII, 45 bytes): `1<c>:<ref>:<hash8>:<sig>`

- `1` the format version; `<c>` the choice: `a` approve, `k` acknowledge (a question with
  nothing to run), `i` ignore, `m` modify, `d` details;
- `<ref>` 16 base32 characters naming the approval: the first 80 bits of SHA-256 of its id
  (approval ids are longer than 64 bytes allows); the notifier stores ref → approval id in
  the ledger (`kv`), the bot looks it up;
- `<hash8>` the first 8 hex characters of the hash of the plan the message showed;
- `<sig>` 16 base64url characters: HMAC-SHA256 with the server secret over
  `approval id | hash8 | choice`, truncated to 96 bits.

A forged or altered button fails `verify`; a button for another approval fails it too, since
the approval id is under the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

VERSION = "1"
MAX_BYTES = 64
Choice = Literal["approved", "acknowledged", "ignored", "modified", "details"]
CHOICE_CODES: dict[str, Choice] = {
    "a": "approved",
    "k": "acknowledged",
    "i": "ignored",
    "m": "modified",
    "d": "details",
}
CODE_OF: dict[Choice, str] = {v: k for k, v in CHOICE_CODES.items()}
NO_HASH = "--------"


class BadCallback(ValueError):
    """Callback data that is not ours (or was altered in a way that breaks its shape)."""


@dataclass(frozen=True)
class CallbackData:
    choice: Choice
    ref: str
    hash8: str
    sig: str


def approval_ref(approval_id: str) -> str:
    digest = hashlib.sha256(approval_id.encode()).digest()[:10]
    return base64.b32encode(digest).decode().lower()


def _mac(secret: bytes, approval_id: str, hash8: str, code: str) -> str:
    mac = hmac.new(secret, f"{approval_id}|{hash8}|{code}".encode(), hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac).decode()


def sign(secret: bytes, approval_id: str, plan_hash: str | None, choice: Choice) -> str:
    code = CODE_OF[choice]
    hash8 = (plan_hash or NO_HASH)[:8]
    data = f"{VERSION}{code}:{approval_ref(approval_id)}:{hash8}:{_mac(secret, approval_id, hash8, code)}"
    assert len(data.encode()) <= MAX_BYTES
    return data


def parse(data: str) -> CallbackData:
    if len(data.encode()) > MAX_BYTES:
        raise BadCallback("callback data longer than 64 bytes")
    parts = data.split(":")
    if len(parts) != 4 or len(parts[0]) != 2 or parts[0][0] != VERSION:
        raise BadCallback("not a button of this platform")
    code = parts[0][1]
    if code not in CHOICE_CODES:
        raise BadCallback(f"unknown choice {code!r}")
    ref, hash8, sig = parts[1], parts[2], parts[3]
    if len(ref) != 16 or len(hash8) != 8 or len(sig) != 16:
        raise BadCallback("malformed button")
    return CallbackData(choice=CHOICE_CODES[code], ref=ref, hash8=hash8, sig=sig)


def verify(secret: bytes, approval_id: str, cb: CallbackData) -> bool:
    if approval_ref(approval_id) != cb.ref:
        return False
    expected = _mac(secret, approval_id, cb.hash8, CODE_OF[cb.choice])
    return hmac.compare_digest(expected, cb.sig)
