"""The GitOps action of an incident: a runbook (docs/examples/runbooks/gitops/container-oom-killed.md)
whose evidence is `propose_edit` (the diff, shown with the question) and whose action is
`commit_edit` (the same edits committed on a branch named after the incident, once).

The real `IncidentWorkflow` and `ApprovalWorkflow` on the time-skipping test server, the real tool
gateway activities (`tools.list_tools`, `tools.guard`, `tools.execute`) with the incident agent's
default allow-list, a real PostgreSQL ledger, the real MCP coding server (served over HTTP from this
test's loop) on a Git repository made here; triage, recall, propose and notify are the fakes of
tests/support/incident_fakes.py (recall returns the example runbook rendered for the alert).
And the Telegram side through the Bot API emulator: a short diff inline in the question's card, a
long one as a `.diff` file (sendDocument) replying to it in the incident's topic, sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
import uvicorn
from mcp import Client
from temporalio import activity
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.knowledge.markdown import load_runbooks
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from agentic_core.alerts import AlertStatus
from agentic_core.evidence import EvidenceDiff, unbound
from agentic_core.incident import (
    DecideInput,
    ExecuteInput,
    GuardInput,
    IncidentStatus,
    NotifyInput,
    NotifyKind,
    ProposeInput,
    ProposeResult,
    idempotency_key,
    plan_hash,
)
from agentic_core.models import Proposal, ToolCall
from agentic_core.policy import render_actions, render_evidence
from agentic_core.tools import INCIDENT_TOOLS
from tests.support.env import REPO, free_port
from tests.support.incident_fakes import Fakes, incident, make_group
from tests.support.pg import ledger_on, pg_server
from tests.support.telegram_emulator import emulator
from tests.support.temporal import time_skipping_with_attributes
from workers.settings import Settings
from workers.toolservers.coding.repos import Repo
from workers.toolservers.coding.server import build_server

EXAMPLE = REPO / "docs" / "examples" / "runbooks"
VALUES = "apps/shop/checkout/values.yaml"
LABELS = {
    "alertname": "KubeContainerOOMKilled",
    "namespace": "shop",
    "pod": "checkout-1",
    "container": "checkout",
    "severity": "warning",
}
VALUES_TEXT = """# checkout's values (ArgoCD syncs this file)
image:
  tag: "1.4.2"
resources:
  requests:
    memory: 512Mi  # what it needs at rest
  limits:
    memory: 1Gi  # raised in March
    cpu: 500m
"""
ME = ("Test Author", "test@example.org")


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": ME[0],
        "GIT_AUTHOR_EMAIL": ME[1],
        "GIT_COMMITTER_NAME": ME[0],
        "GIT_COMMITTER_EMAIL": ME[1],
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def changed(diff: str) -> list[str]:
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-gitops-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    async with ledger_on(pg, "gitops", max_size=4) as led:
        yield led


@pytest.fixture(scope="module")
def gitops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("gitops") / "gitops"
    (repo / "apps" / "shop" / "checkout").mkdir(parents=True)
    (repo / VALUES).write_text(VALUES_TEXT)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "checkout")
    return repo


@contextlib.asynccontextmanager
async def coding_server(repo: Path) -> AsyncIterator[str]:
    """The MCP coding server over streamable HTTP from this loop; yields its URL."""
    port = free_port()
    server = build_server(
        {"gitops": Repo.open("gitops", repo)}, author=f"{ME[0]} <{ME[1]}>", issuer_url=f"http://127.0.0.1:{port}"
    )
    app = server.streamable_http_app(host="127.0.0.1")
    userver = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(userver.serve())
    while not userver.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        userver.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


def example_runbook() -> tuple[list[ToolCall], list[ToolCall]]:
    """The documented example's evidence and actions, rendered for the alert's labels."""
    runbooks, errors = load_runbooks(EXAMPLE)
    assert errors == [] and [rb.id for rb in runbooks] == ["gitops/container-oom-killed"]
    evidence, skipped = render_evidence(runbooks[0].evidence, LABELS)
    assert skipped == []
    return evidence, render_actions(runbooks[0].actions, LABELS)


# --- the incident ---------------------------------------------------------------------------


@activity.defn(name="incident.propose")
async def runbook_plan(inp: ProposeInput) -> ProposeResult:
    """The planner's answer when the recalled runbook fits: its plan, as recalled and bound."""
    rb = inp.recall.runbooks[0]
    proposal = Proposal(
        summary="checkout was OOM-killed",
        diagnosis="Its memory limit is too low.",
        runbook_id=rb.id,
        actions=list(rb.actions),
        confidence=0.8,
    )
    return ProposeResult(proposal=proposal, source="llm", model="fake")


