"""Vector search benchmark: `EdgeStore` (Qdrant Edge) and `ServerStore` (qdrant-client local mode).

    python benchmarks/vector_search.py [--points 100000] [--queries 500] [--server-queries 50]

The data is realistic rather than uniform random. The anchors are real texts embedded with
`LocalEmbedder` (all-MiniLM-L6-v2): the 1,155 alert rules of awesome-prometheus-alerts and the
sections of the prometheus-operator runbooks (../shared/corpora). Each of the N points is
one anchor (picked with a skewed, Zipf-like popularity, so some topics are crowded) moved by

- a *semantic drift* towards a few other anchors (coefficients of varying size), which keeps
  the variation in the directions real embeddings vary in, and
- a small isotropic gaussian noise of varying size,

then renormalized. The queries are held-out draws from the same process (never inserted).
Each point also gets a sparse BM25 vector (Qdrant Edge's `Bm25`) of its anchor's text with
some terms dropped; queries get a few words of their anchor, for the hybrid figures.

Measured through the async adapter API, one query at a time, as the app calls it:
top-5 latency (p50/p95/p99) and recall@5 against `exact=True` on the same store (and a numpy
brute-force cross-check). qdrant-client local mode is brute force in numpy: it is slow at 100K
points, warns above 20K, and its "approximate" search is already exact (recall 1.0 by
construction), so it runs fewer queries.

Recorded on the 2-core reference machine (shared, load average 3-4), qdrant-edge-py 0.9.0,
qdrant-client 1.20.0, EdgeStore defaults m=16, ef_construct=128, hnsw_ef=96:

    adapter              mode     p50 ms  p95 ms  recall@5  ingest s  index s
    EdgeStore            dense      0.50    2.16     0.982       8.6     37.5
    EdgeStore            hybrid     0.58    0.89     0.956
    EdgeStore            exact      6.04   16.93     1.000
    ServerStore (local)  dense     124.6   442.5     1.000      26.8        -   (50 queries)
    ServerStore (local)  hybrid    437.2   670.0     1.000

Steady-state EdgeStore dense (warm page cache), hnsw_ef 32/64/96/128: p95 0.20/0.25/0.42/0.32 ms,
recall@5 0.958/0.976/0.982/0.984. m=32, ef_construct=256 gave recall@5 0.988 at hnsw_ef=64 for a
3x longer build (105 s). p95/p99 move by a few ms with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activities.knowledge.edge_store import EdgeStore, EdgeTuning  # noqa: E402
from activities.knowledge.embeddings import LocalEmbedder  # noqa: E402
from activities.knowledge.server_store import ServerStore  # noqa: E402
from activities.knowledge.store import Point, QueryMode, SparseVector, VectorStore  # noqa: E402
from agentic_core.models import Collection  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
COLLECTION = Collection.DOCUMENTATION
DIM = 384
K = 5


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_texts() -> list[str]:
    """Alert rules (name + description) and runbook sections: the real texts behind the anchors."""
    texts: list[str] = []
    doc = yaml.safe_load((CORPORA / "awesome-prometheus-alerts" / "rules.yml").read_text())
    for group in doc["groups"]:
        for service in group.get("services", []):
            for exporter in service.get("exporters", []):
                for rule in exporter.get("rules") or []:
                    texts.append(f"{service['name']}: {rule['name']}. {rule.get('description', '')}".strip())
    for md in sorted((CORPORA / "prometheus-operator-runbooks").rglob("*.md")):
        if md.name == "_index.md":
            continue
        body = re.sub(r"^---.*?---\s*", "", md.read_text(), flags=re.S)
        for section in re.split(r"\n(?=## )", body):
            section = section.strip()
            if len(section) > 40:
                texts.append(f"{md.stem}\n{section}"[:1200])
    return texts


@dataclass
class Dataset:
    anchors: np.ndarray  # (A, DIM) float32, unit rows
    anchor_texts: list[str]
    points: np.ndarray  # (N, DIM) float32, unit rows
    point_anchor: np.ndarray  # (N,) anchor of each point
    queries: np.ndarray  # (Q, DIM)
    query_anchor: np.ndarray
    query_sparse: list[SparseVector] = field(default_factory=list)
    doc_sparse: list[SparseVector] = field(default_factory=list)  # per anchor


def sample(
    anchors: np.ndarray, popularity: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n vectors around anchors: drift towards 3 other anchors + isotropic noise, renormalized."""
    a = anchors.shape[0]
    idx = rng.choice(a, size=n, p=popularity)
    out = anchors[idx].astype(np.float64)
    drift_scale = rng.uniform(0.05, 0.35, size=(n, 1))  # how far a point wanders, per point
    for _ in range(3):
        other = rng.integers(0, a, size=n)
        coef = rng.normal(0.0, 1.0, size=(n, 1)) * drift_scale
        out += coef * (anchors[other] - anchors[idx])
    noise_scale = rng.uniform(0.005, 0.03, size=(n, 1))  # 0.1 .. 0.6 in norm over 384 dims
    out += rng.normal(0.0, 1.0, size=out.shape) * noise_scale
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32), idx


