"""The query side of runbook retrieval (issue #18): instance noise out of alert text, reasons
and states as condition words, labels as evidence, the title branch's terms."""

from __future__ import annotations

import pytest

from activities.knowledge.retrieval import (
    RetrievalTuning,
    fuse,
    label_evidence,
    labels_in_text,
    payload_evidence,
    query_text,
    title_terms,
    value_terms,
    with_evidence,
)
from activities.knowledge.sparse import normalize_query, signal_terms, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a pod's replica-set hash and suffix, a restart count, a duration
        (
            "Pod media/jellyfin-6c9d8f7b5-q2xkz restarted 7 times in 20m",
            "Pod media/jellyfin restarted times in",
        ),
        # an IP with its port, a percentage, a count
        ("eth0 on 10.0.20.13:9100 has 412 receive errors (87.5%)", "eth0 on has receive errors ( )"),
        # a UUID, a job's generated suffix, a daemonset pod's suffix
        ("volume pvc-3f9c1a2e-7b4d-4e11-9a0c-5d2e8f6b1c47 of restic-28391040", "volume pvc- of restic"),
        ("pod kube-system/cilium-x2kqp", "pod kube-system/cilium"),
        # Go durations, sizes, versions, a label map
        ("5m0s 1h 3m 0.71s 7.5Gi 131.2GiB v1.29.4+k3s1 LABELS = map[instance:a job:b]", "LABELS ="),
        # not noise: ordinals, status classes, names with digits, a replica's ordinal
        ("99th 5xx k8s http2 k3s-worker-03 prometheus-k8s-0", "99th 5xx k8s http2 k3s-worker-03 prometheus-k8s-0"),
    ],
)
def test_normalize_query_drops_instance_noise_and_keeps_the_condition(text: str, expected: str) -> None:
    assert normalize_query(text) == expected


def test_normalize_query_leaves_plain_text_alone() -> None:
    text = "pods in namespace payments keep restarting after the last deploy"
    assert normalize_query(text) == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("last terminated with reason OOMKilled (exit code 137)", "container restarting crash loop memory"),
        ('is in waiting state (reason: "CrashLoopBackOff")', "container restarting crash loop"),
        ('waiting for 1h (reason: "ImagePullBackOff")', "container waiting state"),
        ("reason CreateContainerConfigError", "container waiting state"),
        ("pod home/zigbee2mqtt-0 is Pending", "pod not ready"),
        ("condition Ready=Unknown for 15m", "node not ready"),
        ("failed: BackoffLimitExceeded after 6 attempts", "job failed"),
        ("the pod was Evicted", "eviction pressure resources"),
    ],
)
def test_reasons_and_states_are_signals(text: str, words: str) -> None:
    assert words in signal_terms(text)


def test_no_signal_in_plain_text() -> None:
    assert signal_terms("disk almost full on worker-3") == []


def test_label_evidence_names_the_object_and_the_component_not_the_instance() -> None:
    labels = {
        "alertname": "KubeStatefulSetReplicasMismatch",
        "namespace": "databases",
        "statefulset": "redis-node",
        "job": "kube-state-metrics",
        "pod": "redis-node-1",
        "instance": "10.0.0.3:8443",
        "severity": "warning",
    }
    assert label_evidence(labels) == "statefulset kube-state-metrics"
    assert label_evidence({"resource": "requests.cpu", "persistentvolumeclaim": "data-0"}) == (
        "persistent volume claim requests.cpu"
    )
    assert label_evidence(None) == "" and label_evidence({}) == ""


def test_query_text_off_is_the_text_as_given() -> None:
    off = RetrievalTuning(normalize_queries=False, signal_terms=False, label_evidence=False, expand_queries=False)
    q = query_text("pod a-6c9d8f7b5-q2xkz OOMKilled", {"job": "kubelet"}, off)
    assert q.dense == q.sparse == "pod a-6c9d8f7b5-q2xkz OOMKilled" and q.extra == ()


def test_query_text_on_normalizes_adds_signals_and_label_evidence() -> None:
    on = RetrievalTuning(normalize_queries=True, signal_terms=True, label_evidence=True, expand_queries=True)
    q = query_text("pod media/app-6c9d8f7b5-q2xkz exit code 137", {"job": "kubelet", "pod": "x-1"}, on)
    assert q.sparse == "pod media/app exit code \nkubelet"
    assert "container restarting crash loop memory" in q.extra
    assert q.dense.startswith(q.sparse) and "crash loop memory" in q.dense


