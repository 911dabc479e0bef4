"""The second stages measured by `benchmarks/retrieval_eval.py --rerank` (issue #18) do what their
description says: they reorder only the top k, label-routed runbooks stay first, words every
candidate shares weigh nothing, and the cross-validation chooses on the sources left in."""

from __future__ import annotations

from activities.knowledge.sparse import tokenize
from benchmarks.retrieval_rerank import Fields, Figures, Row, Stage, cross_validate, rerank

NAMES = {
    "kubernetes/KubeQuotaFullyUsed": "kube quota fully used",
    "kubernetes/KubeQuotaAlmostFull": "kube quota almost full",
    "kubernetes/KubeQuotaExceeded": "kube quota exceeded",
    "node/NodeClockSkewDetected": "node clock skew detected",
}


def fields() -> dict[str, Fields]:
    out = {}
    for rid, name in NAMES.items():
        terms = set(tokenize(name))
        out[rid] = Fields(
            name=name,
            title=name.title(),
            meaning="",
            vectors={},
            terms={"name": terms, "name+title": terms, "summary": terms, "body": terms},
        )
    return out


def row(query: str, routed: str | None = None) -> Row:
    scores = [
        ("kubernetes/KubeQuotaFullyUsed", 1.0),
        ("kubernetes/KubeQuotaAlmostFull", 0.97),
        ("kubernetes/KubeQuotaExceeded", 0.95),
        ("node/NodeClockSkewDetected", 0.40),
    ]
    return Row(
        expected="kubernetes/KubeQuotaAlmostFull",
        candidates=[(rid, s, rid == routed) for rid, s in scores],
        terms=set(tokenize(query)),
        cosines={rid: {"name": 0.0, "title": 0.0, "meaning": 0.0} for rid, _ in scores},
    )


def test_no_second_stage_keeps_the_first_stage_order() -> None:
    assert rerank(Stage(), row("namespace is almost at its quota"), fields()) == list(NAMES)


def test_names_stage_prefers_the_sibling_whose_distinguishing_name_words_the_query_names() -> None:
    got = rerank(Stage("names", k=3, weight=0.3, field="name"), row("namespace is almost at its quota"), fields())
    assert got[0] == "kubernetes/KubeQuotaAlmostFull"
    assert got[-1] == "node/NodeClockSkewDetected"  # outside the top 3: not touched


def test_words_every_candidate_shares_weigh_nothing() -> None:
    # "kube quota" is in all three candidates' names: no reason to reorder them
    for family in ("names", "contrast"):
        got = rerank(Stage(family, k=3, weight=0.3, field="name"), row("kube quota"), fields())
        assert got == list(NAMES), family


def test_a_label_routed_runbook_stays_first() -> None:
    r = row("namespace is almost at its quota", routed="kubernetes/KubeQuotaExceeded")
    got = rerank(Stage("names", k=3, weight=0.3, field="name"), r, fields())
    assert got[:2] == ["kubernetes/KubeQuotaExceeded", "kubernetes/KubeQuotaAlmostFull"]


def test_cross_validation_chooses_on_the_sources_left_in() -> None:
    good, half, bad = Figures(1.0, 1.0, 1.0), Figures(0.5, 0.5, 0.5), Figures(0.0, 0.0, 0.0)
    a, b = Stage(), Stage("names", k=2, weight=0.1, field="name")
    # a is best on source x alone, b on y and z and half as good on x: every fold chooses b,
    # and the left-out x is scored with b's figures there, not with a's
    table = [
        (a, {("x", "search"): good, ("y", "search"): bad, ("z", "search"): bad}),
        (b, {("x", "search"): half, ("y", "search"): good, ("z", "search"): good}),
    ]
    folds, top1, top3 = cross_validate(table, ["x", "y", "z"])
    assert [(held, stage, f.top1) for held, stage, f in folds] == [("x", b, 0.5), ("y", b, 1.0), ("z", b, 1.0)]
    assert (top1, top3) == (2.5 / 3, 2.5 / 3)
