"""Retrieval quality: does an alert, written by someone else, find its runbook?

    python benchmarks/retrieval_eval.py [--quick] [--holdout] [--sweep | --sweep-payload] [--rerank]
                                        [--show-misses SOURCE]

Imports the runbook corpus (../shared/corpora/prometheus-operator-runbooks) into a fresh
`KnowledgeBase` on `EdgeStore` in a temporary directory, with the local embedding model, and
scores it on independent sources, each reported on its own (top-1, top-3, MRR):

1. `paraphrases`: benchmarks/data/retrieval_eval.yaml, 107 human paraphrases;
2. `kube-rules`: the kube-prometheus alerting rules (../shared/corpora/kube-prometheus-rules),
   each rule whose alert has a runbook of the same name; its `description` rendered the way
   Alertmanager shows it, for labels generated here (namespaces, pod names with replica-set
   hashes, nodes, IPs, reasons) and one `$value` per alert (a ratio, duration, magnitude,
   count or number as its pipelines imply, within the threshold the rule's expression sets:
   `value_bounds`; `alert_value`), the same in its description and summary, each occurrence
   printed through its own pipeline as Prometheus prints it; the alert's name removed.
   Generated from the corpus at run time; nothing of it is stored here;
3. `awesome`: awesome-prometheus-alerts rules mapped by hand to the runbook of the same
   condition (benchmarks/data/retrieval_check_awesome.yaml), rendered as the project
   publishes them (description, `VALUE = ...`, `LABELS = map[...]`: the description's
   `$value` and `VALUE` print the same value), the alert's name removed;
4. `holdout`: benchmarks/data/retrieval_annotations_holdout.yaml, alert annotations written
   before the method of issue #18 was changed; scored only with `--holdout`.

Modes: `search` is free text as `agentic runbooks search` runs it (the description alone);
for the sources with payloads (2, 3) `incident` is what the incident's recall stage runs
(`agentic_core.incident.recall_text`: summary, alertname and description; the alert's labels,
alertname included, for label routing and as evidence) and `incident-noname` the same without
the alert's name anywhere.

The retrieval method (`RetrievalTuning`) is chosen by cross-validation across sources: each
of the sources 1-3 in turn is left out, the grid point that scores best (top-1 + top-3 + MRR,
averaged over the other sources and their `search` and `incident-noname` modes) is chosen on
the others and scored on it. `--sweep` prints the grid and that estimate; the product's
defaults are the point chosen on all three. The cross-source figure is the mean of the
left-out scores. `--sweep-payload` does the same for the payload as evidence (the label keys,
the job, reasons and states in label values, the shape of a usage value: `payload_weight`,
`payload_field`, `payload_top_k`, `value_signals`) on top of the product's method, and keeps
them off when choosing among them scores below leaving them off on the left-out sources.
Recall latency (a fresh query: embedding included) is measured in the `incident` mode, p50
and p95, for the old method (`RetrievalTuning(normalize_queries=False, signal_terms=False,
label_evidence=False, title_weight=0)`, the defaults before #18), the product's, and the
product's with the payload branch on.

`--rerank` compares second stages among the top-k candidates (benchmarks/retrieval_rerank.py)
by the same cross-validation across the sources 1-3; none is in the product (none generalised).

Exit status 1 when the product's method misses top-1 >= 90% or top-3 >= 98% on a source in
`search` mode other than `paraphrases` (the set the earlier method was tuned on).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from activities.knowledge.edge_store import EdgeStore  # noqa: E402
from activities.knowledge.kb import KnowledgeBase  # noqa: E402
from activities.knowledge.markdown import load_runbooks  # noqa: E402
from activities.knowledge.retrieval import RetrievalTuning  # noqa: E402
from agentic_core import policy  # noqa: E402
from agentic_core.incident import recall_text  # noqa: E402
from agentic_core.models import Collection  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
DEFAULT_CORPUS = CORPORA / "prometheus-operator-runbooks"
DEFAULT_QUERIES = REPO / "benchmarks" / "data" / "retrieval_eval.yaml"
CHECK_SET = REPO / "benchmarks" / "data" / "retrieval_check_awesome.yaml"
TARGET_TOP1 = 0.90
TARGET_TOP3 = 0.98
OLD_METHOD = RetrievalTuning(
    fusion="weighted",
    dense_weight=0.7,
    normalize_queries=False,
    signal_terms=False,
    label_evidence=False,
    title_weight=0.0,
)

Ranker = Callable[[str, "dict[str, str] | None"], Awaitable[list[str]]]


@dataclasses.dataclass
class Query:
    text: str
    expected: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    summary: str = ""

    def payload_text(self, *, with_name: bool) -> tuple[str, dict[str, str] | None]:
        """(text, labels) as the incident's recall stage builds them (`recall_text`, the function
        the workflow runs): the title (the summary), the alert's name and the description; the
        group's labels. Without the name: the alertname label left out, the summary stripped of it."""
        alertname = self.labels.get("alertname", "")
        labels = dict(self.labels) if with_name else {k: v for k, v in self.labels.items() if k != "alertname"}
        summary = self.summary if with_name or not alertname else _strip_name(self.summary, alertname)
        annotations = {k: v for k, v in (("summary", summary), ("description", self.text)) if v.strip()}
        return recall_text(policy.triage(labels, annotations), annotations), labels or None


