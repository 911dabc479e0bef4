"""`agentic up` → status → import/search → down → up again (data intact) → down, on a temp data dir.

These start the real embedded stack (Temporal dev server, PostgreSQL, llama.cpp with
SmolLM2, the worker with Qdrant Edge) on free ports, through the real `agentic` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.ledger.db import list_migrations
from tests.support.env import REPO, RUNBOOKS_CORPUS, stack_env

pytestmark = pytest.mark.slow


def agentic(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dict[str, str], Path]]:
    with tempfile.TemporaryDirectory(prefix="agentic-stack-") as tmp:
        data = Path(tmp) / "data"
        env = stack_env(data, router_index=True)
        up = agentic(env, "up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield env, data
        finally:
            agentic(env, "down", timeout=120)


def status(env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    res = agentic(env, "status", "--json", timeout=60)
    return json.loads(res.stdout) | {"rc": res.returncode}


def test_up_reports_every_part_healthy(stack: tuple[dict[str, str], Path]) -> None:
    env, data = stack
    doc = status(env)
    assert doc["rc"] == 0, doc
    assert doc["running"] and doc["healthy"]
    parts = {p["name"]: p for p in doc["parts"]}
    for name in ("postgres", "temporal", "llm", "worker", "mcp-knowledge", "intake", "gateway"):
        assert parts[name]["healthy"] is True, parts[name]
    assert parts["bot"]["mode"] == "disabled" and "AGENTIC_TELEGRAM_TOKEN" in parts["bot"]["detail"]
    # No kubeconfig here: the MCP infrastructure server is off and says how to turn it on.
    assert parts["mcp"]["mode"] == "disabled" and "AGENTIC_KUBECONFIG" in parts["mcp"]["detail"]
    # No Home Assistant or arr app configured: their MCP servers are off and say how to turn them on.
    assert parts["mcp-ha"]["mode"] == "disabled" and "AGENTIC_HA_URL" in parts["mcp-ha"]["detail"]
    assert parts["mcp-arr"]["mode"] == "disabled" and "AGENTIC_SONARR_URL" in parts["mcp-arr"]["detail"]
    newest = list_migrations()[-1].version
    assert f"schema {newest}" in parts["postgres"]["detail"]  # every migration applied by `up`
    state = json.loads((data / "stack.json").read_text())
    assert state["ready"] is True
    # Secrets are generated into the data dir, 0600, and never shown by status.
    pw = (data / "secrets" / "postgres.password").read_text().strip()
    assert oct((data / "secrets" / "postgres.password").stat().st_mode & 0o777) == "0o600"
    assert pw not in json.dumps(doc) and pw not in (data / "stack.json").read_text()


def test_second_up_on_same_data_dir_is_refused(stack: tuple[dict[str, str], Path]) -> None:
    env, _ = stack
    res = agentic(env, "up", "--detach", timeout=60)
    assert res.returncode == 2
    assert "already running" in res.stderr and "Traceback" not in res.stderr


def test_import_and_search_the_corpus(stack: tuple[dict[str, str], Path]) -> None:
    env, _ = stack
    res = agentic(env, "runbooks", "import", str(RUNBOOKS_CORPUS), timeout=600)
    assert res.returncode == 0, res.stderr
    assert "0 skipped" in res.stdout
    n_added = int(res.stdout.split("added")[0].split(":")[-1].split()[0].strip())
    assert n_added >= 100

    again = agentic(env, "runbooks", "import", str(RUNBOOKS_CORPUS), timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"0 added, 0 updated, {n_added} unchanged" in again.stdout

    listed = json.loads(agentic(env, "runbooks", "list", "--json").stdout)
    assert len(listed) == n_added
    assert all(r["automation_level"] == "manual" for r in listed)

    res = agentic(env, "runbooks", "search", "pods keep restarting and going into back-off", "--limit", "3", "--json")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert [set(h) for h in hits] == [{"id", "title", "score"}] * 3
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert "kubernetes/KubePodCrashLooping" in [h["id"] for h in hits]


OWN_RUNBOOK = """---
id: demo/ledger-reader
title: A runbook the ledger commands read
match:
  - alertname=DemoLedgerReader
actions:
  - tool: rollout_restart
    arguments:
      namespace: demo
      deployment: reader
---
# A runbook the ledger commands read

