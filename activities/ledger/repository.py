"""The ledger: typed reads and writes over the pool. Activities call these.

`Ledger` is a thin facade: one class made of the ledger's areas, each in its own module
(`incidents`: incidents, alerts, proposals, decisions; `actions`: actions and outcomes;
`notifications`; `runbooks`: runbooks, trust records, levels, promotion requests, report
figures; `kv`: small settings; `agents`: agent runs, their transcripts and blobs; `keys`: the
gateway's API keys and audit; `digests`: the weekly digests), over
`base.LedgerBase` (the pool and error handling).

Conventions:
- Every method returns pydantic models (`activities.ledger.models`), never records or dicts.
- Writes that belong to an incident first insert a stub incident row (`ON CONFLICT DO NOTHING`)
  in the same transaction, so the foreign keys hold whatever order rows arrive in;
  `upsert_incident` fills the stub in later.
- Writes an activity may retry are idempotent where a natural key exists: alerts on
  (fingerprint, starts_at), decisions on approval_id, actions on idempotency_key,
  notifications on (channel, target, message_id), runbook counters on an optional event_key.
- Errors are `LedgerError`s: `LedgerUnavailable` (connection; retry), `LedgerIntegrityError`
  (a constraint refused the write; don't), `NotFound`, `ConflictError`.
"""

from __future__ import annotations

from activities.ledger.actions import ActionStore
from activities.ledger.agents import AgentStore
from activities.ledger.base import LedgerBase
from activities.ledger.digests import DigestStore
from activities.ledger.guardrails import GuardrailStore
from activities.ledger.incidents import AlertIn, IncidentStore
from activities.ledger.keys import KeyStore
from activities.ledger.kv import KvStore
from activities.ledger.notifications import NotificationStore
from activities.ledger.runbooks import RunbookStore

__all__ = ["AlertIn", "Ledger", "LedgerBase"]


class Ledger(
    IncidentStore,
    ActionStore,
    NotificationStore,
    RunbookStore,
    KvStore,
    GuardrailStore,
    AgentStore,
    KeyStore,
    DigestStore,
):
    """The PostgreSQL ledger. Holds a pool; `close()` it when done."""
