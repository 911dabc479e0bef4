"""`agentic approve|acknowledge|ignore|modify INCIDENT`: answer the question an incident waits on
(the `decide` update of its ApprovalWorkflow). Top-level commands: workers/cli/main.py mounts this
app without a name."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from workers.cli.options import DataDir, console
from workers.cli.options import cli_settings as _settings

app = typer.Typer()


def _decide(choice: str, incident_id: str, by: str | None, args: str | None, data_dir: Path | None) -> None:
    from workers.incident_client import decide

    who = by or os.environ.get("USER") or "cli"
    result, _ = asyncio.run(decide(_settings(data_dir), incident_id, choice, who, args))  # type: ignore[arg-type]
    console.print(f"{result.choice} by {result.by}: incident {incident_id} (plan {result.plan_hash[:12]})")


By = Annotated[str | None, typer.Option("--by", help="who answers (default: $USER); must be an allowed approver")]


@app.command()
def approve(incident_id: Annotated[str, typer.Argument()], by: By = None, data_dir: DataDir = None) -> None:
    """Approve the plan an incident is waiting on."""
    _decide("approved", incident_id, by, None, data_dir)


@app.command()
def acknowledge(incident_id: Annotated[str, typer.Argument()], by: By = None, data_dir: DataDir = None) -> None:
    """Acknowledge a question with nothing to run: you saw it; the incident watches for the alert to resolve."""
    _decide("acknowledged", incident_id, by, None, data_dir)


@app.command()
def ignore(incident_id: Annotated[str, typer.Argument()], by: By = None, data_dir: DataDir = None) -> None:
    """Ignore: nothing runs, the incident closes as ignored."""
    _decide("ignored", incident_id, by, None, data_dir)


@app.command()
def modify(
    incident_id: Annotated[str, typer.Argument()],
    args: Annotated[str, typer.Option("--args", help='changed arguments, e.g. \'{"value": "2Gi"}\', or a plan')],
    by: By = None,
    data_dir: DataDir = None,
) -> None:
    """Approve a modified plan: changed arguments (a JSON object) or a whole new plan (a JSON list)."""
    _decide("modified", incident_id, by, args, data_dir)
