"""The pure policies: triage, decide, plan_level, render_actions, fallback_confidence, run_confidence,
protected namespaces."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic_core import policy
from agentic_core.incident import Category, PolicyVerdict, RecalledRunbook, Severity
from agentic_core.models import ApprovalMode, AutomationLevel, ToolCall

# --------------------------------------------------------------------------- triage


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Severity.CRITICAL),
        ("CRITICAL", Severity.CRITICAL),
        ("error", Severity.CRITICAL),
        (" page ", Severity.CRITICAL),
        ("warning", Severity.WARNING),
        ("Warn", Severity.WARNING),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
        ("", Severity.INFO),
        (None, Severity.INFO),
    ],
)
def test_severity_is_normalised(value: str | None, expected: Severity) -> None:
    assert policy.normalise_severity(value) == expected
    labels = {"alertname": "X"} if value is None else {"alertname": "X", "severity": value}
    assert policy.triage(labels, {}).severity == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "KubePodCrashLooping", "namespace": "media", "app": "sonarr"}, Category.ARR),
        ({"alertname": "SonarrDown"}, Category.ARR),
        ({"alertname": "TargetDown", "job": "radarr-4k"}, Category.ARR),
        ({"alertname": "X", "service": "qbittorrent"}, Category.ARR),
        ({"alertname": "X", "namespace": "arr"}, Category.ARR),
        ({"alertname": "X", "namespace": "arr-stack"}, Category.ARR),
        ({"alertname": "ArrayDegraded", "namespace": "storage"}, Category.INFRASTRUCTURE),  # "arr" is a token only
        ({"alertname": "X", "namespace": "home-assistant"}, Category.HOME_ASSISTANT),
        ({"alertname": "X", "app": "zigbee2mqtt"}, Category.HOME_ASSISTANT),
        ({"alertname": "HomeAssistantDown"}, Category.HOME_ASSISTANT),
        ({"alertname": "X", "job": "esphome"}, Category.HOME_ASSISTANT),
        ({"alertname": "X", "namespace": "temporal"}, Category.PLATFORM),
        ({"alertname": "X", "namespace": "ai-inference"}, Category.PLATFORM),
        ({"alertname": "X", "service": "qdrant"}, Category.PLATFORM),
        ({"alertname": "VllmQueueFull"}, Category.PLATFORM),
        ({"alertname": "X", "job": "litellm"}, Category.PLATFORM),
        ({"alertname": "X", "namespace": "agentic"}, Category.PLATFORM),
        ({"alertname": "X", "namespace": "ai-tools", "app": "sonarr"}, Category.ARR),  # the app wins
        ({"alertname": "KubeNodeNotReady", "node": "worker-2"}, Category.INFRASTRUCTURE),
        ({"alertname": "X", "namespace": "kube-system"}, Category.INFRASTRUCTURE),
        ({"alertname": "X", "namespace": "maintenance"}, Category.INFRASTRUCTURE),  # "ai" inside a word
        # object labels of kube-state-metrics and kubelet alerts (benchmarks/decision_eval.py found
        # these routed to infrastructure): the object named is what the alert is about
        ({"alertname": "KubePodNotReady", "namespace": "media", "pod": "sonarr-5f7c9d8b6-x2kqp"}, Category.ARR),
        (
            {
                "alertname": "KubeJobFailed",
                "namespace": "media",
                "job": "kube-state-metrics",
                "job_name": "radarr-backup-1",
            },
            Category.ARR,
        ),
        (
            {
                "alertname": "KubePersistentVolumeFillingUp",
                "namespace": "media",
                "persistentvolumeclaim": "config-radarr-0",
            },
            Category.ARR,
        ),
        ({"alertname": "KubeStatefulSetReplicasMismatch", "statefulset": "home-assistant"}, Category.HOME_ASSISTANT),
        ({"alertname": "KubeDaemonSetRolloutStuck", "daemonset": "zigbee2mqtt"}, Category.HOME_ASSISTANT),
        ({"alertname": "KubeHpaMaxedOut", "horizontalpodautoscaler": "qdrant"}, Category.PLATFORM),
        (
            {"alertname": "PodRestartingTooOften", "namespace": "home", "container": "mosquitto"},
            Category.HOME_ASSISTANT,
        ),
        (
            {"alertname": "KubePodNotReady", "namespace": "photos", "pod": "immich-server-6d8f7c9b54-q7xkz"},
            Category.INFRASTRUCTURE,
        ),
    ],
)
def test_category_from_label_hints(labels: dict[str, str], expected: Category) -> None:
    assert policy.categorise(labels) == expected


def test_route_is_critical_for_critical_alerts_else_the_category() -> None:
    crit = policy.triage({"alertname": "X", "app": "sonarr", "severity": "critical"}, {})
    assert (crit.category, crit.route) == (Category.ARR, "critical")
    warn = policy.triage({"alertname": "X", "app": "sonarr", "severity": "warning"}, {})
    assert warn.route == "arr"
    info = policy.triage({"alertname": "X"}, {})
    assert info.route == "infrastructure"


def test_title_from_summary_else_alertname() -> None:
    r = policy.triage({"alertname": "KubePodCrashLooping"}, {"summary": "Pod shop/checkout is crash looping."})
    assert (r.title, r.alertname) == ("Pod shop/checkout is crash looping.", "KubePodCrashLooping")
    assert policy.triage({"alertname": "KubePodCrashLooping"}, {"description": "long"}).title == "KubePodCrashLooping"
    assert policy.triage({"job": "x"}, {}).title == "unnamed alert"


# --------------------------------------------------------------------------- decide

L = AutomationLevel
V = PolicyVerdict


@pytest.mark.parametrize(
    ("level", "mode", "confidence", "has_actions", "expected"),
    [
        (L.STANDARD, ApprovalMode.NORMAL, 0.9, False, V.NOTHING_TO_DO),
        (L.MANUAL, ApprovalMode.VERBOSE, 0.0, False, V.ASK_ACKNOWLEDGE),  # VERBOSE asks about everything
        (L.STANDARD, ApprovalMode.VERBOSE, 1.0, True, V.ASK),
        (L.PROMPTED, ApprovalMode.VERBOSE, 1.0, True, V.ASK),
        (L.MANUAL, ApprovalMode.NORMAL, 1.0, True, V.ASK),
        (L.PROMPTED, ApprovalMode.NORMAL, 1.0, True, V.ASK_RECOMMEND),
        (L.PROMPTED, ApprovalMode.NORMAL, 0.1, True, V.ASK_RECOMMEND),
        (L.STANDARD, ApprovalMode.NORMAL, 0.7, True, V.RUN_THEN_NOTIFY),  # at the threshold
        (L.STANDARD, ApprovalMode.NORMAL, 0.95, True, V.RUN_THEN_NOTIFY),
        (L.STANDARD, ApprovalMode.NORMAL, 0.69, True, V.ASK_RECOMMEND),
        (L.STANDARD, ApprovalMode.NORMAL, float("nan"), True, V.ASK_RECOMMEND),
    ],
)
def test_decide(level: L, mode: ApprovalMode, confidence: float, has_actions: bool, expected: V) -> None:
    assert policy.decide(level, mode, confidence, 0.7, has_actions) == expected


@given(
    level=st.sampled_from(list(AutomationLevel)),
    confidence=st.floats(allow_nan=True),
    threshold=st.floats(0, 1),
)
def test_verbose_always_asks(level: AutomationLevel, confidence: float, threshold: float) -> None:
    assert policy.decide(level, ApprovalMode.VERBOSE, confidence, threshold, True) == PolicyVerdict.ASK


@given(
    level=st.sampled_from(list(AutomationLevel)),
    mode=st.sampled_from(list(ApprovalMode)),
    confidence=st.floats(allow_nan=True),
    threshold=st.floats(0, 1),
)
def test_no_actions_asks_in_verbose_and_is_nothing_to_do_in_normal(
    level: AutomationLevel, mode: ApprovalMode, confidence: float, threshold: float
) -> None:
    expected = PolicyVerdict.ASK_ACKNOWLEDGE if mode == ApprovalMode.VERBOSE else PolicyVerdict.NOTHING_TO_DO
    assert policy.decide(level, mode, confidence, threshold, False) == expected


@given(level=st.sampled_from(list(AutomationLevel)), confidence=st.floats(0, 1), threshold=st.floats(0, 1))
def test_only_standard_runs_without_asking(level: AutomationLevel, confidence: float, threshold: float) -> None:
    verdict = policy.decide(level, ApprovalMode.NORMAL, confidence, threshold, True)
    assert (verdict == PolicyVerdict.RUN_THEN_NOTIFY) == (level == AutomationLevel.STANDARD and confidence >= threshold)


# --------------------------------------------------------------------------- plan_level

RESTART = ToolCall(tool="kubernetes.restart_deployment", arguments={"namespace": "shop", "name": "checkout"})
SCALE = ToolCall(tool="kubernetes.scale_deployment", arguments={"namespace": "shop", "name": "checkout", "replicas": 2})


def test_plan_level_holds_only_for_the_runbooks_own_plan() -> None:
    assert policy.plan_level(L.STANDARD, [RESTART, SCALE], [RESTART, SCALE]) == L.STANDARD
    assert policy.plan_level(L.STANDARD, [RESTART, SCALE], [SCALE, RESTART]) == L.MANUAL  # order
    assert policy.plan_level(L.STANDARD, [RESTART, SCALE], [RESTART]) == L.MANUAL  # cut by the guard
    other = ToolCall(tool=RESTART.tool, arguments={**RESTART.arguments, "name": "cart"})
    assert policy.plan_level(L.PROMPTED, [RESTART], [other]) == L.MANUAL  # other arguments
    assert policy.plan_level(None, [], [RESTART]) == L.MANUAL  # no runbook
    assert policy.plan_level(L.STANDARD, [], []) == L.MANUAL  # nothing to run


# --------------------------------------------------------------------------- untrusted content

_tool_calls = st.builds(
    ToolCall,
    tool=st.sampled_from(["scale_deployment", "rollout_restart", "get_pods", "delete_namespace"]),
    arguments=st.dictionaries(
        st.sampled_from(["namespace", "deployment", "replicas"]),
        st.one_of(st.sampled_from(["media", "kube-system", "sonarr"]), st.integers(0, 3)),
        max_size=3,
    ),
)
_plans = st.lists(_tool_calls, max_size=4)


def test_untrusted_plan_examples() -> None:
    assert policy.untrusted_plan([SCALE], None)  # a model's own plan, alert text in its context
    assert policy.untrusted_plan([SCALE], [RESTART])  # names a runbook but is not its plan
    assert policy.untrusted_plan([RESTART], [RESTART, SCALE])  # a runbook's plan cut down
    assert not policy.untrusted_plan([RESTART, SCALE], [RESTART, SCALE])  # the runbook's own plan
    assert not policy.untrusted_plan([], None)  # nothing to run, nothing to ask about
    assert not policy.untrusted_plan([SCALE], None, untrusted_context=False)  # no untrusted content seen


@given(plan=_plans, runbook=st.one_of(st.none(), _plans), level=st.sampled_from(list(L)))
def test_untrusted_plans_always_ask_whatever_the_level(
    plan: list[ToolCall], runbook: list[ToolCall] | None, level: AutomationLevel
) -> None:
    """A plan the rule catches never runs alone: its level is manual, and no mode, confidence or
    runbook level turns that into RUN_THEN_NOTIFY."""
    if not policy.untrusted_plan(plan, runbook):
        return
    assert plan  # an empty plan is never caught: there is nothing to approve
    got = policy.plan_level(level, runbook or [], plan)
    assert got == L.MANUAL
    for mode in ApprovalMode:
        verdict = policy.decide(got, mode, 1.0, 0.0, True)
        assert verdict in (PolicyVerdict.ASK, PolicyVerdict.ASK_RECOMMEND) and verdict != PolicyVerdict.RUN_THEN_NOTIFY


@given(plan=_plans, level=st.sampled_from(list(L)))
def test_a_runbooks_own_plan_is_never_caught_and_keeps_its_level(plan: list[ToolCall], level: AutomationLevel) -> None:
    assert not policy.untrusted_plan(plan, list(plan))
    if plan:
        assert policy.plan_level(level, plan, list(plan)) == level


@given(plan=_plans, runbook=st.one_of(st.none(), _plans))
def test_the_rule_is_exactly_a_nonempty_plan_that_is_not_the_runbooks(
    plan: list[ToolCall], runbook: list[ToolCall] | None
) -> None:
    same = runbook is not None and [c.model_dump() for c in plan] == [c.model_dump() for c in runbook]
    assert policy.untrusted_plan(plan, runbook) == (bool(plan) and not same)
    assert not policy.untrusted_plan(plan, runbook, untrusted_context=False)


# --------------------------------------------------------------------------- render


def test_render_fills_label_templates_recursively() -> None:
    actions = [
        ToolCall(
            tool="kubernetes.restart_deployment",
            arguments={
                "namespace": "{{ labels.namespace }}",
                "name": "{{labels.deployment}}",
                "note": "restart {{  labels.deployment  }} in {{ labels.namespace }}",
                "nested": {"list": ["{{ labels.namespace }}", 3, None, {"deep": "{{ labels.pod }}"}]},
                "count": 2,
                "flag": True,
            },
        )
    ]
    labels = {"namespace": "shop", "deployment": "checkout", "pod": "checkout-7d9f"}
    out = policy.render_actions(actions, labels)
    assert out[0].tool == "kubernetes.restart_deployment"
    assert out[0].arguments == {
        "namespace": "shop",
        "name": "checkout",
        "note": "restart checkout in shop",
        "nested": {"list": ["shop", 3, None, {"deep": "checkout-7d9f"}]},
        "count": 2,
        "flag": True,
    }
    assert actions[0].arguments["namespace"] == "{{ labels.namespace }}"  # the input is not changed
    assert not policy.has_templates(out[0].arguments)
    assert policy.has_templates(actions[0].arguments)


def test_render_refuses_a_missing_label_and_names_it() -> None:
    actions = [ToolCall(tool="kubernetes.restart_deployment", arguments={"name": "{{ labels.deployment }}"})]
    with pytest.raises(ValueError, match=r"deployment") as exc:
        policy.render_actions(actions, {"namespace": "shop"})
    assert "kubernetes.restart_deployment" in str(exc.value)
    assert "namespace" in str(exc.value)  # the labels the alert has


def test_render_leaves_other_braces_alone() -> None:
    call = ToolCall(tool="t", arguments={"q": "{{ annotations.summary }}", "json": '{"a": 1}', "x": "{labels.y}"})
    assert policy.render_actions([call], {}) == [call]


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    tool=st.text(min_size=1, max_size=30),
    arguments=st.dictionaries(st.text(max_size=10), _json, max_size=5),
    labels=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=5),
)
def test_render_is_identity_without_templates(tool: str, arguments: dict[str, Any], labels: dict[str, str]) -> None:
    call = ToolCall(tool=tool, arguments=arguments)
    if policy.has_templates(arguments):
        return  # hypothesis writing a template by chance: not this property
    assert policy.render_actions([call], labels) == [call]


# --------------------------------------------------------------------------- fallback confidence


def test_fallback_confidence_bands() -> None:
    assert policy.fallback_confidence(1.0 + 1.0, True) == pytest.approx(0.9)
    assert policy.fallback_confidence(1.0 + 0.0, True) == pytest.approx(0.6)
    assert policy.fallback_confidence(1.5, True) == pytest.approx(0.75)
    assert policy.fallback_confidence(1.0, False) == pytest.approx(0.5)
    assert policy.fallback_confidence(0.4, False) == pytest.approx(0.2)
    assert policy.fallback_confidence(0.0, False) == 0.0
    assert policy.fallback_confidence(float("nan"), True) == pytest.approx(0.6)
    assert policy.fallback_confidence(-3.0, False) == 0.0


@given(score=st.floats(allow_nan=True, allow_infinity=True), matched=st.booleans())
def test_fallback_confidence_is_a_probability_and_text_only_stays_below_the_default_threshold(
    score: float, matched: bool
) -> None:
    c = policy.fallback_confidence(score, matched)
    assert 0.0 <= c <= 1.0
    if not matched:
        assert c <= 0.5  # text retrieval alone never lets a standard runbook run unasked


@given(a=st.floats(0, 2), b=st.floats(0, 2), matched=st.booleans())
def test_fallback_confidence_is_monotonic(a: float, b: float, matched: bool) -> None:
    lo, hi = sorted((a, b))
    if matched and lo < 1.0 <= hi:
        return  # a label match is scored from 1 up; below 1 the score is the text part alone
    assert policy.fallback_confidence(lo, matched) <= policy.fallback_confidence(hi, matched)


# --------------------------------------------------------------------------- run_confidence


def _recalled(score: float, matched: bool) -> RecalledRunbook:
    return RecalledRunbook(id="rb", title="rb", score=score, matched_labels=matched)


def test_run_confidence_is_the_runbooks_evidence_which_the_model_can_only_lower() -> None:
    # A model that reports 1.0 gets no further than the evidence: a text-only match stays at or
    # below 0.5, a weak label match below the default threshold, a good one above it.
    assert policy.run_confidence(_recalled(0.9, False), 1.0) == pytest.approx(0.45)
    assert policy.run_confidence(_recalled(1.05, True), 1.0) == pytest.approx(0.615)
    assert policy.run_confidence(_recalled(1.8, True), 1.0) == pytest.approx(0.84)
    # A doubtful model lowers it (it can make the agent ask).
    assert policy.run_confidence(_recalled(1.8, True), 0.3) == pytest.approx(0.3)
    # No runbook, or a confidence that is no number: nothing to run alone on.
    assert policy.run_confidence(None, 1.0) == 0.0
    assert policy.run_confidence(_recalled(1.8, True), float("nan")) == 0.0


@given(
    score=st.floats(allow_nan=True, allow_infinity=True),
    matched=st.booleans(),
    model=st.floats(allow_nan=True, allow_infinity=True),
    threshold=st.floats(0.51, 1.0),
)
def test_no_model_confidence_makes_a_text_only_runbook_run_alone(
    score: float, matched: bool, model: float, threshold: float
) -> None:
    c = policy.run_confidence(_recalled(score, matched), model)
    assert 0.0 <= c <= 1.0 and c <= policy.fallback_confidence(score, matched)
    if not matched:
        verdict = policy.decide(AutomationLevel.STANDARD, ApprovalMode.NORMAL, c, threshold, True)
        assert verdict != PolicyVerdict.RUN_THEN_NOTIFY


# --------------------------------------------------------------------------- protected namespaces


def test_protected_namespaces_of_an_action() -> None:
    patterns = policy.DEFAULT_PROTECTED_NAMESPACES
    call = ToolCall(tool="rollout_restart", arguments={"namespace": "kube-system", "deployment": "coredns"})
    assert policy.protected_namespaces(call, patterns) == [("kube-system", "kube-system")]
    qdrant = ToolCall(tool="scale_deployment", arguments={"namespace": " AI-Vector ", "deployment": "qdrant"})
    assert policy.protected_namespaces(qdrant, patterns) == [("ai-vector", "ai-*")]
    several = ToolCall(tool="x", arguments={"namespaces": ["media", "cnpg-system", "argocd"]})
    assert policy.protected_namespaces(several, patterns) == [("cnpg-system", "cnpg-system"), ("argocd", "argocd")]
    assert policy.protected_namespaces(ToolCall(tool="x", arguments={"namespace": "media"}), patterns) == []
    assert policy.protected_namespaces(ToolCall(tool="get_nodes"), patterns) == []
    assert policy.protected_namespaces(call, []) == []


@pytest.mark.parametrize("level", list(AutomationLevel))
def test_a_protected_plan_never_runs_without_a_human(level: AutomationLevel) -> None:
    for mode in ApprovalMode:
        verdict = policy.decide(level, mode, 1.0, 0.7, True, protected=True)
        assert verdict in (PolicyVerdict.ASK, PolicyVerdict.ASK_RECOMMEND)
    assert policy.decide(AutomationLevel.STANDARD, ApprovalMode.NORMAL, 1.0, 0.7, True, protected=True) == (
        PolicyVerdict.ASK_RECOMMEND
    )
    assert policy.decide(level, ApprovalMode.NORMAL, 1.0, 0.7, False, protected=True) == PolicyVerdict.NOTHING_TO_DO
