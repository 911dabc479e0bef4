"""The client side of `agentic guardrails list`: guardrail events read from the ledger
(PostgreSQL) directly, read-only, like `agentic runbooks stats`.

Why the ledger and not Temporal: the events are rows the gateway and the workflows already wrote;
no workflow holds them, so reading them through Temporal would mean starting a workflow only to
run one SELECT in an activity. The CLI reaches the ledger the way every process of the stack does
(`platform_settings`: the embedded PostgreSQL of the data dir, or AGENTIC_POSTGRES_DSN).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import get_args

from pydantic import BaseModel

from agentic_core.agents import GuardrailKind
from workers.errors import AgenticError
from workers.ledger_client import read_ledger
from workers.settings import Settings

KINDS: tuple[str, ...] = get_args(GuardrailKind)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class GuardrailEventView(BaseModel):
    """One event as `agentic guardrails list --json` prints it."""

    id: int
    at: datetime
    kind: str
    agent: str
    subject: str
    tool: str | None = None
    detail: str = ""
    key: str


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`--since`: a duration back from now (`30m`, `24h`, `7d`, `2w`) or an ISO date or time
    (`2026-03-02`, `2026-03-02T06:00`, UTC unless it says otherwise). None: no bound."""
    if value is None or not value.strip():
        return None
    now = now or datetime.now(UTC)
    m = _DURATION.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise AgenticError(
            f"--since {value!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO date or time (2026-03-02T06:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def check_kinds(kinds: list[str]) -> list[str]:
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise AgenticError(f"unknown guardrail kind {', '.join(map(repr, bad))}: the kinds are {', '.join(KINDS)}")
    return kinds


async def list_events(
    settings: Settings,
    *,
    since: datetime | None,
    kinds: list[str],
    agent: str | None,
    subject: str | None,
    limit: int,
) -> list[GuardrailEventView]:
    import asyncpg

    from activities.ledger.db import LedgerError

    ledger = await read_ledger(settings)
    try:
        rows = await ledger.list_guardrail_events(
            since=since, kinds=kinds or None, agent=agent, subject=subject, limit=limit
        )
    except asyncpg.UndefinedTableError:
        raise AgenticError(
            "the ledger has no guardrail events yet: start this version's worker (`agentic up`), it applies "
            "the ledger's migrations"
        ) from None
    except LedgerError as exc:
        raise AgenticError(f"cannot read the ledger: {exc}") from None
    finally:
        await ledger.close()
    return [GuardrailEventView.model_validate(r.model_dump()) for r in rows]
