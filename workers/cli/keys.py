"""`agentic keys …`: the gateway's API keys (docs/gateway.md). A key is printed once, when it is
created; the ledger keeps only its hash."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from workers.cli.options import DataDir, JsonOut, console, err_console, print_table
from workers.cli.options import cli_settings as _settings

app = typer.Typer(help="API keys of the gateway (OpenAI-compatible endpoint, console).", no_args_is_help=True)


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="the key's name: who uses it (it is the approver name of its answers)")],
    agents: Annotated[
        list[str] | None,
        typer.Option("--agents", help="only these agents (comma-separated or repeated; default: every agent)"),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="may read and ask, never approve")] = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Create a key and print it, once: the ledger keeps only its hash."""
    from workers.keys_client import create_key

    key, token = asyncio.run(create_key(_settings(data_dir), name, list(agents or []), read_only))
    if as_json:
        print(json.dumps({"name": key.name, "key": token, "agents": key.agents, "read_only": key.read_only}))
        return
    print(token)
    scope = ", ".join(key.agents) if key.agents else "every agent"
    err_console.print(
        f"key {key.name!r} created ({scope}{', read-only' if key.read_only else ''}): it is shown only now; "
        "use it as `Authorization: Bearer <key>`",
        highlight=False,
    )


@app.command("list")
def list_(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """The keys (never the keys themselves): name, agents, read-only, created, last used, revoked."""
    from workers.keys_client import list_keys

    keys = asyncio.run(list_keys(_settings(data_dir)))
    if as_json:
        print(json.dumps([k.model_dump(mode="json", exclude={"id"}) for k in keys], indent=2))
        return
    if not keys:
        console.print("no keys: create one with `agentic keys create NAME`", highlight=False)
        return
    table = Table(title=f"API keys ({len(keys)})", title_justify="left")
    for col in ("name", "agents", "read-only", "created (UTC)", "last used", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.name,
            ", ".join(k.agents) or "all",
            "yes" if k.read_only else "no",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    print_table(table, "name")


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="the key's name")], data_dir: DataDir = None) -> None:
    """Revoke a key: the gateway refuses it from its next request on."""
    from workers.keys_client import revoke_key

    key = asyncio.run(revoke_key(_settings(data_dir), name))
    console.print(f"key {key.name!r} revoked at {_when(key.revoked_at)} UTC", highlight=False)
