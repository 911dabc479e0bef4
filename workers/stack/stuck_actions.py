"""Action rows left `running` (#17): StackStorm's "a dead runner leaves an action running forever".
The workflows close a row when `tools.execute` gives up (`tools.give_up`: the incident's actions,
an agent's approved writes, the investigate stage's evidence calls), so none should remain; if one
does (a ledger that could not be reached then, a run terminated by hand), `agentic status` says so.

A row counts as stuck once it has been `running` longer than any execute can last with its retries
(`STUCK_AFTER_S`: the incident's, the longest)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from agentic_core.wording import counted
from workers.settings import Settings
from workflows.incident import EXECUTE_RETRY, EXECUTE_TIMEOUT

_attempts = EXECUTE_RETRY.maximum_attempts
_backoff = EXECUTE_RETRY.maximum_interval.total_seconds() if EXECUTE_RETRY.maximum_interval else 0.0
STUCK_AFTER_S = EXECUTE_TIMEOUT.total_seconds() * _attempts + _backoff * (_attempts - 1)
SHOWN = 5  # rows named in the status line; the rest counted
LEDGER_TIMEOUT_S = 5.0


class StuckAction(BaseModel):
    key: str
    tool: str
    subject: str  # the incident or the agent run
    started_at: str


class StuckActions(BaseModel):
    count: int
    older_than_s: float
    rows: list[StuckAction]

    def line(self) -> str:
        named = ", ".join(f"{r.key} ({r.tool}, since {r.started_at})" for r in self.rows)
        more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
        return (
            f"ledger: {counted(self.count, 'action row')} still running after {self.older_than_s / 60:.1f} min "
            f"(longer than any execute with its retries): {named}{more}"
        )


async def stuck_actions(settings: Settings) -> StuckActions | None:
    """The ledger's stuck rows; None when the ledger cannot be reached (its part says why)."""
    from activities.ledger.repository import Ledger
    from workers.stack.env import platform_settings

    try:
        async with asyncio.timeout(LEDGER_TIMEOUT_S):
            ledger = await Ledger.connect(
                platform_settings(settings).postgres_target(), max_size=1, apply_migrations=False
            )
            try:
                count, rows = await ledger.running_actions(STUCK_AFTER_S, limit=SHOWN)
            finally:
                await ledger.close()
    except Exception:  # not reachable, not migrated: the status table says what is wrong
        return None
    return StuckActions(
        count=count,
        older_than_s=STUCK_AFTER_S,
        rows=[
            StuckAction(
                key=r.idempotency_key,
                tool=r.tool,
                subject=r.incident_id or r.run_id or "",
                started_at=r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for r in rows
        ],
    )
