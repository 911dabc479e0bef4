"""A mistyped command line gets Click's usage message and exit status 2, through the `agentic`
entry point as a person runs it. Typer 0.29 raises its vendored Click's exceptions, which the
entry point did not recognise: `agentic incidents show` without an id said "error: unexpected
MissingParameter … (set AGENTIC_DEBUG=1 for the traceback)" and exited 1, as if it were a bug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import REPO

AGENTIC = Path(sys.executable).parent / "agentic"  # the console script `pip install` made


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["incidents", "show"], "Missing argument 'incident_id'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["incidents", "show", "--bogus", "x"], "No such option: --bogus"),
        (["keys", "create"], "Missing argument"),
    ],
)
def test_a_mistyped_command_line_is_a_usage_error(argv: list[str], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env["PYTHONPATH"] = str(REPO)
    res = subprocess.run([str(AGENTIC), *argv], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr and "Usage: agentic" in res.stderr, res.stderr
    assert "unexpected" not in res.stderr and "Traceback" not in res.stderr


def test_a_refused_temporal_connection_is_said_in_words() -> None:
    from workers.temporal import connect_cause

    sdk = RuntimeError(
        "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError(ConnectError("
        '"tcp connect error", 127.0.0.1:7233, Os { code: 111, kind: ConnectionRefused, '
        'message: "Connection refused" })))'
    )
    assert connect_cause(sdk) == "Connection refused"
    long = RuntimeError("deadline " + "word " * 40)
    cause = connect_cause(long)
    assert cause.endswith(" …") and len(cause) <= 122 and "wor …" not in cause, cause


def test_alert_send_resolved_rewrites_the_payload_as_alertmanager_sends_it() -> None:
    import json
    from datetime import UTC, datetime

    from workers.cli.alert import as_resolved
    from workers.errors import AgenticError

    example = (REPO / "docs" / "examples" / "alert.json").read_bytes()
    doc = json.loads(as_resolved(example, datetime(2026, 12, 7, 21, 50, 1, 250000, tzinfo=UTC)))
    before = json.loads(example)
    assert doc["status"] == "resolved" and doc["groupKey"] == before["groupKey"]
    assert [a["status"] for a in doc["alerts"]] == ["resolved"] * len(before["alerts"])
    assert {a["endsAt"] for a in doc["alerts"]} == {"2026-12-07T21:50:01.250Z"}
    assert [a["fingerprint"] for a in doc["alerts"]] == [a["fingerprint"] for a in before["alerts"]]
    for bad, said in ((b"not json", "needs a JSON"), (b"[1, 2]", "an object with `alerts`")):
        with pytest.raises(AgenticError, match=said):
            as_resolved(bad, datetime.now(UTC))


def test_alert_send_says_what_the_intake_did_with_each_group() -> None:
    from workers.cli.alert import accepted_lines

    assert accepted_lines({"accepted": True, "incidents": ["inc-a", "inc-b"], "alerts": 2}) == [
        "accepted: incidents inc-a, inc-b"
    ]
    gone = {"incident_id": "inc-c", "reason": "resolved, and no incident of this group is open: nothing to do"}
    assert accepted_lines({"accepted": True, "incidents": [], "ignored": [gone], "alerts": 1}) == [
        "ignored: inc-c: resolved, and no incident of this group is open: nothing to do"
    ]