Restart the reader.
"""


def test_every_command_reaches_the_stack_with_only_the_data_dir(
    stack: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """Commands that read the ledger directly (runbooks show|stats, telegram log) and those that go
    through Temporal or the intake, run as a newcomer runs them: `--data-dir D` and nothing else.
    They take the embedded PostgreSQL's generated password from D/secrets and every address from
    the running stack, not the default ports."""
    env, data = stack
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "reader.md").write_text(OWN_RUNBOOK)
    assert agentic(env, "runbooks", "import", str(tmp_path / "rb")).returncode == 0
    bare = {k: v for k, v in env.items() if not k.startswith("AGENTIC_")}
    d = ["--data-dir", str(data)]

    def ok(*args: str, e: dict[str, str] = bare) -> str:
        res = agentic(e, *args, *d, timeout=180)
        assert res.returncode == 0, f"agentic {' '.join(args)}: {res.stderr}"
        assert "error" not in res.stderr, res.stderr
        return res.stdout

    for e in (env, bare):  # with the stack's own environment too: the password comes from D/secrets
        counts = json.loads(ok("runbooks", "stats", "--json", e=e))
        assert set(counts) == {"manual", "prompted", "standard"} and counts["manual"] >= 1
        shown = json.loads(ok("runbooks", "show", "demo/ledger-reader", "--json", e=e))
        assert shown["runbook"]["id"] == "demo/ledger-reader" and shown["runbook"]["automation_level"] == "manual"
        assert shown["record"] == {} or shown["record"]["executions"] == 0
    assert ok("telegram", "log").strip() == "nothing recorded"  # no bot here: the ledger holds no message
    review = json.loads(ok("review", "run", "--quarter", "2026-Q1", "--json"))
    assert review["quarter"] == "2026-Q1" and review["automated_actions"] == 0
    weekly = json.loads(ok("report", "weekly", "--week", "2026-W11", "--json"))
    assert weekly["week"] == "2026-W11"
    schedules = json.loads(ok("schedules", "list", "--json"))
    assert {s["id"] for s in schedules} == {"agentic-weekly-digest", "agentic-trust-review", "agentic-nightly-backup"}
    assert any(r["id"] == "demo/ledger-reader" for r in json.loads(ok("runbooks", "list", "--json")))
    assert isinstance(json.loads(ok("incidents", "list", "--json")), list)
    # a key in this shell only: the worker (started without one) leaves the secrets out, and says why
    shell_key = bare | {"AGENTIC_BACKUP_KEY": "shell-only"}
    keyed = agentic(shell_key, "backup", "create", "--to", str(tmp_path / "b"), "--json", *d)
    assert keyed.returncode == 0, keyed.stderr
    made = json.loads(keyed.stdout)
    assert made["contents"]["secrets"].startswith("omitted") and made["contents"]["qdrant"].startswith("qdrant/")
    assert "the worker makes the backup and was started without it" in " ".join(keyed.stderr.split())
    doc = json.loads(agentic(bare, "status", "--json", *d, timeout=60).stdout)
    assert doc["healthy"] and all(p["healthy"] is not False for p in doc["parts"]), doc


def wait_for_docs(env: dict[str, str], text: str, within: float) -> list[dict]:  # type: ignore[type-arg]
    """`up` starts the docs ingestion as a durable workflow and does not wait for it."""
    import time

    deadline = time.monotonic() + within
    while True:
        res = agentic(env, "docs", "search", text, "--json")
        assert res.returncode == 0, res.stderr
        hits: list[dict] = json.loads(res.stdout)  # type: ignore[type-arg]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(2)


def test_docs_are_ingested_on_first_start(stack: tuple[dict[str, str], Path]) -> None:
    env, _ = stack
    hits = wait_for_docs(env, "how do I point the platform at an external PostgreSQL", within=90)
    assert hits, "docs/ was not ingested on first start"
    assert any(h["source"] and h["source"].endswith(".md") for h in hits)


def test_docs_ingest_and_search_from_the_cli(stack: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, _ = stack
    (tmp_path / "ops.md").write_text(
        "# Backups\n\n## Restic repository\n\nThe nightly restic job writes to the NAS share zebra-vault.\n"
    )
    res = agentic(env, "docs", "ingest", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "1 added" in res.stdout
    again = agentic(env, "docs", "ingest", str(tmp_path))
    assert "0 added, 0 updated, 1 unchanged" in again.stdout
    hits = json.loads(agentic(env, "docs", "search", "where does restic write the nightly backup", "--json").stdout)
    assert hits[0]["source"] == "ops.md" and "Restic" in hits[0]["title"]


def test_agents_route_through_the_worker(stack: tuple[dict[str, str], Path]) -> None:
    """`agentic agents route` asks the stack's worker (RouteProbeWorkflow → agents.route): the
    worker indexes the exemplars into Qdrant Edge on its own once it polls (not on the first
    route, which took 38 s on a loaded machine), the CLI loads no model."""
    env, data = stack
    worker_log = data / "logs" / "worker.log"
    deadline = time.monotonic() + 180
    while "router exemplars indexed" not in worker_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, worker_log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    res = agentic(env, "agents", "route", "which scrape targets are failing right now?", "--json", timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"agent", "score", "method"}
    assert (out["agent"], out["method"]) == ("observability", "embedding") and out["score"] > 0.5
    res = agentic(env, "agents", "route", "google the release notes of the newest immich", "--json", timeout=180)
    assert json.loads(res.stdout)["agent"] == "web", res.stdout + res.stderr
    text = agentic(env, "agents", "route", "pin the loki helm chart to 6.2 in our gitops repo", timeout=180)
    assert text.returncode == 0 and text.stdout.startswith("coding  (score "), text.stdout + text.stderr
    empty = agentic(env, "agents", "route", "  ", timeout=60)
    assert empty.returncode == 2 and "nothing to route" in empty.stderr and "Traceback" not in empty.stderr


async def test_knowledge_mcp_server_of_the_stack(stack: tuple[dict[str, str], Path]) -> None:
    """The `mcp-knowledge` part answers the real MCP client with the stack's token: a docs search
    runs through the stack's worker, the level counts come from its ledger."""
    from tests.support.kmock_helpers import mcp_client

    env, data = stack
    token = (data / "secrets" / "mcp.token").read_text().strip()
    url = f"http://127.0.0.1:{env['AGENTIC_MCP_KNOWLEDGE_PORT']}/mcp"
    async with mcp_client(url, token) as c:
        assert {t.name for t in (await c.list_tools()).tools} >= {"search_docs", "runbook_stats"}
        stats = await c.call_tool("runbook_stats", {})
        docs = await c.call_tool("search_docs", {"query": "point the platform at an external PostgreSQL"})
    assert not stats.is_error and stats.structured_content is not None
    assert set(stats.structured_content["level_counts"]) == {"manual", "prompted", "standard"}
    assert not docs.is_error and docs.structured_content is not None
    assert all(h["source"].endswith(".md") for h in docs.structured_content["hits"])