# ------------------------------------------------------------------------------------------
# sources: each kept whole; each query may carry an Alertmanager payload (labels + annotations)

KUBE_RULES = CORPORA / "kube-prometheus-rules"
AWESOME_RULES = CORPORA / "awesome-prometheus-alerts" / "rules.yml"
HOLDOUT = REPO / "benchmarks" / "data" / "retrieval_annotations_holdout.yaml"

_APPS = (
    "jellyfin",
    "checkout-api",
    "grafana",
    "postgres",
    "home-assistant",
    "loki",
    "authelia",
    "nextcloud",
    "immich-server",
    "paperless",
    "radarr",
    "vaultwarden",
    "mosquitto",
    "traefik",
)
_NAMESPACES = ("media", "payments", "monitoring", "home", "databases", "kube-system", "default", "auth", "apps")
_NODES = ("k3s-worker-02", "nuc-01", "rpi-node-3", "k3s-master-1", "nas-01", "gpu-box-1")
_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "ContainerCreating")


def _hash(rnd: random.Random, n: int, alphabet: str = "bcdfghjklmnpqrstvwxz2456789") -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _label_value(name: str, rnd: random.Random, labels: dict[str, str], context: str) -> str:
    """A realistic value for a label an alert template names (deterministic for a seed)."""
    app = labels.setdefault("\x00app", rnd.choice(_APPS))
    job = labels.get("job", "")
    if name == "namespace":
        return "monitoring" if job.startswith(("prometheus", "alertmanager", "kube-state")) else rnd.choice(_NAMESPACES)
    if name == "pod":
        if job.startswith(("alertmanager", "prometheus")):
            return f"{job.split('-')[0]}-{'main' if job.startswith('alertmanager') else 'k8s'}-{rnd.randint(0, 2)}"
        return f"{app}-{_hash(rnd, rnd.choice((9, 10)), '0123456789abcdef')}-{_hash(rnd, 5)}"
    if name == "container":
        return job.split("-")[0] if job.startswith(("alertmanager", "prometheus")) else app
    if name in ("node", "master"):
        return rnd.choice(_NODES) if name == "node" else "bond0"
    if name == "instance":
        port = {"node-exporter": 9100, "kubelet": 10250, "apiserver": 6443, "kube-state-metrics": 8443}.get(job, 9090)
        return f"10.{rnd.randint(0, 50)}.{rnd.randint(0, 255)}.{rnd.randint(2, 254)}:{port}"
    if name == "device":
        if re.search(r"network|interface|bond", context, re.I):
            return rnd.choice(("eth0", "enp3s0", "wlan0", "eno1"))
        if re.search(r"raid|\bmd\b", context, re.I):
            return rnd.choice(("md0", "md127"))
        return rnd.choice(("/dev/sda1", "/dev/nvme0n1p2", "/dev/mmcblk0p2"))
    if name == "mountpoint":
        return rnd.choice(("/", "/var/lib/rancher", "/var/lib/kubelet", "/srv/data"))
    if name == "persistentvolumeclaim":
        return f"data-{app}-0"
    if name == "persistentvolume":
        return f"pvc-{uuid.UUID(int=rnd.getrandbits(128), version=4)}"
    if name == "phase":
        return rnd.choice(("Failed", "Pending"))
    if name == "reason":
        return rnd.choice(_REASONS)
    if name == "resource":
        return rnd.choice(("requests.cpu", "limits.memory", "requests.memory", "pods", "count/secrets"))
    if name == "condition":
        return rnd.choice(("MemoryPressure", "DiskPressure", "PIDPressure"))
    if name == "eviction_signal":
        return rnd.choice(("memory.available", "nodefs.available", "imagefs.available"))
    if name == "integration":
        return rnd.choice(("slack", "webhook", "pagerduty", "email", "telegram"))
    if name in ("url", "alertmanager"):
        return (
            f"http://10.42.{rnd.randint(0, 9)}.{rnd.randint(2, 250)}:9093/api/v2/alerts"
            if name == "alertmanager"
            else "https://mimir.home.lan/api/v1/push"
        )
    if name == "remote_name":
        return rnd.choice(("mimir", "thanos-receive", "grafana-cloud"))
    if name == "controller":
        return rnd.choice(("prometheus", "alertmanager", "thanos-ruler"))
    if name == "job_name":
        return f"{app}-backup-{rnd.randint(28_000_000, 29_999_999)}"
    if name in ("deployment", "statefulset", "daemonset", "horizontalpodautoscaler", "poddisruptionbudget", "service"):
        return app
    if name == "name":
        return "v1beta1.metrics.k8s.io"
    if name == "cluster":
        return rnd.choice(("homelab", "prod-eu-1"))
    if name == "job":
        return rnd.choice(("node-exporter", "kubernetes-pods", "blackbox"))
    if name == "handler":
        return "/api/v1/query"
    if name == "mechanism":
        return "kubernetes"
    return f"{name}-{_hash(rnd, 4)}"


Bounds = tuple[float | None, float | None, float | None]  # (lower, upper, exact) of `$value`

_NUM = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?"
_THRESHOLD = rf"(>=|<=|==|!=|>|<)\s*(?:bool\s+)?(\(\s*{_NUM}\s*/\s*{_NUM}\s*\)|{_NUM})"
_TRAILING = re.compile(rf"(?:\s*{_THRESHOLD})+\s*$")