async def test_an_incident_proposes_the_diff_and_commits_it_once_on_its_branch(
    env: WorkflowEnvironment, ledger: Ledger, gitops: Path
) -> None:
    evidence, actions = example_runbook()
    main_before = git(gitops, "rev-parse", "main").strip()
    status_before = git(gitops, "status", "--porcelain")
    # the incident agent's default allow-list: the GitOps action's two tools, not the coding agent's others
    allow = Settings(_env_file=None).agent_tool_lists["incident"]  # type: ignore[call-arg]
    assert allow == list(INCIDENT_TOOLS) and {"propose_edit", "commit_edit"} <= set(allow)
    assert not {"apply_change", "repo_read", "repo_files"} & set(allow)
    async with coding_server(gitops) as url:
        gateway = ToolActivities(ledger, {"coding": url}, None, {"incident": allow}, heartbeat_every_s=0.2)
        fakes = Fakes(runbook_actions=actions, runbook_evidence=evidence)
        replaced = (fakes.list_tools, fakes.guard, fakes.execute, fakes.propose)
        acts = [a for a in fakes.activities() if a not in replaced]
        acts += [gateway.list_tools, gateway.guard, gateway.execute, runbook_plan]
        async with incident(env, fakes, activities=acts, labels=LABELS) as run:
            st = await run.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL, within_s=60)
            # the question shows the diff the action will commit: one line of the values file
            (item,) = st.evidence
            assert item.call.tool == "propose_edit" and item.status == "ok" and not item.diff_cut
            assert changed(item.diff) == ["-    memory: 1Gi  # raised in March", "+    memory: 2Gi  # raised in March"]
            diagnosis = next(n for n in fakes.notifications if n.kind == NotifyKind.DIAGNOSIS)
            assert [d.diff for d in diagnosis.diffs] == [item.diff]
            assert f"a diff of {VALUES}: +1 -1 lines" in diagnosis.text
            # the plan a human approves is the runbook's, bound to the commit the diff was made against
            assert item.base == main_before and [a.arguments.get("base") for a in diagnosis.plan] == [main_before]
            assert unbound(diagnosis.plan) == actions and diagnosis.plan_hash == st.plan_hash
            assert diagnosis.plan_hash == plan_hash(diagnosis.plan) and st.plan == diagnosis.plan
            assert git(gitops, "branch", "--list", "agentic/*") == ""  # nothing committed before the answer

            await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
            st = await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING, within_s=60)
            await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED, labels=LABELS))
            final = await run.result()
        assert final.status == IncidentStatus.RESOLVED
        (action,) = final.actions
        assert action.status == "succeeded", action.error
        occurrence = int(action.idempotency_key.rsplit("/", 2)[1])
        key = idempotency_key(run.incident_id, 0, occurrence)
        branch = f"agentic/{run.incident_id}-action-{occurrence}-0"
        assert action.idempotency_key == key and f'"branch":"{branch}"' in action.output.replace(" ", "")

        # a commit on the incident's branch whose diff is exactly the line shown; main untouched
        assert changed(git(gitops, "diff", f"main..{branch}")) == changed(item.diff)
        assert git(gitops, "rev-list", "--count", f"main..{branch}").strip() == "1"
        assert git(gitops, "rev-parse", "main").strip() == main_before
        assert git(gitops, "status", "--porcelain") == status_before
        message = git(gitops, "log", "-1", "--format=%B", branch)
        assert message.startswith("Raise checkout's memory limit to 2Gi (OOMKilled)\n")
        assert f"Request: {run.incident_id}" in message and f"Agentic-Idempotency-Key: {key}" in message
        tip = git(gitops, "rev-parse", branch).strip()

        # a retry of the execute activity returns the recorded result: no second commit
        call = final.plan[0]
        inp = ExecuteInput(incident_id=run.incident_id, index=0, call=call, idempotency_key=key)
        again = await ActivityEnvironment().run(gateway.execute, inp)
        assert again.already_ran and again.status == "succeeded" and again.output == action.output
        # an attempt that died after the commit but before the ledger heard of it: its key's row is
        # still `running`; the retry calls the tool again (its `_meta` names the key argument) and
        # gets the commit that is there, not a second one
        lost = f"{key}-lost"
        await ledger.start_action(run.incident_id, 0, "commit_edit", call.arguments, lost)
        async with Client(build_server({"gitops": Repo.open("gitops", gitops)}, author=f"{ME[0]} <{ME[1]}>")) as c:
            first = await c.call_tool("commit_edit", {**call.arguments, "idempotency_key": lost})
        assert not first.is_error
        resumed = await ActivityEnvironment().run(gateway.execute, inp.model_copy(update={"idempotency_key": lost}))
        assert resumed.status == "succeeded" and '"already_committed":true' in resumed.output.replace(" ", "")
        lost_branch = f"agentic/{run.incident_id}-action-{occurrence}-0-lost"
        assert git(gitops, "rev-list", "--count", f"main..{lost_branch}").strip() == "1"
        assert git(gitops, "rev-parse", branch).strip() == tip

        # the coding agent's write is still not the incident agent's
        guarded = await ActivityEnvironment().run(
            gateway.guard,
            GuardInput(
                incident_id=run.incident_id,
                actions=[ToolCall(tool="apply_change", arguments={"repo": "gitops", "diff": item.diff})],
            ),
        )
        assert not guarded.actions[0].allowed and "not on the incident agent's allow-list" in guarded.actions[0].reason

        # HEAD moved and the approved diff no longer applies: the action fails with the reason
        (gitops / VALUES).write_text(VALUES_TEXT.split("resources:")[0])
        git(gitops, "commit", "-q", "-am", "resources moved to a shared values file")
        stale = await ActivityEnvironment().run(
            gateway.execute, inp.model_copy(update={"idempotency_key": f"{key}-stale"})
        )
        assert stale.status == "failed"
        assert f"HEAD moved from {main_before[:12]}" in stale.error
        assert f"hunk 1 of {VALUES}" in stale.error and "does not match the file at HEAD" in stale.error
        assert git(gitops, "branch", "--list", f"agentic/{run.incident_id}-action-{occurrence}-0-stale") == ""
        await gateway.aclose()


