"""`agentic alert send`: an Alertmanager webhook payload (or a generic event) to the intake, with its token."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from workers.cli.options import DataDir, console
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="Send alerts to the intake.", no_args_is_help=True)


@app.command("send")
def alert_send(
    file: Annotated[str, typer.Argument(help="a JSON payload file, or - for standard input")],
    events: Annotated[
        bool, typer.Option("--events", help="a generic event (POST /events), not Alertmanager's")
    ] = False,
    resolved: Annotated[
        bool,
        typer.Option("--resolved", help="send the payload as resolved (its alerts ended now), as Alertmanager does"),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Post an Alertmanager webhook payload (or a generic event) to the intake, with the token."""
    from workers.incident_client import send_alert

    if file == "-":
        payload = sys.stdin.buffer.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise AgenticError(f"no such file: {file}")
        payload = path.read_bytes()
    if resolved:
        if events:
            raise AgenticError("--resolved is for Alertmanager payloads, not --events")
        payload = as_resolved(payload, datetime.now(UTC))
    body = asyncio.run(send_alert(_settings(data_dir), payload, "events" if events else "alerts"))
    for line in accepted_lines(body):
        console.print(line, highlight=False)


def accepted_lines(body: dict[str, Any]) -> list[str]:
    """What the intake did with the payload, from its 202 answer: the incidents it went to, and
    each group it left alone with why (a resolved alert whose incident is no longer open)."""
    lines = [f"accepted: incidents {', '.join(body['incidents'])}"] if body.get("incidents") else []
    for item in body.get("ignored") or []:
        lines.append(f"ignored: {item.get('incident_id', '?')}: {item.get('reason', 'nothing to do')}")
    return lines or ["accepted: nothing to do"]


def as_resolved(payload: bytes, now: datetime) -> bytes:
    """An Alertmanager webhook payload as Alertmanager sends it once its alerts are over: the
    group's and each alert's `status` resolved, each alert's `endsAt` now."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise AgenticError(f"--resolved needs a JSON Alertmanager payload: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise AgenticError("--resolved needs an Alertmanager webhook payload (an object with `alerts`)")
    ended = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    doc["status"] = "resolved"
    for alert in doc["alerts"]:
        if isinstance(alert, dict):
            alert["status"] = "resolved"
            alert["endsAt"] = ended
    return json.dumps(doc).encode()
