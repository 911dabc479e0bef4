"""One suite, both vector store adapters: `EdgeStore` (Qdrant Edge in tmp_path) and
`ServerStore` (qdrant-client local mode). Small synthetic vectors, no model: fast."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from activities.knowledge.edge_store import EdgeStore, EdgeTuning
from activities.knowledge.server_store import ServerStore
from activities.knowledge.store import Point, QueryMode, SparseVector, StoreError, VectorStore
from agentic_core.models import Collection

DIM = 8
RB = Collection.RUNBOOKS


def unit(*xs: float) -> list[float]:
    v = list(xs) + [0.0] * (DIM - len(xs))
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def axis(i: int, noise: float = 0.0, rng: random.Random | None = None) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    if noise:
        r = rng or random.Random(i)
        v = [x + r.gauss(0, noise) for x in v]
    return unit(*v)


def sv(terms: dict[int, float]) -> SparseVector:
    return SparseVector(indices=list(terms), values=list(terms.values()))


def make_store(kind: str, tmp_path: Path) -> EdgeStore | ServerStore:
    if kind == "edge":
        return EdgeStore(tmp_path / "qdrant", dim=DIM)
    return ServerStore(location=":memory:", dim=DIM)


@pytest.fixture(params=["edge", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EdgeStore | ServerStore]:
    s = make_store(request.param, tmp_path)
    await s.ensure_collections()
    yield s
    await s.close()


# --------------------------------------------------------------------------------------------
# The shared suite
# --------------------------------------------------------------------------------------------


async def test_implements_the_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    assert store.dim == DIM


async def test_ensure_collections_is_idempotent_and_keeps_data(store: VectorStore) -> None:
    await store.upsert(RB, [Point(id="a", dense=axis(0))])
    await store.ensure_collections()
    await store.ensure_collections()
    assert await store.count(RB) == 1
    for c in Collection:  # all exist and are separate
        assert await store.count(c) == (1 if c == RB else 0)


async def test_upsert_get_count_delete(store: VectorStore) -> None:
    await store.upsert(RB, [Point(id=f"rb-{i}", dense=axis(i), payload={"n": i}) for i in range(3)])
    assert await store.count(RB) == 3

    got = await store.get(RB, ["rb-2", "missing", "rb-0"])
    assert [p.id for p in got] == ["rb-2", "rb-0"]  # missing ids are left out, order kept
    assert [p.payload for p in got] == [{"n": 2}, {"n": 0}]
    assert all(p.score == 0 for p in got)

    await store.delete(RB, ["rb-0", "never-existed"])
    assert await store.count(RB) == 2
    assert await store.get(RB, ["rb-0"]) == []
    assert [p.id for p in await store.get(RB, ["rb-1"])] == ["rb-1"]
    await store.delete(RB, [])
    await store.upsert(RB, [])
    assert await store.count(RB) == 2


async def test_scroll_lists_every_point_across_pages(store: VectorStore) -> None:
    rng = random.Random(7)
    n = 2500  # more than one scroll page
    await store.upsert(
        Collection.DOCUMENTATION,
        [Point(id=f"doc-{i:05d}", dense=axis(i % DIM, 0.3, rng), payload={"i": i}) for i in range(n)],
    )
    listed = await store.scroll(Collection.DOCUMENTATION)
    assert [p.id for p in listed] == [f"doc-{i:05d}" for i in range(n)]
    assert all(p.payload == {"i": int(p.id[4:])} for p in listed)
    assert await store.scroll(Collection.DECISIONS) == []


async def test_optimize_keeps_the_data(store: EdgeStore | ServerStore) -> None:
    await store.upsert(RB, [Point(id=f"p{i}", dense=axis(i), payload={"i": i}) for i in range(DIM)])
    await store.optimize()  # all collections, some of them empty
    await store.optimize(RB)
    assert await store.count(RB) == DIM
    assert [h.id for h in await store.search(RB, axis(3), None, limit=1)] == ["p3"]
    assert [p.payload for p in await store.get(RB, ["p5"])] == [{"i": 5}]


async def test_upsert_of_an_existing_id_replaces_it(store: VectorStore) -> None:
    await store.upsert(RB, [Point(id="x", dense=axis(0), payload={"v": 1}), Point(id="y", dense=axis(1))])
    await store.upsert(RB, [Point(id="x", dense=axis(2), payload={"v": 2, "new": True})])
    assert await store.count(RB) == 2
    [x] = await store.get(RB, ["x"])
    assert x.payload == {"v": 2, "new": True}  # replaced, not merged with the old payload
    hits = await store.search(RB, axis(2), None, limit=1, mode=QueryMode(kind="dense"))
    assert hits[0].id == "x"  # the vector was replaced too
    hits = await store.search(RB, axis(0), None, limit=1, mode=QueryMode(kind="dense"))
    assert hits[0].id != "x" or hits[0].score < 0.5


async def test_payload_round_trips(store: VectorStore) -> None:
    payload = {
        "title": "Pod crash-looping — «redémarrer» 🚑",
        "level": "manual",
        "n": 42,
        "ratio": 0.25,
        "ok": True,
        "none": None,
        "tags": ["k8s", "pods"],
        "match": [{"name": "alertname", "op": "=", "value": "KubePodCrashLooping"}],
        "nested": {"a": {"b": [1, 2, {"c": "d"}]}},
    }
    await store.upsert(RB, [Point(id="ns/rb-1.v2", dense=axis(3), payload=payload)])
    [got] = await store.get(RB, ["ns/rb-1.v2"])
    assert got.id == "ns/rb-1.v2"
    assert json.dumps(got.payload, sort_keys=True) == json.dumps(payload, sort_keys=True)
    assert "_id" not in got.payload  # both adapters strip the internal id key
    [hit] = await store.search(RB, axis(3), None, limit=1)
    assert hit.id == "ns/rb-1.v2" and hit.payload == got.payload
    [listed] = await store.scroll(RB)
    assert listed.payload == got.payload


@pytest.mark.parametrize("exact", [False, True])
async def test_dense_search_ranks_the_nearest_first(store: VectorStore, exact: bool) -> None:
    # Points at growing angles from axis 0: the ranking must follow the angle.
    angles = [0.05, 0.3, 0.6, 0.9, 1.2, 1.5]
    pts = [Point(id=f"p{i}", dense=unit(math.cos(a), math.sin(a))) for i, a in enumerate(angles)]
    pts.append(Point(id="far", dense=unit(-1.0, 0.0, 0.2)))
    random.Random(3).shuffle(pts)
    await store.upsert(RB, pts)
    hits = await store.search(RB, unit(1.0, 0.0), None, limit=4, mode=QueryMode(kind="dense"), exact=exact)
    assert [h.id for h in hits] == ["p0", "p1", "p2", "p3"]
    assert hits[0].score == pytest.approx(math.cos(0.05), abs=1e-4)  # cosine similarity
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert len(await store.search(RB, unit(1.0, 0.0), None, limit=100, exact=exact)) == len(pts)


async def test_sparse_search_finds_the_doc_with_rare_terms(store: VectorStore) -> None:
    # Term 1 is in every document; terms 500/501 only in "rare". Same dense vector for all,
    # so only the sparse branch can tell them apart.
    docs = [Point(id=f"common-{i}", dense=axis(0), sparse=sv({1: 1.0, 10 + i: 0.5})) for i in range(6)]
    docs.append(Point(id="rare", dense=axis(0), sparse=sv({1: 1.0, 500: 0.4, 501: 0.4})))
    docs.append(Point(id="no-sparse", dense=axis(0)))
    await store.upsert(RB, docs)
    hits = await store.search(RB, None, sv({1: 1.0, 500: 1.0}), limit=3, mode=QueryMode(kind="sparse"))
    assert hits[0].id == "rare"
    assert "no-sparse" not in {h.id for h in hits}
    # Only documents sharing a query term are returned by the sparse branch.
    hits = await store.search(RB, None, sv({501: 1.0}), limit=10, mode=QueryMode(kind="sparse"))
    assert [h.id for h in hits] == ["rare"]


async def test_sparse_search_applies_idf(store: VectorStore) -> None:
    # "frequent" has a high weight on a term every doc has; "specific" a lower weight on a
    # term only it has. Without IDF (raw dot product) "frequent" would win: 3.0 > 1.0.
    docs = [Point(id=f"filler-{i}", dense=axis(1), sparse=sv({7: 1.0})) for i in range(20)]
    docs.append(Point(id="frequent", dense=axis(1), sparse=sv({7: 3.0})))
    docs.append(Point(id="specific", dense=axis(1), sparse=sv({7: 1.0, 99: 1.0})))
    await store.upsert(RB, docs)
    hits = await store.search(RB, None, sv({7: 1.0, 99: 1.0}), limit=2)
    assert hits[0].id == "specific"


async def test_hybrid_returns_the_best_of_both_branches(store: VectorStore) -> None:
    rng = random.Random(11)
    docs = [Point(id=f"filler-{i}", dense=axis(2, 0.4, rng), sparse=sv({1: 1.0, 100 + i: 1.0})) for i in range(30)]
    # Best dense match, no term in common with the query:
    docs.append(Point(id="dense-best", dense=axis(0), sparse=sv({1: 1.0, 300: 1.0})))
    # Best sparse match, dense vector pointing away:
    docs.append(Point(id="sparse-best", dense=axis(5), sparse=sv({1: 1.0, 777: 1.0, 778: 1.0})))
    await store.upsert(RB, docs)
    q_dense, q_sparse = axis(0, 0.05), sv({777: 1.0, 778: 1.0})

    dense_only = [h.id for h in await store.search(RB, q_dense, q_sparse, limit=3, mode=QueryMode(kind="dense"))]
    sparse_only = [h.id for h in await store.search(RB, q_dense, q_sparse, limit=3, mode=QueryMode(kind="sparse"))]
    assert dense_only[0] == "dense-best" and "sparse-best" not in dense_only
    assert sparse_only == ["sparse-best"]

    hybrid = await store.search(RB, q_dense, q_sparse, limit=2, mode=QueryMode(kind="hybrid", prefetch=10))
    assert {h.id for h in hybrid} == {"dense-best", "sparse-best"}
    assert all(0 < h.score < 1 for h in hybrid)  # RRF scores, not cosine
    exact = await store.search(RB, q_dense, q_sparse, limit=2, mode=QueryMode(kind="hybrid"), exact=True)
    assert {h.id for h in exact} == {"dense-best", "sparse-best"}


async def test_only_the_given_branch_is_searched(store: VectorStore) -> None:
    await store.upsert(
        RB,
        [
            Point(id="a", dense=axis(0), sparse=sv({5: 1.0})),
            Point(id="b", dense=axis(1), sparse=sv({6: 1.0})),
        ],
    )
    hybrid_mode = QueryMode(kind="hybrid")
    hits = await store.search(RB, axis(1), None, limit=2, mode=hybrid_mode)
    assert [h.id for h in hits] == ["b", "a"] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    hits = await store.search(RB, axis(1), SparseVector(), limit=2, mode=hybrid_mode)  # empty sparse = none
    assert [h.id for h in hits] == ["b", "a"]
    hits = await store.search(RB, None, sv({5: 1.0}), limit=2, mode=QueryMode(kind="dense"))
    assert [h.id for h in hits] == ["a"]
    with pytest.raises(ValueError, match="dense vector"):
        await store.search(RB, None, None)
    with pytest.raises(ValueError, match="query mode"):
        await store.search(RB, axis(0), sv({5: 1.0}), mode=QueryMode(kind="fuzzy"))


async def test_wrong_dimensions_are_refused(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        await store.upsert(RB, [Point(id="bad", dense=[1.0, 0.0])])
    with pytest.raises(ValueError, match="dimensions"):
        await store.search(RB, [1.0, 0.0], None)
    assert await store.count(RB) == 0


async def test_concurrent_calls_do_not_interfere(store: VectorStore) -> None:
    await store.upsert(RB, [Point(id=f"p{i}", dense=axis(i)) for i in range(DIM)])

    async def writer(k: int) -> None:
        await store.upsert(Collection.DECISIONS, [Point(id=f"d{k}-{j}", dense=axis(j % DIM)) for j in range(20)])

    async def reader(i: int) -> str:
        return (await store.search(RB, axis(i), None, limit=1))[0].id

    results = await asyncio.gather(*(reader(i % DIM) for i in range(40)), *(writer(k) for k in range(5)))
    assert results[:40] == [f"p{i % DIM}" for i in range(40)]
    assert await store.count(Collection.DECISIONS) == 100


async def test_the_event_loop_keeps_running_during_a_bulk_upsert(store: VectorStore) -> None:
    rng = random.Random(5)
    points = [Point(id=f"bulk-{i}", dense=axis(i % DIM, 0.2, rng)) for i in range(6000)]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    await store.upsert(Collection.DOCUMENTATION, points)
    done.set()
    await task
    assert ticks > 1  # a blocking upsert would leave the ticker no turn until it finished
    assert await store.count(Collection.DOCUMENTATION) == 6000


@pytest.mark.parametrize("kind", ["edge", "server"])
async def test_a_missing_collection_is_a_clear_store_error(kind: str, tmp_path: Path) -> None:
    s = make_store(kind, tmp_path)  # ensure_collections() never called
    try:
        with pytest.raises(StoreError, match=r"does not exist.*ensure_collections"):
            await s.count(RB)
    finally:
        await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.count(RB)


# --------------------------------------------------------------------------------------------
# EdgeStore: persistence, optimize, damage
# --------------------------------------------------------------------------------------------


async def test_edge_store_reopens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    async with EdgeStore(path, dim=DIM) as s:
        await s.upsert(
            RB, [Point(id=f"rb-{i}", dense=axis(i), sparse=sv({i: 1.0}), payload={"i": i}) for i in range(5)]
        )
        await s.upsert(Collection.DECISIONS, [Point(id="dec-1", dense=axis(7), payload={"ok": True})])
        await s.delete(RB, ["rb-4"])
    assert sorted(p.name for p in path.iterdir()) == sorted(str(c) for c in Collection)

    s2 = EdgeStore(path, dim=DIM)  # no ensure_collections: existing shards load on first use
    try:
        assert await s2.count(RB) == 4
        assert [p.payload for p in await s2.get(RB, ["rb-3"])] == [{"i": 3}]
        assert (await s2.search(RB, axis(2), None, limit=1))[0].id == "rb-2"
        assert (await s2.search(RB, None, sv({1: 1.0}), limit=1))[0].id == "rb-1"
        assert [p.id for p in await s2.scroll(Collection.DECISIONS)] == ["dec-1"]
        await s2.ensure_collections()  # loads, does not recreate
        assert await s2.count(RB) == 4
    finally:
        await s2.close()


async def test_edge_store_optimize_builds_the_index_and_keeps_results(tmp_path: Path) -> None:
    tuning = EdgeTuning(indexing_threshold_kb=10, full_scan_threshold_kb=1, default_segment_number=1)
    rng = random.Random(1)
    points = [Point(id=f"p{i}", dense=axis(i % DIM, 0.5, rng)) for i in range(3000)]
    queries = [axis(i % DIM, 0.5, rng) for i in range(20)]
    async with EdgeStore(tmp_path / "q", dim=DIM, tuning=tuning) as s:
        await s.upsert(RB, points)
        before = [[h.id for h in await s.search(RB, q, None, limit=5, exact=True)] for q in queries]
        assert await s.optimize(RB) is True
        assert await s.optimize(RB) is False  # already optimal
        assert await s.count(RB) == 3000
        after = [[h.id for h in await s.search(RB, q, None, limit=5)] for q in queries]
        hits = sum(len(set(a) & set(b)) for a, b in zip(before, after, strict=True))
        assert hits / (5 * len(queries)) >= 0.9  # HNSW recall against exact search
    async with EdgeStore(tmp_path / "q", dim=DIM, tuning=tuning) as s:  # the index persists
        assert await s.count(RB) == 3000
        assert [h.id for h in await s.search(RB, queries[0], None, limit=5, exact=True)] == before[0]


async def test_edge_store_optimize_leaves_the_loop_and_other_collections_running(tmp_path: Path) -> None:
    # qdrant-edge holds the GIL while optimizing: EdgeStore runs it in a child process.
    tuning = EdgeTuning(indexing_threshold_kb=10, full_scan_threshold_kb=1, default_segment_number=1)
    rng = random.Random(2)
    async with EdgeStore(tmp_path / "q", dim=DIM, tuning=tuning) as s:
        await s.upsert(RB, [Point(id=f"p{i}", dense=axis(i % DIM, 0.5, rng)) for i in range(3000)])
        await s.upsert(Collection.DECISIONS, [Point(id="d", dense=axis(1))])
        query = axis(0, 0.5, rng)
        expected = [h.id for h in await s.search(RB, query, None, limit=3, exact=True)]

        optimizing = asyncio.create_task(s.optimize(RB))
        await asyncio.sleep(0)  # the collection is now offline
        same = asyncio.create_task(s.search(RB, query, None, limit=3, exact=True))
        other: list[str] = []
        while not optimizing.done():
            assert not same.done()  # waits for the shard to come back
            other.append((await s.search(Collection.DECISIONS, axis(1), None, limit=1))[0].id)
            await asyncio.sleep(0.005)
        assert await optimizing is True
        assert len(other) > 5 and set(other) == {"d"}  # the loop and other collections kept going
        assert [h.id for h in await same] == expected
        assert (await s.info(RB))["points"] == 3000


async def test_edge_store_on_a_damaged_directory_raises_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    async with EdgeStore(path, dim=DIM) as s:
        await s.upsert(RB, [Point(id="a", dense=axis(0))])
    (path / str(RB) / "edge_config.json").write_text("{ this is not json")

    s2 = EdgeStore(path, dim=DIM)
    with pytest.raises(StoreError) as err:
        await s2.ensure_collections()
    msg = str(err.value)
    assert "damaged" in msg and str(path / str(RB)) in msg and "re-index" in msg
    assert "Traceback" not in msg
    await s2.close()


async def test_edge_store_refuses_a_directory_of_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    (path / str(RB)).mkdir(parents=True)
    (path / str(RB) / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a Qdrant Edge shard"):
        await EdgeStore(path, dim=DIM).ensure_collections()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StoreError, match="is a file, not a directory"):
        await EdgeStore(afile, dim=DIM).ensure_collections()


async def test_edge_store_refuses_a_second_opener_and_another_dim(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    async with EdgeStore(path, dim=DIM):
        with pytest.raises(StoreError, match="already open"):
            await EdgeStore(path, dim=DIM).ensure_collections()
    with pytest.raises(StoreError, match=r"other vector settings.*dim=16"):
        await EdgeStore(path, dim=16).ensure_collections()
    async with EdgeStore(path, dim=DIM) as s:  # and the store is still fine afterwards
        assert await s.count(RB) == 0


# --------------------------------------------------------------------------------------------
# ServerStore specifics
# --------------------------------------------------------------------------------------------


async def test_server_store_local_path_persists_and_checks_dim(tmp_path: Path) -> None:
    path = str(tmp_path / "local")
    async with ServerStore(path=path, dim=DIM) as s:
        await s.upsert(RB, [Point(id="a", dense=axis(0), payload={"k": "v"})])
    async with ServerStore(path=path, dim=DIM) as s:
        assert [p.payload for p in await s.get(RB, ["a"])] == [{"k": "v"}]
    other = ServerStore(path=path, dim=16)
    with pytest.raises(StoreError, match="another embedder"):
        await other.ensure_collections()
    await other.close()


def test_server_store_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ServerStore()
    with pytest.raises(ValueError, match="exactly one"):
        ServerStore("http://127.0.0.1:6333", location=":memory:")


async def test_server_store_unreachable_server_is_a_clear_store_error(port: int) -> None:
    s = ServerStore(f"http://127.0.0.1:{port}", timeout=2)  # nothing listens on `port`
    try:
        with pytest.raises(StoreError, match=r"cannot reach Qdrant at http://127\.0\.0\.1"):
            await s.ensure_collections()
    finally:
        await s.close()
