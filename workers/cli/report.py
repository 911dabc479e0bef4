"""`agentic report weekly`: run the weekly digest now (WeeklyDigestWorkflow through Temporal), wait
for it, print its summary and files."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agentic_core.reports import WeeklyDigestResult
from workers.cli.options import DataDir, JsonOut, console
from workers.cli.options import cli_settings as _settings

app = typer.Typer(help="Reports: the weekly digest.", no_args_is_help=True)


@app.command("weekly")
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
        console.print(f"posted:   {_where(res.message_ref)}", highlight=False, soft_wrap=True)


def _where(ref: str) -> str:
    """Where the report's message went, in words (the ref itself after them)."""
    if ref.startswith("tg:"):
        return f"to Telegram, the weekly route's topic ({ref})"
    if ref.startswith("ledger:"):
        return (
            f"to the ledger only ({ref}): no Telegram bot is configured (docs/telegram.md); "
            "the console's reports page shows it"
        )
    return f"{ref} (route weekly)"
