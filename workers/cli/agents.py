"""`agentic agents …`: the platform's agents. `route` asks the router which agent a request
goes to, through the worker (`workflows.routing.RouteRequestWorkflow`): the CLI loads no model."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from workers.cli.options import DataDir, JsonOut, console
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="The agents: observability, coding, web.", no_args_is_help=True)


@app.command("route")
def route(
    text: Annotated[str, typer.Argument(help="the request, as you would ask it")],
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Which agent a request goes to, its score and how it was chosen (embedding or llm)."""
    from workers.routing_client import route as route_request

    if not text.strip():
        raise AgenticError("nothing to route: the request is empty")
    r = asyncio.run(route_request(_settings(data_dir), text))
    out = {"agent": r.agent, "score": round(r.score, 4), "method": str(r.method)}
    if as_json:
        print(json.dumps(out))
        return
    console.print(f"{r.agent}  (score {r.score:.3f}, {r.method})", highlight=False)
    if r.note:
        console.print(f"note: {r.note}", highlight=False)
