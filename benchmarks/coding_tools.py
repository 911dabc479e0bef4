"""The coding tools' speed on a repository the size of this one, and the coding agent on tasks.

    python benchmarks/coding_tools.py [--queries 100] [--edits 40] [--applies 10] [--no-eval]
        [--planner-url URL --planner-model NAME]

What it does: copies this project's repository at HEAD (`git archive`: its ~400 files of Python,
YAML, Terraform, JSON, Markdown) into a new Git repository and serves it with the real coding MCP
server (in process, one MCP client session, so the figures are the tools' own plus one MCP hop).

- structure queries, p50/p95 ms: `repo_symbols` of random parsable files; `repo_definitions` and
  `repo_references` of names taken from those files (the first definitions query, which parses
  every candidate file, is reported apart: later ones hit the parse cache);
- diff generation + `git apply --check`, p50/p95 ms: `propose_edit` of a random YAML value of the
  chart's values (a one-line diff, checked) and of a random unique line of a random Python file;
- `apply_change`, p50/p95 ms: an approved diff committed on a new branch.

Then (unless `--no-eval`) the coding agent's evaluation: the tasks of
benchmarks/data/coding_tasks.yaml (read, structure, edit, apply, refuse) run through the agent
runtime (the Temporal dev server, the real ledger, the platform's router with its MiniLM
embeddings unless `--fake-router`, the agent and gateway activities, the coding server as a
process behind its token, approvals answered as the task says). A task routed to another agent
fails. By default the model
is the scripted OpenAI-compatible fake making the task's expected calls, which checks the tools
and the runtime: that each expected call ends as expected and the outcome holds (the result, the
branch and its diff, the default branch untouched). With `--planner-url` a real model (an
OpenAI-compatible server that supports tool calls) plays the agent instead: a task passes when
the model called the expected tools and the outcome holds. Success is printed by task kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from mcp import Client

from agentic_core.agents import Route, RouteInput
from workers.toolservers.coding import structure as st
from workers.toolservers.coding.repos import Repo
from workers.toolservers.coding.server import build_server

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "benchmarks" / "data" / "coding_tasks.yaml"
VALUES = "deploy/helm/agentic-platform/values.yaml"
TOKEN = "coding-bench-token"
IDENT = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench"}


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", **IDENT, "GIT_COMMITTER_EMAIL": "b@x", "HOME": str(cwd)}
    res = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=True)
    return res.stdout.decode()


def copy_of_this_repo(root: Path) -> Path:
    """This project at HEAD as a new repository (`gitops`), plus an ignored secret."""
    dest = root / "gitops"
    dest.mkdir()
    tar = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    with (dest / ".gitignore").open("a") as f:
        f.write("*.env\n")
    git(root, "init", "-q", "-b", "main", str(dest))
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "the project at HEAD")
    (dest / "local.env").write_text("TOKEN=do-not-read\n")
    return dest


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(what: str, ms: list[float]) -> str:
    return f"{what:<44} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 0.95):7.1f} ms"


# --------------------------------------------------------------------------- speed


async def speed(repo: Path, queries: int, edits: int, applies: int, rng: random.Random) -> None:
    srv = build_server({"gitops": Repo.open("gitops", repo)})
    files = [f for f in Repo.open("gitops", repo).files() if st.language_of(f) is not None]
    texts = {f: (repo / f).read_text(errors="replace") for f in files}
    names: list[str] = []
    for f in rng.sample(files, min(60, len(files))):
        try:
            names += [s.name.rsplit(".", 1)[-1] for s in st.symbols(f, texts[f]) if len(s.name) > 3]
        except ValueError:
            continue
    names = [n for n in names if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    sizes = sum(len(t) for t in texts.values())
    print(f"repository: {len(Repo.open('gitops', repo).files())} files ({len(files)} parsable, {sizes / 1e6:.1f} MB)")

    async with Client(srv) as c:

        async def timed(tool: str, args: dict[str, Any]) -> float:
            t0 = time.perf_counter()
            r = await c.call_tool(tool, args)
            ms = (time.perf_counter() - t0) * 1000
            if r.is_error:
                raise SystemExit(f"{tool}({args}) failed: {r.content}")
            return ms

        t0 = time.perf_counter()
        for f in files:  # what a long-running server has done after its first queries: every file parsed once
            await c.call_tool("repo_symbols", {"repo": "gitops", "path": f})
        print(f"{'parse every parsable file once (cold)':<44} {(time.perf_counter() - t0) * 1000:7.0f} ms")
        picked = [rng.choice(names) for _ in range(queries)]
        sym = [await timed("repo_symbols", {"repo": "gitops", "path": rng.choice(files)}) for _ in range(queries)]
        defs = [await timed("repo_definitions", {"repo": "gitops", "name": n}) for n in picked]
        refs = [await timed("repo_references", {"repo": "gitops", "name": n}) for n in picked]
        print(line("repo_symbols (one file)", sym))
        print(line("repo_definitions (whole repository)", defs))
        print(line("repo_references (whole repository)", refs))
        allq = sym + defs + refs
        print(line("structure queries, all", allq))

        values = texts[VALUES]
        leaves = [s.name for s in st.symbols(VALUES, values) if _scalar_leaf(values, s)]
        py = [f for f in files if f.endswith(".py")]
        yml, txt = [], []
        for i in range(edits):
            path = rng.choice(leaves)
            yml.append(
                await timed(
                    "propose_edit",
                    {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": path, "value": f"bench-{i}"}]},
                )
            )
            f = rng.choice(py)
            lines = [ln for ln in texts[f].splitlines() if ln.strip() and texts[f].count(ln) == 1]
            if not lines:
                continue
            old = rng.choice(lines)
            txt.append(
                await timed(
                    "propose_edit", {"repo": "gitops", "edits": [{"path": f, "old": old, "new": old + "  # x"}]}
                )
            )
        print(line("propose_edit, YAML value (diff + apply --check)", yml))
        print(line("propose_edit, text (diff + apply --check)", txt))
        print(line("diff generation + git apply --check, all", yml + txt))

        commits = []
        for i in range(applies):
            r = await c.call_tool(
                "propose_edit",
                {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": rng.choice(leaves), "value": f"apply-{i}"}]},
            )
            prop = r.structured_content or {}
            commits.append(
                await timed(
                    "apply_change",
                    {"repo": "gitops", "diff": prop["diff"], "title": f"bench {i}", "request": f"bench-{i}"},
                )
            )
        if commits:
            print(line("apply_change (commit on a new branch)", commits))


def _scalar_leaf(text: str, s: st.Symbol) -> bool:
    """A key whose value is a plain scalar on its own line (`key: value`)."""
    src = text.splitlines()[s.line - 1]
    return s.line == s.end_line and "[" not in s.name and re.match(r"\s*[^:{]+:\s+[^\s{\[|>&*!#]", src) is not None


# --------------------------------------------------------------------------- evaluation


def _fill(value: Any, last: dict[str, Any]) -> Any:
    if isinstance(value, str) and value in ("$diff", "$base"):
        return last.get(value[1:], value)
    if isinstance(value, dict):
        return {k: _fill(v, last) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, last) for v in value]
    return value


def changed(diff: str) -> list[str]:
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]


def _tool_results(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for m in body["messages"]:
        if m["role"] == "tool":
            try:
                yield json.loads(m["content"])
            except (TypeError, ValueError):
                continue


async def _routed_fakes(data: Path) -> Any:
    """The harness's fakes with the real router in place of its fake `agents.route`."""
    from temporalio import activity

    from activities.agents.router import RouteActivities
    from agentic_core.agents import ACTIVITY_ROUTE
    from tests.support.agent_harness import AgentFakes
    from workers.settings import Settings
    from workers.wiring import build_embedder_from, build_store

    s = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]
    routes = RouteActivities(build_store(s), build_embedder_from(s), None)
    await routes.ensure_index()

    class Routed(AgentFakes):
        @activity.defn(name=ACTIVITY_ROUTE)
        async def route(self, inp: RouteInput) -> Route:
            return await routes.route(inp)

    return Routed()