def _depth0(expr: str) -> list[tuple[int, str]]:
    """(offset, character) of `expr` outside brackets, braces, parentheses and quotes."""
    out, depth, quote = [], 0, ""
    for i, c in enumerate(expr):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            out.append((i, c))
    return out


def _value_expr(expr: str) -> str:
    """The part of a PromQL expression whose samples an alert's `$value` is: the left operand
    of a top-level `and` / `unless` (they return the left side's samples), the first branch of
    an `or`, the inside of parentheses around the whole."""
    expr = " ".join(re.sub(r"#[^\n]*", " ", expr).split())
    while True:
        outside = dict(_depth0(expr))
        plain = "".join(outside.get(i, " ") for i in range(len(expr)))
        m = re.search(r"\s(and|unless|or)\s", plain)
        if m:
            expr = expr[: m.start()].strip()
        elif expr.startswith("(") and _closes_at_end(expr):
            expr = expr[1:-1].strip()
        else:
            return expr


def _closes_at_end(expr: str) -> bool:
    """`expr` is one parenthesised expression: its first `(` closes at its last character."""
    depth = 0
    for i, c in enumerate(expr):
        depth += c == "("
        depth -= c == ")"
        if depth == 0:
            return i == len(expr) - 1
    return False


def value_bounds(expr: str) -> Bounds | None:
    """The range an alert's `$value` falls in, read from its rule's expression: the threshold
    comparisons at the end of the value's part (`> 0.9 < 1`, `== 1`, `> ( 25 / 100 )`, `< 15`);
    None when the value is not compared with a number there (a comparison between two series).
    A percentage scale (`* 100` or `100 *` in that part) caps the range at 100."""
    part = _value_expr(expr)
    chain = _TRAILING.search(part)
    if not chain:
        return None
    lower: float | None = None
    upper: float | None = None
    exact: float | None = None
    for op, num in re.findall(_THRESHOLD, chain.group(0)):
        nums = [float(n) for n in re.findall(_NUM, num)]
        v = nums[0] / nums[1] if len(nums) == 2 else nums[0]
        if op in (">", ">="):
            lower = v if lower is None else max(lower, v)
        elif op in ("<", "<="):
            upper = v if upper is None else min(upper, v)
        elif op == "==":
            exact = v
    head = part[: chain.start()]
    if upper is None and re.search(r"\*\s*100\b|\b100\s*\*", head) and (lower is None or lower < 100):
        upper = 100.0
    return lower, upper, exact


# `$value` as Prometheus renders an alert's annotations: one float64 per alert (the sample of the
# rule's expression), printed by each `{{ ... $value ... }}` through its own pipeline.

_VALUE_TAG = re.compile(r"\{\{[^}]*\$value[^}]*\}\}")
_PRINTF = re.compile(r'printf\s+"([^"]*)"')