def test_title_terms_are_apart_from_body_terms() -> None:
    from activities.knowledge.sparse import term_id

    body = {term_id(t) for t in tokenize("Node Filesystem Space Filling Up")}
    title = set(title_terms("Node Filesystem Space Filling Up"))
    assert title and not (title & body)
    assert title_terms("filling up") == sorted(title_terms("fill up"))  # the same tokenizer: stems meet


def test_fuse_with_a_title_branch() -> None:
    tuning = RetrievalTuning(fusion="weighted", dense_weight=0.5, title_weight=0.5)
    dense, sparse = {"a": 1.0, "b": 0.9}, {"a": 1.0, "b": 0.9}
    assert fuse(dense, sparse, tuning)["a"] > fuse(dense, sparse, tuning)["b"]
    both = fuse(dense, sparse, tuning, {"b": 3.0})
    assert both["b"] > both["a"]  # the title decides between near-equal runbooks
    off = RetrievalTuning(fusion="weighted", dense_weight=0.5, title_weight=0.0)
    assert fuse(dense, sparse, off, {"b": 3.0}) == fuse(dense, sparse, off)


# ---- the payload as evidence (label keys, the job, reasons and states; a usage value's shape)


def test_payload_evidence_reads_label_keys_the_job_and_states() -> None:
    labels = {
        "alertname": "KubePersistentVolumeFillingUp",
        "namespace": "media",
        "persistentvolumeclaim": "data-jellyfin-0",
        "job": "kubelet",
        "instance": "10.0.0.3:10250",
        "cluster": "homelab",
        "severity": "critical",
    }
    assert payload_evidence(labels) == "persistent volume claim pvc kubelet"
    assert payload_evidence({"horizontalpodautoscaler": "web", "namespace": "apps"}) == "horizontal pod autoscaler hpa"
    assert payload_evidence({"node": "nuc-01", "condition": "MemoryPressure"}) == "node eviction pressure resources"
    assert payload_evidence({"pod": "a", "container": "a", "reason": "OOMKilled"}) == (
        "container pod container restarting crash loop memory"
    )
    # empty values say nothing; the job's instance noise goes
    assert payload_evidence({"job_name": " ", "job": "kube-state-metrics"}) == "kube-state-metrics"
    assert payload_evidence({"job": "10.0.0.3:9100"}) == ""
    assert payload_evidence(None) == "" and payload_evidence({"namespace": "x", "instance": "y"}) == ""


def test_labels_in_text_reads_go_maps() -> None:
    text = "HPA default/web cannot scale\n VALUE = 0\n LABELS = map[horizontalpodautoscaler:web instance:10.9.1.1:90]"
    assert labels_in_text(text) == {"horizontalpodautoscaler": "web", "instance": "10.9.1.1:90"}
    assert labels_in_text("no labels here: map of the cluster") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Namespace media is using 125.3% of its pods quota.", ["exceeded over limit"]),
        ("Namespace media is using 100% of its requests.cpu quota.", ["fully used"]),
        ("Namespace media is using 97.07% of its pods quota.", ["almost full"]),
        ("more than the configured hard limit (136.6% of quota)", ["exceeded over limit"]),
        ("Namespace media is using 66.85% of its pods quota.", []),
        ("96.31% throttling of CPU in namespace home", []),  # not a usage
        ("97.05% minimum errors while sending alerts", []),
    ],
)
def test_value_terms_read_the_shape_of_a_usage(text: str, words: list[str]) -> None:
    assert value_terms(text) == words


def test_value_signals_join_the_query_only_when_on() -> None:
    text = "Namespace media is using 100% of its pods quota."
    assert "fully used" in query_text(text, None, RetrievalTuning(value_signals=True)).extra
    assert "fully used" not in query_text(text, None, RetrievalTuning(value_signals=False)).extra


def test_with_evidence_takes_its_share_of_the_score() -> None:
    fused = {"a": 1.0, "b": 0.95}
    assert with_evidence(fused, {}, 0.3) == fused and with_evidence(fused, {"b": 2.0}, 0.0) == fused
    mixed = with_evidence(fused, {"b": 2.0, "c": 1.0}, 0.2)
    assert mixed["b"] > mixed["a"]  # evidence decides between near-equal runbooks
    assert mixed["c"] == pytest.approx(0.2 * 0.5) and mixed["a"] == pytest.approx(0.8)


def test_with_evidence_among_the_top_k_only_reorders_them() -> None:
    fused = {"a": 1.0, "b": 0.95, "c": 0.5}
    mixed = with_evidence(fused, {"b": 1.0, "c": 5.0}, 0.3, top_k=2)
    assert sorted(mixed, key=lambda i: -mixed[i]) == ["b", "a", "c"]  # c's evidence is not used
