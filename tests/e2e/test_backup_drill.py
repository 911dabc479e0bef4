"""The disaster-recovery drill (docs/disaster-recovery.md), through the `agentic` command line:

a stack with a runbook, incidents in three states (resolved with its decision, acknowledged and
watching, awaiting approval) and the schedules → `agentic backup create --to OUT` → `agentic down`
→ the data dir destroyed (rm -rf) → `agentic backup restore` → `agentic up` → every incident,
decision, runbook record and schedule is back, and the pending approval can still be answered.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import agentic
from tests.support.env import stack_env
from tests.support.fake_openai import chat_server

pytestmark = pytest.mark.slow

KEY = "drill passphrase"

RUNBOOK = """---
id: drill/restart-reader
title: Restart the reader
match:
  - alertname=DrillReaderDown
actions:
  - tool: rollout_restart
    arguments:
      namespace: drill
      deployment: reader
---
# Restart the reader

Restart it.
"""


async def ok(env: dict[str, str], *args: str, limit: float = 300) -> str:
    rc, out, err = await agentic(env, *args, limit=limit)
    assert rc == 0, f"agentic {' '.join(args)}: {out}\n{err}"
    return out


def payload(name: str, status: str) -> dict[str, Any]:
    labels = {"alertname": name, "namespace": "drill", "pod": f"{name.lower()}-0", "severity": "warning"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "agentic",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{name} in drill"},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{name} in drill"},
                "startsAt": "2026-12-06T10:00:00Z",
                "endsAt": "2026-12-06T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": f"fp-{name}",
            }
        ],
    }


async def send(env: dict[str, str], tmp: Path, name: str, status: str = "firing") -> str:
    f = tmp / f"{name}-{status}.json"
    f.write_text(json.dumps(payload(name, status)))
    out = await ok(env, "alert", "send", str(f), limit=60)
    return out.split("incidents", 1)[1].strip().split(",")[0].strip()


async def show(env: dict[str, str], incident_id: str) -> dict[str, Any]:
    return json.loads(await ok(env, "incidents", "show", incident_id, "--json", limit=60))  # type: ignore[no-any-return]


async def wait_for(env: dict[str, str], incident_id: str, status: str, within: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        st = await show(env, incident_id)
        if st["status"] == status:
            return st
        assert time.monotonic() < deadline, f"{incident_id} not {status} within {within}s: {json.dumps(st)[:2000]}"
        await asyncio.sleep(0.5)


async def snapshot(env: dict[str, str], ids: list[str]) -> dict[str, Any]:
    listed = json.loads(await ok(env, "incidents", "list", "--json", limit=60))
    incidents = {i["id"]: i["status"] for i in listed}
    shown = {i: await show(env, i) for i in ids}
    schedules = json.loads(await ok(env, "schedules", "list", "--json", limit=60))
    return {
        "incidents": {i: incidents.get(i) for i in ids},
        "decisions": {i: (s.get("decision") or {}).get("choice") for i, s in shown.items()},
        "approvals": {i: s.get("approval_id") for i, s in shown.items()},
        "runbook": json.loads(await ok(env, "runbooks", "show", "drill/restart-reader", "--json", limit=60)),
        "schedules": sorted((s["id"], s["exists"], s["cron"]) for s in schedules),
        "runbook_stats": json.loads(await ok(env, "runbooks", "stats", "--json", limit=60)),
    }


async def test_backup_destroy_restore_up_everything_is_back() -> None:
    with tempfile.TemporaryDirectory(prefix="agentic-drill-") as tmp_s:
        tmp = Path(tmp_s)
        data, out = tmp / "data", tmp / "offsite"
        async with chat_server("planner") as model:  # answers nothing usable: the planner falls back at once
            env = stack_env(data) | {"AGENTIC_BACKUP_KEY": KEY, "AGENTIC_PLANNER_URL": model.base_url}
            (tmp / "rb").mkdir()
            (tmp / "rb" / "reader.md").write_text(RUNBOOK)
            await ok(env, "up", "--detach")
            try:
                await ok(env, "runbooks", "import", str(tmp / "rb"), limit=120)
                await ok(env, "schedules", "apply")
                done, watching, pending = [
                    await send(env, tmp, n) for n in ("DrillDiskFull", "DrillOom", "DrillCertExpiry")
                ]
                for i in (done, watching, pending):
                    await wait_for(env, i, "awaiting_approval")
                await ok(env, "acknowledge", done, "--by", "alice", limit=60)
                await ok(env, "acknowledge", watching, "--by", "bob", limit=60)
                await wait_for(env, watching, "verifying", within=60)
                await send(env, tmp, "DrillDiskFull", "resolved")
                await wait_for(env, done, "resolved", within=60)
                ids = [done, watching, pending]
                before = await snapshot(env, ids)
                assert before["incidents"] == {done: "resolved", watching: "verifying", pending: "awaiting_approval"}
                assert before["decisions"][done] == "acknowledged" and before["approvals"][pending]
                assert {s[0] for s in before["schedules"]} >= {"agentic-nightly-backup"} and all(
                    s[1] for s in before["schedules"]
                )

                t0 = time.monotonic()
                made = json.loads(await ok(env, "backup", "create", "--to", str(out), "--json"))
                backup_s = time.monotonic() - t0
                assert made["warnings"] == [] and (out / made["name"] / "manifest.json").is_file()
            finally:
                await agentic(env, "down", limit=120)

            shutil.rmtree(data)  # the disaster
            assert not data.exists()

            t0 = time.monotonic()
            restored = await ok(env, "backup", "restore", made["name"], "--from", str(out), limit=300)
            restore_s = time.monotonic() - t0
            assert f"restored {made['name']} into {data}" in restored, restored
            t0 = time.monotonic()
            await ok(env, "up", "--detach")
            up_s = time.monotonic() - t0
            try:
                after = await snapshot(env, ids)
                assert after == before
                # the knowledge index came back from its packed collections: the runbook is found
                hits = json.loads(await ok(env, "runbooks", "search", "restart the reader", "--json", limit=120))
                assert hits and hits[0]["id"] == "drill/restart-reader", hits
                # the pending approval can still be answered, and the watching incident still closes
                ack = await ok(env, "acknowledge", pending, "--by", "carol", limit=60)
                assert f"acknowledged by carol: incident {pending}" in ack
                await wait_for(env, pending, "verifying", within=60)
                await send(env, tmp, "DrillOom", "resolved")
                await wait_for(env, watching, "resolved", within=60)
                # the restored stack backs up again (the worker owns the restored Qdrant shards)
                again = json.loads(await ok(env, "backup", "create", "--to", str(out), "--json"))
                assert again["name"] != made["name"]
            finally:
                await agentic(env, "down", limit=120)
            print(f"\ndrill: backup {backup_s:.1f}s ({made['size']} bytes), restore {restore_s:.1f}s, up {up_s:.1f}s")