async def evaluate(repo: Path, planner_url: str | None, planner_model: str | None, real_router: bool) -> None:
    import asyncpg

    from activities.agents.activities import AgentActivities
    from activities.inference.router import GroupConfig, InferenceRouter
    from activities.ledger.repository import Ledger
    from activities.tools.gateway import ToolActivities
    from agentic_core.agents import QUERY_AGENT_PROGRESS, AgentLimits, AgentProgress, AgentStatus
    from agentic_core.tools import CODING_TOOLS
    from tests.support.agent_harness import AgentFakes, agent_worker, answer_approval, start_agent
    from tests.support.env import free_port
    from tests.support.fake_openai import FakeChatServer, tool_call, turn_number
    from tests.support.kmock_helpers import start_server
    from tests.support.pg import pg_server
    from tests.support.temporal import start_dev_server
    from workers.sandbox import workflow_runner
    from workers.temporal import ensure_search_attributes

    tasks = yaml.safe_load(TASKS.read_text())["tasks"]
    current: dict[str, Any] = {}
    model = FakeChatServer(name="scripted")

    def reply(body: dict[str, Any]) -> Any:
        task, n = current["task"], turn_number(body)
        last = next(iter(reversed([r for r in _tool_results(body) if "diff" in r])), {})
        if last:
            current["proposal"] = last
        calls = task["calls"]
        if n >= len(calls) or "tools" not in body:
            return "Done."
        if n > 0 and task.get("conflict") and calls[n]["tool"] == "apply_change" and not current.get("conflicted"):
            c = task["conflict"]  # someone else's commit lands on main meanwhile: the diff is now stale
            p = repo / c["path"]
            p.write_text(p.read_text().replace(c["old"], c["new"], 1))
            git(repo, "commit", "-q", "-am", "a change that lands meanwhile")
            current["conflicted"] = True
        return {"tool_calls": [tool_call(calls[n]["tool"], _fill(calls[n]["args"], last), f"c{n}")]}

    model.reply = reply
    await model.start()
    pg_gen = pg_server("agentic-bench-coding-")
    pg = next(pg_gen)
    temporal = await start_dev_server()
    server = await start_server(
        free_port(), None, TOKEN, module="workers.toolservers.coding", extra_args=["--repos", f"gitops={repo}"]
    )
    by_kind: dict[str, list[bool]] = {}
    try:
        admin = await asyncpg.connect(pg.get_uri())
        await admin.execute('CREATE DATABASE "coding"')
        await admin.close()
        ledger = await Ledger.connect(pg.get_uri("coding"), max_size=4)
        await ensure_search_attributes(temporal.client, "default")
        url = planner_url or model.base_url
        router = InferenceRouter(
            [GroupConfig(name="planner", model=f"openai/{planner_model or 'scripted'}", api_base=url)]
        )
        gateway = ToolActivities(ledger, {"coding": server.url}, TOKEN, {"coding": list(CODING_TOOLS)})
        agents = AgentActivities(
            ledger, router, agents={"coding": AgentLimits(max_steps=6)}, tool_specs=gateway.offered
        )
        queue = f"bench-coding-{uuid.uuid4().hex[:8]}"
        fakes: AgentFakes = AgentFakes(routes={"": "coding"})
        if real_router:  # the platform's router (MiniLM embeddings of its exemplars, Qdrant Edge) picks the agent
            fakes = await _routed_fakes(Path(tempfile.mkdtemp(prefix="agentic-bench-route-")))
        async with agent_worker(temporal.client, queue, agents, gateway, fakes, runner=workflow_runner("passthrough")):
            for task in tasks:
                current.clear()
                current["task"] = task
                main_before = git(repo, "rev-parse", "main").strip()
                branches_before = set(git(repo, "branch", "--format=%(refname:short)").split())
                handle = await start_agent(temporal.client, queue, task["request"], agent=None, approvers=["bob"])
                answered: set[str] = set()
                result = asyncio.ensure_future(handle.result())
                while not result.done():  # answer each write's question as the task says
                    try:
                        prog = await handle.query(QUERY_AGENT_PROGRESS, result_type=AgentProgress)
                    except Exception:  # not started yet
                        prog = None
                    if prog is not None and prog.approval_id and prog.approval_id not in answered:
                        choice = "approved" if task.get("approve", True) else "ignored"
                        await answer_approval(temporal.client, prog.approval_id, choice, "bob")
                        answered.add(prog.approval_id)
                    await asyncio.wait([result], timeout=0.1)
                res = result.result()
                last = res.tool_calls[-1] if res.tool_calls else None
                full = ""
                if last is not None and last.result is not None:  # the whole result, from the ledger
                    full, _size = await ledger.read_blob(last.result.ref, limit=1_000_000)
                ok, why = _judge(task, res, full, repo, main_before, branches_before, current, planner_url is not None)
                by_kind.setdefault(task["kind"], []).append(ok)
                mark = "ok  " if ok else "FAIL"
                route = f"{res.route.method}:{res.route.score:.2f}" if res.route else "-"
                print(f"  {mark} {task['kind']:<9} {task['request'][:60]:<60} {route:<15} {why}")
                if res.status not in (AgentStatus.DONE, AgentStatus.LIMITED) and ok:
                    print(f"       (run ended {res.status})")
                if current.get("conflicted"):  # put main back as the other tasks expect it
                    git(repo, "reset", "-q", "--hard", main_before)
        await ledger.close()
    finally:
        await server.stop()
        await temporal.shutdown()
        await model.stop()
        next(pg_gen, None)
    print("success by task kind:")
    for kind, oks in by_kind.items():
        print(f"  {kind:<10} {sum(oks)}/{len(oks)}")
    total = [o for oks in by_kind.values() for o in oks]
    print(f"  {'all':<10} {sum(total)}/{len(total)} ({sum(total) / len(total):.0%})")