# --- Telegram: a short diff inline, a long one as a file -------------------------------------


def _diff(lines: int) -> str:
    body = "".join(f"-  key{i}: old value number {i}\n+  key{i}: new value number {i}\n" for i in range(lines))
    return f"diff --git a/{VALUES} b/{VALUES}\n--- a/{VALUES}\n+++ b/{VALUES}\n@@ -1,{lines} +1,{lines} @@\n{body}"


async def test_a_long_diff_goes_to_telegram_as_a_file_a_short_one_inline(ledger: Ledger) -> None:
    from telegram import Bot

    from tests.support.telegram_harness import CHAT, SECRET
    from workers.telegram.notifier import TelegramNotifier
    from workers.telegram.routing import TOPICS_KEY, setup_topics

    async with emulator() as emu:
        bot = Bot(emu.token, base_url=f"{emu.base_url}/bot", base_file_url=f"{emu.base_url}/file/bot")
        async with bot:
            await ledger.kv_set(TOPICS_KEY, {})
            await setup_topics(bot, ledger, CHAT)
            notifier = TelegramNotifier(bot, ledger, CHAT, SECRET)
            short, long = _diff(1).replace("old value", "old <value> & co"), _diff(80)
            assert len(long) > 4096

            async def ask(incident_id: str, diff: str, key: str, *, cut: bool = False) -> tuple[Any, Any]:
                question = NotifyInput(incident_id=incident_id, kind=NotifyKind.QUESTION, route="media", text="OOM")
                ref = (await notifier.notify(question, key=f"{key}/q")).message_ref
                diag = NotifyInput(
                    incident_id=incident_id,
                    kind=NotifyKind.DIAGNOSIS,
                    route="media",
                    text="Diagnosis: out of memory\nPlan:\n  1. commit_edit(...)",
                    edit_of=ref,
                    approval_id=f"{incident_id}-approval-1",
                    plan=[ToolCall(tool="commit_edit", arguments={"repo": "gitops"})],
                    plan_hash="ab" * 32,
                    diffs=[EvidenceDiff(title="propose_edit(repo='gitops')", diff=diff, cut=cut, key=f"{key}/ev")],
                )
                return ref, diag

            # short: inline in the card, escaped, in a <pre> block; no file
            ref, diag = await ask("inc-short", short, "k-short")
            await notifier.notify(diag, key="k-short/d")
            card = emu.messages[(CHAT, int(ref.rsplit(":", 1)[1]))]
            assert "<pre># propose_edit(repo='gitops')\ndiff --git a/" in card.html
            assert "-  key0: old &lt;value&gt; &amp; co number 0" in card.html  # escaped
            assert "-  key0: old <value> & co number 0\n+  key0: new value number 0" in card.text
            assert card.reply_markup is not None  # still the question, with its buttons
            assert not [m for m in emu.bot_messages(CHAT) if m.document is not None]

            # long: the card says so; the whole diff as a .diff file replying to it in its topic
            ref, diag = await ask("inc-long", long, "k-long")
            await notifier.notify(diag, key="k-long/d")
            card = emu.messages[(CHAT, int(ref.rsplit(":", 1)[1]))]
            assert "The diff follows as a file." in card.text and "key79" not in card.text
            (doc,) = [m for m in emu.bot_messages(CHAT) if m.document is not None]
            assert doc.document == long.encode() and doc.file_name == "inc-long-1.diff"
            assert doc.thread == card.thread and doc.thread is not None and doc.reply_to == card.message_id
            assert doc.text.startswith("📎 propose_edit(repo='gitops'): a diff of") and len(doc.text) <= 1024
            _, params = next(c for c in emu.calls if c[0] == "sendDocument")
            # multipart/form-data: the file as a part with its name, the rest as form fields
            assert params["document#filename"] == "inc-long-1.diff" and params["message_thread_id"] == str(card.thread)
            # a retried notification sends no second file
            await notifier.notify(diag, key="k-long/d")
            assert len([m for m in emu.bot_messages(CHAT) if m.document is not None]) == 1

            # a diff the evidence output cut is sent whole, from the call's recorded output
            huge = _diff(200)
            await ledger.start_action("inc-cut", 0, "propose_edit", {}, "k-cut/ev")
            await ledger.finish_action("k-cut/ev", "succeeded", {"text": "…", "structured": {"diff": huge}}, None)
            ref, diag = await ask("inc-cut", huge[:3000], "k-cut", cut=True)
            await notifier.notify(diag, key="k-cut/d")
            docs = [m for m in emu.bot_messages(CHAT) if m.document is not None]
            assert docs[-1].document == huge.encode() and docs[-1].file_name == "inc-cut-1.diff"


