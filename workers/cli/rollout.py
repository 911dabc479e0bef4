"""`agentic rollout …`: the platform's own rollout, wave by wave (start, status: RolloutWorkflow through Temporal)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from workers.cli.options import DataDir, JsonOut, console, print_table
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="The platform's own rollout, wave by wave (RolloutWorkflow).", no_args_is_help=True)


@app.command("start")
def rollout_start(
    from_wave: Annotated[int, typer.Option("--from", min=0, max=10, help="first wave")] = 0,
    to_wave: Annotated[int, typer.Option("--to", min=0, max=10, help="last wave")] = 10,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read and show the plan; patch nothing")] = False,
    data_dir: DataDir = None,
) -> None:
    """Start a rollout of waves FROM..TO: apply, validate, gate, next."""
    from workers.rollout_client import start_rollout

    if from_wave > to_wave:
        raise AgenticError(f"--from {from_wave} is after --to {to_wave}")
    rid = asyncio.run(start_rollout(_settings(data_dir), from_wave, to_wave, dry_run))
    console.print(f"started rollout {rid} (waves {from_wave}..{to_wave}); follow it with `agentic rollout status`")


@app.command("status")
def rollout_status(
    rollout_id: Annotated[str | None, typer.Argument(help="rollout id (default: the latest)")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Progress per wave and check, and the pending gate."""
    from workers.rollout_client import rollout_state

    rid, st = asyncio.run(rollout_state(_settings(data_dir), rollout_id))
    if as_json:
        print(json.dumps({"id": rid, **st.model_dump(mode="json")}, indent=2))
        return
    console.print(f"[bold]{rid}[/]  status {st.status}  waves {st.from_wave}..{st.to_wave}  current {st.current_wave}")
    table = Table(show_header=True)
    for col in ("wave", "name", "phase", "checks", "reasons"):
        table.add_column(col)
    for w in st.waves:
        checks = ", ".join(f"{c.name} {'✓' if c.passed else '✗'}" for c in w.checks)
        table.add_row(str(w.wave), w.name, w.phase, checks, "; ".join(w.reasons))
    print_table(table)
    if st.gate_id:
        console.print(f"waiting at gate {st.gate_id}: answer it with the `decide` update (Temporal Web UI)")
    for r in st.reasons:
        console.print(f"  {r}", highlight=False)
