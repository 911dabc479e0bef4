"""A second stage among the top-k runbooks (issue #18): does any disambiguation generalise?

Run through `python benchmarks/retrieval_eval.py --rerank`. Most misses left by the product's
retrieval are sibling runbooks whose texts share most words (`NodeFilesystemSpaceFillingUp` /
`NodeFilesystemAlmostOutOfSpace`, `KubeQuotaAlmostFull` / `KubeQuotaFullyUsed`). Three offline
families of second stage are compared here, each adding to a top-k candidate's fused score
(label-routed runbooks stay first):

- `fields`: the query's cosine (all-MiniLM-L6-v2, the product's model) to the candidate's
  alert name split into words, its title and the first paragraph of its "Meaning" section,
  each with its own weight;
- `contrast`: the query's terms in the candidate's text weighted by their IDF across the k
  candidates (a term all k share weighs nothing), over the summary view or the whole body;
- `names`: the share of the candidate's distinguishing alert-name words (IDF across the k,
  stems matched by prefix: `complet` / `completion`) that the query names.

Each family's grid (and their union) is chosen by the same cross-validation across sources as
the product's first stage: fit on two of the sources 1-3, scored on the third, never on the
held-out source. The no-second-stage point is in every grid, so a family that does not
generalise falls back to it in the folds where it does not help.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from activities.knowledge.kb import KnowledgeBase
from activities.knowledge.retrieval import (
    RetrievalTuning,
    _alert_names,
    _sections,
    humanize_identifier,
    query_text,
)
from activities.knowledge.sparse import tokenize
from agentic_core.models import Runbook

FIT_MODES = ("search", "incident-noname")
POOL = 20  # candidates fetched per query (the second stage reorders at most the first k)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One second-stage method: `family` with its weights over the top `k` candidates."""

    family: str = "none"
    k: int = 1
    w_name: float = 0.0
    w_title: float = 0.0
    w_meaning: float = 0.0
    weight: float = 0.0
    field: str = ""

    def describe(self) -> str:
        if self.family == "none":
            return "no second stage"
        if self.family == "fields":
            return f"fields k={self.k} name {self.w_name:g} title {self.w_title:g} meaning {self.w_meaning:g}"
        return f"{self.family} k={self.k} {self.field} {self.weight:g}"


@dataclasses.dataclass
class Fields:
    name: str
    title: str
    meaning: str
    vectors: dict[str, list[float]]
    terms: dict[str, set[str]]


@dataclasses.dataclass
class Row:
    expected: str
    candidates: list[tuple[str, float, bool]]  # (runbook id, fused score, label-routed)
    terms: set[str]  # the query's tokens (its expansions and signals included)
    cosines: dict[str, dict[str, float]]  # candidate -> field -> cosine to the query


def grids() -> dict[str, list[Stage]]:
    ws = (0.0, 0.1, 0.2, 0.3, 0.5)
    fields = [
        Stage("fields", k, n, t, m)
        for k, n, t, m in itertools.product((3, 5, 8), ws, (0.0, 0.1, 0.2), ws)
        if n or t or m
    ]
    contrast = [
        Stage("contrast", k, weight=w, field=f)
        for k, w, f in itertools.product((3, 5, 8), (0.02, 0.05, 0.1, 0.2, 0.3), ("summary", "body"))
    ]
    names = [
        Stage("names", k, weight=w, field=f)
        for k, w, f in itertools.product((2, 3, 5, 8), (0.05, 0.1, 0.2, 0.3), ("name", "name+title"))
    ]
    return {"fields": fields, "contrast": contrast, "names": names}


def _meaning(runbook: Runbook) -> str:
    sections = _sections(runbook)
    lead = next((t for h, t in sections if h.lower().startswith(("meaning", "summary", "overview"))), "")
    if not lead and sections:
        lead = sections[0][1]
    return lead.strip().split("\n\n")[0][:700]


