"""`KnowledgeBase` on the real stack: Qdrant Edge in tmp dirs and all-MiniLM-L6-v2.

The real runbook corpus is imported once for the module (about half a minute on two cores);
tests that change data use their own small knowledge base.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.knowledge.chunks import chunk_text
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from activities.knowledge.kb import KnowledgeBase
from activities.knowledge.markdown import load_runbooks
from activities.knowledge.retrieval import RetrievalTuning
from activities.knowledge.store import Point
from agentic_core.knowledge import UpsertReport
from agentic_core.models import AutomationLevel, Collection, DecisionRecord, Runbook, ToolCall
from tests.support.env import RUNBOOKS_CORPUS

# Floors of the cross-source retrieval slice (see its test): top-1 averaged over the sources,
# top-3 of the worst source.
CROSS_SOURCE_TOP1_FLOOR = 0.75
TOP3_FLOOR = 0.95


class CountingEmbedder:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.documents = 0
        self.queries = 0

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += len(texts)
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return await self.inner.embed_query(text)


@dataclass
class Corpus:
    kb: KnowledgeBase
    embedder: CountingEmbedder
    runbooks: list[Runbook]
    report: UpsertReport
    progress: list[int]


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[LocalEmbedder]:
    e = LocalEmbedder(threads=2)
    yield e
    e.close()


@pytest.fixture(scope="module")
async def corpus(model: LocalEmbedder, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
    runbooks, errors = load_runbooks(RUNBOOKS_CORPUS)
    assert errors == []
    embedder = CountingEmbedder(model)
    store = EdgeStore(tmp_path_factory.mktemp("kb") / "qdrant", dim=model.dim)
    kb = KnowledgeBase(store, embedder)
    await kb.ensure()
    progress: list[int] = []
    report = await kb.upsert_runbooks(runbooks, progress=progress.append)
    yield Corpus(kb, embedder, runbooks, report, progress)
    await store.close()


@pytest.fixture
async def small(model: LocalEmbedder, tmp_path: Path) -> AsyncIterator[tuple[KnowledgeBase, CountingEmbedder]]:
    embedder = CountingEmbedder(model)
    store = EdgeStore(tmp_path / "qdrant", dim=model.dim)
    kb = KnowledgeBase(store, embedder)
    await kb.ensure()
    yield kb, embedder
    await store.close()


def rb(rid: str, title: str, body: str, match: list[str] | None = None) -> Runbook:
    r = Runbook.model_validate({"id": rid, "title": title, "body": body, "match": match or []})
    return r.model_copy(update={"content_hash": r.compute_hash()})


# --------------------------------------------------------------------------------------------
# Runbooks: the real corpus
# --------------------------------------------------------------------------------------------


async def test_import_indexes_every_runbook(corpus: Corpus) -> None:
    assert sorted(corpus.report.added) == sorted(r.id for r in corpus.runbooks)
    assert corpus.report.updated == [] and corpus.report.unchanged == []
    assert sum(corpus.progress) == 108  # increments that add up to the number of runbooks
    listed = await corpus.kb.list_runbooks()
    assert [r.id for r in listed] == sorted(r.id for r in corpus.runbooks)
    # one point per runbook (index layout 2: no section views), one text embedded for each
    assert await corpus.kb.store.count(Collection.RUNBOOKS) == 108
    assert corpus.embedder.documents == 108


async def test_get_runbook_round_trips_the_payload(corpus: Corpus) -> None:
    original = next(r for r in corpus.runbooks if r.id == "kubernetes/KubePodCrashLooping")
    got = await corpus.kb.get_runbook("kubernetes/KubePodCrashLooping")
    assert got == original
    assert await corpus.kb.get_runbook("no/such-runbook") is None
    assert await corpus.kb.get_runbook("kubernetes/KubePodCrashLooping#0") is None  # no such point


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("back-off restarting failed container in pod orders-5f6c, restart count 37", "kubernetes/KubePodCrashLooping"),
        ("etcd cluster member count below the number required for a majority", "etcd/etcdInsufficientMembers"),
        ("disk almost full on worker-3", "node/NodeFilesystemAlmostOutOfSpace"),
        ("NIC eth1 on host gw-2 reports many inbound packet errors", "node/NodeNetworkReceiveErrs"),
        (
            "nf_conntrack table almost full on the node, new connections get dropped",
            "node/NodeHighNumberConntrackEntriesUsed",
        ),
        (
            "prometheus cannot push alerts to any of its alertmanagers",
            "prometheus/PrometheusErrorSendingAlertsToAnyAlertmanager",
        ),
        ("the HPA for search has been pinned at its maximum pod count", "kubernetes/KubeHpaMaxedOut"),
    ],
)
async def test_search_finds_the_runbook_for_a_paraphrased_alert(corpus: Corpus, query: str, expected: str) -> None:
    hits = await corpus.kb.search_runbooks(query, limit=5)
    assert hits[0].id == expected, [h.id for h in hits]
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert top.title == next(r.title for r in corpus.runbooks if r.id == expected)
    assert Runbook.model_validate(top.payload["runbook"]).id == expected
    assert top.payload["matched_labels"] is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("etcd cluster member count below the number required for a majority", "etcd/etcdInsufficientMembers"),
        (
            "the node-exporter daemonset has no pod placed on 3 of the nodes that should run one",
            "kubernetes/KubeDaemonSetNotScheduled",
        ),
    ],
)
async def test_hybrid_beats_each_branch_alone(corpus: Corpus, query: str, expected: str) -> None:
    hybrid = await corpus.kb.search_runbooks(query, limit=3)
    dense = await corpus.kb.search_runbooks(query, limit=3, mode="dense")
    sparse = await corpus.kb.search_runbooks(query, limit=3, mode="sparse")
    assert hybrid[0].id == expected
    assert hybrid[0].payload["dense"] > 0 and hybrid[0].payload["sparse"] > 0
    assert sparse[0].id != expected  # BM25 alone puts another runbook first
    assert expected in [h.id for h in dense] and expected in [h.id for h in sparse]
    assert all(h.payload["sparse"] == 0 for h in dense)
    assert all(h.payload["dense"] == 0 for h in sparse)


async def test_reimport_is_idempotent_and_embeds_nothing(corpus: Corpus) -> None:
    before = corpus.embedder.documents
    points = await corpus.kb.store.count(Collection.RUNBOOKS)
    progress: list[int] = []
    again, _ = load_runbooks(RUNBOOKS_CORPUS)
    report = await corpus.kb.upsert_runbooks(again, progress=progress.append)
    assert sorted(report.unchanged) == sorted(r.id for r in again)
    assert report.added == [] and report.updated == []
    assert corpus.embedder.documents == before  # not one text re-embedded
    assert sum(progress) == 108
    assert await corpus.kb.store.count(Collection.RUNBOOKS) == points


async def test_labels_route_the_matching_runbook_first(corpus: Corpus) -> None:
    text = "root filesystem almost full on worker-3"
    plain = await corpus.kb.search_runbooks(text, limit=5)
    assert plain[0].id != "kubernetes/KubeletTooManyPods"
    labels = {"alertname": "KubeletTooManyPods", "node": "worker-3", "severity": "warning"}
    routed = await corpus.kb.search_runbooks(text, limit=5, labels=labels)
    assert routed[0].id == "kubernetes/KubeletTooManyPods"
    assert routed[0].payload["matched_labels"] is True
    assert routed[0].score >= 1.0 >= routed[1].score  # matching runbooks score 1 + their text score
    assert [h.id for h in routed[1:]] == [h.id for h in plain if h.id != routed[0].id][:4]
    # labels that match no runbook change nothing
    other = await corpus.kb.search_runbooks(text, limit=5, labels={"alertname": "SomethingElse"})
    assert [h.id for h in other] == [h.id for h in plain]


async def test_labels_alone_find_a_runbook_text_retrieval_would_not(corpus: Corpus) -> None:
    hits = await corpus.kb.search_runbooks("completely unrelated words", limit=3, labels={"alertname": "Watchdog"})
    assert hits[0].id == "general/Watchdog" and hits[0].payload["matched_labels"] is True


async def test_retrieval_generalises_to_alert_annotations_nobody_tuned_on(corpus: Corpus) -> None:
    """CI slice of benchmarks/retrieval_eval.py (issue #18): every other query of the two
    rendered-rule sources (kube-prometheus rules, awesome-prometheus-alerts; 89 alerts), free
    text as `agentic runbooks search` runs it. On this slice today's method scores top-1
    76.4% / 82.4% (cross-source 79.4%) and top-3 96.4% / 97.1%; the method before #18 had
    top-3 94.5% / 94.1%, under the top-3 floor. (Figures with `$value` rendered within each
    rule's threshold; with it drawn at random, awesome's top-1 was 79.4%.)"""
    from benchmarks.retrieval_eval import AWESOME_RULES, CHECK_SET, KUBE_RULES, load_awesome, load_kube_rules

    known = {r.id for r in corpus.runbooks}
    kube, _ = load_kube_rules(KUBE_RULES, known)
    sources = {"kube-rules": kube[::2], "awesome": load_awesome(CHECK_SET, AWESOME_RULES, known)[::2]}
    top1: dict[str, float] = {}
    top3: dict[str, float] = {}
    misses: list[str] = []
    for name, queries in sources.items():
        ranks = []
        for q in queries:
            got = [h.id for h in await corpus.kb.search_runbooks(q.text, limit=3)]
            ranks.append(got.index(q.expected) if q.expected in got else 3)
            if ranks[-1]:
                misses.append(f"{name}: {q.text[:80]!r} -> {got} (expected {q.expected})")
        top1[name] = sum(r == 0 for r in ranks) / len(ranks)
        top3[name] = sum(r < 3 for r in ranks) / len(ranks)
    cross1 = sum(top1.values()) / len(top1)
    assert cross1 >= CROSS_SOURCE_TOP1_FLOOR, (top1, misses)
    assert min(top3.values()) >= TOP3_FLOOR, (top3, misses)


# --------------------------------------------------------------------------------------------
# Runbooks: writes, on a small knowledge base
# --------------------------------------------------------------------------------------------

LONG_BODY = (
    "# Disk\n\n## Meaning\n\nThe disk is full.\n\n## Diagnosis\n\nRun df -h.\n\n## Mitigation\n\nDelete old images.\n"
)


async def test_update_reembeds_only_the_changed_runbook(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, embedder = small
    a = rb("disk", "Disk full", LONG_BODY)
    b = rb("cert", "Certificate expiring", "## Meaning\n\nThe TLS certificate expires soon.\n")
    report = await kb.upsert_runbooks([a, b])
    assert sorted(report.added) == ["cert", "disk"]
    assert await kb.store.count(Collection.RUNBOOKS) == 2  # one point per runbook
    assert embedder.documents == 2  # one summary view each

    embedded = embedder.documents
    shorter = rb("disk", "Disk full", "## Meaning\n\nThe root disk is nearly full.\n")
    report = await kb.upsert_runbooks([shorter, b])
    assert report.updated == ["disk"] and report.unchanged == ["cert"] and report.added == []
    assert embedder.documents - embedded == 1  # the changed runbook's summary view
    assert await kb.store.count(Collection.RUNBOOKS) == 2
    got = await kb.get_runbook("disk")
    assert got is not None and "nearly full" in got.body

    # a level change alone is stored too (the hash ignores the level, the payload does not)
    promoted = shorter.model_copy(update={"automation_level": AutomationLevel.STANDARD})
    report = await kb.upsert_runbooks([promoted])
    assert report.updated == ["disk"]
    got = await kb.get_runbook("disk")
    assert got is not None and got.automation_level == "standard"


async def test_reimport_migrates_layout_1_section_points(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    """A runbook indexed by layout 1 (a main point plus section points) is re-indexed as one
    point, its section points deleted, even though its content is unchanged."""
    kb, embedder = small
    disk = rb("disk", "Disk full", LONG_BODY)
    vec = (await embedder.embed_documents(["Disk full"]))[0]
    sections = [f"disk#{n}" for n in range(3)]
    await kb.store.upsert(
        Collection.RUNBOOKS,
        [
            *(Point(id=s, dense=vec, payload={"kind": "section", "runbook_id": "disk"}) for s in sections),
            Point(
                id="disk",
                dense=vec,
                payload={
                    "kind": "runbook",
                    "runbook_id": "disk",
                    "content_hash": disk.content_hash,
                    "index_version": 1,
                    "sections": sections,
                    "runbook": disk.model_dump(mode="json"),
                },
            ),
        ],
    )
    # layout-1 section points are ignored by search even before the re-import
    hits = await kb.search_runbooks("run df -h and delete old images", limit=5)
    assert [h.id for h in hits] == ["disk"]
    report = await kb.upsert_runbooks([disk])
    assert report.updated == ["disk"]
    assert await kb.store.count(Collection.RUNBOOKS) == 1
    assert await kb.store.get(Collection.RUNBOOKS, sections) == []
    report = await kb.upsert_runbooks([disk])
    assert report.unchanged == ["disk"]


async def test_delete_runbooks_removes_all_their_points(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, _ = small
    await kb.upsert_runbooks([rb("disk", "Disk full", LONG_BODY), rb("other", "Other", "## Meaning\n\nx y z\n")])
    await kb.delete_runbooks(["disk", "never-existed"])
    assert [r.id for r in await kb.list_runbooks()] == ["other"]
    assert await kb.store.count(Collection.RUNBOOKS) == 1
    assert await kb.get_runbook("disk") is None
    hits = await kb.search_runbooks("the disk is full", limit=5)
    assert [h.id for h in hits] == ["other"]


async def test_regex_and_multi_label_matchers(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, _ = small
    prod = rb(
        "prod-restart",
        "Restart crash-looping pods in production",
        "## Meaning\n\nPods restart again and again in a production namespace.\n",
        ["alertname=KubePodCrashLooping", "namespace=~prod-.*"],
    )
    generic = rb(
        "generic", "Pods restarting", "## Meaning\n\nPods restart again and again.\n", ["alertname=KubePodCrashLooping"]
    )
    await kb.upsert_runbooks([prod, generic])
    staging = await kb.search_runbooks(
        "pods restarting", labels={"alertname": "KubePodCrashLooping", "namespace": "staging"}
    )
    assert [(h.id, h.payload["matched_labels"]) for h in staging] == [("generic", True), ("prod-restart", False)]
    production = await kb.search_runbooks(
        "pods restarting", labels={"alertname": "KubePodCrashLooping", "namespace": "prod-eu"}
    )
    assert {h.id for h in production if h.payload["matched_labels"]} == {"generic", "prod-restart"}


async def test_payload_evidence_tells_siblings_apart_when_on(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    """The payload branch (issue #18): a `persistentvolumeclaim` label is evidence for the
    runbook about claims; in free text, a Go-printed label map is read the same way. Off (the
    product's default, chosen by cross-validation), the labels change nothing."""
    kb, embedder = small
    errors = rb("pv-errors", "Persistent volume errors", "## Meaning\n\nA persistent volume has a problem.\n")
    claim = rb(
        "pv-claim", "Persistent volume trouble", "## Meaning\n\nA persistent volume claim (PVC) has a problem.\n"
    )
    await kb.upsert_runbooks([errors, claim])
    text, labels = "persistent volume errors in namespace media", {"persistentvolumeclaim": "data-jellyfin-0"}
    off = [h.id for h in await kb.search_runbooks(text, labels=labels)]
    assert off == [h.id for h in await kb.search_runbooks(text)] and off[0] == "pv-errors"
    on = KnowledgeBase(kb.store, embedder, tuning=RetrievalTuning(payload_weight=0.5, payload_top_k=2))
    assert (await on.search_runbooks(text, labels=labels))[0].id == "pv-claim"
    mapped = f"{text}\n LABELS = map[persistentvolumeclaim:data-jellyfin-0 namespace:media]"
    assert (await on.search_runbooks(mapped))[0].id == "pv-claim"
    assert (await on.search_runbooks(text))[0].id == "pv-errors"  # no labels: no evidence


async def test_empty_inputs(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, embedder = small
    assert await kb.upsert_runbooks([]) == UpsertReport()
    assert await kb.search_runbooks("anything") == []
    assert await kb.search_runbooks("   ") == []
    assert await kb.search_docs("") == []
    assert await kb.list_runbooks() == []
    assert embedder.documents == 0


# --------------------------------------------------------------------------------------------
# Documentation and decisions
# --------------------------------------------------------------------------------------------

GUIDE = """# Operations guide

## Configuration

### Temporal

Point the worker at the Temporal frontend with AGENTIC_TEMPORAL_TARGET, host and port.

### Qdrant

The knowledge base lives in Qdrant Edge under the data directory; set AGENTIC_QDRANT_URL for a server.

## Backups

PostgreSQL is backed up nightly with pg_dump into the backup bucket.
"""


async def test_docs_chunk_upsert_and_search(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, embedder = small
    chunks = chunk_text(GUIDE, "ops/guide.md")
    assert [c.heading for c in chunks] == [
        "Operations guide > Configuration > Temporal",
        "Operations guide > Configuration > Qdrant",
        "Operations guide > Backups",
    ]
    report = await kb.upsert_docs(chunks)
    assert sorted(report.added) == sorted(c.id for c in chunks)
    assert await kb.docs_count() == 3

    hits = await kb.search_docs("how do I tell the worker where the workflow server is?", limit=3)
    assert hits[0].title == "Operations guide > Configuration > Temporal"
    assert hits[0].payload["source"] == "ops/guide.md"
    assert "AGENTIC_TEMPORAL_TARGET" in hits[0].payload["text"]
    hits = await kb.search_docs("nightly database dump", limit=1)
    assert hits[0].title == "Operations guide > Backups"

    embedded = embedder.documents
    again = await kb.upsert_docs(chunk_text(GUIDE, "ops/guide.md"))
    assert sorted(again.unchanged) == sorted(c.id for c in chunks) and embedder.documents == embedded

    edited = GUIDE.split("## Backups")[0]  # the Backups section is removed from the file
    report = await kb.upsert_docs(chunk_text(edited, "ops/guide.md"))
    assert len(report.unchanged) == 2
    assert await kb.docs_count() == 2
    assert all(h.title != "Operations guide > Backups" for h in await kb.search_docs("pg_dump backup", limit=5))


async def test_one_text_is_embedded_once_across_searches(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    """Recall searches runbooks and then decisions with the same alert text: one model call."""
    kb, embedder = small
    before = embedder.queries
    await kb.search_runbooks("pods of checkout keep restarting", limit=3)
    await kb.search_decisions("pods of checkout keep restarting", limit=3)
    assert embedder.queries == before + 1
    await kb.search_decisions("a different alert text", limit=3)
    assert embedder.queries == before + 2


async def test_decisions_upsert_and_search(small: tuple[KnowledgeBase, CountingEmbedder]) -> None:
    kb, _ = small
    records = [
        DecisionRecord(
            id="d1",
            incident_id="inc-1",
            summary="pods of checkout keep restarting after OOM kills",
            runbook_id="kubernetes/KubePodCrashLooping",
            actions=[ToolCall(tool="kubernetes.restart_deployment", arguments={"name": "checkout"})],
            decision="approved",
            outcome="success",
            labels={"alertname": "KubePodCrashLooping", "namespace": "shop"},
        ),
        DecisionRecord(id="d2", incident_id="inc-2", summary="root filesystem of node worker-2 almost full"),
        DecisionRecord(id="d3", incident_id="inc-3", summary="TLS certificate of the ingress expires in two days"),
    ]
    for r in records:
        await kb.upsert_decision(r)
    await kb.upsert_decision(records[0])  # idempotent
    assert await kb.store.count(Collection.DECISIONS) == 3

    hits = await kb.search_decisions("container killed for memory and restarted in a loop", limit=3)
    assert hits[0].id == "d1"
    assert hits[0].title == records[0].summary
    assert DecisionRecord.model_validate(hits[0].payload) == records[0]
    hits = await kb.search_decisions("disk space running out on a node", limit=1)
    assert hits[0].id == "d2"
