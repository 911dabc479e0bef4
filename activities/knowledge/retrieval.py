"""How runbooks are seen by retrieval: the tuning, the text views of a runbook (its dense summary
view, its BM25 text, its label-route terms) and the fusion of the dense and sparse branches.
Pure functions; `KnowledgeBase` (kb.py) uses them against a `VectorStore`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from activities.knowledge.chunks import chunk_text
from activities.knowledge.sparse import expand_query, normalize_query, signal_terms, term_id, tokenize
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
    # The three query steps and the title branch of issue #18; which are on was chosen by
    # cross-validation across sources (`benchmarks/retrieval_eval.py --sweep`).
    normalize_queries: bool = True  # drop instance noise from queries (`sparse.normalize_query`)
    signal_terms: bool = True  # add the condition words of reasons and states (`sparse.SIGNALS`)
    label_evidence: bool = False  # with alert labels, add what they say about the object to the query
    title_weight: float = 0.0  # share of the title branch (query terms in a runbook's title and alert name)
    # The payload as evidence (issue #18, second part): what the alert's label KEYS say about the
    # kind of object (`persistentvolumeclaim`, `job_name`, `horizontalpodautoscaler`, `node`, ...),
    # the `job` and the reasons and states in label values, searched as a branch of its own that
    # takes `payload_weight` of the score, in the runbooks' whole text (`payload_field="body"`) or
    # in their titles and alert names (`"title"`); and the shape of a usage value (`value_signals`:
    # over 100 % of something, all of it, nearly all of it). Free text carries labels when it
    # holds Go's rendering of them (`map[k:v ...]`). Chosen by cross-validation across sources.
    payload_weight: float = 0.0
    payload_field: Literal["body", "title"] = "body"
    payload_top_k: int = 0  # > 0: the evidence only reorders the text's best k runbooks (siblings)
    value_signals: bool = False


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


def title_terms(text: str) -> list[int]:
    """The title-field term ids of a text's tokens: a runbook's title and alert names at index
    time, a query at search time (kept apart from body terms like route terms)."""
    return sorted({term_id(f"\x1ftitle:{t}") for t in tokenize(text)})


def _with_route(sparse: SparseVector, runbook: Runbook) -> SparseVector:
    routes = _route_terms([(m.name, m.value) for m in runbook.match if m.op == "="])
    names = " ".join(humanize_identifier(n) for n in _alert_names(runbook))
    titles = title_terms(f"{runbook.title} {names}")
    if not routes and not titles:
        return sparse
    weights = dict(zip(sparse.indices, sparse.values, strict=True))
    for r in [*routes, *titles]:
        weights[r] = 1.0
    idx = sorted(weights)
    return SparseVector(indices=idx, values=[weights[i] for i in idx])


# ------------------------------------------------------------------------------------------
# queries

# Labels whose names say what kind of object an alert is about, and the words runbooks use
# for it; labels whose values say which component or condition (the rest name one instance:
# namespace, pod, node, instance, ...: noise for retrieval).
_OBJECT_LABELS = {
    "persistentvolumeclaim": "persistent volume claim",
    "persistentvolume": "persistent volume",
    "daemonset": "daemonset",
    "statefulset": "statefulset",
    "deployment": "deployment",
    "horizontalpodautoscaler": "horizontal pod autoscaler",
    "job_name": "job",
    "poddisruptionbudget": "pod disruption budget",
    "mountpoint": "filesystem",
    "remote_name": "remote storage",
    "integration": "notifications integration",
}
_EVIDENCE_LABELS = ("job", "container", "resource", "reason", "condition", "phase", "controller", "service")


def label_evidence(labels: dict[str, str] | None) -> str:
    """What an alert's labels say about its condition: the kind of object (a `statefulset`
    label says a StatefulSet) and the values of `job`, `container`, `resource`, `reason`,
    `condition`, `phase`, `controller` and `service`."""
    if not labels:
        return ""
    words = [_OBJECT_LABELS[k] for k in sorted(labels) if k in _OBJECT_LABELS and labels[k].strip()]
    words += [labels[k].strip() for k in _EVIDENCE_LABELS if (labels.get(k) or "").strip()]
    return " ".join(dict.fromkeys(words))


# Label keys that say what kind of object an alert is about (kube-state-metrics, kubelet, node
# exporter, Alertmanager and Prometheus label names), with the words runbooks use for it. Keys
# that name a place or an instance only (namespace, instance, cluster, service, uid) say nothing.
_KIND_WORDS = {
    "persistentvolumeclaim": "persistent volume claim pvc",
    "persistentvolume": "persistent volume",
    "daemonset": "daemonset",
    "statefulset": "statefulset",
    "deployment": "deployment",
    "replicaset": "replicaset",
    "cronjob": "cronjob",
    "job_name": "job",
    "horizontalpodautoscaler": "horizontal pod autoscaler hpa",
    "poddisruptionbudget": "pod disruption budget",
    "resourcequota": "quota",
    "resource": "resource",
    "node": "node",
    "pod": "pod",
    "container": "container",
    "mountpoint": "filesystem",
    "fstype": "filesystem",
    "device": "device",
    "integration": "notification integration",
    "remote_name": "remote storage",
    "controller": "controller",
    "alertmanager": "alertmanager",
    "grpc_service": "grpc",
    "grpc_method": "grpc",
}
# Label values that name a component (`job`) or a reason or state (read through `SIGNALS`).
_STATE_LABELS = ("reason", "phase", "condition")
_GO_MAP = re.compile(r"\bmap\[([^\]]*)\]")
_GO_MAP_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(\S*)")


def labels_in_text(text: str) -> dict[str, str]:
    """The labels a free-text alert shows as Go prints a map (`LABELS = map[job:x node:y]`)."""
    out: dict[str, str] = {}
    for m in _GO_MAP.finditer(text):
        for k, v in _GO_MAP_PAIR.findall(m.group(1)):
            out.setdefault(k, v)
    return out


def payload_evidence(labels: dict[str, str] | None) -> str:
    """What an alert's labels say beyond the text: the kind of object of each label key present
    (a `persistentvolumeclaim` label: a claim; `job_name`: a Job; `node`: a node), the `job`
    (the component scraped) and the condition words of reasons and states in label values."""
    if not labels:
        return ""
    present = {k for k, v in labels.items() if v.strip()}
    words = [_KIND_WORDS[k] for k in sorted(present) if k in _KIND_WORDS]
    job = normalize_query(labels.get("job", "")).strip()
    if job:
        words.append(job)
    states = " ".join(f"{k} {labels[k]}" for k in _STATE_LABELS if k in present)
    words += signal_terms(states) if states else []
    return " ".join(dict.fromkeys(words))


_USAGE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*%\s+(?:of\b|used\b|usage\b|full\b)|\((\d+(?:\.\d+)?)\s*%\s+of\b", re.IGNORECASE
)


def value_terms(text: str) -> list[str]:
    """The shape of a usage value in `text` (`using 104% of its quota`, `(136.6% of quota)`):
    over 100 % is more than allowed, 100 % all of it, from 90 % nearly all of it."""
    out: list[str] = []
    for m in _USAGE.finditer(text):
        v = float(m.group(1) or m.group(2))
        words = "exceeded over limit" if v > 100 else "fully used" if v == 100 else "almost full" if v >= 90 else ""
        if words and words not in out:
            out.append(words)
    return out


@dataclass(frozen=True)
class QueryText:
    """The two texts a query is searched with: `dense` for the embedding model, `sparse` for BM25
    (expansion terms included), and whether expansion terms were added to the sparse text."""

    dense: str
    sparse: str
    extra: tuple[str, ...]


def query_text(text: str, labels: dict[str, str] | None, tuning: RetrievalTuning) -> QueryText:
    """The text a runbook search runs with (see `RetrievalTuning`): the alert text and the
    labels' evidence, without instance noise, plus the ops vocabulary and the condition words
    of the reasons and states it names. Expansions and signals are read from the text as
    given (an `exit code 137` is a signal before it is a number)."""
    evidence = label_evidence(labels) if tuning.label_evidence else ""
    raw = f"{text}\n{evidence}" if evidence else text
    extra: list[str] = list(expand_query(raw)) if tuning.expand_queries else []
    if tuning.signal_terms:
        extra += [w for w in signal_terms(raw) if w not in extra]
    if tuning.value_signals:
        extra += [w for w in value_terms(raw) if w not in extra]
    base = normalize_query(raw) if tuning.normalize_queries else raw
    dense = f"{base} ({', '.join(extra)})" if extra else base
    return QueryText(dense=dense, sparse=base, extra=tuple(extra))


# ------------------------------------------------------------------------------------------
# fusion


def _normalized(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values(), default=0.0)
    if top <= 0:
        return dict.fromkeys(scores, 0.0)
    return {k: max(v, 0.0) / top for k, v in scores.items()}


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    return {k: i for i, (k, _) in enumerate(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))}


def fuse(
    dense: dict[str, float],
    sparse: dict[str, float],
    tuning: RetrievalTuning,
    title: dict[str, float] | None = None,
) -> dict[str, float]:
    """Per-id fused score of the branches' per-id scores (missing from a branch: 0 there). The
    title branch, when given, takes `title_weight` of the score (rrf: one more ranking)."""
    fused = _fuse2(dense, sparse, tuning)
    if not title or tuning.title_weight <= 0 or not fused:
        return fused
    if tuning.fusion == "rrf":
        tr, k = _ranks(title), tuning.rrf_k
        return {i: fused.get(i, 0.0) + (1.0 / (k + tr[i] + 1) if i in tr else 0.0) for i in set(fused) | set(tr)}
    tn, w = _normalized(title), tuning.title_weight
    return {i: (1.0 - w) * fused.get(i, 0.0) + w * tn.get(i, 0.0) for i in set(fused) | set(tn)}


def _fuse2(dense: dict[str, float], sparse: dict[str, float], tuning: RetrievalTuning) -> dict[str, float]:
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


def with_evidence(
    fused: dict[str, float], evidence: dict[str, float], weight: float, top_k: int = 0
) -> dict[str, float]:
    """`fused` with the payload branch's scores (divided by their best) taking `weight` of the
    score; unchanged without evidence. With `top_k`, only the best `top_k` of `fused` take
    evidence: it reorders them and cannot pull another runbook up past them."""
    if top_k > 0:
        best = set(sorted(fused, key=lambda i: (-fused[i], i))[:top_k])
        evidence = {i: v for i, v in evidence.items() if i in best}
    if not evidence or weight <= 0 or not fused:
        return fused
    en = _normalized(evidence)
    return {i: (1.0 - weight) * fused.get(i, 0.0) + weight * en.get(i, 0.0) for i in set(fused) | set(en)}
