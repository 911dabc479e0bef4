"""What every `agentic` command group shares: the `--data-dir` and `--json` options, the
settings read the way the commands read them (a bad value is one line naming the variable), and
the consoles they print on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from workers.errors import AgenticError
from workers.settings import Settings, load_settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="data dir of the embedded stack [env AGENTIC_DATA_DIR; default .agentic]"),
]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]

console = Console()
err_console = Console(stderr=True)  # progress, warnings and the `error:` line


def print_table(table: Table, *whole: str) -> None:
    """Print `table` with nothing in it cut short by "…" in a narrow terminal (80 columns, a pipe,
    a phone's SSH session): a word longer than its column folds onto the next line, and the
    columns named in `whole` (what the next command takes: an incident's id, a backup's name)
    keep their widest value on one line, so it can be copied."""
    for col in table.columns:
        col.overflow = "fold"
        if str(col.header) in whole:
            col.no_wrap = True
            col.min_width = max([cell_len(str(c)) for c in col.cells] + [cell_len(str(col.header))])
    console.print(table)


def cli_settings(data_dir: Path | None) -> Settings:
    try:
        return load_settings(data_dir=data_dir)
    except ValueError as exc:  # pydantic ValidationError: name the variable
        first = str(exc).splitlines()
        raise AgenticError(f"bad configuration: {' '.join(first[1:3]).strip()} (see docs/configuration.md)") from exc
