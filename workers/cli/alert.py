"""`agentic alert send`: an Alertmanager webhook payload (or a generic event) to the intake, with its token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

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
    body = asyncio.run(send_alert(_settings(data_dir), payload, "events" if events else "alerts"))
    console.print(f"accepted: incidents {', '.join(body.get('incidents', []))}", highlight=False)
