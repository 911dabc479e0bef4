"""The evaluation data of benchmarks/retrieval_eval.py (source `kube-rules`, issue #18): an
alert's `$value` is rendered within the threshold its rule's expression sets. Before, it was
drawn at random, so KubeQuotaAlmostFull, KubeQuotaFullyUsed and KubeQuotaExceeded (one
description, three thresholds) rendered values none of them fires on (66.85%, 59.99%, 76.28%).
And one `$value` per alert, printed through each occurrence's own pipeline (below)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import yaml

from benchmarks.retrieval_eval import (
    AWESOME_RULES,
    CHECK_SET,
    KUBE_RULES,
    Bounds,
    load_awesome,
    load_kube_rules,
    render,
    value_bounds,
)

QUOTA = "kubernetes/KubeQuota"


@pytest.mark.parametrize(
    ("expr", "bounds"),
    [
        ("topk(1, used) / on (ns) group_left() topk(1, hard > 0)\n> 0.9 < 1", (0.9, 1.0, None)),
        ("topk(1, used) / on (ns) group_left() topk(1, hard > 0)\n== 1", (None, None, 1.0)),
        ("topk(1, used) / on (ns) group_left() topk(1, hard > 0) > 1", (1.0, None, None)),
        ("sum(rate(a[5m])) / sum(rate(b[5m]))\n> ( 25 / 100 )", (0.25, None, None)),
        # the left operand of `and` / `unless` is the value; parentheses around the whole
        ("(\n  avail / size * 100 < 15\nand\n  predict_linear(avail[6h], 864) < 0\nand ro == 0)", (None, 15.0, None)),
        ("(avail / capacity) < 0.03\nand\nused > 0\nunless on(pvc)\nmode == 1", (None, 0.03, None)),
        ("100 * (count(up == 0) by (job) / count(up) by (job)) > 10", (10.0, 100.0, None)),
        ("free / files < .10 and ro == 0", (None, 0.1, None)),
        # a comparison with another series, or none: nothing known
        ("max_over_time(members[5m])\n< on (namespace,service) group_left\n  count by (namespace,service) (x)", None),
        ("vector(1)", None),
    ],
)
def test_value_bounds_read_the_rule_expression(expr: str, bounds: tuple[float | None, ...] | None) -> None:
    assert value_bounds(expr) == bounds


def _percent(text: str) -> float:
    found = re.search(r"using ([\d.]+)% of its", text)
    assert found, text
    return float(found.group(1))


def test_quota_rules_render_a_value_their_threshold_fires_on() -> None:
    queries, _ = load_kube_rules(KUBE_RULES, {f"{QUOTA}{s}" for s in ("AlmostFull", "FullyUsed", "Exceeded")})
    values = {q.expected.removeprefix(QUOTA): _percent(q.text) for q in queries}
    assert set(values) == {"AlmostFull", "FullyUsed", "Exceeded"}
    assert 90 < values["AlmostFull"] < 100
    assert values["FullyUsed"] == 100
    assert values["Exceeded"] > 100


def test_rendered_values_stay_inside_their_bounds() -> None:
    for seed in range(40):
        _render_inside_bounds(random.Random(seed))


def _render_inside_bounds(rnd: random.Random) -> None:
    pct = "{{ $value | humanizePercentage }}"
    for bounds, ok in (
        ((0.9, 1.0, None), lambda v: 90 < v < 100),
        ((1.0, None, None), lambda v: v > 100),
        ((None, 0.03, None), lambda v: 0 < v < 3),
    ):
        shown = render(f"at {pct} now", {}, rnd, bounds)
        assert ok(float(shown.split()[1].rstrip("%"))), (bounds, shown)
    assert 0 < float(render('{{ printf "%.2f" $value }} left', {}, rnd, (None, 5.0, None)).split()[0]) < 5
    assert render("{{ $value }}", {}, rnd, (None, None, 0.0)) == "0"


# One `$value` per alert: Prometheus evaluates the rule once and every `{{ ... $value ... }}` of
# the alert's annotations prints that one float64 through its own pipeline. Before, each
# occurrence drew a value of its own, so an alert read "90.95% of notifications" and
# "VALUE = 87.12" a line below, and a description and its summary disagreed.

PCT_AND_VALUE = "failing to send {{ $value | humanizePercentage }} of notifications\n  VALUE = {{ $value }}"


def _pct_and_value(text: str) -> tuple[str, float]:
    found = re.search(r"send ([\d.]+)% of notifications\s+VALUE = (\S+)$", text)
    assert found, text
    return found.group(1), float(found.group(2))


@pytest.mark.parametrize("bounds", [None, (0.01, None, None), (0.9, 1.0, None), (1.0, None, None)])
def test_every_value_occurrence_prints_the_same_raw_value(bounds: Bounds | None) -> None:
    for seed in range(30):
        pct, value = _pct_and_value(render(PCT_AND_VALUE, {}, random.Random(seed), bounds))
        # the plain `{{ $value }}` is the ratio itself, as Go prints a float64; the percentage is it x 100
        assert f"{value * 100:.4g}" == pct, (seed, bounds, pct, value)
        assert 0 < value < 1 if bounds is None or bounds[0] != 1.0 else 1 < value < 1.5


def test_two_occurrences_in_one_sentence_agree() -> None:
    template = "terminated {{ $value | humanizePercentage }} of requests ({{ $value | humanizePercentage }} allowed)"
    for seed in range(20):
        shown = re.findall(r"([\d.]+)%", render(template, {}, random.Random(seed), (0.2, None, None)))
        assert len(shown) == 2 and shown[0] == shown[1] and float(shown[0]) > 20, shown


def test_the_same_seed_renders_the_same_text() -> None:
    template = '{{ $value | humanize }}B left, {{ printf "%.2f" $value }} exactly\n  VALUE = {{ $value }}'
    for seed in range(10):
        first = render(template, {}, random.Random(seed), (None, 5e9, None))
        assert first == render(template, {}, random.Random(seed), (None, 5e9, None))
    known = {f"{QUOTA}{s}" for s in ("AlmostFull", "FullyUsed", "Exceeded")} | {"kubernetes/KubeAPITerminatedRequests"}
    runs = [load_kube_rules(KUBE_RULES, known)[0] for _ in range(2)]
    assert [(q.text, q.summary, q.labels) for q in runs[0]] == [(q.text, q.summary, q.labels) for q in runs[1]]
    awesome = [load_awesome(CHECK_SET, AWESOME_RULES, _awesome_ids()) for _ in range(2)]
    assert [q.text for q in awesome[0]] == [q.text for q in awesome[1]]


@pytest.mark.parametrize(
    ("template", "value", "shown"),
    [
        # `{{ $value }}`: Go's %v of a float64, the shortest digits, %e from an exponent of 6 or below -4
        ("{{ $value }}", 0.9094580168198424, "0.9094580168198424"),
        ("{{ $value }}", 123456.0, "123456"),
        ("{{ $value }}", 1e6, "1e+06"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("{{$value}}", 0.0001, "0.0001"),
        ("{{ $value }}", 2.5e-5, "2.5e-05"),
        ("{{ $value }}", 100.0, "100"),
        ('{{ printf "%.2f" $value }}', 2.5, "2.50"),
        ('{{ $value | printf "%.1f" }}', 97.05, "97.0"),
        ('{{ printf "%.0f" $value }}', 84.0, "84"),
        ("{{ $value | humanizePercentage }}", 0.9094580168198424, "90.95%"),
        ("{{ $value | humanize }}", 0.42, "420m"),
        ("{{humanize $value}}", 1500.0, "1.5k"),
        ("{{ $value | humanize1024 }}", 1536.0, "1.5ki"),
        ("{{ $value | humanizeDuration }}", 58541.7, "16h 15m 41s"),
        ("{{ $value | humanizeDuration }}", 45.5, "45.5s"),
        ("{{ $value | humanizeDuration }}", 0.25, "250ms"),
    ],
)
def test_each_pipeline_prints_the_value_as_prometheus_does(template: str, value: float, shown: str) -> None:
    assert render(template, {}, value=value) == shown
    assert render(template, {}, random.Random(0), (None, None, value)) == shown  # a rule's `== value`


def test_the_rule_expression_decides_between_kinds_that_disagree() -> None:
    """A percentage in one place and a duration in another: bounds within 0..1 make the value a
    ratio (the duration then reads in milliseconds), bounds above 1 rule the ratio out."""
    template = "{{ $value | humanizePercentage }} / {{ $value | humanizeDuration }}"
    for seed in range(20):
        pct, duration = render(template, {}, random.Random(seed), (None, 0.5, None)).split(" / ")
        assert float(pct.rstrip("%")) < 50 and duration.endswith("ms"), (pct, duration)
        pct, duration = render(template, {}, random.Random(seed), (300.0, None, None)).split(" / ")
        assert float(pct.rstrip("%")) > 30_000 and re.fullmatch(r"(\d+d )?(\d+h )?\d+m \d+s", duration), duration


def test_a_kube_rule_shows_one_value_in_its_description_and_summary() -> None:
    queries, _ = load_kube_rules(KUBE_RULES, {"kubernetes/KubeAPITerminatedRequests"})
    (query,) = queries
    described = re.search(r"terminated ([\d.]+)% of its incoming", query.text)
    summarised = re.search(r"terminated ([\d.]+)% of its incoming", query.summary)
    assert described and summarised, (query.text, query.summary)
    assert described.group(1) == summarised.group(1)
    assert float(described.group(1)) > 20  # the rule fires above 0.20


def _awesome_ids() -> set[str]:
    return {str(item["expected"]) for item in yaml.safe_load(CHECK_SET.read_text(encoding="utf-8"))["rules"]}


def test_an_awesome_alert_shows_one_value_in_its_description_and_value_line() -> None:
    texts = {q.labels["alertname"]: q.text for q in load_awesome(CHECK_SET, AWESOME_RULES, _awesome_ids())}

    def value_of(alert: str, pattern: str) -> tuple[str, float]:
        text = texts[alert]
        described, value = re.search(pattern, text), re.search(r"VALUE = (\S+)", text)
        assert described and value, text
        return described.group(1), float(value.group(1))

    for alert, pattern in (
        ("KubernetesAPIServerTerminatingRequests", r"terminating ([\d.]+)% of incoming"),
        ("KubernetesResourceQuotaExceeded", r"\(([\d.]+)% of quota\)"),
    ):
        pct, value = value_of(alert, pattern)
        assert f"{value * 100:.4g}" == pct, (alert, texts[alert])
    errors, value = value_of("HostNetworkReceiveErrors", r"encountered (\d+) receive errors")
    assert errors == f"{value:.0f}", texts["HostNetworkReceiveErrors"]
    failures, value = value_of("PrometheusRuleEvaluationFailures", r"encountered ([\d.]+) rule evaluation failures")
    assert float(failures) == value, texts["PrometheusRuleEvaluationFailures"]


def test_a_missing_kube_rules_corpus_stops_the_evaluation(tmp_path: Path) -> None:
    """It used to give zero queries, and the source scored as if it were there."""
    with pytest.raises(SystemExit, match="no kube-prometheus rules in"):
        load_kube_rules(tmp_path / "nowhere", {"kubernetes/KubePodCrashLooping"})