def test_weekly_digest_and_schedules_on_the_stack(stack: tuple[dict[str, str], Path]) -> None:
    """The stack's worker runs WeeklyDigestWorkflow with its real activities; schedules apply once."""
    from tests.support.report_helpers import check_png

    env, data = stack
    res = agentic(env, "report", "weekly", "--week", "2026-W10", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["week"] == "2026-W10" and doc["summary"].startswith("📊 Weekly digest 2026-W10")
    assert doc["files"]["png"] == str(data.resolve() / "reports" / "2026-W10.png")
    check_png(Path(doc["files"]["png"]).read_bytes())
    assert doc["message_ref"].startswith("ledger:")
    first = agentic(env, "schedules", "apply", "--json")
    again = agentic(env, "schedules", "apply", "--json")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert set(json.loads(first.stdout).values()) == {"created"}
    assert set(json.loads(again.stdout).values()) == {"unchanged"}


def test_external_services_instead_of_embedded_parts(stack: tuple[dict[str, str], Path]) -> None:
    """A second stack that starts only its worker, on the first stack's Temporal, PostgreSQL and LLM."""
    env_a, data_a = stack
    pw = (data_a / "secrets" / "postgres.password").read_text().strip()
    key = (data_a / "secrets" / "llm.key").read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        env_b = stack_env(Path(tmp) / "b")
        env_b.update(
            AGENTIC_TEMPORAL_ADDRESS=f"127.0.0.1:{env_a['AGENTIC_TEMPORAL_PORT']}",
            AGENTIC_POSTGRES_DSN=f"postgresql://postgres:{pw}@127.0.0.1:{env_a['AGENTIC_POSTGRES_PORT']}/postgres",
            AGENTIC_PLANNER_URL=f"http://127.0.0.1:{env_a['AGENTIC_LLM_PORT']}/v1",
            AGENTIC_POOL_API_KEY=key,
            AGENTIC_TASK_QUEUE="second-stack",
        )
        up = agentic(env_b, "up", "--detach")
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            doc = status(env_b)
            parts = {p["name"]: p for p in doc["parts"]}
            assert doc["rc"] == 0 and doc["healthy"], doc
            assert {n: parts[n]["mode"] for n in ("postgres", "temporal", "llm", "worker")} == {
                "postgres": "external",
                "temporal": "external",
                "llm": "external",
                "worker": "embedded",
            }
            assert "second-stack" in parts["worker"]["detail"]
            state = json.loads((Path(tmp) / "b" / "stack.json").read_text())
            assert [n for n, p in state["parts"].items() if p["pid"]] == [
                "worker",
                "mcp-knowledge",
                "intake",
                "gateway",
            ]
            assert pw not in json.dumps(state) and key not in json.dumps(doc)
            # The second worker reads the shared ledger: the runbooks imported through the first stack.
            rbs = json.loads(agentic(env_b, "runbooks", "list", "--json").stdout)
            assert rbs == json.loads(agentic(env_a, "runbooks", "list", "--json").stdout)
        finally:
            agentic(env_b, "down", timeout=120)


def test_supervisor_restarts_a_part_that_dies(stack: tuple[dict[str, str], Path]) -> None:
    import signal
    import time

    env, data = stack
    before = json.loads((data / "stack.json").read_text())["parts"]["worker"]
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 180
    after = before
    while time.monotonic() < deadline:
        after = json.loads((data / "stack.json").read_text())["parts"]["worker"]
        if after["pid"] != before["pid"] and status(env)["rc"] == 0:
            break
        time.sleep(1)
    assert after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
    assert status(env)["healthy"] is True
    # And the restarted worker serves: a search goes through it.
    # The docs ingestion started by `up` may have been running in the killed worker: its
    # activity heartbeats, so Temporal retries it on the new worker within the heartbeat timeout.
    assert wait_for_docs(env, "where does the ledger keep its data", within=90)


def test_down_then_up_resumes_with_data_intact(stack: tuple[dict[str, str], Path]) -> None:
    env, data = stack
    before = json.loads(agentic(env, "runbooks", "list", "--json").stdout)
    state = json.loads((data / "stack.json").read_text())
    pids = [p["pid"] for p in state["parts"].values() if p["pid"]]

    down = agentic(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    for pid in [state["supervisor_pid"], *pids]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert agentic(env, "status", "--json").returncode == 1

    up = agentic(env, "up", "--detach")
    assert up.returncode == 0, up.stderr
    after = json.loads(agentic(env, "runbooks", "list", "--json").stdout)
    assert after == before and len(after) > 0


def test_port_in_use_gives_one_clear_line() -> None:
    import socket

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        env = stack_env(Path(tmp) / "d")
        env["AGENTIC_TEMPORAL_PORT"] = str(s.getsockname()[1])
        res = agentic(env, "up", timeout=60)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "already in use" in lines[0] and "AGENTIC_TEMPORAL_PORT" in lines[0]


def test_missing_model_gives_one_clear_line() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env(Path(tmp) / "d")
        env["AGENTIC_LLM_MODEL_PATH"] = str(Path(tmp) / "missing.gguf")
        res = agentic(env, "up", timeout=60)
    assert res.returncode == 2
    assert "model file not found" in res.stderr and "Traceback" not in res.stderr


def test_corrupt_data_dir_gives_one_clear_line() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d"
        (data / "postgres").mkdir(parents=True)
        (data / "postgres" / "garbage").write_text("x")
        res = agentic(stack_env(data), "up", timeout=60)
        assert res.returncode == 2
        assert "not a PostgreSQL data directory" in res.stderr and "Traceback" not in res.stderr

        data2 = Path(tmp) / "d2"
        (data2 / "temporal").mkdir(parents=True)
        (data2 / "temporal" / "temporal.db").write_bytes(b"this is not sqlite at all")
        res = agentic(stack_env(data2), "up", timeout=60)
        assert res.returncode == 2
        assert "not a SQLite database" in res.stderr


def test_cli_without_a_running_stack_says_so() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env(Path(tmp) / "d")
        res = agentic(env, "runbooks", "search", "disk full", timeout=60)
    assert res.returncode == 2
    assert "cannot reach Temporal" in res.stderr and "agentic up" in res.stderr
    assert "Traceback" not in res.stderr
