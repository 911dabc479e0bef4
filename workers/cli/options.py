"""What every `agentic` command group shares: the `--data-dir` and `--json` options, and the
settings read the way the commands read them (a bad value is one line naming the variable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workers.errors import AgenticError
from workers.settings import Settings, load_settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="data dir of the embedded stack [env AGENTIC_DATA_DIR; default .agentic]"),
]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def cli_settings(data_dir: Path | None) -> Settings:
    try:
        return load_settings(data_dir=data_dir)
    except ValueError as exc:  # pydantic ValidationError: name the variable
        first = str(exc).splitlines()
        raise AgenticError(f"bad configuration: {' '.join(first[1:3]).strip()} (see docs/configuration.md)") from exc
