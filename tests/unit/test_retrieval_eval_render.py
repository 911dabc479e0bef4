"""The evaluation data of benchmarks/retrieval_eval.py (source `kube-rules`, issue #18): an
alert's `$value` is rendered within the threshold its rule's expression sets. Before, it was
drawn at random, so KubeQuotaAlmostFull, KubeQuotaFullyUsed and KubeQuotaExceeded (one
description, three thresholds) rendered values none of them fires on (66.85%, 59.99%, 76.28%)."""

from __future__ import annotations

import random
import re

import pytest

from benchmarks.retrieval_eval import KUBE_RULES, load_kube_rules, render, value_bounds

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
