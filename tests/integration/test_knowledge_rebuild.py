"""Qdrant is an index that can be rebuilt (docs/architecture.md): runbooks imported the way
`agentic runbooks import` does (ledger + index) and decisions indexed the way `incident.record`
does; searches recorded; the store closed and its directory deleted; `knowledge.rebuild` (real
activity, real PostgreSQL, real Qdrant Edge, the real embedding model) rebuilds it from the ledger
alone; the same searches return the same top results, with the same payloads."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pgserver
import pytest
from temporalio.testing import ActivityEnvironment

from activities.backup.rebuild import RebuildActivities
from activities.knowledge.activities import KnowledgeActivities
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from activities.knowledge.kb import KnowledgeBase
from activities.knowledge.markdown import load_runbooks
from activities.ledger.repository import Ledger
from agentic_core.backup import RebuildInput
from agentic_core.knowledge import UpsertRunbooksInput
from agentic_core.models import DecisionRecord, ToolCall
from tests.support.env import RUNBOOKS_CORPUS
from tests.support.pg import pg_server

QUERIES = [
    "pods keep restarting and going into back-off",
    "disk is almost full on the node",
    "certificate expires soon",
    "the node is not ready",
    "memory usage too high, container killed",
]

# (incident, title, labels, choice, by, outcome, plan): decisions as incidents recorded them
DECISIONS = [
    ("inc-a", "Pod media/radarr is crash looping", {"alertname": "KubePodCrashLooping", "namespace": "media"},
     "approved", "alice", "success", [{"tool": "rollout_restart", "arguments": {"deployment": "radarr"}}]),
    ("inc-b", "Disk of node n1 is 95% full", {"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "n1"},
     "acknowledged", "bob", None, []),
    ("inc-c", "Certificate for home.example expires in 3 days", {"alertname": "CertificateExpiry"},
     "ignored", "carol", "unknown", []),
]  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-rebuild-pg-")


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[LocalEmbedder]:
    e = LocalEmbedder(threads=1)
    yield e
    e.close()


@pytest.fixture
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    name = f"r_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg.get_uri())
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    led = await Ledger.connect(pg.get_uri(name), max_size=2)
    yield led
    await led.close()


async def _record_decisions(ledger: Ledger, kb: KnowledgeBase) -> None:
    """What `incident.record` leaves: ledger rows, and the decision point in Qdrant."""
    for n, (iid, title, labels, choice, by, outcome, plan) in enumerate(DECISIONS):
        occ = 1765000000000 + n
        await ledger.pool.execute("INSERT INTO incidents (id, status, title) VALUES ($1, 'resolved', $2)", iid, title)
        await ledger.pool.execute(
            "INSERT INTO alerts (fingerprint, labels, starts_at, status, incident_id)"
            " VALUES ($1, $2, now(), 'firing', $3)",
            f"fp-{iid}",
            {**labels, "severity": "warning"},
            iid,
        )
        await ledger.pool.execute(
            "INSERT INTO decisions (incident_id, approval_id, choice, decided_by, arguments)"
            " VALUES ($1, $2, $3, $4, $5)",
            iid,
            f"{iid}-approval-{occ}",
            choice,
            by,
            plan,
        )
        if outcome:
            await ledger.pool.execute("INSERT INTO outcomes (incident_id, result) VALUES ($1, $2)", iid, outcome)
        await kb.upsert_decision(
            DecisionRecord(
                id=f"{iid}/{occ}/decision",
                incident_id=iid,
                summary=title,
                actions=[ToolCall.model_validate(a) for a in plan],
                decision=choice,  # type: ignore[arg-type]
                decided_by=by,
                outcome=outcome or "pending",  # type: ignore[arg-type]
                labels={**labels, "severity": "warning"},
            )
        )


def _payload(p: dict[str, object]) -> dict[str, object]:
    """A hit's payload, but the decision's content hash: it hashes the labels in the order the
    alert sent them, which the ledger (jsonb) does not keep; the labels themselves compare equal."""
    kept = {k: v for k, v in p.items() if not (k == "content_hash" and p.get("kind") == "decision")}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in kept.items()}  # the branch scores


async def _searches(kb: KnowledgeBase) -> list[list[tuple[str, dict[str, object]]]]:
    out = []
    for q in QUERIES:
        out.append([(h.id, _payload(h.payload)) for h in await kb.search_runbooks(q, limit=3)])
        out.append([(h.id, _payload(h.payload)) for h in await kb.search_decisions(q, limit=2)])
    return out


async def test_delete_the_vector_store_rebuild_from_the_ledger_same_results(
    ledger: Ledger, model: LocalEmbedder, tmp_path: Path
) -> None:
    runbooks, errors = load_runbooks(RUNBOOKS_CORPUS)
    assert errors == []
    runbooks = runbooks[:10]
    qdrant = tmp_path / "qdrant"
    store = EdgeStore(qdrant, dim=model.dim)
    kb = KnowledgeBase(store, model)
    await kb.ensure()
    imported = KnowledgeActivities(kb, ledger).upsert_runbooks  # what `agentic runbooks import` runs
    await ActivityEnvironment().run(imported, UpsertRunbooksInput(runbooks=runbooks))
    await _record_decisions(ledger, kb)
    before = await _searches(kb)
    assert all(before), "every query finds something"
    await store.close()

    shutil.rmtree(qdrant)  # the index is lost
    store = EdgeStore(qdrant, dim=model.dim)
    kb = KnowledgeBase(store, model)
    try:
        result = await ActivityEnvironment().run(RebuildActivities(kb, ledger.pool).rebuild, RebuildInput())
        assert result.runbooks == len(runbooks) and result.decisions == len(DECISIONS)
        after = await _searches(kb)
    finally:
        await store.close()
    assert [[i for i, _ in hits] for hits in after] == [[i for i, _ in hits] for hits in before]
    for a_hits, b_hits in zip(after, before, strict=True):
        for (i, a), (_, b) in zip(a_hits, b_hits, strict=True):
            assert a == b, (i, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