# --- commit_edit with base: exactly the approved diff, or nothing ---------------------------


async def test_commit_edit_with_base_commits_exactly_the_approved_diff_or_refuses(tmp_path: Path) -> None:
    repo = tmp_path / "gitops"
    (repo / "apps" / "shop" / "checkout").mkdir(parents=True)
    (repo / VALUES).write_text(VALUES_TEXT)
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "checkout")
    server = build_server({"gitops": Repo.open("gitops", repo)}, author=f"{ME[0]} <{ME[1]}>")
    edits = [{"path": VALUES, "yaml_path": "resources.limits.memory", "value": "2Gi"}]

    async def call(tool: str, args: dict[str, Any]) -> tuple[bool, Any]:
        async with Client(server) as c:
            r = await c.call_tool(tool, args)
        text = "".join(getattr(part, "text", "") for part in r.content)
        return r.is_error, (r.structured_content if not r.is_error else text)

    err, shown = await call("propose_edit", {"repo": "gitops", "edits": edits})
    assert not err
    # HEAD moves on another line: the approved diff still applies and is what is committed
    (repo / VALUES).write_text(VALUES_TEXT.replace('tag: "1.4.2"', 'tag: "1.4.3"'))
    git(repo, "commit", "-q", "-am", "a new image")
    args = {"repo": "gitops", "edits": edits, "title": "Raise", "base": shown["base"]}
    err, done = await call("commit_edit", {**args, "idempotency_key": "inc-b/action/1/0"})
    assert not err, done
    assert changed(done["diff"]) == changed(shown["diff"]) and done["parent"] == git(repo, "rev-parse", "main").strip()
    # HEAD moves on the very line: without base the edit is made anew (another removed line) ...
    (repo / VALUES).write_text(VALUES_TEXT.replace("memory: 1Gi  # raised in March", "memory: 1536Mi  # June"))
    git(repo, "commit", "-q", "-am", "someone raised it a little")
    # ... with base, the approved diff no longer applies: refused with the reason, nothing committed
    err, why = await call("commit_edit", {**args, "idempotency_key": "inc-b/action/2/0"})
    assert err and f"HEAD moved from {shown['base'][:12]}" in why and "does not match the file at HEAD" in why
    assert git(repo, "branch", "--list", "agentic/inc-b-action-2-0") == ""
    err, anew = await call("commit_edit", {**args, "base": None, "idempotency_key": "inc-b/action/3/0"})
    assert not err and changed(anew["diff"]) == ["-    memory: 1536Mi  # June", "+    memory: 2Gi  # June"]
    err, why = await call("commit_edit", {**args, "base": "0" * 40, "idempotency_key": "inc-b/action/4/0"})
    assert err and "is not a commit of repository 'gitops'" in why


async def test_without_telegram_the_ledger_notification_holds_the_diff(ledger: Ledger) -> None:
    from activities.incident.notifier import LedgerNotifier

    diff = _diff(2)
    inp = NotifyInput(
        incident_id="inc-ledger",
        kind=NotifyKind.DIAGNOSIS,
        route="infrastructure",
        text="Diagnosis: out of memory",
        diffs=[EvidenceDiff(title="propose_edit(repo='gitops')", diff=diff, key="k/ev")],
    )
    await LedgerNotifier(ledger).notify(inp, key="k-ledger")
    (row,) = await ledger.list_notifications("inc-ledger")
    assert row.text == f"Diagnosis: out of memory\n\nDiff of propose_edit(repo='gitops'):\n{diff.rstrip()}"
