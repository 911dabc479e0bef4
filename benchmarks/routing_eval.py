"""Routing accuracy: does a request, phrased the way an operator types it, reach the right agent?

    python benchmarks/routing_eval.py [--set eval|holdout|fit|check] [--no-model] [--threshold T] [--fit]

Indexes the router's exemplars (`activities/agents/exemplars.yaml`) into a fresh `EdgeStore`
in a temporary directory with the local embedding model, starts the embedded planner model
(llama.cpp serving SmolLM2-135M, one thread, as `agentic up` does) unless `--no-model`, and
routes every request of a set through `RouteActivities.route_text`, the `agents.route`
activity's body. It prints accuracy by agent and overall, by style, the share decided by the
embeddings and by the model, the model's own accuracy where it was asked, and the route
decision latency p50/p95 (embedding path and model path apart; target < 50 ms on the
embedding path), then the misses.

The sets (benchmarks/data/):
- `routing_eval.yaml` (default): 186 requests, 62 per agent, written before the exemplars and
  never tuned on. Exit status 1 when its overall accuracy is below 95%.
- `routing_holdout.yaml`: 30 requests, 10 per agent, typed the way people type in a chat
  (typos, abbreviations, slang), written before anything was run on them; never tuned on.
- `routing_fit.yaml`: the thresholds and the scoring are chosen on it.
- `routing_check.yaml`: another style (chat messages with context), to check the choice.

`--fit` compares scorings (the mean of the 1, 3 or 5 nearest exemplars per agent, plus 0 to 0.5
times the word model's probability) and chooses the threshold (one for all agents, or one per
agent) on the fit set, and checks each choice on the check set and the other way round (fit on
check, score on fit): cross-validation across sources.
The model's answer to every fit and check request is taken once, so every threshold is
scored exactly. It prints the thresholds to put in exemplars.yaml. It never reads the eval or
hold-out sets.

Before anything runs, the sets are checked apart: no request may repeat an exemplar or a
request of another set (normalised text); the eval requests most similar to an exemplar are
listed, so a paraphrase would show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from activities.agents.router import RouteActivities, load_exemplars  # noqa: E402
from activities.knowledge.edge_store import EdgeStore  # noqa: E402
from agentic_core.agents import RouteMethod  # noqa: E402
from agentic_core.routing import AGENT_ORDER, agent_scores, combined_scores, decide  # noqa: E402

DATA = REPO / "benchmarks" / "data"
SETS = {
    "eval": DATA / "routing_eval.yaml",
    "holdout": DATA / "routing_holdout.yaml",
    "fit": DATA / "routing_fit.yaml",
    "check": DATA / "routing_check.yaml",
}
TARGET_ACCURACY = 0.95
TARGET_P95_MS = 50.0
THRESHOLD_GRID = [round(0.20 + 0.01 * i, 2) for i in range(81)]  # 0.20 .. 1.00 (scores reach 1.2)


@dataclass
class Request:
    text: str
    agent: str
    style: str = ""


@dataclass
class Scored:
    """One request's exemplar similarities, its route, and what it cost."""

    req: Request
    nearest: list[tuple[str, str, float]]
    agent: str = ""
    method: str = ""
    note: str = ""
    ms: float = 0.0
    model_answer: str | None = None  # the model's choice, when it was asked (or --fit asked it)
    scores: dict[str, float] = field(default_factory=dict)  # the router's score per agent
    extra: dict[str, str] = field(default_factory=dict)


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def load_set(path: Path) -> list[Request]:
    items = yaml.safe_load(path.read_text(encoding="utf-8"))["requests"]
    out = [Request(str(r["text"]).strip(), str(r["agent"]), str(r.get("style", ""))) for r in items]
    bad = [r for r in out if r.agent not in AGENT_ORDER]
    if bad:
        raise SystemExit(f"{path.name}: unknown agents in {[(r.text, r.agent) for r in bad]}")
    return out


