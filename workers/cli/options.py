"""What every `agentic` command group shares: the `--data-dir` and `--json` options, the
settings read the way the commands read them (a bad value is one line naming the variable), and
the consoles they print on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workers.errors import AgenticError
from workers.settings import Settings, load_settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="data dir of the embedded stack [env AGENTIC_DATA_DIR; default .agentic]"),
]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]

console = Console()
err_console = Console(stderr=True)  # progress, warnings and the `error:` line


def cli_settings(data_dir: Path | None) -> Settings:
    try:
        return load_settings(data_dir=data_dir)
    except ValueError as exc:  # pydantic ValidationError: name the variable
        first = str(exc).splitlines()
        raise AgenticError(f"bad configuration: {' '.join(first[1:3]).strip()} (see docs/configuration.md)") from exc
