"""A tokenizer for operations text and a BM25 sparse encoder (plain Python, no model).

`tokenize` is built for alert texts, runbooks and metric names:

- lowercases, and splits identifiers into their words while keeping the whole identifier:
  `KubePodCrashLooping` -> `kubepodcrashlooping`, `kube`, `pod`, `crash`, `loop`;
  `node_filesystem_avail_bytes` -> the whole name plus `node`, `filesystem`, `avail`, `byte`;
  dotted, hyphenated and colon-separated names (`kube-state-metrics`,
  `apiserver_request:burnrate1h`) the same way. Acronyms stay whole (`CPUThrottlingHigh` ->
  `cpu`, `throttl`, `high`; `OOMKilled` -> `oomkill`, `oom`, `kill`).
- keeps tokens that mix digits and letters as they are (`5xx`, `k8s`, `99th`, `http2`);
  pure numbers are kept too (`110`, `404`).
- drops the ordinal of an instance name: an identifier that ends in `-<digits>` or
  `_<digits>` after a letter (`alertmanager-main-0`, `worker-3`, `prometheus-k8s-1`) is read
  as its base (`alertmanager-main`: `alertmanager-main`, `alertmanager`, `main`). In the
  runbook corpus the whole name of a replica only matched sample `kubectl` output pasted
  into three runbooks, and its ordinal matched any number (measured: hybrid top-3 98.1% ->
  99.1% on the evaluation set, 27 of whose queries name an instance; no change on the check
  set). Numbers that are not such a suffix stay (`1.28`, `0.5s`, `10.0.0.1`, `checkout-7d9f`).
- drops English stopwords, but not the words that carry meaning in alerts (`no`, `not`,
  `down`, `up`, `out`, `off`, `over`, `under`, `full`, `high`, `low`, `few`, `many`).
- strips common English suffixes with a few conservative rules (plural `s`/`es`/`ies`,
  `ing`, `ed`, `ly`, a final `e`), so `restarts`, `restarting` and `restarted` meet.

`Bm25Encoder` turns a document into BM25 term-frequency weights
`tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))` and a query into weight 1 per unique
term. The inverse document frequency is applied by the store at query time (Qdrant's IDF
modifier on the `sparse` vector), so documents never need re-encoding when the corpus grows.
Term ids are the first 31 bits of a BLAKE2b hash of the token: stable across processes and
machines (unlike Python's salted `hash()`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from activities.knowledge.store import SparseVector

__all__ = [
    "EXPANSIONS",
    "SIGNALS",
    "STOPWORDS",
    "Bm25Encoder",
    "expand_query",
    "normalize_query",
    "signal_terms",
    "stem",
    "term_id",
    "tokenize",
]

# English stopwords, minus the words that change an alert's meaning (no, not, down, up, out, ...).
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can cannot could couldn't did didn't do does doesn't doing
    don't during each else etc e.g eg i.e ie for from further had hadn't has hasn't have haven't
    having he her here hers herself him himself his how i if in into is isn't it it's its itself
    just let's may me might more most must mustn't my myself nor now of on once only or other ought
    our ours ourselves own same shall shan't she should shouldn't so some such than that that's the
    their theirs them themselves then there there's these they this those through to too until
    very via was wasn't we were weren't what what's when where which while who whom why will with
    won't would wouldn't you your yours yourself yourselves also got get gets getting keep keeps
    kept lot lots please still though us using use used within without yet yes whether whose
    https www com org html htm
    """.replace("'", "").split()
)

