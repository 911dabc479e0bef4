"""README, "Reports, schedules and the knowledge MCP server", on the first stack:

    agentic schedules apply
    agentic report weekly [--week 2026-W47]
    temporal workflow start --type WeeklyDigestWorkflow --task-queue agentic-platform --input '{"week": null}'

and the `mcp-knowledge` part's tools at `http://127.0.0.1:PORT/mcp` with the bearer token from
DATA_DIR/secrets/mcp.token, through the `mcp` SDK's client.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import Ran, Stack, program, run
from tests.support.kmock_helpers import mcp_client, result_data

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def last_week() -> str:
    """The ISO week that just ended (what the digest covers by default)."""
    y, w, _ = (datetime.now(UTC).date() - timedelta(days=7)).isocalendar()
    return f"{y}-W{w:02d}"


def _schedules(res: Ran) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in re.finditer(r"^(\w+)\s+(agentic-[\w-]+)$", res.out, flags=re.M)}


def test_schedules_apply_then_list(first_stack: Stack) -> None:
    # README: "create/update the schedules (idempotent); `schedules list` shows them"
    first = first_stack.readme("agentic schedules apply")
    assert first.rc == 0, first
    applied = _schedules(first)
    assert len(applied) == 3 and set(applied.values()) <= {"created", "updated", "unchanged"}, first
    again = first_stack.readme("agentic schedules apply")
    assert again.rc == 0 and _schedules(again) == dict.fromkeys(applied, "unchanged"), again
    listed = first_stack.agentic("schedules", "list")
    assert listed.rc == 0, listed
    for sid in applied:
        row = next((ln for ln in listed.out.splitlines() if f"│ {sid} " in ln), "")
        assert "active" in row, f"{sid}: {row!r}\n{listed}"
    # "A weekly digest ... and a quarterly trust review run on Temporal Schedules"
    assert "WeeklyDigestWorkflow" in listed.out and "TrustReviewWorkflow" in listed.out, listed
    assert "BackupWorkflow" in listed.out, listed  # the nightly backup (docs/disaster-recovery.md)


def _check_digest(first_stack: Stack, res: Ran, week: str) -> None:
    # README: "run a digest now: DATA_DIR/reports/<week>.png, .md, .json + one report message"
    assert res.rc == 0, res
    reports = first_stack.data / "reports"
    png, md, js = (reports / f"{week}.{ext}" for ext in ("png", "md", "json"))
    for f in (png, md, js):
        assert f.is_file(), f"no {f}:\n{res}"
        assert str(f.resolve()) in res.out or str(f) in res.out, f"{f} not named in the output:\n{res}"
    assert png.read_bytes().startswith(PNG), "the chart is not a PNG"
    json.loads(js.read_text())
    # where the message went, in words: Telegram, or the ledger only when no bot is configured
    assert re.search(r"^posted:\s+to (Telegram|the ledger only) \((tg|ledger):\S+\)", res.out, flags=re.M), res
    # "A weekly digest (alerts, decisions by kind, top alert sources, new runbooks, confidence,
    # automated actions and their success, with a chart)"
    text = md.read_text()
    for section in ("## Alerts", "## Decisions", "## Top alert sources", "## Runbooks created", "## Confidence"):
        assert section in text, f"{section!r} not in {md}:\n{text}"
    assert "## Automation" in text and "success" in text.lower(), text
    assert f"]({week}.png)" in text, "the report does not show its chart"


def test_report_weekly(first_stack: Stack) -> None:
    line = "agentic report weekly [--week 2026-W47]"
    _check_digest(first_stack, first_stack.readme(line, {"[--week 2026-W47]": "--week 2026-W47"}), "2026-W47")
    # Without --week: the week that just ended.
    _check_digest(first_stack, first_stack.readme(line, {" [--week 2026-W47]": ""}), last_week())


def test_weekly_digest_from_the_temporal_cli(first_stack: Stack) -> None:
    res = first_stack.readme(
        """temporal workflow start --type WeeklyDigestWorkflow --task-queue agentic-platform --input '{"week": null}'"""
    )
    assert res.rc == 0, res
    m = re.search(r"WorkflowId\s+(\S+)", res.out)
    assert m, res
    result = run(
        [*program("temporal"), "workflow", "result", "--workflow-id", m.group(1), "--output", "json"],
        first_stack.shell_env(),
        timeout=180,
    )
    assert result.rc == 0, result
    doc = result.json
    assert doc["status"] == "COMPLETED", doc
    digest = doc["closeEvent"]["workflowExecutionCompletedEventAttributes"]["result"][0]
    week = last_week()  # {"week": null}: the week that just ended
    assert digest["files"]["png"] == str((first_stack.data / "reports" / f"{week}.png").resolve()), digest


async def _call(url: str, token: str, tool: str, args: dict[str, Any]) -> Any:
    async with mcp_client(url, token) as c:
        return await c.call_tool(tool, args)


def test_knowledge_mcp_server(first_stack: Stack, corpus: Ran) -> None:
    # README: "The `mcp-knowledge` part of `agentic up` serves `search_runbooks`, `search_decisions`,
    # `search_docs`, `runbook_stats` and `runbook_record` at `http://127.0.0.1:8092/mcp` (bearer
    # token `DATA_DIR/secrets/mcp.token`)."
    url = f"http://127.0.0.1:{first_stack.port('mcp_knowledge')}/mcp"
    token = first_stack.secret("mcp.token")

    async def session() -> dict[str, Any]:
        async with mcp_client(url, token) as c:
            return {
                "tools": {t.name for t in (await c.list_tools()).tools},
                "search_runbooks": await c.call_tool("search_runbooks", {"query": "pods keep restarting"}),
                "search_decisions": await c.call_tool("search_decisions", {"query": "pods keep restarting"}),
                "search_docs": await c.call_tool("search_docs", {"query": "point the platform at PostgreSQL"}),
                "runbook_stats": await c.call_tool("runbook_stats", {}),
                "runbook_record": await c.call_tool("runbook_record", {"runbook_id": "kubernetes/KubePodCrashLooping"}),
            }

    got = asyncio.run(session())
    assert {"search_runbooks", "search_decisions", "search_docs", "runbook_stats", "runbook_record"} <= got["tools"]
    runbooks = result_data(got["search_runbooks"])
    assert "kubernetes/KubePodCrashLooping" in [h["id"] for h in runbooks["hits"]], runbooks
    assert "hits" in result_data(got["search_decisions"])
    docs = result_data(got["search_docs"])
    # on a stack just started, docs/ may still be being ingested (README: "half a minute to a minute
    # on a first start"): the answer says so in its `note`; the search is asked again once it ends
    deadline = time.monotonic() + 180
    while docs.get("note") and time.monotonic() < deadline:
        time.sleep(2)
        docs = result_data(asyncio.run(_call(url, token, "search_docs", {"query": "point the platform at PostgreSQL"})))
    assert any(h["source"] == "configuration.md" for h in docs["hits"]), docs
    stats = result_data(got["runbook_stats"])
    assert set(stats["level_counts"]) == {"manual", "prompted", "standard"}, stats
    record = result_data(got["runbook_record"])
    assert "KubePodCrashLooping" in json.dumps(record), record

    # Without the token the server answers nothing.
    refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    assert refused.status_code == 401, (refused.status_code, refused.text[:300])