def _go_float(v: float) -> str:
    """`v` as Go's fmt prints a float64 with `%v` (what text/template writes for `{{ $value }}`):
    the shortest digits that read back as `v`, in `%e` form when the decimal exponent is below
    -4 or 6 and above (strconv's shortest `%g`): 0.8523, 92.5, 123456, 1.234567e+06, 1e-05."""
    if v != v or v in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(v)]
    if v == 0:
        return "-0" if repr(v).startswith("-") else "0"
    mantissa, _, exp = f"{abs(v)!r}".partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))  # digits before the point
    digits, sign, x = digits.rstrip("0"), "-" if v < 0 else "", point - 1
    if x < -4 or x >= 6:
        return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_printf(spec: str, v: float) -> str:
    """Go's `printf spec v` for the float verbs the rules use (%f, %e, %g with flags and
    precision; Python's printf rounds and pads them the same way), `%v` as `{{ $value }}`."""

    def verb(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        return _go_float(v) if m.group(2) == "v" else f"%{m.group(1)}{m.group(2)}" % v

    return re.sub(r"%%|%([-+ #0]*\d*(?:\.\d*)?)([vfFeEgG])", verb, spec)


_BINARY = ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")


def _humanize(v: float, base: int = 1000) -> str:
    """Prometheus's `humanize` (SI prefixes, milli to yocto below 1) and `humanize1024` (`base`
    1024: Ki to Yi, nothing below 1)."""
    if v == 0 or v != v or v in (float("inf"), float("-inf")) or (base == 1024 and abs(v) <= 1):
        return _go_printf("%.4g", v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y") if base == 1000 else _BINARY:
            if abs(v) < base:
                break
            prefix, v = p, v / base
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _go_printf("%.4g", v) + prefix


def _humanize_duration(v: float) -> str:
    """Prometheus's `humanizeDuration` of `v` seconds: `1d 2h 3m 4s`, `3m 4s`, `45.5s`, `250ms`."""
    if v != v or v in (float("inf"), float("-inf")):
        return _go_printf("%.4g", v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign, n = "-" if v < 0 else "", int(abs(v))
        d, h, m, s = n // 86400, n // 3600 % 24, n // 60 % 60, n % 60
        if d:
            return f"{sign}{d}d {h}h {m}m {s}s"
        if h:
            return f"{sign}{h}h {m}m {s}s"
        if m:
            return f"{sign}{m}m {s}s"
        return f"{sign}{_go_printf('%.4g', abs(v))}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_go_printf('%.4g', v)}{prefix}s"


def _show(tag: str, v: float) -> str:
    """`v` through one `{{ ... $value ... }}`'s pipeline, as Prometheus prints it."""
    if "humanizePercentage" in tag:
        return _go_printf("%.4g%%", v * 100)
    if "humanizeDuration" in tag:
        return _humanize_duration(v)
    if "humanize1024" in tag:
        return _humanize(v, 1024)
    if "humanize" in tag:
        return _humanize(v)
    spec = _PRINTF.search(tag)
    return _go_printf(spec.group(1), v) if spec else _go_float(v)


def _kind(tag: str) -> str:
    """What a pipeline says `$value` is: a `ratio` (humanizePercentage: 0..1), a `duration` in
    seconds, a `magnitude` (humanize: bytes, rates), a `count` (printf "%.0f"), or only a
    `number` (`{{ $value }}`, printf "%.2f", ...: any of them)."""
    if "humanizePercentage" in tag:
        return "ratio"
    if "humanizeDuration" in tag:
        return "duration"
    if "humanize" in tag:
        return "magnitude"
    spec = _PRINTF.search(tag)
    return "count" if spec and re.fullmatch(r"%0?\.0f", spec.group(1)) else "number"


def _alert_kind(tags: list[str], bounds: Bounds | None) -> str:
    """The kind of an alert's one `$value`, from all its occurrences: the one kind its pipelines
    name (a plain `{{ $value }}` or a printf with decimals names none, so beside a
    humanizePercentage it prints the ratio, 0.8523..., as Go prints a float64); `number` if none
    does. Where occurrences name different kinds (none of the corpora's alerts does today),
    the rule's expression decides: a threshold range within 0..1 (its upper bound or exact
    value <= 1) makes it the ratio, one above 1 (a bound > 1) rules the ratio out; among those
    left, the first occurrence's kind."""
    kinds = list(dict.fromkeys(k for k in map(_kind, tags) if k != "number"))
    if len(kinds) > 1 and "ratio" in kinds and bounds is not None:
        _, upper, exact = bounds
        top = exact if exact is not None else upper
        if top is not None and top <= 1:
            return "ratio"
        if any(b is not None and b > 1 for b in bounds):
            kinds.remove("ratio")
    return kinds[0] if kinds else "number"


def _draw(kind: str, rnd: random.Random) -> float:
    if kind == "ratio":
        return rnd.uniform(0.02, 0.99)
    if kind == "duration":
        return float(rnd.randint(90, 400_000))
    if kind == "magnitude":
        return rnd.uniform(1, 900) * rnd.choice((1, 1e3, 1e6))
    if kind == "count":
        return float(rnd.randint(2, 400))
    return rnd.uniform(0.05, 120)


def _reading(kind: str, v: float) -> float:
    """A `number` (no pipeline says what it is: a count, a rate, a quantile) is a reading of 4
    significant digits, as this generator has always shown it; the other kinds keep what was
    drawn (whole seconds and counts; ratios and magnitudes in full, which their own pipelines
    round and a plain `{{ $value }}` beside them prints whole, as Go does)."""
    return float(f"{v:.4g}") if kind == "number" else v


def alert_value(templates: list[str], rnd: random.Random, bounds: Bounds | None = None) -> float | None:
    """The one raw `$value` of an alert whose annotations are `templates` (None if none shows
    it): drawn for the kind its pipelines imply (`_alert_kind`), within `bounds` (`value_bounds`
    of the rule's expression) when they are known. A value drawn inside them is the one drawn
    before bounds were read (the same draws), so only values the expression rules out change;
    one redrawn is kept off the thresholds as every occurrence prints it."""
    tags = [t for template in templates for t in _VALUE_TAG.findall(template)]
    if not tags:
        return None
    kind = _alert_kind(tags, bounds)
    raw = _reading(kind, _draw(kind, rnd))
    if bounds is None:
        return raw
    lower, upper, exact = bounds
    if exact is not None:
        return exact
    if (lower is None or raw > lower) and (upper is None or raw < upper):
        return raw
    if upper is None:  # only a floor: a ratio stays a ratio, a count goes some way above it
        if lower is None or lower <= 0:
            return abs(raw)
        upper = 1.0 if kind == "ratio" and lower < 1 else lower * (1.5 if lower >= 1 else 4)
    if lower is None:  # only a ceiling: a positive quantity under it, or one going negative
        if upper <= 0:
            return _reading(kind, upper - abs(raw))
        lower = upper * 0.05
    v = _reading(kind, rnd.uniform(lower, upper))
    if not lower < v < upper or any(_show(t, v) in (_show(t, lower), _show(t, upper)) for t in tags):
        v = _reading(kind, lower + (upper - lower) * 0.5)  # printed as a threshold: the middle
    return v


def render(
    template: str,
    labels: dict[str, str],
    rnd: random.Random | None = None,
    bounds: Bounds | None = None,
    *,
    value: float | None = None,
) -> str:
    """An annotation template as Prometheus renders it for Alertmanager: label values,
    `{{ with $labels.x }}` blocks, `{{ $labels }}` as Go prints a map, and every `$value` the
    same raw `value` through its own pipeline (humanizePercentage, humanizeDuration, humanize,
    printf, none: Go's float64). Without `value`, one is drawn for this template alone
    (`alert_value` with `rnd` and `bounds`); an alert with several annotations draws it once
    for all of them and passes it to each."""

    def with_block(m: re.Match[str]) -> str:
        v = labels.get(m.group(1), "")
        return re.sub(r"\{\{\s*\.\s*\}\}", v, m.group(2)) if v else ""

    text = re.sub(r"\{\{-?\s*with \$labels\.(\w+)\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}", with_block, template, flags=re.S)
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), "<no value>"), text)
    shown = " ".join(f"{k}:{v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
    text = re.sub(r"\{\{\s*\$labels\s*\}\}", f"map[{shown}]", text)
    text = re.sub(r'\{\{\s*"(\d+)"\s*\|\s*humanizeDuration\s*\}\}', lambda m: f"{int(m.group(1)) // 3600}h 0m 0s", text)
    if value is None and _VALUE_TAG.search(text):
        if rnd is None:
            raise ValueError("render: a template that shows $value needs a value or a random source")
        value = alert_value([text], rnd, bounds)
    if value is not None:
        raw = value
        text = _VALUE_TAG.sub(lambda m: _show(m.group(0), raw), text)
    text = re.sub(r"\{\{.*?\}\}", "", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def _template_labels(*templates: str) -> list[str]:
    names: list[str] = []
    for t in templates:
        for n in re.findall(r"\$labels\.(\w+)", t):
            if n not in names:
                names.append(n)
    return names


def make_labels(
    alertname: str, expr: str, rule_labels: dict[str, str], templates: list[str], seed: str
) -> dict[str, str]:
    """The labels of a firing alert of a rule: alertname, the rule's labels, the `job` its
    expression selects, and a value for every label its annotations name."""
    rnd = random.Random(seed)
    labels: dict[str, str] = {"alertname": alertname, **{k: str(v) for k, v in rule_labels.items()}}
    job = re.search(r'\bjob\s*=~?\s*"([\w.\-]+)"', expr)
    if job:
        labels["job"] = job.group(1)
    context = " ".join(templates) + " " + expr
    for name in _template_labels(*templates):
        labels.setdefault(name, _label_value(name, rnd, labels, context))
    labels.pop("\x00app", None)
    return labels


def _strip_name(text: str, alertname: str) -> str:
    """`text` without the alert's name (as written, or split into words)."""
    words = r"\W*".join(re.escape(w) for w in _CAMEL_WORDS.findall(alertname))
    for pattern in {re.escape(alertname), words}:
        if pattern:
            text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]+", " ", text).strip()


_CAMEL_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def load_kube_rules(root: Path, known_ids: set[str]) -> tuple[list[Query], list[str]]:
    """Source 2: every kube-prometheus rule whose alert has a runbook, its annotations
    rendered for realistic labels, the alert's name removed; and the alerts without one."""
    by_alert = {rid.rsplit("/", 1)[-1]: rid for rid in known_ids}
    queries: list[Query] = []
    without: list[str] = []
    seen: set[str] = set()
    files = sorted(root.glob("*.yaml"))
    if not files:  # a missing corpus would score an empty source as if it were one
        raise SystemExit(f"no kube-prometheus rules in {root}: expected the corpus's *.yaml files there")
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["spec"]["groups"]:
            for i, rule in enumerate(group.get("rules") or []):
                alert = rule.get("alert")
                if not alert:
                    continue
                if alert not in by_alert:
                    without.append(alert)
                    continue
                ann = rule.get("annotations") or {}
                description, summary = str(ann.get("description", "")), str(ann.get("summary", ""))
                labels = make_labels(
                    alert,
                    str(rule.get("expr", "")),
                    rule.get("labels") or {},
                    [description, summary],
                    f"{path.name}/{alert}/{i}",
                )
                rnd = random.Random(f"value/{path.name}/{alert}/{i}")
                value = alert_value([description, summary], rnd, value_bounds(str(rule.get("expr", ""))))
                text = _strip_name(render(description, labels, value=value), alert)
                if not text or text in seen:
                    continue
                seen.add(text)
                queries.append(
                    Query(
                        text=text,
                        expected=by_alert[alert],
                        labels=labels,
                        summary=_strip_name(render(summary, labels, value=value), alert),
                    )
                )
    return queries, without


def load_awesome(mapping: Path, rules_path: Path, known_ids: set[str]) -> list[Query]:
    """Source 3: the mapped awesome-prometheus-alerts rules as their published alerts read:
    description + `VALUE = ...` + `LABELS = map[...]`, summary `<name> (instance ...)`."""
    data = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    rules: dict[str, dict[str, Any]] = {}
    for group in data["groups"]:
        for service in group.get("services") or []:
            for exporter in service.get("exporters") or []:
                for rule in exporter.get("rules") or []:
                    rules.setdefault(str(rule["name"]), rule)
    queries, problems = [], []
    for item in yaml.safe_load(mapping.read_text(encoding="utf-8"))["rules"]:
        name, expected = str(item["rule"]), str(item["expected"])
        rule = rules.get(name)
        if rule is None or expected not in known_ids:
            problems.append(f"{name!r} -> {expected!r}: no such rule or runbook")
            continue
        alertname = "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", name))
        description = str(rule.get("description", ""))
        labels = make_labels(
            alertname,
            str(rule.get("query", "")),
            {"severity": str(rule.get("severity", "warning"))},
            [description, "{{ $labels.instance }}"],
            f"awesome/{name}",
        )
        rnd = random.Random(f"value/awesome/{name}")
        template = f"{description}\n  VALUE = {{{{ $value }}}}\n  LABELS = {{{{ $labels }}}}"
        text = render(template, labels, rnd, value_bounds(str(rule.get("query", ""))))  # one value: description, VALUE
        queries.append(
            Query(
                text=_strip_name(text, alertname),
                expected=expected,
                labels=labels,
                summary=f"{name} (instance {labels['instance']})",
            )
        )
    if problems:
        raise SystemExit("bad awesome mapping:\n  " + "\n  ".join(problems))
    return queries


