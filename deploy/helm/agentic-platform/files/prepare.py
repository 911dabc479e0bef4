"""Init container of the worker: apply the ledger migrations and register the Temporal search
attributes (what `agentic up` does before it starts a worker), then exit.

Reads the same AGENTIC_* settings as the worker. Idempotent: migrations run under an advisory
lock and are recorded with checksums; existing search attributes are left alone.
"""

import asyncio
import sys

from activities.ledger.db import LedgerError, create_pool, migrate
from workers.errors import AgenticError
from workers.settings import Settings
from workers.temporal import connect, ensure_search_attributes


async def prepare() -> None:
    settings = Settings()
    pool = await create_pool(settings.postgres_target(), min_size=1, max_size=2)
    try:
        applied = await migrate(pool)
    finally:
        await pool.close()
    print(f"prepare: ledger migrations applied: {', '.join(applied) or 'none (up to date)'}", flush=True)
    client = await connect(settings.temporal_target, settings.temporal_namespace)
    added = await ensure_search_attributes(client, settings.temporal_namespace)
    print(f"prepare: search attributes registered: {', '.join(added) or 'none (all present)'}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(prepare())
    except (AgenticError, LedgerError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
