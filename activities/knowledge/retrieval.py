"""How runbooks are seen by retrieval: the tuning, the text views of a runbook (its dense summary
view, its BM25 text, its label-route terms) and the fusion of the dense and sparse branches.
Pure functions; `KnowledgeBase` (kb.py) uses them against a `VectorStore`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from activities.knowledge.chunks import chunk_text
from activities.knowledge.sparse import term_id
from activities.knowledge.store import SparseVector
from agentic_core.models import Runbook

_WHOLE_SECTION = 1 << 20  # chunk size that never splits a runbook section
_CAMEL_SPLIT = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SUMMARY_HEADINGS = ("meaning", "summary", "description", "overview", "what", "about")


@dataclass(frozen=True)
class RetrievalTuning:
    """Retrieval parameters; the defaults are the ones chosen with `benchmarks/retrieval_eval.py`."""

    fusion: Literal["weighted", "rrf"] = "weighted"
    dense_weight: float = 0.7  # weighted fusion: share of the dense branch
    rrf_k: int = 60  # rrf fusion constant
    expand_queries: bool = True  # add the ops vocabulary of `sparse.expand_query` to both branches
    title_repeat: int = 2  # times the title is counted in a runbook's BM25 text
    summary_chars: int = 700  # characters of the "Meaning" section in the summary view
    dense_candidates: int = 100  # runbooks asked of the dense branch
    sparse_candidates: int = 100  # runbooks asked of the sparse branch
    route_candidates: int = 50  # runbooks asked by label routing


# ------------------------------------------------------------------------------------------
# text views


def humanize_identifier(name: str) -> str:
    """`KubePodCrashLooping` -> `Kube Pod Crash Looping` (other text unchanged)."""
    if " " in name.strip() or not re.fullmatch(r"[A-Za-z0-9_]+", name.strip()):
        return name
    return " ".join(_CAMEL_SPLIT.findall(name.replace("_", " ")))


def _alert_names(runbook: Runbook) -> list[str]:
    return [m.value for m in runbook.match if m.name == "alertname" and m.op == "="]


def _sections(runbook: Runbook) -> list[tuple[str, str]]:
    """(leaf heading, text) of each non-empty section of the body, whole."""
    out = []
    source = runbook.source or runbook.id
    for chunk in chunk_text(runbook.body, source, max_chars=_WHOLE_SECTION, title=runbook.title):
        leaf = chunk.heading.split(" > ")[-1].strip()
        out.append((leaf, chunk.text))
    return out


def _summary_view(runbook: Runbook, sections: list[tuple[str, str]], max_chars: int) -> str:
    names = {humanize_identifier(n) for n in _alert_names(runbook)} - {runbook.title}
    lead = ""
    for heading, text in sections:
        if heading.lower().startswith(_SUMMARY_HEADINGS):
            lead = text
            break
    if not lead and sections:
        lead = sections[0][1]
    parts = [runbook.title, *sorted(names), lead[:max_chars]]
    return "\n".join(p for p in parts if p).strip()


def _sparse_text(runbook: Runbook, title_repeat: int) -> str:
    names = " ".join(_alert_names(runbook))
    return "\n".join([*([runbook.title] * max(title_repeat, 1)), names, runbook.body])


def _route_terms(pairs: Sequence[tuple[str, str]]) -> list[int]:
    # A control character keeps route terms apart from every token tokenize() can produce.
    return sorted({term_id(f"\x1froute:{name}={value}") for name, value in pairs})


def _with_route(sparse: SparseVector, runbook: Runbook) -> SparseVector:
    routes = _route_terms([(m.name, m.value) for m in runbook.match if m.op == "="])
    if not routes:
        return sparse
    weights = dict(zip(sparse.indices, sparse.values, strict=True))
    for r in routes:
        weights[r] = 1.0
    idx = sorted(weights)
    return SparseVector(indices=idx, values=[weights[i] for i in idx])


# ------------------------------------------------------------------------------------------
# fusion


def _normalized(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values(), default=0.0)
    if top <= 0:
        return dict.fromkeys(scores, 0.0)
    return {k: max(v, 0.0) / top for k, v in scores.items()}


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    return {k: i for i, (k, _) in enumerate(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))}


def fuse(dense: dict[str, float], sparse: dict[str, float], tuning: RetrievalTuning) -> dict[str, float]:
    """Per-id fused score of two branches' per-id scores (missing from a branch: 0 there)."""
    ids = set(dense) | set(sparse)
    if not dense or not sparse:  # one branch only (a mode, or a query without known terms)
        return _normalized(dense or sparse)
    if tuning.fusion == "rrf":
        dr, sr = _ranks(dense), _ranks(sparse)
        k = tuning.rrf_k
        return {
            i: (1.0 / (k + dr[i] + 1) if i in dr else 0.0) + (1.0 / (k + sr[i] + 1) if i in sr else 0.0) for i in ids
        }
    dn, sn = _normalized(dense), _normalized(sparse)
    w = tuning.dense_weight
    return {i: w * dn.get(i, 0.0) + (1.0 - w) * sn.get(i, 0.0) for i in ids}