def make_dataset(anchors: np.ndarray, texts: list[str], n_points: int, n_queries: int, seed: int) -> Dataset:
    import qdrant_edge as qe

    rng = np.random.default_rng(seed)
    a = anchors.shape[0]
    ranks = rng.permutation(a) + 1
    popularity = 1.0 / ranks**0.8  # a few crowded topics, a long tail
    popularity /= popularity.sum()
    points, point_anchor = sample(anchors, popularity, n_points, rng)
    queries, query_anchor = sample(anchors, popularity, n_queries, rng)

    bm25 = qe.Bm25()
    doc_sparse = []
    for t in texts:
        v = bm25.embed_document(t)
        doc_sparse.append(SparseVector(indices=list(v.indices), values=list(v.values)))
    query_sparse = []
    for ai in query_anchor:
        words = re.findall(r"[A-Za-z][A-Za-z0-9_]+", texts[ai])
        pick = rng.choice(len(words), size=min(len(words), int(rng.integers(3, 7))), replace=False) if words else []
        v = bm25.embed_query(" ".join(words[i] for i in sorted(pick)) or "alert")
        query_sparse.append(SparseVector(indices=list(v.indices), values=list(v.values)))
    return Dataset(anchors, texts, points, point_anchor, queries, query_anchor, query_sparse, doc_sparse)