def check_apart(sets: dict[str, list[Request]], exemplars: dict[str, str]) -> None:
    """No request repeats an exemplar or another set's request."""
    problems = []
    seen: dict[str, str] = {norm(t): f"exemplar ({a})" for t, a in exemplars.items()}
    for name, reqs in sets.items():
        mine: set[str] = set()
        for r in reqs:
            key = norm(r.text)
            if key in mine:
                problems.append(f"{name}: repeated request {r.text!r}")
            if key in seen:
                problems.append(f"{name}: {r.text!r} is also in {seen[key]}")
            mine.add(key)
        for key in mine:
            seen.setdefault(key, f"the {name} set")
    if problems:
        raise SystemExit("the sets are not apart:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- the planner model


@contextlib.contextmanager
def embedded_model() -> Iterator[str]:
    """llama.cpp with SmolLM2-135M on one thread, on a free port: its OpenAI base URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Its log goes to a file: a pipe nobody reads fills up and stalls the server mid-benchmark.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below, after the server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.llm_server", "--port", str(port), "--threads", "1", "--ctx", "2048"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"the model server exited: {log.read().decode(errors='replace')[-500:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the model server did not become healthy in 120 s")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        log.close()


def planner(base_url: str):  # type: ignore[no-untyped-def]
    from activities.inference.router import EMBEDDED_MAX_ITEMS, EMBEDDED_MAX_STRING_LENGTH, GroupConfig, InferenceRouter

    return InferenceRouter(
        [
            GroupConfig(
                name="planner",
                model="openai/smollm2",
                api_base=base_url,
                timeout_s=60,
                max_string_length=EMBEDDED_MAX_STRING_LENGTH,
                max_items=EMBEDDED_MAX_ITEMS,
            )
        ]
    )


# --------------------------------------------------------------------------- routing a set


async def route_all(acts: RouteActivities, reqs: list[Request]) -> list[Scored]:
    out = []
    for r in reqs:
        t0 = time.perf_counter()
        route = await acts.route_text(r.text)
        ms = (time.perf_counter() - t0) * 1000
        nearest = await acts.nearest(r.text)
        s = Scored(r, nearest, route.agent, str(route.method), route.note, ms, scores=acts.scores(r.text, nearest))
        if route.method == RouteMethod.LLM:
            s.model_answer = route.agent
        out.append(s)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * len(v) + 0.5) - 1))]


def report(name: str, scored: list[Scored], *, misses_shown: bool = True) -> float:
    n = len(scored)
    ok = [s.agent == s.req.agent for s in scored]
    acc = sum(ok) / n
    print(f"\n{name}: {n} requests")
    print(f"  {'agent':<14} {'n':>4} {'accuracy':>9}")
    for agent in AGENT_ORDER:
        mine = [o for s, o in zip(scored, ok, strict=True) if s.req.agent == agent]
        if mine:
            print(f"  {agent:<14} {len(mine):>4} {sum(mine) / len(mine):>9.1%}")
    print(f"  {'overall':<14} {n:>4} {acc:>9.1%}")
    styles = sorted({s.req.style for s in scored if s.req.style})
    if styles:
        print(
            "  by style: "
            + ", ".join(
                f"{st} {sum(o for s, o in zip(scored, ok, strict=True) if s.req.style == st)}/"
                f"{sum(1 for s in scored if s.req.style == st)}"
                for st in styles
            )
        )
    by_method = Counter(s.method for s in scored)
    emb = [s for s in scored if s.method == RouteMethod.EMBEDDING and not s.note]
    fallback = [s for s in scored if s.method == RouteMethod.EMBEDDING and s.note]
    llm = [s for s in scored if s.method == RouteMethod.LLM]
    print(
        f"  decided by the embeddings {len(emb) / n:.1%} ({len(emb)}), by the model {len(llm) / n:.1%} ({len(llm)}), "
        f"embedding guess after the model failed {len(fallback) / n:.1%} ({len(fallback)})"
    )
    if emb:
        acc_emb = sum(s.agent == s.req.agent for s in emb) / len(emb)
        print(f"  accuracy where the embeddings decided {acc_emb:.1%}")
    if llm:
        acc_llm = sum(s.agent == s.req.agent for s in llm) / len(llm)
        guess = [decide_best(s) == s.req.agent for s in llm]
        print(
            f"  accuracy where the model decided {acc_llm:.1%} "
            f"(the embedding's best guess on the same requests: {sum(guess) / len(guess):.1%})"
        )
    lat_e = [s.ms for s in scored if s.method == RouteMethod.EMBEDDING and not s.note]
    lat_m = [s.ms for s in scored if s.method == RouteMethod.LLM or s.note]
    if lat_e:
        print(f"  route decision latency, embedding path: p50 {pct(lat_e, 0.5):.1f} ms, p95 {pct(lat_e, 0.95):.1f} ms")
    if lat_m:
        print(f"  route decision latency, model path:     p50 {pct(lat_m, 0.5):.0f} ms, p95 {pct(lat_m, 0.95):.0f} ms")
    del by_method
    misses = [s for s, o in zip(scored, ok, strict=True) if not o]
    if misses and not misses_shown:
        print(f"  misses: {len(misses)} (not shown: --no-misses)")
    elif misses:
        print(f"  misses ({len(misses)}):")
        for s in misses:
            scores = " ".join(f"{a[:3]}={v:.2f}" for a, v in s.scores.items())
            print(f"    - {s.req.text!r}: expected {s.req.agent}, got {s.agent} ({s.method}; {scores})")
            print(f"        nearest: {s.nearest[0][1]!r} ({s.nearest[0][0]}, {s.nearest[0][2]:.2f})")
    return acc


def decide_best(s: Scored) -> str:
    return decide(s.scores, {}).agent


def closest_to_exemplars(scored: list[Scored], name: str = "eval", n: int = 8) -> None:
    top = sorted(scored, key=lambda s: -s.nearest[0][2])[:n]
    print(f"\n{name} requests closest to an exemplar (a paraphrase would show here; top {n}):")
    for s in top:
        print(f"  {s.nearest[0][2]:.2f}  {s.req.text!r}  ~  {s.nearest[0][1]!r}")


# --------------------------------------------------------------------------- fitting


def accuracy_at(scored: list[Scored], thresholds: dict[str, float], use_model: bool = True) -> tuple[float, float]:
    """(accuracy, share sent to the model) of thresholds on the router's scores, with the model's cached answers."""
    ok = asked = 0
    for s in scored:
        d = decide(s.scores, thresholds)
        if d.confident or not use_model or s.model_answer is None:
            ok += d.agent == s.req.agent
        else:
            asked += 1
            ok += s.model_answer == s.req.agent
    return ok / len(scored), asked / len(scored)


def fit_global(scored: list[Scored]) -> float:
    """The threshold with the best accuracy; among equals, the lowest (the fewest model calls)."""
    return max(THRESHOLD_GRID, key=lambda t: (accuracy_at(scored, dict.fromkeys(AGENT_ORDER, t))[0], -t))


def fit_per_agent(scored: list[Scored], rounds: int = 3) -> dict[str, float]:
    """One threshold per agent, by coordinate ascent from the global fit."""
    th = dict.fromkeys(AGENT_ORDER, fit_global(scored))
    for _ in range(rounds):
        for agent in AGENT_ORDER:
            th[agent] = max(THRESHOLD_GRID, key=lambda t, a=agent: (accuracy_at(scored, {**th, a: t})[0], -t))
    return th


def compare_scorings(acts: RouteActivities, fit_set: list[Scored], check_set: list[Scored]) -> None:
    """Embedding-only accuracy of other scorings on the same hits (how TOP_K and WORD_WEIGHT were chosen)."""
    print("\nscorings, embeddings only (no threshold, no model): accuracy on fit / check")
    for top_k in (1, 3, 5):
        for weight in (0.0, 0.1, 0.2, 0.3, 0.5):
            accs = []
            for part in (fit_set, check_set):
                ok = 0
                for s in part:
                    floor = min(v for _, _, v in s.nearest)
                    sim = agent_scores(((a, v) for a, _, v in s.nearest), AGENT_ORDER, top_k=top_k, floor=floor)
                    sc = combined_scores(sim, acts.words.posteriors(s.req.text), word_weight=weight)
                    ok += decide(sc, {}).agent == s.req.agent
                accs.append(ok / len(part))
            mark = "  <- the router's" if (top_k, weight) == (acts.top_k, acts.word_weight) else ""
            print(f"  mean of {top_k} nearest + {weight:.1f} x words: {accs[0]:.1%} / {accs[1]:.1%}{mark}")


async def fit(acts: RouteActivities, fit_set: list[Scored], check_set: list[Scored]) -> None:
    if acts.model_available():
        todo = [*fit_set, *check_set]
        t0 = time.perf_counter()
        for i, s in enumerate(todo, 1):
            if i % 50 == 0:
                print(f"  asked the model {i}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", flush=True)
            if s.model_answer is None:
                try:
                    s.model_answer = await acts.ask_model(s.req.text, s.nearest)
                except Exception as exc:
                    s.extra["model_error"] = str(exc)[:200]
        for name, part in (("fit", fit_set), ("check", check_set)):
            asked = [s for s in part if s.model_answer is not None]
            if asked:
                acc = sum(s.model_answer == s.req.agent for s in asked) / len(asked)
                print(f"the model alone on the {name} set: {acc:.1%} of {len(asked)} requests")
    compare_scorings(acts, fit_set, check_set)
    print("\nthresholds chosen on one set, scored on the other (accuracy, share sent to the model):")
    print(f"  {'thresholds':<11} {'fit on':<6} {'chosen':<40} {'on fit':>15} {'on check':>15}")
    for kind in ("global", "per agent"):
        for src in ("fit", "check"):
            train = fit_set if src == "fit" else check_set
            th = dict.fromkeys(AGENT_ORDER, fit_global(train)) if kind == "global" else fit_per_agent(train)
            a_fit, m_fit = accuracy_at(fit_set, th)
            a_chk, m_chk = accuracy_at(check_set, th)
            chosen = " ".join(f"{a[:3]}={t:.2f}" for a, t in th.items())
            print(f"  {kind:<11} {src:<6} {chosen:<40} {a_fit:>7.1%} ({m_fit:>4.0%}) {a_chk:>7.1%} ({m_chk:>4.0%})")
    a_fit, _ = accuracy_at(fit_set, {}, use_model=False)
    a_chk, _ = accuracy_at(check_set, {}, use_model=False)
    print(f"  no model (the embedding's guess everywhere): fit {a_fit:.1%}, check {a_chk:.1%}")


# --------------------------------------------------------------------------- main


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--set", choices=sorted(SETS), default="eval", help="which set to report (default: eval)")
    parser.add_argument("--no-misses", action="store_true", help="do not print the misses (score an untuned set blind)")
    parser.add_argument("--no-model", action="store_true", help="no planner model: below the threshold, the guess")
    parser.add_argument("--threshold", type=float, default=None, help="one threshold for all agents (as the setting)")
    parser.add_argument("--fit", action="store_true", help="choose scoring and thresholds on fit, check on check")
    args = parser.parse_args(argv)

    from activities.knowledge.embeddings import LocalEmbedder

    exemplars = load_exemplars()
    texts = {t: a for a in exemplars.names for t in exemplars.agents[a].exemplars}
    sets = {name: load_set(path) for name, path in SETS.items()}
    check_apart(sets, texts)
    print(
        f"exemplars: {len(texts)} ({', '.join(f'{a} {len(exemplars.agents[a].exemplars)}' for a in exemplars.names)})"
    )
    print("sets: " + ", ".join(f"{n} {len(r)}" for n, r in sets.items()) + " (checked apart)")

    embedder = LocalEmbedder()
    await embedder.warm_up()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="routing-eval-") as tmp:
        router = None
        if not args.no_model:
            t0 = time.perf_counter()
            router = planner(stack.enter_context(embedded_model()))
            print(f"planner model: SmolLM2-135M on llama.cpp, one thread (ready in {time.perf_counter() - t0:.1f} s)")
        store = EdgeStore(Path(tmp) / "qdrant", dim=embedder.dim)
        acts = RouteActivities(store, embedder, router, exemplars=exemplars, threshold=args.threshold)
        first = await acts.ensure_index()
        again = await acts.ensure_index()
        print(
            f"index: {first.added} exemplars embedded and stored in {first.seconds * 1000:.0f} ms; "
            f"again (unchanged): {again.added} embedded, {again.unchanged} unchanged in {again.seconds * 1000:.1f} ms"
        )
        print("thresholds: " + " ".join(f"{a}={t:.2f}" for a, t in acts.thresholds.items()))
        for r in sets["fit"][:5]:  # warm the path (first calls pay one-off costs)
            await acts.nearest(r.text)

        if args.fit:
            fit_set = await route_all(acts, sets["fit"])
            check_set = await route_all(acts, sets["check"])
            await fit(acts, fit_set, check_set)
            await store.close()
            return 0

        scored = await route_all(acts, sets[args.set])
        acc = report(f"{args.set} set ({SETS[args.set].name})", scored, misses_shown=not args.no_misses)
        if args.set in ("eval", "holdout") and not args.no_misses:
            closest_to_exemplars(scored, args.set)
        await store.close()

    lat_e = [s.ms for s in scored if s.method == RouteMethod.EMBEDDING and not s.note]
    p95 = pct(lat_e, 0.95)
    ok = acc >= TARGET_ACCURACY and (not lat_e or p95 < TARGET_P95_MS)
    print(
        f"\n{'meets' if ok else 'MISSES'} the targets: accuracy {acc:.1%} (>= {TARGET_ACCURACY:.0%}), "
        f"embedding-path p95 {p95:.1f} ms (< {TARGET_P95_MS:.0f} ms)"
    )
    return 0 if ok or args.set not in ("eval", "holdout") else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)