# Word-ish runs: letters/digits joined by identifier punctuation (_ . - : /) and apostrophes.
_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:[_.:/'\-][A-Za-z0-9]+)*")
_SEP_RE = re.compile(r"[_.:/\-]+")
# Camel-case pieces: an acronym run (not eating the capital of the next word), a capitalised or
# lowercase word, or digits; letters and digits that touch stay together (5xx, k8s, ipv6).
_CAMEL_RE = re.compile(r"[A-Z0-9]+(?=[A-Z][a-z]{2})|[A-Z]?[a-z0-9]+|[A-Z0-9]+")
# An instance name: a word with a letter, then `-` or `_` and an ordinal (group 1) at the end.
_ORDINAL_RE = re.compile(r"(?<=[A-Za-z0-9])[-_](\d+)$")
_HAS_LETTER_RE = re.compile(r"[A-Za-z]")
_VOWELS = set("aeiouy")
_NO_UNDOUBLE = set("lsz")


# Query expansion: general Kubernetes / Prometheus operations vocabulary. When a pattern is
# found in a query, the canonical words that runbooks use are added to it (documents are
# never expanded). kubectl's short names first, then component nicknames, then symptoms.
EXPANSIONS: tuple[tuple[str, str], ...] = (
    (r"\bsts\b", "statefulset"),
    (r"\bds\b", "daemonset"),
    (r"\bdeploy\b", "deployment"),
    (r"\brs\b", "replicaset"),
    (r"\bhpa\b", "horizontal pod autoscaler"),
    (r"\bautoscal", "hpa"),
    (r"\bpvcs?\b|\bpvs?\b", "persistent volume"),
    (r"\bns\b", "namespace"),
    (r"\bcm\b", "configmap"),
    (r"\bsvc\b", "service"),
    (r"\bk8s\b", "kubernetes"),
    (r"\bksm\b", "kube-state-metrics"),
    (r"\bcsr\b", "certificate signing request"),
    (r"\bcerts?\b|\bx509\b", "certificate"),
    (r"\bprom\b", "prometheus"),
    (r"\bnode agent", "kubelet"),
    (r"\biptables\b|\bipvs\b", "kube-proxy"),
    (r"\bapiserver|\bapi server|\bcontrol plane api", "kubernetes api server"),
    (r"pod lifecycle event generator", "pleg"),
    (r"\bthanos\b|\bcortex\b|\bmimir\b|\bvictoriametrics\b|long-term storage", "remote storage write"),
    (r"crashloopbackoff|crash loop|back-?off|\brestart", "crashloop crash loop"),
    (r"\bunready\b|\bnon-?ready\b|ready\s*[=:]\s*false", "not ready"),
    (r"\bntp\b|\bchrony|\btimesync|\btime sync", "clock"),
    (r"\binodes?\b", "files inodes"),
    (r"\boom|out of memory", "memory"),
    (r"toggl|flip-?flop|oscillat|up and down|bouncing", "flapping changing status"),
    (r"\binformer", "watch"),
    (r"\bcfs\b", "cpu throttling"),
    (r"connection tracking|nf_conntrack", "conntrack"),
    (r"\brx\b", "receive"),
    (r"\btx\b", "transmit"),
    (r"\bmdadm\b|\bmd\d*\b|software raid|\bmirror", "raid array"),
    (r"\brpc\b", "grpc"),
    (r"\belection|\bno leader", "leader"),
    (r"\bmajority\b", "quorum"),
    (r"\b5xx\b|\b50[0-4]\b", "errors"),
    (r"\bexpir", "expiration"),
    (r"open files?\b|file handles?", "file descriptors"),
    (r"\bslo\b|error budget", "error budget burn"),
    (r"\bwal\b|write-ahead log", "fsync disk"),
    (r"\bdead ?man", "watchdog always firing"),
)
_EXPANSION_RES = tuple((re.compile(p, re.IGNORECASE), words) for p, words in EXPANSIONS)


def expand_query(text: str) -> list[str]:
    """Canonical words to add to a query (see `EXPANSIONS`), each once, in table order."""
    out: list[str] = []
    for pattern, words in _EXPANSION_RES:
        if pattern.search(text) and words not in out:
            out.append(words)
    return out


# Reasons and states that Kubernetes writes into alerts (a container's waiting or terminated
# reason, a pod's phase, a node's condition, a job's failure reason), with the words the
# runbooks use for the condition they signal. Applied to queries only, like `EXPANSIONS`.
SIGNALS: tuple[tuple[str, str], ...] = (
    (r"\boom-?kill|\bout-?of-?memory\b|\bexit code 137\b", "container restarting crash loop memory"),
    (r"\bcrashloopbackoff\b|\bback-?off restarting\b", "container restarting crash loop"),
    (
        r"\bimagepullbackoff\b|\berrimagepull\b|\binvalidimagename\b|\bcreatecontainer(config)?error\b"
        r"|\bcontainercreating\b|\bpodinitializing\b",
        "container waiting state",
    ),
    (r"\bphase\W+(pending|unknown|failed)\b|\b(is|in|stuck|still)\s+pending\b", "pod not ready"),
    (r"\bnotready\b|\bready\s*=\s*(false|unknown)\b", "node not ready"),
    (r"\bunreachable\b", "unreachable taint"),
    (r"\bbackofflimitexceeded\b|\bdeadlineexceeded\b", "job failed"),
    (r"\bevicted\b|\b(memory|disk|pid)pressure\b", "eviction pressure resources"),
    (r"\bthrottl", "cpu throttling"),
)
_SIGNAL_RES = tuple((re.compile(p, re.IGNORECASE), words) for p, words in SIGNALS)


def signal_terms(text: str) -> list[str]:
    """The condition words of the reasons and states found in `text` (see `SIGNALS`)."""
    out: list[str] = []
    for pattern, words in _SIGNAL_RES:
        if pattern.search(text) and words not in out:
            out.append(words)
    return out


# Instance noise in an alert: values that name one object or one measurement, never the
# condition. Removed from queries (not from documents) by `normalize_query`.
_NOISE_RES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\bmap\[[^\]]*\]", " "),  # a Go template's rendering of all labels
        (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", " "),  # UUIDs
        (r"\bhttps?://\S+", " "),  # URLs
        (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", " "),  # IPv4 addresses, with a port
        (r"\[?\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\]?(?::\d+)?", " "),  # IPv6 addresses
        (r"(?<=[a-z0-9]):\d{2,5}\b", " "),  # a port after a host name
        # a pod's replica-set hash and suffix: checkout-api-5f7c9b8d6d-lm4wp -> checkout-api
        (r"\b([a-z][a-z0-9-]*?)-(?=[a-z0-9]{0,9}\d)[a-z0-9]{6,10}-[a-z0-9]{5}\b", r"\1"),
        # a generated suffix: a daemonset pod's (cilium-x2kqp), a job's (restic-28391040)
        (r"\b([a-z][a-z0-9-]*?)-(?=[a-z]{0,4}\d)[a-z0-9]{5}\b", r"\1"),
        (r"\b([a-z][a-z0-9-]*?)-\d{6,}\b", r"\1"),
        (r"\b(?=[a-z]*\d)(?=\d*[a-z])[0-9a-f]{7,64}\b", " "),  # hex digests and ids
        (r"\bv?\d+\.\d+\.\d+\S*", " "),  # versions
        # numbers with their units: 87.5%, 1h 3m, 5m0s, 0.71s, 7.5Gi, 131.2GiB, 412, 1e+06 (not
        # an ordinal or a name's part: 99th, 5xx, k8s, worker-03 stay)
        (r"(?<![\w.\-/:])(?:\d+(?:\.\d+)?(?:ms|us|ns|[smhdwy])){1,4}(?![\w%])", " "),
        (
            r"(?<![\w.\-/:])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:%|(?:[kmgtp]i?b?|b|x)(?![\w%]))?(?![\w%])",
            " ",
        ),
    )
)


