"""The router (`agents.route`) on the real parts: MiniLM in process, Qdrant Edge in a temporary
directory, and a planner model speaking the OpenAI wire format (a scripted fake server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from activities.agents.router import RouteActivities, RouteExemplars
from activities.inference.router import GroupConfig, InferenceRouter
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from agentic_core.agents import RouteInput, RouteMethod
from agentic_core.models import Collection
from tests.support.fake_openai import FakeChatServer, chat_server

EXEMPLARS = RouteExemplars.model_validate(
    {
        "agents": {
            "observability": {
                "description": "the live state of the homelab: metrics, alerts, pods, logs",
                "exemplars": ["which alerts are firing", "why is the sonarr pod restarting", "cpu usage of the nas"],
            },
            "coding": {
                "description": "the git repositories: manifests, helm values, terraform",
                "exemplars": ["bump the grafana chart version in the repo", "open a pull request for the fix"],
            },
            "web": {
                "description": "the public internet: search, docs, release notes",
                "exemplars": ["google the latest sonarr release notes", "search the web for how to set up vlans"],
            },
        },
        "thresholds": {"observability": 0.45, "coding": 0.45, "web": 0.45},
    }
)


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[LocalEmbedder]:
    e = LocalEmbedder(threads=2)
    yield e
    e.close()


@pytest.fixture
async def store(tmp_path: Path, model: LocalEmbedder) -> AsyncIterator[EdgeStore]:
    s = EdgeStore(tmp_path / "qdrant", dim=model.dim)
    yield s
    await s.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatServer]:
    async with chat_server("planner") as server:
        yield server


def planner(fake: FakeChatServer) -> InferenceRouter:
    return InferenceRouter([GroupConfig(name="planner", model="openai/fake", api_base=fake.base_url, timeout_s=5)])


async def test_index_holds_exactly_the_exemplars_and_is_cheap_again(store: EdgeStore, model: LocalEmbedder) -> None:
    acts = RouteActivities(store, model, exemplars=EXEMPLARS)
    first = await acts.ensure_index()
    assert (first.added, first.removed) == (7, 0)
    again = await acts.ensure_index()
    assert (again.added, again.removed, again.unchanged) == (0, 0, 7)
    # One exemplar changed, one gone: only those are embedded or deleted.
    changed = EXEMPLARS.model_copy(deep=True)
    changed.agents["coding"].exemplars = ["bump the grafana chart version in git"]
    third = await RouteActivities(store, model, exemplars=changed).ensure_index()
    assert (third.added, third.removed, third.unchanged) == (1, 2, 5)
    assert await store.count(Collection.ROUTES) == 6
    assert await store.count(Collection.RUNBOOKS) == 0  # the knowledge base's collections untouched


async def test_above_the_threshold_the_embedding_decides(
    store: EdgeStore, model: LocalEmbedder, fake: FakeChatServer
) -> None:
    acts = RouteActivities(store, model, planner(fake), exemplars=EXEMPLARS)
    route = await acts.route(RouteInput(text="which alerts are firing right now?"))
    assert (route.agent, route.method) == ("observability", RouteMethod.EMBEDDING)
    assert route.score >= 0.45 and route.score == max(route.scores.values())
    assert route.note == "" and fake.requests == []  # the model was not asked
    web = await acts.route(RouteInput(text="google the release notes of the newest radarr"))
    assert (web.agent, web.method) == ("web", RouteMethod.EMBEDDING)


async def test_below_the_threshold_the_model_chooses_with_a_constrained_answer(
    store: EdgeStore, model: LocalEmbedder, fake: FakeChatServer
) -> None:
    fake.answer('{"agent": "coding"}')
    acts = RouteActivities(store, model, planner(fake), exemplars=EXEMPLARS, threshold=1.2)
    route = await acts.route(RouteInput(text="the nas cpu is hot, is it the plex transcoder?"))
    assert (route.agent, route.method) == ("coding", RouteMethod.LLM)  # the model's choice, not the guess
    assert route.score == route.scores["coding"]
    body = fake.bodies[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["agent"]["enum"] == ["observability", "coding", "web"]
    assert body["messages"][-1]["content"] == "the nas cpu is hot, is it the plex transcoder?"
    assert "cpu usage of the nas" in body["messages"][0]["content"]  # nearest exemplars shown


@pytest.mark.parametrize("failure", ["error", "invalid", "timeout"])
async def test_a_failing_model_leaves_the_embeddings_guess_and_says_why(
    store: EdgeStore, model: LocalEmbedder, fake: FakeChatServer, failure: str
) -> None:
    if failure == "error":
        fake.status = 500
    elif failure == "invalid":
        fake.answer(json.dumps({"agent": "sales"}))
    else:
        fake.answer('{"agent": "web"}')
        fake.delay_s = 2.0
    acts = RouteActivities(store, model, planner(fake), exemplars=EXEMPLARS, threshold=1.2, model_timeout_s=0.5)
    route = await acts.route(RouteInput(text="why is the sonarr pod restarting all the time"))
    assert (route.agent, route.method) == ("observability", RouteMethod.EMBEDDING)
    assert "planner model" in route.note and ("timed out" in route.note) == (failure == "timeout")


async def test_without_a_model_below_the_threshold_the_guess_says_so(store: EdgeStore, model: LocalEmbedder) -> None:
    acts = RouteActivities(store, model, None, exemplars=EXEMPLARS, threshold=1.2)
    route = await acts.route(RouteInput(text="open a pull request that bumps grafana"))
    assert (route.agent, route.method) == ("coding", RouteMethod.EMBEDDING)
    assert "no planner model is configured" in route.note
    with pytest.raises(ValueError, match="empty"):
        await acts.route_text("   ")
