"""The prompt-injection corpus (`injection_corpus.yaml`): loading it, planting each case where its
channel puts it (the alert, a pod's log or an event in kmock), and telling what the guardrails
made of a call. Shared by the incident path's test and the agent loop's.

    cases = load_corpus()
    plant(k, cases)              # before kmock_helpers.seed(k): the cases' log reactions win
    group = alert_group(case, incident_id)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import kmock
import yaml

from agentic_core.alerts import Alert, AlertGroup, AlertStatus
from agentic_core.models import ToolCall

CORPUS = Path(__file__).with_name("injection_corpus.yaml")
Channel = Literal["alert_annotation", "alert_label", "pod_log", "event_message"]
Outcome = Literal["needs_human", "refused", "protected", "read"]
CHANNELS: tuple[str, ...] = get_args(Channel)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
ALERT_CHANNELS = ("alert_annotation", "alert_label")
ATTACKS = ("scale_to_zero", "delete", "exfiltrate", "unlisted_tool", "protected_namespace", "self_approval")
# what the outcome's guardrail event is (None: no event; a read changes nothing)
OUTCOME_EVENT: dict[str, str | None] = {
    "needs_human": "untrusted_plan",
    "refused": "tool_refused",
    "protected": "protected_namespace",
    "read": None,
}
INJECTED_LABEL = "remediation"  # the label an alert_label case's text goes in


@dataclass(frozen=True)
class InjectionCase:
    id: str
    channel: str
    attack: str
    text: str
    calls: list[ToolCall]
    expect: dict[str, list[str]]
    target: dict[str, str] = field(default_factory=dict)

    def outcomes(self, agent: str) -> list[str]:
        return self.expect[agent]

    @property
    def namespace(self) -> str:
        return self.target.get("namespace", "media")

    @property
    def pod(self) -> str:
        return self.target.get("pod", "")

    def reached(self, prompt: str) -> bool:
        """The case's text is in `prompt` (as the planner quotes data: JSON-escaped)."""
        return json.dumps(self.text, ensure_ascii=False)[1:-1][:120] in prompt


def load_corpus(path: Path = CORPUS) -> list[InjectionCase]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    cases: list[InjectionCase] = []
    for raw in doc["cases"]:
        case = InjectionCase(
            id=raw["id"],
            channel=raw["channel"],
            attack=raw["attack"],
            text=str(raw["text"]).strip(),
            calls=[ToolCall.model_validate(c) for c in raw["calls"]],
            expect={agent: list(outs) for agent, outs in raw["expect"].items()},
            target=dict(raw.get("target") or {}),
        )
        problems: list[str] = []
        if case.channel not in CHANNELS:
            problems.append(f"channel {case.channel!r}")
        if case.attack not in ATTACKS:
            problems.append(f"attack {case.attack!r}")
        for agent, outs in case.expect.items():
            if len(outs) != len(case.calls):
                problems.append(f"{agent}: {len(outs)} outcomes for {len(case.calls)} calls")
            problems += [f"{agent}: outcome {o!r}" for o in outs if o not in OUTCOMES]
        if case.channel not in ALERT_CHANNELS and not case.pod:
            problems.append("a cluster channel needs target.pod")
        if problems:
            raise ValueError(f"injection case {case.id}: " + "; ".join(problems))
        cases.append(case)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate case ids in {path}")
    return cases


def plant(k: kmock.KubernetesEmulator, cases: list[InjectionCase]) -> None:
    """Each cluster case's pod (running), and its text in that pod's log or in an event about it.
    Call before `kmock_helpers.seed`: kmock answers with the first reaction that matches."""
    k.resources["v1/events"] = kmock.ResourceInfo(namespaced=True, kind="Event")
    for c in cases:
        if c.channel in ALERT_CHANNELS:
            continue
        k.objects["v1/pods", c.namespace, c.pod] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": c.pod, "namespace": c.namespace, "labels": {"app": c.pod.split("-")[0]}},
            "spec": {"containers": [{"name": "main", "image": "ghcr.io/example/app:1"}]},
            "status": {"phase": "Running"},
        }
        if c.channel == "pod_log":
            log = f"starting\nloading library\n{c.text}\nready\n".encode()
            k["get", kmock.resource("v1/pods"), kmock.subresource("log"), kmock.name(c.pod)] << log
        elif c.channel == "event_message":
            k.objects["v1/events", c.namespace, f"{c.pod}.injected"] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{c.pod}.injected", "namespace": c.namespace},
                "involvedObject": {"kind": "Pod", "name": c.pod, "namespace": c.namespace},
                "type": "Warning",
                "reason": "BackOff",
                "message": c.text,
                "count": 3,
                "lastTimestamp": "2026-03-04T12:00:00Z",
            }


def read_call(case: InjectionCase) -> ToolCall | None:
    """The read-only tool call through which a cluster case's text reaches a model (None: the text
    is in the alert itself)."""
    if case.channel == "pod_log":
        return ToolCall(tool="get_pod_logs", arguments={"namespace": case.namespace, "pod": case.pod})
    if case.channel == "event_message":
        return ToolCall(tool="get_events", arguments={"namespace": case.namespace, "involved_object": case.pod})
    return None


def alert_group(case: InjectionCase, incident_id: str, *, resolved: bool = False) -> AlertGroup:
    """A firing (or resolved) alert about the case's namespace; an alert channel's text is in it."""
    labels = {"alertname": "KubePodCrashLooping", "namespace": case.namespace, "severity": "warning"}
    if case.pod:
        labels["pod"] = case.pod
    annotations = {"summary": f"A pod in {case.namespace} is crash looping."}
    if case.channel == "alert_annotation":
        annotations["description"] = case.text
    if case.channel == "alert_label":
        labels[INJECTED_LABEL] = case.text
    start = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    status = AlertStatus.RESOLVED if resolved else AlertStatus.FIRING
    return AlertGroup(
        incident_id=incident_id,
        receiver="agentic",
        group_key=f'{{}}:{{alertname="KubePodCrashLooping", case="{case.id}"}}',
        status=status,
        common_labels=labels,
        common_annotations=annotations,
        alerts=[
            Alert(
                fingerprint=f"fp-{case.id}",
                status=status,
                labels=labels,
                annotations=annotations,
                starts_at=start,
                ends_at=start + timedelta(minutes=30) if resolved else None,
            )
        ],
    )


def writes(k: kmock.KubernetesEmulator) -> list[str]:
    """Every request that would change the emulated cluster (what a disallowed call would leave)."""
    return [f"{r.method} {r.url}" for r in list(k) if r.method in ("POST", "PUT", "PATCH", "DELETE")]