def _judge(
    task: dict[str, Any],
    res: Any,
    full: str,
    repo: Path,
    main_before: str,
    branches_before: set[str],
    current: dict[str, Any],
    real_model: bool,
) -> tuple[bool, str]:
    exp = task["expect"]
    if res.agent != "coding":
        return False, f"routed to {res.agent}"
    calls = [(r.call.tool, r.status) for r in res.tool_calls]
    want_tools = [c["tool"] for c in task["calls"]]
    if real_model:
        if not set(want_tools) <= {t for t, _ in calls}:
            return False, f"called {calls}, expected {want_tools}"
    elif calls != list(zip(want_tools, exp["statuses"], strict=True)):
        return False, f"calls {calls}, expected {list(zip(want_tools, exp['statuses'], strict=True))}"
    last = res.tool_calls[-1] if res.tool_calls else None
    if "contains" in exp and last is not None:
        text = full + " " + last.reason
        if exp["contains"] not in text:
            return False, f"the last result lacks {exp['contains']!r}: {text[:160]!r}"
    new = set(git(repo, "branch", "--format=%(refname:short)").split()) - branches_before
    if not current.get("conflicted") and git(repo, "rev-parse", "main").strip() != main_before:
        return False, "the default branch moved"
    if "diff_lines" in exp:
        got = (
            changed(git(repo, "diff", f"main..{sorted(new)[0]}"))
            if new
            else changed(current.get("proposal", {}).get("diff", ""))
        )
        if got != exp["diff_lines"]:
            return False, f"diff {got}, expected {exp['diff_lines']}"
    if "branch" in exp and bool(new) != exp["branch"]:
        return False, f"new branches: {sorted(new)}"
    return True, f"{res.status}, {len(res.tool_calls)} call(s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--queries", type=int, default=100, help="structure queries of each kind")
    ap.add_argument("--edits", type=int, default=40, help="propose_edit calls of each kind (YAML value, text)")
    ap.add_argument("--applies", type=int, default=10, help="apply_change calls")
    ap.add_argument("--no-eval", action="store_true", help="skip the agent evaluation (the tools' speed only)")
    ap.add_argument(
        "--planner-url", help="an OpenAI-compatible model that plays the agent (default: the scripted fake)"
    )
    ap.add_argument("--planner-model", help="that model's name")
    ap.add_argument(
        "--fake-router", action="store_true", help="send every task to coding (default: the platform's router decides)"
    )
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if min(a.queries, a.edits) < 1 or a.applies < 0:
        ap.error("--queries and --edits must be at least 1, --applies at least 0")
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="agentic-bench-coding-") as tmp:
        repo = copy_of_this_repo(Path(tmp))
        asyncio.run(speed(repo, a.queries, a.edits, a.applies, random.Random(a.seed)))
        if not a.no_eval:
            print(
                f"coding agent evaluation ({'model ' + str(a.planner_model) if a.planner_url else 'scripted model'}):"
            )
            asyncio.run(evaluate(repo, a.planner_url, a.planner_model, not a.fake_router))


if __name__ == "__main__":
    main()
