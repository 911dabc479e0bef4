"""The ledger as the `agentic` commands read it: the running platform's PostgreSQL, read-only in
spirit (no migrations: the worker applies them), one clear line when it cannot be reached."""

from __future__ import annotations

from typing import Any

from workers.errors import AgenticError
from workers.settings import Settings


async def read_ledger(settings: Settings, *, max_size: int = 1) -> Any:
    """A `Ledger` on the platform's PostgreSQL (`platform_settings`: the data dir's or
    `AGENTIC_POSTGRES_DSN`), without applying migrations; the caller closes it."""
    from activities.ledger.db import LedgerError
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings

    try:
        return await Ledger.connect(
            platform_settings(settings).postgres_target(), min_size=1, max_size=max_size, apply_migrations=False
        )
    except LedgerError as exc:
        raise AgenticError(
            f"cannot read the ledger: {exc} (is `agentic up` running, or AGENTIC_POSTGRES_DSN set?)"
        ) from None
