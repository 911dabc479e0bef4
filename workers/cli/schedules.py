"""`agentic schedules …`: the platform's Temporal Schedules (the weekly digest, the quarterly
trust review, the nightly backup): apply them (idempotent), list them. Edges: they talk to Temporal only (the running
stack in the data dir, else the settings' Temporal)."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from workers.cli.options import DataDir, JsonOut, console, print_table
from workers.cli.options import cli_settings as _settings

app = typer.Typer(
    help="Temporal Schedules: weekly digest, quarterly trust review, nightly backup.", no_args_is_help=True
)


@app.command("apply")
def schedules_apply(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """Create or update the schedules (idempotent: an identical schedule is left alone)."""
    from workers.schedules import apply_schedules
    from workers.temporal import platform_client

    settings = _settings(data_dir)

    async def run() -> dict[str, str]:
        client, queue = await platform_client(settings)
        return dict(await apply_schedules(client, settings, queue))

    result = asyncio.run(run())
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for sid, what in result.items():
        console.print(f"{what:9} {sid}", highlight=False, soft_wrap=True)


@app.command("list")
def schedules_list(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """The platform's schedules: workflow, cron, next runs, paused, in step with the settings."""
    from workers.schedules import ScheduleInfo, describe_schedules
    from workers.temporal import platform_client

    settings = _settings(data_dir)

    async def run() -> list[ScheduleInfo]:
        client, queue = await platform_client(settings)
        return await describe_schedules(client, settings, queue)

    infos = asyncio.run(run())
    if as_json:
        doc = [
            {
                "id": i.schedule_id,
                "exists": i.exists,
                "workflow": i.workflow_type,
                "cron": i.cron,
                "paused": i.paused,
                "in_step": i.in_step,
                "next_runs": [t.isoformat() for t in i.next_runs],
                "recent_runs": list(i.recent_runs),
            }
            for i in infos
        ]
        print(json.dumps(doc, indent=2))
        return
    table = Table(title="schedules", title_justify="left")
    for col in ("id", "workflow", "cron", "state", "next run", "recent runs"):
        table.add_column(col)
    for i in infos:
        if not i.exists:
            state = "[red]missing[/] (run `agentic schedules apply`)"
        else:
            state = ("paused" if i.paused else "active") + ("" if i.in_step else ", [yellow]out of step[/]")
        nxt = i.next_runs[0].strftime("%Y-%m-%d %H:%M %Z") if i.next_runs else ""
        table.add_row(i.schedule_id, i.workflow_type, i.cron, state, nxt, ", ".join(i.recent_runs))
    print_table(table, "id")
