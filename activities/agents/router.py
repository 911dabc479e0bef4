"""The intent router: which agent (observability, coding, web) should answer a request.

Embeddings first. Exemplar requests per agent (`exemplars.yaml`, shipped with the package)
are embedded with the worker's embedder into the vector store's `routes` collection when the
worker starts (in the background) or on the first route, whichever comes first
(`ensure_index`: only new or changed exemplars are embedded, removed ones are deleted; an
unchanged file costs one scroll). A request is embedded and its nearest exemplars
found; each agent's score is the mean similarity of its 3 nearest exemplars plus 0.1 times a
word model's probability of that agent (naive Bayes over the exemplars' words: "google",
"docs", "repo", "commit" mark an agent more surely than the app a request names; see
`agentic_core.routing`). Both are chosen on the fit set (`benchmarks/routing_eval.py --fit`).

- At or above the best agent's threshold (fitted on `benchmarks/data/routing_fit.yaml`, kept in
  `exemplars.yaml`; `AGENTIC_ROUTE_THRESHOLD` overrides them): the route is that agent, method
  `embedding`, with its score.
- Below it: the planner model chooses, its output constrained to the agent names by a JSON
  schema (`InferenceRouter.structured`): method `llm`, with the chosen agent's embedding score.
- The model fails, times out, or is not configured: the embedding's best guess, method
  `embedding`, and a `note` saying why. A route is never failed for the model's sake.

The activity is `agents.route` (`agentic_core.agents.ACTIVITY_ROUTE`): `RouteInput` → `Route`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from temporalio import activity

from activities.knowledge.store import Point, QueryMode, VectorStore
from agentic_core.agents import ACTIVITY_ROUTE, Route, RouteInput, RouteMethod
from agentic_core.models import Collection
from agentic_core.routing import AGENT_ORDER, RouteDecision, WordModel, agent_scores, combined_scores, decide

if TYPE_CHECKING:
    from activities.inference.router import InferenceRouter

__all__ = [
    "EXEMPLARS_FILE",
    "IndexReport",
    "RouteActivities",
    "RouteChoice",
    "RouteExemplars",
    "load_exemplars",
    "route_messages",
]

log = logging.getLogger("agentic.router")

EXEMPLARS_FILE = "exemplars.yaml"  # package data of activities.agents
MODEL_GROUP = "planner"
MODEL_TIMEOUT_S = 20.0  # the route waits this long for the model, then takes the embedding's guess
MAX_REQUEST_CHARS = 2000  # the embedder reads ~256 word pieces; the model needs no more either
NEAREST_IN_PROMPT = 6  # nearest exemplars shown to the model, with their agents
TOP_K = 3  # an agent's similarity: the mean of its TOP_K nearest exemplars
WORD_WEIGHT = 0.1  # plus this times the word model's probability of the agent
MAX_THRESHOLD = 1.0 + WORD_WEIGHT  # the highest score there is
SEARCH_LIMIT = 100  # nearest exemplars fetched per request (an agent absent from them cannot win)


class Embedder(Protocol):
    dim: int

    async def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


class AgentExemplars(BaseModel):
    description: str = Field(min_length=1)
    exemplars: list[str] = Field(min_length=1)

    @field_validator("exemplars")
    @classmethod
    def _clean(cls, value: list[str]) -> list[str]:
        out = [" ".join(str(t).split()) for t in value]
        if any(not t for t in out):
            raise ValueError("an exemplar is empty")
        return out


class RouteExemplars(BaseModel):
    """The data file: per agent, a description (for the model) and exemplar requests; fitted
    thresholds per agent."""

    agents: dict[str, AgentExemplars]
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("agents")
    @classmethod
    def _known_agents(cls, value: dict[str, AgentExemplars]) -> dict[str, AgentExemplars]:
        unknown = sorted(set(value) - set(AGENT_ORDER))
        if unknown:
            raise ValueError(f"unknown agents {unknown}: expected some of {list(AGENT_ORDER)}")
        seen: dict[str, str] = {}
        for agent, ex in value.items():
            for text in ex.exemplars:
                key = text.lower()
                if key in seen:
                    raise ValueError(f"exemplar {text!r} is listed for {seen[key]} and {agent}")
                seen[key] = agent
        return value

    @field_validator("thresholds")
    @classmethod
    def _threshold_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {a: t for a, t in value.items() if not -1.0 <= t <= MAX_THRESHOLD}
        if bad:
            raise ValueError(
                f"thresholds are scores in [-1, {MAX_THRESHOLD}] (similarity plus the word part), not {bad}"
            )
        return value

    @property
    def names(self) -> list[str]:
        return [a for a in AGENT_ORDER if a in self.agents]

    def points(self, embedder_id: str) -> list[tuple[str, str, str]]:
        """(point id, agent, text) of every exemplar. The id hashes the agent, the text and the
        embedder, so a changed exemplar or another embedder gives another point."""
        out = []
        for agent in self.names:
            for text in self.agents[agent].exemplars:
                digest = hashlib.sha256(f"{embedder_id}\x1f{agent}\x1f{text}".encode()).hexdigest()[:20]
                out.append((f"{agent}/{digest}", agent, text))
        return out


def load_exemplars(path: Path | None = None) -> RouteExemplars:
    """The exemplars file (`path`, or the one shipped in this package)."""
    if path is None:
        text = resources.files("activities.agents").joinpath(EXEMPLARS_FILE).read_text(encoding="utf-8")
        where = f"activities/agents/{EXEMPLARS_FILE}"
    else:
        text = Path(path).read_text(encoding="utf-8")
        where = str(path)
    try:
        return RouteExemplars.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError) as exc:
        raise ValueError(f"bad router exemplars in {where}: {exc}") from exc


class IndexReport(BaseModel):
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    seconds: float = 0.0


class RouteChoice(BaseModel):
    """What the planner model may answer: one agent name, nothing else (the JSON schema's enum
    constrains generation). Lists every `AgentName` (a unit test keeps them in step)."""

    agent: Literal["observability", "coding", "web"]


def route_messages(
    text: str, exemplars: RouteExemplars, nearest: list[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """The model's prompt: what each agent does, the nearest exemplars with their agents, the request."""
    lines = [
        "You route a request from the operator of a homelab to the one agent that should handle it.",
        "Agents:",
    ]
    for agent in exemplars.names:
        lines.append(f"- {agent}: {exemplars.agents[agent].description}")
    if nearest:
        lines.append("Similar requests and their agents:")
        lines.extend(f'- "{t}" -> {a}' for t, a in nearest)
    lines.append('Answer with JSON: {"agent": "<name>"}, the agent for the main thing the operator asks.')
    return [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": text}]


def _embedder_id(embedder: Any) -> str:
    model = getattr(embedder, "model", None)
    return f"{type(embedder).__name__}:{model}" if model else type(embedder).__name__


class RouteActivities:
    """The `agents.route` activity and the `routes` collection it reads.

    `threshold`, when given, replaces every agent's fitted threshold. `router=None` (or a
    router without the `model_group`) routes by embeddings only.
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        router: InferenceRouter | None = None,
        *,
        exemplars: RouteExemplars | None = None,
        threshold: float | None = None,
        model_group: str = MODEL_GROUP,
        model_timeout_s: float = MODEL_TIMEOUT_S,
        top_k: int = TOP_K,
        word_weight: float = WORD_WEIGHT,
    ) -> None:
        if getattr(embedder, "dim", store.dim) != store.dim:
            raise ValueError(f"embedder dimension {embedder.dim} does not match the store's {store.dim}")
        self.store = store
        self.embedder = embedder
        self.router = router
        self.exemplars = exemplars or load_exemplars()
        self.thresholds: dict[str, float] = (
            {a: float(threshold) for a in self.exemplars.names}
            if threshold is not None
            else {a: float(self.exemplars.thresholds.get(a, 0.0)) for a in self.exemplars.names}
        )
        self.model_group = model_group
        self.model_timeout_s = model_timeout_s
        self.top_k = top_k
        self.word_weight = word_weight
        self.words = WordModel.fit({a: self.exemplars.agents[a].exemplars for a in self.exemplars.names})
        self._points = self.exemplars.points(_embedder_id(embedder))
        self._text_of = {pid: text for pid, _, text in self._points}
        self._index_lock = asyncio.Lock()
        self._indexed = False

    # -- the index ------------------------------------------------------------------------------

    async def ensure_index(self) -> IndexReport:
        """Make the `routes` collection hold exactly the exemplars (idempotent, cheap when unchanged)."""
        async with self._index_lock:
            t0 = time.perf_counter()
            await self.store.ensure_collections()
            existing = {p.id for p in await self.store.scroll(Collection.ROUTES)}
            wanted = {pid for pid, _, _ in self._points}
            todo = [(pid, agent, text) for pid, agent, text in self._points if pid not in existing]
            stale = sorted(existing - wanted)
            if todo:
                vectors = await self.embedder.embed_documents([text for _, _, text in todo])
                if len(vectors) != len(todo):
                    raise RuntimeError(f"embedder returned {len(vectors)} vectors for {len(todo)} exemplars")
                await self.store.upsert(
                    Collection.ROUTES,
                    [
                        Point(id=pid, dense=v, payload={"agent": agent, "text": text})
                        for (pid, agent, text), v in zip(todo, vectors, strict=True)
                    ],
                )
            if stale:
                await self.store.delete(Collection.ROUTES, stale)
            self._indexed = True
            return IndexReport(
                added=len(todo),
                removed=len(stale),
                unchanged=len(wanted) - len(todo),
                seconds=time.perf_counter() - t0,
            )

    # -- scoring --------------------------------------------------------------------------------

    async def nearest(self, text: str) -> list[tuple[str, str, float]]:
        """The nearest exemplars as (agent, text, similarity), most similar first."""
        if not self._indexed:
            await self.ensure_index()
        vector = await self.embedder.embed_query(text)
        hits = await self.store.search(
            Collection.ROUTES,
            vector,
            None,
            limit=min(SEARCH_LIMIT, max(1, len(self._points))),
            mode=QueryMode(kind="dense"),
        )
        out = []
        for h in hits:
            agent = str(h.payload.get("agent", ""))
            if agent in self.thresholds:
                out.append((agent, str(h.payload.get("text", self._text_of.get(h.id, ""))), float(h.score)))
        return out

    def scores(self, text: str, nearest: list[tuple[str, str, float]]) -> dict[str, float]:
        """Each agent's score: exemplar similarity plus the word model's part."""
        floor = min((s for _, _, s in nearest), default=0.0)
        similarity = agent_scores(((a, s) for a, _, s in nearest), self.exemplars.names, top_k=self.top_k, floor=floor)
        return combined_scores(similarity, self.words.posteriors(text), word_weight=self.word_weight)

    def decide(self, text: str, nearest: list[tuple[str, str, float]]) -> RouteDecision:
        return decide(self.scores(text, nearest), self.thresholds)

    # -- the model --------------------------------------------------------------------------------

    def model_available(self) -> bool:
        return self.router is not None and self.model_group in self.router.groups

    async def ask_model(self, text: str, nearest: list[tuple[str, str, float]]) -> str:
        """The planner model's choice of agent (raises on any failure)."""
        assert self.router is not None
        shown = [(t, a) for a, t, _ in nearest[:NEAREST_IN_PROMPT]]
        reply = await asyncio.wait_for(
            self.router.structured(
                self.model_group,
                route_messages(text, self.exemplars, shown),
                RouteChoice,
                max_tokens=24,
                temperature=0.0,
            ),
            timeout=self.model_timeout_s,
        )
        return reply.value.agent

    # -- the activity ------------------------------------------------------------------------------

    async def route_text(self, text: str) -> Route:
        """Route one request (the activity's body, callable without Temporal)."""
        text = " ".join(text.split())[:MAX_REQUEST_CHARS]
        if not text:
            raise ValueError("nothing to route: the request is empty")
        nearest = await self.nearest(text)
        decision = self.decide(text, nearest)
        scores = {a: max(0.0, round(s, 6)) for a, s in decision.scores.items()}
        if decision.confident:
            return Route(
                agent=decision.agent, score=scores[decision.agent], method=RouteMethod.EMBEDDING, scores=scores
            )
        if not self.model_available():
            return Route(
                agent=decision.agent,
                score=scores[decision.agent],
                method=RouteMethod.EMBEDDING,
                scores=scores,
                note=f"below the threshold ({decision.threshold:.3f}) and no planner model is configured",
            )
        try:
            chosen = await self.ask_model(text, nearest)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else f"failed: {type(exc).__name__}: {exc}"
            log.warning("route: the planner model %s; taking the embedding's best guess", why)
            return Route(
                agent=decision.agent,
                score=scores[decision.agent],
                method=RouteMethod.EMBEDDING,
                scores=scores,
                note=f"below the threshold ({decision.threshold:.3f}); the planner model {why[:300]}",
            )
        return Route(agent=chosen, score=scores.get(chosen, 0.0), method=RouteMethod.LLM, scores=scores)

    @activity.defn(name=ACTIVITY_ROUTE)
    async def route(self, inp: RouteInput) -> Route:
        return await self.route_text(inp.text)
