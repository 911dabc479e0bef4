"""The guardrail activity the worker registers: `GuardrailActivities(ledger)`.

| name                | input          | output            | what it does                               |
|---------------------|----------------|-------------------|--------------------------------------------|
| `guardrails.record` | GuardrailEvent | GuardrailRecorded | the event in the ledger, once per `key`     |

Workflows record what they decide themselves (a run's limit hit, a plan made with untrusted
content in context sent to a human); the tool gateway records its own refusals in its activities.
Safe to retry: a key already recorded returns the first row (`created=False`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger.errors import ledger_errors
from agentic_core.agents import GUARDRAIL_RECORD, GuardrailEvent, GuardrailRecorded

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger


class GuardrailActivities:
    """Guardrail events into the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @activity.defn(name=GUARDRAIL_RECORD)
    async def record(self, event: GuardrailEvent) -> GuardrailRecorded:
        if not event.key.strip():
            raise ApplicationError("a guardrail event needs a key (it makes recording idempotent)", non_retryable=True)
        async with ledger_errors(GUARDRAIL_RECORD):
            row, created = await self.ledger.record_guardrail_event(event)
        if created:
            activity.logger.info(
                "guardrail %s: agent %s, %s%s: %s",
                event.kind,
                event.agent or "-",
                event.subject or "-",
                f", tool {event.tool}" if event.tool else "",
                event.detail[:200],
            )
        return GuardrailRecorded(id=row.id, created=created)