def point_batch(ds: Dataset, start: int, stop: int, rng: np.random.Generator) -> list[Point]:
    out = []
    for i in range(start, stop):
        doc = ds.doc_sparse[int(ds.point_anchor[i])]
        keep = rng.random(len(doc.indices)) > 0.3  # each point keeps ~70% of its anchor's terms
        sparse = SparseVector(
            indices=[x for x, k in zip(doc.indices, keep, strict=True) if k],
            values=[x for x, k in zip(doc.values, keep, strict=True) if k],
        )
        out.append(
            Point(
                id=f"chunk-{i:06d}",
                dense=ds.points[i].tolist(),
                sparse=sparse,
                payload={"source": f"anchor-{int(ds.point_anchor[i])}", "n": i},
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    adapter: str
    mode: str
    queries: int
    p50: float
    p95: float
    p99: float
    recall: float
    note: str = ""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


async def ingest(store: VectorStore, ds: Dataset, batch: int = 1000) -> float:
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    n = ds.points.shape[0]
    for start in range(0, n, batch):
        await store.upsert(COLLECTION, point_batch(ds, start, min(n, start + batch), rng))
    return time.perf_counter() - t0


async def run_queries(
    store: VectorStore, ds: Dataset, n: int, mode: str, exact: bool
) -> tuple[list[float], list[list[str]]]:
    qmode = QueryMode(kind=mode, prefetch=50)
    latencies: list[float] = []
    results: list[list[str]] = []
    for i in range(n):
        dense = ds.queries[i].tolist()
        sparse = ds.query_sparse[i] if mode != "dense" else None
        t0 = time.perf_counter()
        hits = await store.search(COLLECTION, dense, sparse, limit=K, mode=qmode, exact=exact)
        latencies.append((time.perf_counter() - t0) * 1000)
        results.append([h.id for h in hits])
    return latencies, results


def recall_at_k(approx: list[list[str]], exact: list[list[str]]) -> float:
    return statistics.fmean(len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact, strict=True))


async def measure(store: VectorStore, ds: Dataset, name: str, n: int, modes: list[str]) -> list[Row]:
    rows = []
    for mode in modes:
        await run_queries(store, ds, min(20, n), mode, exact=False)  # warm-up
        gc.collect()
        lat, approx = await run_queries(store, ds, n, mode, exact=False)
        lat_exact, exact = await run_queries(store, ds, n, mode, exact=True)
        rows.append(Row(name, mode, n, pct(lat, 50), pct(lat, 95), pct(lat, 99), recall_at_k(approx, exact)))
        rows.append(
            Row(
                name, f"{mode} exact", n, pct(lat_exact, 50), pct(lat_exact, 95), pct(lat_exact, 99), 1.0, "brute force"
            )
        )
        if mode == "dense":  # the store's exact search must agree with numpy
            truth = np.argsort(-(ds.points @ ds.queries[:n].T), axis=0)[:K].T
            numpy_ids = [[f"chunk-{j:06d}" for j in row] for row in truth]
            agree = recall_at_k(exact, numpy_ids)
            rows[-1].note += f"; agrees with numpy brute force: {agree:.4f}"
    return rows


def difficulty(ds: Dataset, n: int = 200) -> str:
    n = min(n, ds.queries.shape[0])
    sims = ds.points @ ds.queries[:n].T  # (N, n)
    top = -np.sort(-sims, axis=0)
    same = statistics.fmean(
        float(np.mean(ds.point_anchor[np.argsort(-sims[:, j])[:K]] == ds.query_anchor[j])) for j in range(n)
    )
    return (
        f"cosine of the true neighbours: top-1 {top[0].mean():.3f}, top-5 {top[4].mean():.3f}, "
        f"top-50 {top[49].mean():.3f}, top-500 {top[499].mean():.3f}; "
        f"{same:.0%} of the true top-5 share the query's anchor"
    )


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500, help="queries for EdgeStore")
    ap.add_argument("--server-queries", type=int, default=50, help="queries for ServerStore local mode (slow)")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--m", type=int, default=EdgeTuning.m)
    ap.add_argument("--ef-construct", type=int, default=EdgeTuning.ef_construct)
    ap.add_argument("--ef", type=int, default=EdgeTuning.ef, help="hnsw_ef at search time")
    ap.add_argument("--segments", type=int, default=EdgeTuning.default_segment_number)
    ap.add_argument("--search-threads", type=int, default=1, help="EdgeStore max_search_threads (0: engine default)")
    ap.add_argument("--dir", type=Path, default=None, help="where EdgeStore writes (default: a temporary dir)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--ef-sweep", default="", help="also measure EdgeStore dense at these hnsw_ef values, e.g. 32,64,128"
    )
    ap.add_argument("--anchors-cache", type=Path, default=None, help=".npy file to reuse the anchor embeddings")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*[Ll]ocal mode.*")

    print(f"machine: {os.cpu_count()} CPUs, load average {load()} (1/5/15 min)")
    texts = load_texts()
    cache = args.anchors_cache
    if cache is not None and cache.exists() and np.load(cache).shape[0] == len(texts):
        anchors = np.load(cache)
        print(f"anchors: {len(texts)} real texts, embeddings read from {cache}")
    else:
        embedder = LocalEmbedder(batch_size=64)
        t0 = time.perf_counter()
        anchors = np.asarray(await embedder.embed_documents(texts), dtype=np.float32)
        embedder.close()
        t_embed = time.perf_counter() - t0
        print(f"anchors: {len(texts)} real texts embedded with all-MiniLM-L6-v2 in {t_embed:.1f} s")
        if cache is not None:
            np.save(cache, anchors)
    ds = make_dataset(anchors, texts, args.points, max(args.queries, args.server_queries), args.seed)
    print(f"dataset: {args.points} points x {DIM} dims, {ds.queries.shape[0]} held-out queries")
    print(f"difficulty: {difficulty(ds)}")

    rows: list[Row] = []
    build: list[tuple[str, float, float]] = []
    tuning = EdgeTuning(m=args.m, ef_construct=args.ef_construct, ef=args.ef, default_segment_number=args.segments)
    params = f"m={tuning.m}, ef_construct={tuning.ef_construct}, hnsw_ef={tuning.ef}"
    with tempfile.TemporaryDirectory(prefix="vecbench-") as tmp:
        path = args.dir or Path(tmp) / "edge"
        store = EdgeStore(path, dim=DIM, tuning=tuning, max_search_threads=args.search_threads or None)
        await store.ensure_collections()
        t_ingest = await ingest(store, ds)
        print(f"EdgeStore: ingested {args.points} points in {t_ingest:.1f} s", flush=True)
        t0 = time.perf_counter()
        await store.optimize(COLLECTION)
        t_index = time.perf_counter() - t0
        print(f"EdgeStore: optimize() (HNSW {params}) took {t_index:.1f} s", flush=True)
        build.append(("EdgeStore", t_ingest, t_index))
        print(f"EdgeStore: {await store.info(COLLECTION)}", flush=True)
        rows += await measure(store, ds, "EdgeStore", args.queries, ["dense", "hybrid"])
        if args.ef_sweep:
            _, exact = await run_queries(store, ds, args.queries, "dense", exact=True)
            for ef in (int(x) for x in args.ef_sweep.split(",")):
                store.tuning = dataclasses.replace(tuning, ef=ef)
                await run_queries(store, ds, 20, "dense", exact=False)
                lat, approx = await run_queries(store, ds, args.queries, "dense", exact=False)
                r = Row("EdgeStore", f"dense ef={ef}", args.queries, pct(lat, 50), pct(lat, 95), pct(lat, 99), 0.0)
                r.recall = recall_at_k(approx, exact)
                r.note = "hnsw_ef sweep"
                rows.append(r)
            store.tuning = tuning
        await store.close()
        files = [f.stat() for f in path.rglob("*") if f.is_file()]
        used, apparent = sum(f.st_blocks * 512 for f in files) / 2**20, sum(f.st_size for f in files) / 2**20
        print(f"EdgeStore: {used:.0f} MiB on disk ({apparent:.0f} MiB apparent: sparse, mmap-ed files)", flush=True)

    if not args.skip_server:
        server = ServerStore(location=":memory:", dim=DIM)
        await server.ensure_collections()
        t_ingest = await ingest(server, ds)
        print(f"ServerStore (local mode): ingested {args.points} points in {t_ingest:.1f} s", flush=True)
        build.append(("ServerStore (local)", t_ingest, 0.0))
        rows += await measure(server, ds, "ServerStore (local)", args.server_queries, ["dense", "hybrid"])
        await server.close()

    print()
    print(f"Vector search, {args.points} points x {DIM} dims, top-{K}, one query at a time through the async API")
    print(f"load average at the end: {load()} (2 cores shared with other work: expect noise in p95/p99)")
    print()
    print(f"{'adapter':<22}{'ingest s':>10}{'index s':>10}")
    for name, t_in, t_ix in build:
        print(f"{name:<22}{t_in:>10.1f}{t_ix:>10.1f}")
    print()
    header = f"{'adapter':<22}{'mode':<15}{'queries':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'recall@5':>10}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        note = r.note
        if r.adapter == "EdgeStore" and "exact" not in r.mode and not note:
            note = params
        if r.adapter.startswith("ServerStore") and "exact" not in r.mode:
            note = f"local mode is brute force: recall 1.0 by construction; {r.queries} queries"
        print(
            f"{r.adapter:<22}{r.mode:<15}{r.queries:>8}{r.p50:>9.2f}{r.p95:>9.2f}{r.p99:>9.2f}{r.recall:>10.3f}  {note}"
        )
    edge = next(r for r in rows if r.adapter == "EdgeStore" and r.mode == "dense")
    ok = edge.p95 < 5.0 and edge.recall >= 0.95
    print()
    print(
        f"target (EdgeStore dense: p95 < 5 ms, recall@5 >= 0.95): {'MET' if ok else 'NOT MET'} "
        f"(p95 {edge.p95:.2f} ms, recall@5 {edge.recall:.3f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
