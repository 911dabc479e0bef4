"""`KnowledgeBase`: runbooks, documentation and decisions over a `VectorStore`.

Retrieval design (measured with `benchmarks/retrieval_eval.py`):

- **One point per runbook** (id = runbook id). Its payload carries the whole runbook; its
  dense vector is the embedding of the runbook's *summary view* (title, the alert name split
  into words, and the "Meaning" section); its sparse vector is BM25 over the whole runbook
  (title counted twice, the alert names, then the body).
  Index layout 1 also embedded every section of the body (`Diagnosis`, `Impact`, ...) as a
  point of its own, aggregated per runbook by max at a weight of the summary's. Measured on
  the evaluation set and the awesome-prometheus-alerts check set, those views never helped:
  weighted 0.7 or less they changed no ranking, at 0.8 they cost a top-3 hit, at 0.9-1.0
  up to eleven top-1 hits. A procedure mentions the components and symptoms of its
  neighbours ("misconfigured alertmanager" in Watchdog's Diagnosis, "make sure pods have
  enough resources" in an Alertmanager Mitigation), so its view pulls the wrong runbook up;
  keeping only sections that no other runbook shares did no better. The body still reaches
  retrieval through the BM25 branch, and layout 2 embeds one text per runbook instead of
  about five, so an import takes a fifth of the embedding time.
- **Two branches, fused client-side.** Dense: nearest runbooks by cosine of the summary
  view. Sparse: BM25 over whole runbooks (IDF applied by the store). The per-runbook scores
  are fused (`fusion="weighted"`: each branch divided by its best score, then
  `dense_weight * dense + (1 - dense_weight) * sparse`; `fusion="rrf"` is also available).
- **Query steps** (`retrieval.query_text`, issue #18): instance noise (pod hashes, IPs, ports,
  UUIDs, numbers with units) out of the query, the condition words of reasons and states
  (`OOMKilled`, `ImagePullBackOff`, `Pending`, ...) in; optionally the labels' evidence and
  a title branch (layout 3 indexes title terms, `\x1ftitle:<token>`, in the sparse vector),
  both off by default: chosen by cross-validation across sources (`retrieval_eval.py --sweep`).
- **Payload evidence** (`retrieval.payload_evidence`, off by default): what the alert's label
  keys, `job` and state labels say (or a Go-printed label map in free text), searched as a
  branch of its own that takes `payload_weight` of the score (optionally only among the text's
  best `payload_top_k`), and the shape of a usage value (`value_signals`). Cross-validation
  across sources (`retrieval_eval.py --sweep-payload`) found no setting that carries over.
- **Label routing.** With alert labels, runbooks whose matchers all match the labels come
  first (score 1 + text score), found through route terms (`name=value` of each equality
  matcher) indexed in the runbook point's sparse vector, and checked with `matches_all`.
  Runbooks with only regular-expression matchers are boosted when text retrieval finds them.

Writes are idempotent: the point's payload keeps the runbook's `content_hash` and the index
layout version (`INDEX_VERSION`); an unchanged runbook is not re-embedded, one indexed with
another layout is. Re-indexing a layout-1 runbook deletes its section points (listed in the
old payload's `sections`) before writing the new point, so a crash mid-way leaves the old
version and hash behind and the next import redoes it.

Hit payloads: runbook hits carry `{"runbook": <Runbook JSON>, "matched_labels": bool,
"dense": float, "sparse": float}`; documentation hits the chunk (`source`, `heading`,
`text`, `content_hash`); decision hits the `DecisionRecord` JSON.

Long because the three collections share one object around one store and one embedder: the
runbook index (layouts, idempotent writes, label routing) and the fused search are one design.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from activities.knowledge.retrieval import (
    RetrievalTuning,
    _route_terms,
    _sections,
    _sparse_text,
    _summary_view,
    _with_route,
    fuse,
    labels_in_text,
    payload_evidence,
    query_text,
    title_terms,
    with_evidence,
)
from activities.knowledge.sparse import Bm25Encoder
from activities.knowledge.store import Point, QueryMode, ScoredPoint, SparseVector, VectorStore
from agentic_core.knowledge import UpsertReport
from agentic_core.models import Collection, DecisionRecord, DocChunk, Runbook, SearchHit, matches_all

__all__ = ["Embedder", "KnowledgeBase", "RetrievalTuning", "SearchMode", "UpsertReport"]

#: Bumped when the way runbooks are turned into points changes: stored runbooks with another
#: version are re-indexed by the next import even when their content is unchanged.
INDEX_VERSION = 3
EMBED_BATCH = 64  # texts per embed_documents call
QUERY_CACHE_SIZE = 256  # query vectors kept (a few hundred KiB)
RUNBOOK_BATCH = 32  # runbooks embedded and written per step of an import

SearchMode = Literal["hybrid", "dense", "sparse"]


class Embedder(Protocol):
    """What the knowledge base needs from an embedding model (see `embeddings.py`)."""

    dim: int

    async def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


def _same_runbook(stored: Any, rb: Runbook) -> bool:
    """The indexed payload holds `rb` as it is now. Compared as runbooks, not as JSON, so a field
    added to `Runbook` later (with its default) does not make every indexed runbook look changed."""
    try:
        return Runbook.model_validate(stored) == rb
    except ValueError:
        return False


def _content_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


# ------------------------------------------------------------------------------------------
# the facade


class KnowledgeBase:
    """Runbooks, documentation chunks and decisions, indexed for hybrid retrieval."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        sparse: Bm25Encoder | None = None,
        *,
        tuning: RetrievalTuning | None = None,
    ) -> None:
        if getattr(embedder, "dim", store.dim) != store.dim:
            raise ValueError(f"embedder dimension {embedder.dim} does not match the store's {store.dim}")
        self.store = store
        self.embedder = embedder
        self.sparse = sparse or Bm25Encoder()
        self.tuning = tuning or RetrievalTuning()
        # Recall searches runbooks and decisions with the same text: embed it once.
        self._query_cache: OrderedDict[str, list[float]] = OrderedDict()

    async def ensure(self) -> None:
        """Create the collections if missing (idempotent)."""
        await self.store.ensure_collections()

    # -- embedding helpers -------------------------------------------------------------------

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), EMBED_BATCH):
            out.extend(await self.embedder.embed_documents(texts[i : i + EMBED_BATCH]))
        if len(out) != len(texts):
            raise RuntimeError(f"embedder returned {len(out)} vectors for {len(texts)} texts")
        return out

    async def _embed_query(self, text: str) -> list[float]:
        """The query's vector, from a small LRU cache when the same text was embedded lately."""
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            return cached
        vector = await self.embedder.embed_query(text)
        self._query_cache[text] = vector
        if len(self._query_cache) > QUERY_CACHE_SIZE:
            self._query_cache.popitem(last=False)
        return vector

    async def _query_vectors(
        self, text: str, mode: SearchMode, labels: dict[str, str] | None = None
    ) -> tuple[list[float] | None, SparseVector | None]:
        q = query_text(text, labels, self.tuning)
        dense = await self._embed_query(q.dense) if mode != "sparse" else None
        sparse = self.sparse.encode_query(q.sparse, extra=q.extra) if mode != "dense" else None
        return dense, sparse

    # -- runbooks ----------------------------------------------------------------------------

    def _runbook_views(self, runbook: Runbook) -> tuple[str, SparseVector]:
        """(dense text, sparse vector) of a runbook's point."""
        t = self.tuning
        summary = _summary_view(runbook, _sections(runbook), t.summary_chars)
        sparse = _with_route(self.sparse.encode_document(_sparse_text(runbook, t.title_repeat)), runbook)
        return summary, sparse

    def _views_of(self, runbooks: list[Runbook]) -> list[tuple[str, SparseVector]]:
        return [self._runbook_views(rb) for rb in runbooks]

    def _encode_documents(self, texts: list[str]) -> list[SparseVector]:
        return [self.sparse.encode_document(t) for t in texts]

    async def upsert_runbooks(
        self, runbooks: list[Runbook], progress: Callable[[int], None] | None = None
    ) -> UpsertReport:
        """Index runbooks; unchanged ones (same content hash) are skipped without embedding.

        `progress(n)` is called with the number of runbooks just handled (an increment;
        the calls add up to `len(runbooks)`).
        """
        report = UpsertReport()
        if not runbooks:
            return report
        latest: dict[str, Runbook] = {}
        for rb in runbooks:  # the last one of a repeated id wins
            if not rb.content_hash:
                rb = rb.model_copy(update={"content_hash": rb.compute_hash()})
            latest[rb.id] = rb
        existing = {p.id: p.payload for p in await self.store.get(Collection.RUNBOOKS, list(latest))}

        todo: list[Runbook] = []
        unchanged = 0
        for rid, rb in latest.items():
            old = existing.get(rid)
            if old is None:
                report.added.append(rid)
                todo.append(rb)
            elif (
                old.get("content_hash") == rb.content_hash
                and old.get("index_version") == INDEX_VERSION
                and _same_runbook(old.get("runbook"), rb)
            ):
                report.unchanged.append(rid)
                unchanged += 1
            else:
                report.updated.append(rid)
                todo.append(rb)
        if progress and unchanged:
            progress(unchanged)

        for i in range(0, len(todo), RUNBOOK_BATCH):
            batch = todo[i : i + RUNBOOK_BATCH]
            views = await asyncio.to_thread(self._views_of, batch)
            vectors = await self._embed([text for text, _ in views])
            points: list[Point] = []
            stale: list[str] = []
            for rb, (_, sparse), vec in zip(batch, views, vectors, strict=True):
                points.append(
                    Point(
                        id=rb.id,
                        dense=vec,
                        sparse=sparse,
                        payload={
                            "kind": "runbook",
                            "runbook_id": rb.id,
                            "content_hash": rb.content_hash,
                            "index_version": INDEX_VERSION,
                            "runbook": rb.model_dump(mode="json"),
                        },
                    )
                )
                stale.extend((existing.get(rb.id) or {}).get("sections") or [])  # layout 1's section points
            await self.store.delete(Collection.RUNBOOKS, stale)
            await self.store.upsert(Collection.RUNBOOKS, points)
            if progress:
                progress(len(batch))
        return report

    async def get_runbook(self, runbook_id: str) -> Runbook | None:
        found = await self.store.get(Collection.RUNBOOKS, [runbook_id])
        for p in found:
            if p.payload.get("kind") == "runbook":
                return Runbook.model_validate(p.payload["runbook"])
        return None

    async def list_runbooks(self) -> list[Runbook]:
        points = await self.store.scroll(Collection.RUNBOOKS)
        runbooks = [Runbook.model_validate(p.payload["runbook"]) for p in points if p.payload.get("kind") == "runbook"]
        return sorted(runbooks, key=lambda r: r.id)

    async def delete_runbooks(self, ids: list[str]) -> None:
        """Delete runbooks (and the section points of layout 1); unknown ids are ignored."""
        if not ids:
            return
        found = await self.store.get(Collection.RUNBOOKS, list(ids))
        doomed = set(ids)
        for p in found:
            doomed.update(p.payload.get("sections") or [])
        await self.store.delete(Collection.RUNBOOKS, sorted(doomed))

    async def search_runbooks(
        self,
        text: str,
        limit: int = 5,
        labels: dict[str, str] | None = None,
        *,
        mode: SearchMode = "hybrid",
    ) -> list[SearchHit]:
        """Best runbooks for an alert text, best first; with `labels`, matching runbooks first.

        `mode="dense"` or `"sparse"` runs one branch only (for measurements).
        """
        if limit <= 0:
            return []
        t = self.tuning
        text = text.strip()
        dense_q, sparse_q = await self._query_vectors(text, mode, labels) if text else (None, None)
        if sparse_q is not None and not sparse_q.indices:
            sparse_q = None

        async def nothing() -> list[ScoredPoint]:
            return []

        def sparse_search(q: SparseVector | None, candidates: int) -> Awaitable[list[ScoredPoint]]:
            """One sparse field's candidates (no query: none)."""
            if q is None:
                return nothing()
            return self.store.search(Collection.RUNBOOKS, None, q, limit=candidates, mode=QueryMode(kind="sparse"))

        dense_task = (
            self.store.search(
                Collection.RUNBOOKS, dense_q, None, limit=max(t.dense_candidates, limit), mode=QueryMode(kind="dense")
            )
            if dense_q
            else nothing()
        )
        sparse_task = sparse_search(sparse_q, max(t.sparse_candidates, limit))
        route_q: SparseVector | None = None
        if labels:
            routes = _route_terms(list(labels.items()))
            route_q = SparseVector(indices=routes, values=[1.0] * len(routes))
        route_task = sparse_search(route_q, t.route_candidates)
        title_q: SparseVector | None = None
        if mode == "hybrid" and t.title_weight > 0 and text:
            q = query_text(text, labels, t)
            ids = title_terms(" ".join([q.sparse, *q.extra]))
            title_q = SparseVector(indices=ids, values=[1.0] * len(ids)) if ids else None
        title_task = sparse_search(title_q, max(t.sparse_candidates, limit))
        payload_q: SparseVector | None = None
        if mode == "hybrid" and t.payload_weight > 0:
            evidence = payload_evidence(labels or labels_in_text(text))
            if evidence and t.payload_field == "title":
                ids = title_terms(evidence)
                payload_q = SparseVector(indices=ids, values=[1.0] * len(ids))
            elif evidence:
                payload_q = self.sparse.encode_query(evidence, expand=False)
            if payload_q is not None and not payload_q.indices:
                payload_q = None
        payload_task = sparse_search(payload_q, max(t.sparse_candidates, limit))
        dense_hits, sparse_hits, route_hits, title_hits, payload_hits = await asyncio.gather(
            dense_task, sparse_task, route_task, title_task, payload_task
        )

        dense_scores: dict[str, float] = {}
        payloads: dict[str, dict[str, Any]] = {}
        for hit in dense_hits:
            if hit.payload.get("kind") == "runbook":  # not a section point left by layout 1
                dense_scores[hit.id] = hit.score
                payloads[hit.id] = hit.payload
        sparse_scores: dict[str, float] = {}
        for hit in sparse_hits:
            if hit.payload.get("kind") == "runbook":
                sparse_scores[hit.id] = hit.score
                payloads[hit.id] = hit.payload
        title_scores = {h.id: h.score for h in title_hits if h.payload.get("kind") == "runbook"}
        fused = fuse(dense_scores, sparse_scores, t, title_scores)
        payload_scores = {h.id: h.score for h in payload_hits if h.payload.get("kind") == "runbook"}
        fused = with_evidence(fused, payload_scores, t.payload_weight, t.payload_top_k)

        matched: set[str] = set()
        if labels:
            for hit in route_hits:
                if hit.payload.get("kind") == "runbook":
                    payloads[hit.id] = hit.payload
            candidates = set(fused) | {h.id for h in route_hits}
            missing = [rid for rid in candidates if rid not in payloads]
            for p in await self.store.get(Collection.RUNBOOKS, missing):
                payloads[p.id] = p.payload
            for rid in candidates:
                payload = payloads.get(rid)
                if payload and payload.get("kind") == "runbook":
                    rb = Runbook.model_validate(payload["runbook"])
                    if matches_all(rb.match, labels):
                        matched.add(rid)
                        fused.setdefault(rid, 0.0)

        ranked = sorted(fused, key=lambda rid: (rid not in matched, -fused[rid], rid))[:limit]
        missing = [rid for rid in ranked if rid not in payloads]
        for p in await self.store.get(Collection.RUNBOOKS, missing):
            payloads[p.id] = p.payload
        hits: list[SearchHit] = []
        for rid in ranked:
            payload = payloads.get(rid)
            if not payload or payload.get("kind") != "runbook":
                continue  # a section whose runbook was deleted meanwhile
            rb_json = payload["runbook"]
            hits.append(
                SearchHit(
                    id=rid,
                    title=str(rb_json.get("title", rid)),
                    score=(1.0 if rid in matched else 0.0) + fused[rid],
                    payload={
                        "runbook": rb_json,
                        "matched_labels": rid in matched,
                        "dense": dense_scores.get(rid, 0.0),
                        "sparse": sparse_scores.get(rid, 0.0),
                    },
                )
            )
        return hits

    # -- generic hybrid search over one-point-per-item collections ---------------------------

    async def _search_flat(self, collection: Collection, text: str, limit: int, mode: SearchMode) -> list[ScoredPoint]:
        t = self.tuning
        text = text.strip()
        if not text or limit <= 0:
            return []
        dense_q, sparse_q = await self._query_vectors(text, mode)
        if sparse_q is not None and not sparse_q.indices:
            sparse_q = None
        n = max(t.sparse_candidates, limit)
        dense_hits, sparse_hits = await asyncio.gather(
            self.store.search(collection, dense_q, None, limit=n, mode=QueryMode(kind="dense"))
            if dense_q
            else _empty(),
            self.store.search(collection, None, sparse_q, limit=n, mode=QueryMode(kind="sparse"))
            if sparse_q is not None
            else _empty(),
        )
        by_id = {h.id: h for h in [*sparse_hits, *dense_hits]}
        fused = fuse({h.id: h.score for h in dense_hits}, {h.id: h.score for h in sparse_hits}, t)
        ranked = sorted(fused, key=lambda i: (-fused[i], i))[:limit]
        return [ScoredPoint(id=i, score=fused[i], payload=by_id[i].payload) for i in ranked]

    async def _upsert_flat(
        self, collection: Collection, items: list[tuple[str, str, str, str, dict[str, Any]]]
    ) -> UpsertReport:
        """items: (id, content hash, dense text, sparse text, payload)."""
        report = UpsertReport()
        latest = {item[0]: item for item in items}
        existing = {p.id: p.payload for p in await self.store.get(collection, list(latest))}
        todo = []
        for pid, digest, *_ in latest.values():
            old = existing.get(pid)
            if old is None:
                report.added.append(pid)
                todo.append(latest[pid])
            elif old.get("content_hash") == digest:
                report.unchanged.append(pid)
            else:
                report.updated.append(pid)
                todo.append(latest[pid])
        for i in range(0, len(todo), EMBED_BATCH):
            batch = todo[i : i + EMBED_BATCH]
            vectors = await self._embed([dense_text for _, _, dense_text, _, _ in batch])
            sparse = await asyncio.to_thread(self._encode_documents, [s for _, _, _, s, _ in batch])
            points = [
                Point(id=pid, dense=vec, sparse=sv, payload={**payload, "content_hash": digest})
                for (pid, digest, _, _, payload), vec, sv in zip(batch, vectors, sparse, strict=True)
            ]
            await self.store.upsert(collection, points)
        return report

    # -- documentation -----------------------------------------------------------------------

    async def upsert_docs(self, chunks: list[DocChunk]) -> UpsertReport:
        """Index documentation chunks (idempotent by content hash).

        Chunks of the same sources that the new list no longer holds (a section removed from
        an edited file) are deleted.
        """
        items = []
        for c in chunks:
            digest = c.content_hash or _content_hash(c.source, c.heading, c.text)
            text = f"{c.heading}\n{c.text}"
            payload = {"kind": "doc", "source": c.source, "heading": c.heading, "text": c.text}
            items.append((c.id, digest, text, f"{c.heading}\n{text}", payload))
        report = await self._upsert_flat(Collection.DOCUMENTATION, items)
        sources = {c.source for c in chunks}
        keep = {c.id for c in chunks}
        if sources:
            stale = [
                p.id
                for p in await self.store.scroll(Collection.DOCUMENTATION)
                if p.payload.get("source") in sources and p.id not in keep
            ]
            await self.store.delete(Collection.DOCUMENTATION, stale)
        return report

    async def search_docs(self, text: str, limit: int = 5, *, mode: SearchMode = "hybrid") -> list[SearchHit]:
        hits = await self._search_flat(Collection.DOCUMENTATION, text, limit, mode)
        return [
            SearchHit(id=h.id, title=str(h.payload.get("heading", h.id)), score=h.score, payload=h.payload)
            for h in hits
        ]

    async def docs_count(self) -> int:
        return await self.store.count(Collection.DOCUMENTATION)

    # -- decisions ---------------------------------------------------------------------------

    async def upsert_decision(self, record: DecisionRecord) -> None:
        """Index (or re-index) one decision for recall by similar alerts."""
        data = record.model_dump(mode="json")
        tools = " ".join(a.tool for a in record.actions)
        labels = " ".join(f"{k} {v}" for k, v in sorted(record.labels.items()))
        sparse_text = "\n".join(p for p in (record.summary, record.runbook_id or "", tools, labels) if p)
        digest = _content_hash(repr(sorted(data.items())))
        await self._upsert_flat(
            Collection.DECISIONS, [(record.id, digest, record.summary, sparse_text, {"kind": "decision", **data})]
        )

    async def search_decisions(self, text: str, limit: int = 5, *, mode: SearchMode = "hybrid") -> list[SearchHit]:
        hits = await self._search_flat(Collection.DECISIONS, text, limit, mode)
        return [
            SearchHit(id=h.id, title=str(h.payload.get("summary", h.id)), score=h.score, payload=h.payload)
            for h in hits
        ]


async def _empty() -> list[ScoredPoint]:
    return []