async def runbook_fields(runbooks: Sequence[Runbook], embedder: Any) -> dict[str, Fields]:
    out: dict[str, Fields] = {}
    for rb in runbooks:
        names = [humanize_identifier(n) for n in _alert_names(rb)] or [humanize_identifier(rb.id.rsplit("/", 1)[-1])]
        name, meaning = " ".join(names).lower(), _meaning(rb)
        terms = {
            "summary": set(tokenize(f"{rb.title} {name} {meaning}")),
            "body": set(tokenize(f"{rb.title} {name} {rb.body}")),
            "name": set(tokenize(name)),
            "name+title": set(tokenize(f"{name} {rb.title}")),
        }
        out[rb.id] = Fields(name, rb.title, meaning, {}, terms)
    ids = list(out)
    for field in ("name", "title", "meaning"):
        vectors = await embedder.embed_documents([getattr(out[i], field) for i in ids])
        for i, v in zip(ids, vectors, strict=True):
            out[i].vectors[field] = v
    return out


async def candidates(
    kb: KnowledgeBase, embedder: Any, fields: dict[str, Fields], queries: list[tuple[str, dict[str, str] | None, str]]
) -> list[Row]:
    """The product's first-stage candidates of each (text, labels, expected) and their features."""
    rows = []
    for text, labels, expected in queries:
        hits = await kb.search_runbooks(text, limit=POOL, labels=labels)
        q = query_text(text.strip(), labels, kb.tuning)
        qv = await embedder.embed_query(q.dense)  # a cache hit: the search embedded it
        cos = {
            h.id: {f: sum(a * b for a, b in zip(qv, v, strict=True)) for f, v in fields[h.id].vectors.items()}
            for h in hits
        }
        rows.append(
            Row(
                expected=expected,
                candidates=[(h.id, h.score, bool(h.payload["matched_labels"])) for h in hits],
                terms=set(tokenize(" ".join([q.sparse, *q.extra]))),
                cosines=cos,
            )
        )
    return rows


def _prefix_match(word: str, terms: set[str]) -> bool:
    return any(
        word == t or (len(word) >= 3 and t.startswith(word)) or (len(t) >= 4 and word.startswith(t)) for t in terms
    )


def _bonus(stage: Stage, row: Row, top: list[str], fields: dict[str, Fields]) -> dict[str, float]:
    if stage.family == "fields":
        return {
            c: stage.w_name * row.cosines[c]["name"]
            + stage.w_title * row.cosines[c]["title"]
            + stage.w_meaning * row.cosines[c]["meaning"]
            for c in top
        }
    k = len(top)
    sets = [fields[c].terms[stage.field] for c in top]
    raw: dict[str, float] = {}
    for c, own in zip(top, sets, strict=True):
        hit = total = 0.0
        for term in own:
            df = sum(1 for s in sets if term in s)
            if stage.family == "contrast":
                hit += math.log((k + 1) / df) if term in row.terms else 0.0
            else:
                idf = math.log(k / df) if df < k else 0.0
                total += idf
                hit += idf if idf and _prefix_match(term, row.terms) else 0.0
        raw[c] = hit if stage.family == "contrast" else (hit / total if total else 0.0)
    top_raw = max(raw.values(), default=0.0) if stage.family == "contrast" else 1.0
    return {c: stage.weight * v / top_raw for c, v in raw.items()} if top_raw else dict.fromkeys(raw, 0.0)


def rerank(stage: Stage, row: Row, fields: dict[str, Fields]) -> list[str]:
    score = {c: s for c, s, _ in row.candidates}
    routed = {c for c, _, m in row.candidates if m}
    top = [c for c, _, _ in row.candidates][: stage.k]
    if stage.family != "none" and len(top) > 1:
        for c, b in _bonus(stage, row, top, fields).items():
            score[c] += b
    return sorted(score, key=lambda c: (c not in routed, -score[c], c))


@dataclasses.dataclass
class Figures:
    top1: float
    top3: float
    mrr: float

    @property
    def criterion(self) -> float:
        return self.top1 + self.top3 + self.mrr


