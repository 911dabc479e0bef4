"""`agentic schedules …` and `agentic report …`: the platform's Temporal Schedules and reports.

Mounted on the main CLI (`workers/cli.py`). Like every command, these are edges: they talk to
Temporal only (the running stack in the data dir, else the settings' Temporal).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agentic_core.reports import WeeklyDigestResult
from workers.cli.options import DataDir, JsonOut
from workers.cli.options import cli_settings as _settings

schedules_app = typer.Typer(help="Temporal Schedules: weekly digest, quarterly trust review.", no_args_is_help=True)
report_app = typer.Typer(help="Reports: the weekly digest.", no_args_is_help=True)

console = Console()


@schedules_app.command("apply")
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


@schedules_app.command("list")
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
    console.print(table)


@report_app.command("weekly")
def report_weekly(
    week: Annotated[
        str | None, typer.Option("--week", help="ISO week, e.g. 2026-W47 (default: the week that just ended)")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Run the weekly digest now, wait for it, and print its summary and files."""
    from workers.schedules import run_weekly_digest
    from workers.temporal import platform_client

    settings = _settings(data_dir)

    async def run() -> WeeklyDigestResult:
        client, queue = await platform_client(settings)
        return await run_weekly_digest(client, queue, week)

    res = asyncio.run(run())
    if as_json:
        print(res.model_dump_json(indent=2))
        return
    console.print(res.summary, highlight=False, markup=False, soft_wrap=True)
    console.print("")
    console.print(f"chart:    {res.files.png}", highlight=False, soft_wrap=True)
    console.print(f"report:   {res.files.markdown}", highlight=False, soft_wrap=True)
    console.print(f"data:     {res.files.json_path}", highlight=False, soft_wrap=True)
    if res.message_ref:
        console.print(f"posted:   {res.message_ref} (route weekly)", highlight=False, soft_wrap=True)