def normalize_query(text: str) -> str:
    """`text` without instance noise: UUIDs, URLs, IP addresses and ports, the generated
    suffixes of pod and job names, hex ids, versions, and numbers with their units. What is
    left names the condition and the kind of object (`pod checkout-api in namespace
    payments restarted times`)."""
    for pattern, repl in _NOISE_RES:
        text = pattern.sub(repl, text)
    return re.sub(r"[ \t]+", " ", text).strip()


def _has_vowel(s: str) -> bool:
    return any(c in _VOWELS for c in s)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English suffix stripper (a small subset of Porter's step 1, plus `ly` and `e`)."""
    w = word
    if len(w) <= 3 or any(c.isdigit() for c in w) or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses") or w.endswith(("xes", "ches", "shes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            if len(base) >= 3 and _has_vowel(base):
                if len(base) > 3 and base[-1] == base[-2] and base[-1] not in _VOWELS | _NO_UNDOUBLE:
                    base = base[:-1]  # running -> run, stopped -> stop
                w = base
            break
    if w.endswith("ly") and len(w) > 5:
        w = w[:-2]
    if w.endswith("e") and len(w) > 4 and not w.endswith("ee"):
        w = w[:-1]  # throttle / throttled / throttling -> throttl
    return w


def _camel_parts(word: str) -> list[str]:
    return _CAMEL_RE.findall(word)


def _emit(piece: str, out: list[str]) -> None:
    low = piece.lower()
    if not low or low in STOPWORDS or (len(low) == 1 and not low.isdigit()):
        return
    out.append(stem(low))


def tokenize(text: str) -> list[str]:
    """Ops-aware tokens of `text` (see the module docstring); order follows the text."""
    out: list[str] = []
    for m in _WORD_RE.finditer(text):
        word = m.group(0).replace("'", "")
        ordinal = _ORDINAL_RE.search(word)
        if ordinal and _HAS_LETTER_RE.search(word, 0, ordinal.start()):
            word = word[: ordinal.start()]  # worker-3 -> worker
        pieces: list[str] = []
        for segment in _SEP_RE.split(word):
            if segment:
                pieces.extend(_camel_parts(segment) or [segment])
        if len(pieces) > 1 and len(word) <= 64:
            whole = word.lower()
            if whole not in STOPWORDS:
                out.append(whole if not whole.isalpha() else stem(whole))
        for piece in pieces:
            _emit(piece, out)
    return out


@lru_cache(maxsize=262144)
def term_id(token: str) -> int:
    """A stable 31-bit id for a token (BLAKE2b, not Python's per-process salted hash())."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _sparse(weights: dict[int, float]) -> SparseVector:
    indices = sorted(weights)
    return SparseVector(indices=indices, values=[float(weights[i]) for i in indices])


class Bm25Encoder:
    """BM25 document weights and query terms as sparse vectors (IDF is applied by the store).

    `avgdl` is the average document length in tokens that length normalisation assumes. Keep it
    fixed for a collection (documents encoded with another value would need re-encoding);
    `fit(texts)` sets it from a sample of the documents.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, avgdl: float = 100.0, expansion_weight: float = 1.0) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0 or avgdl <= 0:
            raise ValueError("Bm25Encoder needs k1 >= 0, 0 <= b <= 1 and avgdl > 0")
        self.k1 = k1
        self.b = b
        self.avgdl = avgdl
        self.expansion_weight = expansion_weight

    def fit(self, texts: Iterable[str]) -> Bm25Encoder:
        """Set `avgdl` to the mean token count of `texts` (unchanged when there are none)."""
        lengths = [len(tokenize(t)) for t in texts]
        if lengths and sum(lengths) > 0:
            self.avgdl = sum(lengths) / len(lengths)
        return self

    def term_frequencies(self, text: str) -> Counter[int]:
        return Counter(term_id(t) for t in tokenize(text))

    def encode_document(self, text: str) -> SparseVector:
        """BM25 saturated term-frequency weights of `text`."""
        tokens = tokenize(text)
        if not tokens:
            return SparseVector()
        tf = Counter(term_id(t) for t in tokens)
        norm = self.k1 * (1.0 - self.b + self.b * len(tokens) / self.avgdl)
        return _sparse({i: n * (self.k1 + 1.0) / (n + norm) for i, n in tf.items()})

    def encode_query(self, text: str, *, expand: bool = True, extra: Iterable[str] | None = None) -> SparseVector:
        """Weight 1 for each unique term of `text`; expansion terms (see `expand_query`, or the
        phrases of `extra` when given) get `expansion_weight` unless the query holds them already."""
        weights = dict.fromkeys((term_id(t) for t in tokenize(text)), 1.0)
        if expand and self.expansion_weight > 0:
            for words in expand_query(text) if extra is None else extra:
                for t in tokenize(words):
                    weights.setdefault(term_id(t), self.expansion_weight)
        return _sparse(weights)

    def __repr__(self) -> str:
        return f"Bm25Encoder(k1={self.k1}, b={self.b}, avgdl={self.avgdl:g})"
