"""Ledger errors as Temporal sees them, for activities that write the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.exceptions import ApplicationError

from activities.ledger.db import LedgerError, LedgerUnavailable


@asynccontextmanager
async def ledger_errors(what: str) -> AsyncIterator[None]:
    """An unavailable ledger stays retryable (Temporal retries the activity); a refused write
    (integrity, bad data) becomes a non-retryable ApplicationError that names `what`."""
    try:
        yield
    except LedgerUnavailable:
        raise
    except LedgerError as exc:
        raise ApplicationError(f"{what}: {exc}", type=type(exc).__name__, non_retryable=True) from exc