# ------------------------------------------------------------------------------------------
# scoring


@dataclasses.dataclass
class Result:
    name: str
    ranks: list[int | None]  # 0-based rank of the expected runbook in the top 10, or None
    tops: list[list[str]]
    latency_ms: list[float]

    def at(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r < k) / max(len(self.ranks), 1)

    @property
    def mrr(self) -> float:
        return sum(1.0 / (r + 1) for r in self.ranks if r is not None) / max(len(self.ranks), 1)

    @property
    def criterion(self) -> float:
        return self.at(1) + self.at(3) + self.mrr


class CachingEmbedder:
    """Wraps an embedder so that each query text is embedded once across all methods."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dim: int = inner.dim
        self._cache: dict[str, list[float]] = {}

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed_documents(texts)  # type: ignore[no-any-return]

    async def embed_query(self, text: str) -> list[float]:
        if text not in self._cache:
            self._cache[text] = await self.inner.embed_query(text)
        return self._cache[text]


def load_queries(path: Path, known_ids: set[str]) -> list[Query]:
    """A hand-written set (`queries:` of `text` and `expected`); no text may name its alert."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data["queries"] if isinstance(data, dict) else data
    queries = [Query(text=str(q["text"]).strip(), expected=str(q["expected"]).strip()) for q in items]
    problems = []
    for q in queries:
        if q.expected not in known_ids:
            problems.append(f"unknown runbook id {q.expected!r} (query: {q.text!r})")
        alert = q.expected.rsplit("/", 1)[-1]
        if re.search(re.escape(alert), q.text, re.IGNORECASE):
            problems.append(f"query names its alert {alert!r}: {q.text!r}")
    if problems:
        raise SystemExit(f"bad evaluation set {path.name}:\n  " + "\n  ".join(problems))
    return queries


