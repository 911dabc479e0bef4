"""The router's pure parts (agentic_core.routing) and its exemplars file."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from activities.agents.router import RouteChoice, RouteExemplars, load_exemplars, route_messages
from agentic_core.agents import AgentName
from agentic_core.routing import AGENT_ORDER, WordModel, agent_scores, combined_scores, decide

AGENTS = list(AGENT_ORDER)


def test_agent_scores_mean_of_top_k_with_a_floor_for_missing_ones() -> None:
    hits = [("web", 0.9), ("web", 0.7), ("coding", 0.8), ("web", 0.5), ("web", 0.1), ("other", 1.0)]
    assert agent_scores(hits, AGENTS) == {"observability": 0.0, "coding": 0.8, "web": 0.9}
    top3 = agent_scores(hits, AGENTS, top_k=3, floor=0.1)
    assert top3["web"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert top3["coding"] == pytest.approx((0.8 + 0.1 + 0.1) / 3)  # two missing: counted at the floor
    assert top3["observability"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="top_k"):
        agent_scores(hits, AGENTS, top_k=0)


def test_decide_threshold_margin_and_ties() -> None:
    d = decide({"observability": 0.5, "coding": 0.7, "web": 0.6}, {"coding": 0.65})
    assert (d.agent, d.confident, d.threshold) == ("coding", True, 0.65)
    assert d.margin == pytest.approx(0.1)
    assert decide({"observability": 0.5, "coding": 0.7}, {"coding": 0.75}).confident is False
    tie = decide({"web": 0.6, "coding": 0.6, "observability": 0.6}, {})
    assert (tie.agent, tie.margin) == ("observability", 0.0)  # the read-only agent first
    with pytest.raises(ValueError):
        decide({}, {})


def test_word_model_marks_agents_by_their_words() -> None:
    wm = WordModel.fit(
        {
            "observability": ["which pods are crash looping", "cpu usage of the nas"],
            "coding": ["commit the helm values to the repo", "open a pull request"],
            "web": ["google the changelog", "search the web for the release notes"],
        }
    )
    p = wm.posteriors("google why the pods use so much cpu")
    assert sum(p.values()) == pytest.approx(1.0)
    assert wm.posteriors("commit this to the repo")["coding"] > 0.5
    assert wm.posteriors("xyzzy plugh") == pytest.approx(dict.fromkeys(AGENTS, 1 / 3))  # nothing known: uniform
    both = combined_scores({"web": 0.5, "coding": 0.5}, {"web": 1.0, "coding": 0.0}, word_weight=0.2)
    assert both == {"web": pytest.approx(0.7), "coding": 0.5}


def test_the_model_may_answer_every_agent_and_nothing_else() -> None:
    agent_field = RouteChoice.model_json_schema()["properties"]["agent"]
    assert sorted(agent_field["enum"]) == sorted(str(a) for a in AgentName)
    assert sorted(get_args(RouteChoice.model_fields["agent"].annotation)) == sorted(AGENT_ORDER)


def test_shipped_exemplars_cover_every_agent_and_have_fitted_thresholds() -> None:
    ex = load_exemplars()
    assert ex.names == AGENTS
    assert all(len(ex.agents[a].exemplars) >= 50 for a in AGENTS)
    assert set(ex.thresholds) == set(AGENTS)
    ids = [pid for pid, _, _ in ex.points("e1")]
    assert len(ids) == len(set(ids))
    assert ids != [pid for pid, _, _ in ex.points("e2")]  # another embedder: other points
    msgs = route_messages("is sonarr up", ex, [("why is radarr down", "observability")])
    assert msgs[-1] == {"role": "user", "content": "is sonarr up"}
    assert all(f"- {a}:" in msgs[0]["content"] for a in AGENTS)


def test_bad_exemplar_files_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    def bad(text: str, match: str) -> None:
        f = tmp_path / "ex.yaml"
        f.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_exemplars(f)

    ok = "agents:\n  web:\n    description: the internet\n    exemplars: [google it]\n"
    assert load_exemplars(_write(tmp_path / "ok.yaml", ok)).names == ["web"]
    bad("agents:\n  sales:\n    description: x\n    exemplars: [sell]\n", "unknown agents")
    bad(
        "agents:\n  web:\n    description: x\n    exemplars: [Google It]\n"
        "  coding:\n    description: y\n    exemplars: [google it]\n",
        "listed for web and coding",
    )
    bad(ok + "thresholds: {web: 3}\n", "thresholds are scores")
    bad("agents: [", "bad router exemplars")
    assert isinstance(RouteExemplars.model_validate({"agents": {}}), RouteExemplars)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
