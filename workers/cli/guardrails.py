"""`agentic guardrails …`: what the guardrails refused or cut short.

`list` reads the ledger's guardrail events (the gateway's refusals, protected namespaces, plans
made with untrusted content in context that were sent to a human, limits hit) directly,
read-only, newest first (`workers.guardrails_client` says why the ledger and not Temporal).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import Annotated

import typer
from rich.table import Table

from workers.cli.options import DataDir, JsonOut, console, print_table
from workers.cli.options import cli_settings as _settings
from workers.guardrails_client import KINDS, check_kinds, list_events, parse_since

app = typer.Typer(help="Guardrail events: refusals and limits, from the ledger.", no_args_is_help=True)


@app.command("list")
def list_(
    since: Annotated[
        str | None,
        typer.Option("--since", help="only events since: a duration (30m, 24h, 7d) or an ISO date/time (UTC)"),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help=f"only this kind (repeatable): {', '.join(KINDS)}")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="only this agent (incident, observability, …)")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="only this incident or agent run (its id)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="at most this many events")] = 100,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Guardrail events, newest first."""
    settings = _settings(data_dir)
    kinds = check_kinds(list(kind or []))
    events = asyncio.run(
        list_events(settings, since=parse_since(since), kinds=kinds, agent=agent, subject=subject, limit=limit)
    )
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    if not events:
        console.print("no guardrail events" + (f" since {since}" if since else ""), highlight=False)
        return
    table = Table(title=f"guardrail events ({len(events)})", title_justify="left")
    for col in ("when (UTC)", "kind", "agent", "subject", "tool", "detail"):
        table.add_column(col)
    for e in events:
        table.add_row(
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.agent or "-",
            e.subject or "-",
            e.tool or "-",
            e.detail,
        )
    print_table(table)
