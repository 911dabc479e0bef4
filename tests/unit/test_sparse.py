"""Tokenizer and BM25 sparse encoder (`activities.knowledge.sparse`)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from activities.knowledge.sparse import Bm25Encoder, expand_query, stem, term_id, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("KubePodCrashLooping", ["kubepodcrashloop", "kube", "pod", "crash", "loop"]),
        ("CPUThrottlingHigh", ["cputhrottlinghigh", "cpu", "throttl", "high"]),
        ("OOMKilled", ["oomkill", "oom", "kill"]),
        ("etcdGRPCRequestsSlow", ["etcdgrpcrequestsslow", "etcd", "grpc", "request", "slow"]),
        ("node_filesystem_avail_bytes", ["node_filesystem_avail_bytes", "node", "filesystem", "avail", "byte"]),
        ("kube-state-metrics", ["kube-state-metrics", "kube", "stat", "metric"]),
        ("prometheus.io/scrape", ["prometheus.io/scrape", "prometheus", "io", "scrap"]),
        ("5xx errors on k8s", ["5xx", "error", "k8s"]),
        ("The node is not ready and is down", ["node", "not", "ready", "down"]),
        ("pods keep restarting; restarts, restarted", ["pod", "restart", "restart", "restart"]),
        ("110 pods", ["110", "pod"]),
        # instance names lose their ordinal; other numbers stay
        ("alertmanager-main-0", ["alertmanager-main", "alertmanager", "main"]),
        ("node worker-3", ["node", "worker"]),
        ("prometheus-k8s-1 on 1.28", ["prometheus-k8s", "prometheus", "k8s", "1.28", "1", "28"]),
        ("checkout-7d9f", ["checkout-7d9f", "checkout", "7d9f"]),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_drops_stopwords_but_keeps_alert_words() -> None:
    tokens = tokenize("it is what it is, and the disk is full but not out of space; no leader, up or down")
    assert "the" not in tokens and "is" not in tokens and "and" not in tokens
    for word in ("full", "not", "out", "no", "leader", "up", "down", "disk", "space"):
        assert stem(word) in tokens


def test_stem_merges_inflections() -> None:
    assert stem("restarts") == stem("restarting") == stem("restarted") == "restart"
    assert stem("throttle") == stem("throttled") == stem("throttling")
    assert stem("running") == "run" and stem("stopped") == "stop"
    assert stem("entries") == "entry" and stem("status") == "status"
    assert stem("k8s") == "k8s" and stem("pod") == "pod"


def test_term_ids_are_stable_31_bit_and_independent_of_hash_seed() -> None:
    ids = [term_id(t) for t in ("pod", "kube", "kubepodcrashloop")]
    assert all(0 <= i < 2**31 for i in ids)
    assert len(set(ids)) == 3
    code = "from activities.knowledge.sparse import term_id; print(term_id('pod'))"
    out = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert out == {str(term_id("pod"))}


def test_encode_document_bm25_weights() -> None:
    enc = Bm25Encoder(k1=1.2, b=0.75, avgdl=4)
    vec = enc.encode_document("pod pod pod restart")  # 4 tokens: dl == avgdl
    assert vec.indices == sorted(vec.indices)
    weights = dict(zip(vec.indices, vec.values, strict=True))
    # tf=3: 3 * 2.2 / (3 + 1.2) ; tf=1: 1 * 2.2 / (1 + 1.2) == 1
    assert math.isclose(weights[term_id("pod")], 3 * 2.2 / 4.2)
    assert math.isclose(weights[term_id("restart")], 1.0)
    # saturation: more repetitions help less and less, never beyond k1 + 1
    w10 = dict(zip(*(lambda v: (v.indices, v.values))(enc.encode_document("pod " * 10 + "x y z")), strict=True))
    assert weights[term_id("pod")] < w10[term_id("pod")] < 2.2


def test_longer_documents_get_lower_weights() -> None:
    enc = Bm25Encoder(avgdl=10)
    short = enc.encode_document("etcd leader")
    long = enc.encode_document("etcd leader " + " ".join(f"filler{i}" for i in range(40)))
    w_short = dict(zip(short.indices, short.values, strict=True))[term_id("etcd")]
    w_long = dict(zip(long.indices, long.values, strict=True))[term_id("etcd")]
    assert w_long < w_short


def test_encode_query_one_weight_per_unique_term() -> None:
    enc = Bm25Encoder()
    q = enc.encode_query("pod pod restarting", expand=False)
    assert q.indices == sorted({term_id("pod"), term_id("restart")})
    assert q.values == [1.0, 1.0]
    assert enc.encode_query("the of and", expand=False).indices == []
    assert enc.encode_document("").indices == []


def test_query_expansion_adds_canonical_words() -> None:
    assert "statefulset" in expand_query("sts redis has 2 of 3 pods")
    assert "kubelet" in expand_query("the node agent on worker-3")
    assert "not ready" in expand_query("node worker-1 is unready")
    assert expand_query("disk almost full") == []
    enc = Bm25Encoder(expansion_weight=0.5)
    q = enc.encode_query("sts redis")
    weights = dict(zip(q.indices, q.values, strict=True))
    assert weights[term_id("statefulset")] == 0.5
    assert weights[term_id("sts")] == 1.0
    assert term_id("statefulset") not in enc.encode_query("sts redis", expand=False).indices


def test_fit_sets_average_length() -> None:
    enc = Bm25Encoder().fit(["pod restart", "node disk full alert"])
    assert enc.avgdl == 3.0
    with pytest.raises(ValueError):
        Bm25Encoder(b=2.0)
