"""The router's decision, pure (no I/O): from exemplar similarities to an agent.

`activities.agents.router.RouteActivities` embeds the request, finds its nearest exemplars in
the `routes` collection and hands their (agent, similarity) pairs here:

- `agent_scores`: each agent's similarity is the mean of its `top_k` best exemplar similarities.
- `WordModel` and `combined_scores`: a naive Bayes model over the exemplars' words adds
  `word_weight` times its probability of each agent (the lexical half, like BM25 beside the
  dense vectors in the knowledge base's hybrid search).
- `decide`: the agent with the highest score; exact ties go to the agent listed first in
  `AGENT_ORDER` (observability, the read-only one, before coding and web). The decision is
  `confident` when that score reaches the agent's threshold: the route is then the embedding's;
  below it the planner model is asked (docs/agents.md, "Routing").
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from agentic_core.agents import AgentName

#: Tie-break order (and the order agents are listed in prompts and reports).
AGENT_ORDER: tuple[str, ...] = tuple(str(a) for a in AgentName)


class RouteDecision(BaseModel):
    agent: str
    score: float  # the chosen agent's score
    confident: bool  # score >= the agent's threshold: the embedding decides
    threshold: float
    margin: float = Field(ge=0)  # over the runner-up (0 on a tie)
    scores: dict[str, float] = Field(default_factory=dict)


def agent_scores(
    hits: Iterable[tuple[str, float]], agents: Sequence[str], *, top_k: int = 1, floor: float | None = None
) -> dict[str, float]:
    """Each agent's score from (agent, similarity) pairs: the mean of its `top_k` best
    similarities. Hits for agents not in `agents` are ignored.

    `hits` may be only the nearest exemplars (a search with a limit): an agent with fewer than
    `top_k` among them has its missing ones counted at `floor` (the lowest similarity the search
    returned, an upper bound of theirs); without a floor, the mean of those it has, 0.0 for none."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    by_agent: dict[str, list[float]] = {a: [] for a in agents}
    for agent, score in hits:
        if agent in by_agent:
            by_agent[agent].append(float(score))
    out: dict[str, float] = {}
    for agent, scores in by_agent.items():
        best = sorted(scores, reverse=True)[:top_k]
        if floor is not None:
            best += [floor] * (top_k - len(best))
        out[agent] = sum(best) / len(best) if best else 0.0
    return out


def _rank(agent: str) -> int:
    return AGENT_ORDER.index(agent) if agent in AGENT_ORDER else len(AGENT_ORDER)


def decide(
    scores: Mapping[str, float], thresholds: Mapping[str, float], *, default_threshold: float = 0.0
) -> RouteDecision:
    """The best-scoring agent, and whether its score clears its threshold.

    Ties go to the agent first in `AGENT_ORDER`. An agent without its own threshold uses
    `default_threshold`."""
    if not scores:
        raise ValueError("no agent scores to decide from")
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], _rank(kv[0]), kv[0]))
    agent, best = ordered[0]
    runner_up = ordered[1][1] if len(ordered) > 1 else 0.0
    threshold = float(thresholds.get(agent, default_threshold))
    return RouteDecision(
        agent=agent,
        score=best,
        confident=best >= threshold,
        threshold=threshold,
        margin=max(0.0, best - runner_up),
        scores=dict(scores),
    )


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """The features the word model reads: lower-case words and adjacent word pairs."""
    w = _WORD.findall(text.lower())
    return set(w) | {f"{a} {b}" for a, b in itertools.pairwise(w)}


class WordModel(BaseModel):
    """Which words mark an agent: a naive Bayes model over the exemplars' words and word pairs,
    one class per agent. Each exemplar counts a feature once. Words it never saw are ignored.

    It complements the embedding, whose similarity follows the subject (an app's name) more than
    the verb: "google why nzbget uses so much cpu" is nearest to an observability exemplar about
    nzbget's cpu, while "google" is a web word in every exemplar that has it.
    """

    counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    vocabulary: int = Field(ge=1)
    alpha: float = Field(default=0.5, gt=0)

    @classmethod
    def fit(cls, exemplars: Mapping[str, Sequence[str]], *, alpha: float = 0.5) -> WordModel:
        counts: dict[str, Counter[str]] = {a: Counter() for a in exemplars}
        for agent, texts in exemplars.items():
            for text in texts:
                counts[agent].update(words(text))
        vocabulary = len(set().union(*(set(c) for c in counts.values()))) or 1
        return cls(
            counts={a: dict(c) for a, c in counts.items()},
            totals={a: sum(c.values()) for a, c in counts.items()},
            vocabulary=vocabulary,
            alpha=alpha,
        )

    def posteriors(self, text: str) -> dict[str, float]:
        """P(agent | the request's known features), uniform prior; uniform when none is known."""
        known = [f for f in words(text) if any(f in c for c in self.counts.values())]
        logs = {
            a: sum(
                math.log((c.get(f, 0) + self.alpha) / (self.totals[a] + self.alpha * self.vocabulary)) for f in known
            )
            for a, c in self.counts.items()
        }
        top = max(logs.values())
        exp = {a: math.exp(v - top) for a, v in logs.items()}
        total = sum(exp.values())
        return {a: v / total for a, v in exp.items()}


def combined_scores(
    similarity: Mapping[str, float], word_posteriors: Mapping[str, float], *, word_weight: float
) -> dict[str, float]:
    """Each agent's score: its exemplar similarity plus `word_weight` times the word model's probability."""
    return {a: s + word_weight * word_posteriors.get(a, 0.0) for a, s in similarity.items()}
