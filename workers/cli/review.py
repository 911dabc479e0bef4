"""`agentic review run`: the quarterly trust review (TrustReviewWorkflow) now."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agentic_core.autonomy import quarter_bounds
from workers.autonomy_client import run_review
from workers.cli.options import DataDir, JsonOut, console
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="The quarterly trust review (TrustReviewWorkflow).", no_args_is_help=True)


@app.command("run")
def review_run(
    quarter: Annotated[
        str | None, typer.Option("--quarter", help="YYYY-Qn (default: the quarter that just ended)")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Run the quarterly trust review now and print its result (waits for the answers)."""
    if quarter is not None:
        try:
            quarter_bounds(quarter)
        except ValueError as exc:
            raise AgenticError(str(exc)) from exc
    result = asyncio.run(run_review(_settings(data_dir), quarter))
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    console.print(result.report, highlight=False)