MODES = ("search", "incident", "incident-noname")


def mode_input(q: Query, mode: str) -> tuple[str, dict[str, str] | None]:
    if mode == "search":
        return q.text, None
    return q.payload_text(with_name=mode == "incident")


async def evaluate(name: str, queries: list[Query], kb: KnowledgeBase, mode: str) -> Result:
    ranks: list[int | None] = []
    tops: list[list[str]] = []
    lat: list[float] = []
    for q in queries:
        text, labels = mode_input(q, mode)
        t0 = time.perf_counter()
        got = [h.id for h in await kb.search_runbooks(text, limit=10, labels=labels)]
        lat.append((time.perf_counter() - t0) * 1000)
        ranks.append(got.index(q.expected) if q.expected in got else None)
        tops.append(got[:3])
    return Result(name, ranks, tops, lat)


def grid() -> list[RetrievalTuning]:
    """The methods compared: fusion x the three query-side steps of #18 x query expansion."""
    fusions = [("weighted", 0.6), ("weighted", 0.7), ("rrf", 0.7)]
    steps = [(False, True)] * 3
    out = []
    for (fusion, w), norm, sig, ev, title in itertools.product(fusions, *steps, (0.0, 0.2, 0.35)):
        if fusion == "rrf" and title not in (0.0, 0.2):
            continue  # rrf adds the title ranking whole: one point with it, one without
        out.append(
            RetrievalTuning(
                fusion=fusion,  # type: ignore[arg-type]
                dense_weight=w,
                normalize_queries=norm,
                signal_terms=sig,
                label_evidence=ev,
                title_weight=title,
            )
        )
    return out


def payload_grid(base: RetrievalTuning) -> list[RetrievalTuning]:
    """The payload evidence of #18 (second part) on top of `base`: no payload branch first (the
    baseline the cross-validation compares with), then branch weight x field x value signals."""
    off = dataclasses.replace(base, payload_weight=0.0, value_signals=False)
    out = [off, dataclasses.replace(off, value_signals=True)]
    for w, field, values, k in itertools.product((0.1, 0.2, 0.3), ("body", "title"), (False, True), (0, 3)):
        out.append(
            dataclasses.replace(off, payload_weight=w, payload_field=field, value_signals=values, payload_top_k=k)
        )
    return out


def describe(t: RetrievalTuning) -> str:
    fusion = f"weighted {t.dense_weight:.1f}" if t.fusion == "weighted" else f"rrf k={t.rrf_k}"
    if t.title_weight > 0:
        fusion += f" + title {t.title_weight:.2f}" if t.fusion == "weighted" else " + title"
    flags = [
        n
        for n, on in (
            ("normalize", t.normalize_queries),
            ("signals", t.signal_terms),
            ("labels", t.label_evidence),
            ("expand", t.expand_queries),
            ("value shape", t.value_signals),
        )
        if on
    ]
    if t.payload_weight > 0:
        top = f" among top {t.payload_top_k}" if t.payload_top_k else ""
        flags.append(f"payload {t.payload_weight:.1f} in {t.payload_field}{top}")
    return f"{fusion}; {' + '.join(flags) or 'no query steps'}"