def figures(stage: Stage, rows: list[Row], fields: dict[str, Fields]) -> Figures:
    ranks = []
    for row in rows:
        order = rerank(stage, row, fields)[:10]
        ranks.append(order.index(row.expected) if row.expected in order else None)
    n = max(len(ranks), 1)
    return Figures(
        sum(1 for r in ranks if r == 0) / n,
        sum(1 for r in ranks if r is not None and r < 3) / n,
        sum(1 / (r + 1) for r in ranks if r is not None) / n,
    )


def cross_validate(
    table: list[tuple[Stage, dict[tuple[str, str], Figures]]], sources: list[str]
) -> tuple[list[tuple[str, Stage, Figures]], float, float]:
    """(left-out source, stage chosen on the others, its `search` figures there), mean top-1, top-3."""

    def fit(sc: dict[tuple[str, str], Figures], names: list[str]) -> float:
        vals = [f.criterion for (s, _), f in sc.items() if s in names]
        return sum(vals) / len(vals)

    folds = []
    for held in sources:
        others = [s for s in sources if s != held]
        stage, sc = max(table, key=lambda ts: fit(ts[1], others))
        folds.append((held, stage, sc[(held, "search")]))
    return folds, statistics.mean(f.top1 for _, _, f in folds), statistics.mean(f.top3 for _, _, f in folds)


async def run(
    kb: KnowledgeBase, embedder: Any, runbooks: Sequence[Runbook], inputs: dict[tuple[str, str], list[Any]]
) -> None:
    """Print each family's cross-validated figures next to the product's (no second stage).

    `inputs`: (source, mode) -> [(text, labels, expected)], the sources 1-3 only."""
    assert kb.tuning == RetrievalTuning(), "the second stage is measured on the product's first stage"
    fields = await runbook_fields(runbooks, embedder)
    rows = {key: await candidates(kb, embedder, fields, qs) for key, qs in inputs.items()}
    sources = list(dict.fromkeys(s for s, _ in inputs))
    none = Stage()
    base = {key: figures(none, r, fields) for key, r in rows.items()}
    print("\nsecond stage among the top-k (fit on two sources, scored on the third; search mode):\n")
    _, b1, b3 = cross_validate([(none, base)], sources)
    print(f"  {'no second stage (the product)':<44} cross-source top-1 {b1:.1%}  top-3 {b3:.1%}")
    union: list[tuple[Stage, dict[tuple[str, str], Figures]]] = [(none, base)]
    for family, stages in grids().items():
        table = [(none, base)] + [(s, {key: figures(s, r, fields) for key, r in rows.items()}) for s in stages]
        union += table[1:]
        folds, t1, t3 = cross_validate(table, sources)
        print(f"  {family + f' ({len(stages)} points)':<44} cross-source top-1 {t1:.1%}  top-3 {t3:.1%}")
        for held, stage, f in folds:
            print(f"      left out {held:<12} chosen {stage.describe():<48} top-1 {f.top1:.1%}  top-3 {f.top3:.1%}")
    folds, t1, t3 = cross_validate(union, sources)
    print(f"  {f'all families ({len(union) - 1} points)':<44} cross-source top-1 {t1:.1%}  top-3 {t3:.1%}")
    for held, stage, f in folds:
        print(f"      left out {held:<12} chosen {stage.describe():<48} top-1 {f.top1:.1%}  top-3 {f.top3:.1%}")
    for key in rows:
        f = base[key]
        print(f"  product on {key[0]}/{key[1]}: top-1 {f.top1:.1%}  top-3 {f.top3:.1%}")
    # The stage's own cost per query (features precomputed at index time; the query's vector is
    # the one the search already embedded): the largest stage of the grids, timed.
    biggest = Stage("contrast", 8, weight=0.1, field="body")
    flat = [r for rs in rows.values() for r in rs]
    t0 = time.perf_counter()
    for r in flat:
        rerank(biggest, r, fields)
    per_query = (time.perf_counter() - t0) * 1000 / max(len(flat), 1)
    print(f"\n  second-stage cost: {per_query:.2f} ms per query (contrast, k=8, whole body)")