FIT_MODES = ("search", "incident-noname")


def fit_score(scores: dict[tuple[str, str], Result], sources: list[str]) -> float:
    """Mean criterion over the sources' fit modes (sources without payloads: `search` only)."""
    vals = [r.criterion for (s, m), r in scores.items() if s in sources and m in FIT_MODES]
    return sum(vals) / len(vals)


def print_rows(title: str, rows: list[tuple[str, str, Result]]) -> None:
    print(f"\n{title}\n")
    print(f"  {'source':<12} {'mode':<16} {'n':>4} {'top-1':>7} {'top-3':>7} {'top-10':>7} {'MRR':>6}")
    for source, mode, r in rows:
        print(
            f"  {source:<12} {mode:<16} {len(r.ranks):>4} {r.at(1):>7.1%} {r.at(3):>7.1%} "
            f"{r.at(10):>7.1%} {r.mrr:>6.3f}"
        )


def print_misses(source: str, result: Result, queries: list[Query]) -> None:
    misses = [(q, r, t) for q, r, t in zip(queries, result.ranks, result.tops, strict=True) if r != 0]
    print(f"\n{source} {result.name}: {len(misses)} queries without the expected runbook first")
    for q, r, top in misses:
        where = "not in top 10" if r is None else f"rank {r + 1}"
        print(f"  - {q.text}\n      expected {q.expected} ({where}); got {', '.join(top)}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def latency(store: EdgeStore, embedder: Any, queries: list[Query], tuning: RetrievalTuning) -> list[float]:
    """Recall latency of fresh incidents: a new knowledge base (empty query cache) over the
    index, the real embedder (no benchmark cache), the `incident` mode's text and labels."""
    kb = KnowledgeBase(store, embedder, tuning=tuning)
    out = []
    for q in queries:
        text, labels = q.payload_text(with_name=True)
        t0 = time.perf_counter()
        await kb.search_runbooks(text, limit=5, labels=labels)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="runbook directory (markdown)")
    parser.add_argument("--holdout", action="store_true", help="also score the held-out annotation set (source 4)")
    parser.add_argument("--sweep", action="store_true", help="run the method grid and the cross-source validation")
    parser.add_argument(
        "--sweep-payload",
        action="store_true",
        help="cross-validate the payload evidence (label keys, value shape) on top of the product's method",
    )
    parser.add_argument(
        "--show-misses",
        action="append",
        default=[],
        metavar="SOURCE",
        help="print the misses of the product's method on a source (repeatable)",
    )
    parser.add_argument(
        "--rerank", action="store_true", help="compare second stages among the top-k by cross-validation"
    )
    parser.add_argument("--quick", action="store_true", help="skip the latency measurement")
    args = parser.parse_args(argv)

    from activities.knowledge.embeddings import LocalEmbedder

    runbooks, errors = load_runbooks(args.corpus)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    known = {rb.id for rb in runbooks}
    kube, without = load_kube_rules(KUBE_RULES, known)
    sources: dict[str, list[Query]] = {
        "paraphrases": load_queries(DEFAULT_QUERIES, known),
        "kube-rules": kube,
        "awesome": load_awesome(CHECK_SET, AWESOME_RULES, known),
    }
    if args.holdout:
        sources["holdout"] = load_queries(HOLDOUT, known)
    print(f"corpus: {args.corpus} ({len(runbooks)} runbooks, {len(errors)} skipped)")
    for name, qs in sources.items():
        print(f"source {name}: {len(qs)} queries over {len({q.expected for q in qs})} runbooks")
    print(
        f"  (kube-rules leaves out {len(without)} rules whose alert has no runbook: {', '.join(sorted(set(without)))})"
    )

    inner = LocalEmbedder()
    embedder = CachingEmbedder(inner)
    product = RetrievalTuning()
    status = 0
    with tempfile.TemporaryDirectory(prefix="retrieval-eval-") as tmp:
        store = EdgeStore(Path(tmp) / "kb", dim=embedder.dim)
        kb = KnowledgeBase(store, embedder)
        await kb.ensure()
        t0 = time.perf_counter()
        await kb.upsert_runbooks(runbooks)
        print(f"indexed {await store.count(Collection.RUNBOOKS)} runbooks in {time.perf_counter() - t0:.1f} s")

        def modes_of(source: str) -> tuple[str, ...]:
            return MODES if sources[source] and sources[source][0].labels else ("search",)

        async def score(
            tuning: RetrievalTuning, names: list[str], modes: tuple[str, ...] = MODES
        ) -> dict[tuple[str, str], Result]:
            trial = KnowledgeBase(store, embedder, tuning=tuning)
            out = {}
            for s in names:
                for m in modes_of(s):
                    if m in modes:
                        out[(s, m)] = await evaluate(m, sources[s], trial, m)
            return out

        tuned = ["paraphrases", "kube-rules", "awesome"]
        if args.sweep or args.sweep_payload:
            points = grid() if args.sweep else payload_grid(product)
            what = "method grid" if args.sweep else "payload-evidence grid (the rest at the product's)"
            print(f"\n{what}: {len(points)} points x sources {', '.join(tuned)} (modes {', '.join(FIT_MODES)})")
            table = [(t, await score(t, tuned, FIT_MODES)) for t in points]
            print(f"\n  {'method':<64} " + " ".join(f"{s[:11]:>11}" for s in tuned) + "   (top-1: search / no-name)")
            for t, sc in sorted(table, key=lambda ts: -fit_score(ts[1], tuned)):
                cells = [
                    f"{sc[(s, 'search')].at(1):.1%}"
                    + (f"/{sc[(s, FIT_MODES[1])].at(1):.1%}" if (s, FIT_MODES[1]) in sc else "")
                    for s in tuned
                ]
                print(f"  {describe(t):<64} " + " ".join(f"{c:>11}" for c in cells))
            print("\ncross-validation across sources (chosen on the others, scored on the one left out):\n")
            left_top1, left_top3 = [], []
            left_fit, base_fit = [], []  # the criterion on the left-out source, chosen point vs first row
            for held in tuned:
                fit = [s for s in tuned if s != held]
                best_t, best_sc = max(table, key=lambda ts: fit_score(ts[1], fit))
                base_sc = next(sc for t, sc in table if t == points[0])
                left_fit.append(fit_score(best_sc, [held]))
                base_fit.append(fit_score(base_sc, [held]))
                r, b0 = best_sc[(held, "search")], base_sc[(held, "search")]
                left_top1.append(r.at(1))
                left_top3.append(r.at(3))
                print(
                    f"  left out {held:<12} chosen: {describe(best_t):<64} "
                    f"top-1 {b0.at(1):.1%} -> {r.at(1):.1%}  top-3 {b0.at(3):.1%} -> {r.at(3):.1%}  (search)"
                )
                if (held, FIT_MODES[1]) in best_sc:
                    r, b0 = best_sc[(held, FIT_MODES[1])], base_sc[(held, FIT_MODES[1])]
                    print(
                        f"  {'':<22} {'':<64} top-1 {b0.at(1):.1%} -> {r.at(1):.1%}  "
                        f"top-3 {b0.at(3):.1%} -> {r.at(3):.1%}  ({FIT_MODES[1]})"
                    )
            print(
                f"\n  cross-source (mean of the left-out sources, search): top-1 {statistics.mean(left_top1):.1%}, "
                f"top-3 {statistics.mean(left_top3):.1%}   (first row of the grid: {describe(points[0])})"
            )
            chosen = max(table, key=lambda ts: fit_score(ts[1], tuned))[0]
            gain = statistics.mean(left_fit) - statistics.mean(base_fit)
            if args.sweep_payload and gain <= 0:
                # Choosing among these points loses on the sources it did not see: the steps they
                # add do not carry over, whatever the point chosen on all three.
                chosen = points[0]
                print(
                    f"  choosing among the grid loses {-gain:.3f} (criterion, left-out sources) against its first row: "
                    "the product keeps the first row"
                )
            same = "" if chosen == product else "  <- NOT the product's default"
            print(f"  chosen: {describe(chosen)}{same}")
            print(f"  product's default:   {describe(product)}")

        if args.rerank:
            from benchmarks.retrieval_rerank import FIT_MODES as RERANK_MODES
            from benchmarks.retrieval_rerank import run as run_rerank

            inputs = {
                (s, m): [(*mode_input(q, m), q.expected) for q in sources[s]]
                for s in tuned
                for m in modes_of(s)
                if m in RERANK_MODES
            }
            await run_rerank(KnowledgeBase(store, embedder, tuning=product), inner, runbooks, inputs)

        rows = []
        for label, tuning in (("old method", OLD_METHOD), ("product", product)):
            sc = await score(tuning, list(sources))
            rows = [(s, m, r) for (s, m), r in sc.items()]
            print_rows(f"{label}: {describe(tuning)}", rows)
            if label == "product":
                for s in args.show_misses:
                    print_misses(s, sc[(s, "search")], sources[s])
                for (s, m), r in sc.items():
                    if m == "search" and s != "paraphrases" and (r.at(1) < TARGET_TOP1 or r.at(3) < TARGET_TOP3):
                        status = 1

        if not args.quick:
            incidents = sources["kube-rules"] + sources["awesome"]
            print(f"\nrecall latency, incident mode, fresh queries ({len(incidents)} alerts, one at a time):")
            payload_on = dataclasses.replace(
                product, payload_weight=0.3, payload_field="title", payload_top_k=3, value_signals=True
            )
            for label, tuning in (("old method", OLD_METHOD), ("product", product), ("+ payload", payload_on)):
                lat = await latency(store, inner, incidents, tuning)
                print(f"  {label:<11} p50 {pct(lat, 50):6.1f} ms   p95 {pct(lat, 95):6.1f} ms   ({describe(tuning)})")
        await store.close()
    inner.close()
    verdict = "meets" if status == 0 else "MISSES"
    print(
        f"\nproduct {verdict} the targets on the sources it was not tuned on "
        f"(search mode: top-1 >= {TARGET_TOP1:.0%}, top-3 >= {TARGET_TOP3:.0%})"
    )
    return status


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
