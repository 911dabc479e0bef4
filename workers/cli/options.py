"""What every `agentic` command group shares: the `--data-dir` and `--json` options, the
settings read the way the commands read them (a bad value is one line naming the variable), and
the consoles they print on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.errors import MarkupError
from rich.table import Column, Table
from rich.text import Text

from workers.errors import AgenticError
from workers.settings import Settings, load_settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="data dir of the embedded stack [env AGENTIC_DATA_DIR; default .agentic]"),
]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]

console = Console()
err_console = Console(stderr=True)  # progress, warnings and the `error:` line


def print_table(table: Table, *whole: str, labels: Sequence[Mapping[str, str]] = ()) -> None:
    """Print `table` with nothing in it cut short by "…" in a narrow terminal (80 columns, a pipe,
    a phone's SSH session): a word longer than its column folds onto the next line, and the
    columns named in `whole` (what the next command takes: an incident's id, a backup's name)
    keep their widest value on one line, so it can be copied. A table of three columns or more
    that cannot give each column its longest word is printed collapsed instead (`_collapsed`):
    folding then cut most of its words into pieces (`runbooks list` in 80 columns: its ids kept
    whole left its titles six characters, "Lifecy" / "cle"). `labels` renames, row by row, the headers the
    collapsed layout prints before the values (`{"where": "why"}` for a part that is off)."""
    least = _least(table, whole)
    fits = sum(least) + _frame(table) <= console.width
    if not fits and len(table.columns) >= 3:
        table = _collapsed(table, whole, labels)
    for col in table.columns:
        col.overflow = "fold"
        if str(col.header) in whole:
            col.no_wrap = True
            col.min_width = max(_widest(col, line=True), 1)
    if fits:
        _share_out(table, least)
    console.print(table)


def fits_word_by_word(table: Table, *whole: str) -> bool:
    """Whether `table` gives each column its longest word (its widest line for the `whole` ones)
    in this terminal: `print_table` then breaks no word."""
    return sum(_least(table, whole)) + _frame(table) <= console.width


def _least(table: Table, whole: tuple[str, ...]) -> list[int]:
    return [max(_widest(c, line=str(c.header) in whole), 1) for c in table.columns]


def one_line_width(table: Table) -> int:
    """The width `table` needs to show every cell on one line."""
    return sum(_widest(c, line=True) for c in table.columns) + _frame(table)


def _frame(table: Table) -> int:
    """The box's characters: a border and a space each side, a column."""
    return 3 * len(table.columns) + 1


def _share_out(table: Table, least: list[int]) -> None:
    """Column widths for a table that fits word by word (`least`: each column's longest word, its
    widest line when kept whole) but not line by line: `least`, and the room left in proportion
    to what each still lacks. Left to itself rich shares the room its own way and breaks words
    that fit."""
    most = [max(_widest(c, line=True), 1) for c in table.columns]
    room = console.width - _frame(table)
    if sum(most) <= room:
        return  # every line fits as it is
    spare, lack = room - sum(least), [m - n for m, n in zip(most, least, strict=True)]
    total = sum(lack)
    for col, n, short in zip(table.columns, least, lack, strict=True):
        col.width = n + (spare * short // total if total else 0)


def _plain(cell: object) -> str:
    """A cell's text as it shows: its markup (`[red]missing[/]`) rendered away."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except MarkupError:
            return cell
    return str(cell)


def _widest(col: Column, *, line: bool) -> int:
    """The widest line (`line`) or word of a column's header and cells, as they show."""
    parts = [_plain(col.header), *(_plain(c) for c in col.cells)]
    pieces = [p for text in parts for p in (text.splitlines() if line else text.split())]
    return max((cell_len(p) for p in pieces), default=0)


def _collapsed(table: Table, whole: tuple[str, ...], labels: Sequence[Mapping[str, str]] = ()) -> Table:
    """The first column and the `whole` ones as they are; every other column's cell in one
    column, `header value` a line (empty values left out; `labels[row]` renames a header)."""
    keep = [i for i, col in enumerate(table.columns) if i == 0 or str(col.header) in whole]
    out = Table(title=table.title, title_justify=table.title_justify, caption=table.caption, show_header=True)
    for i in keep:
        out.add_column(table.columns[i].header)
    out.add_column("details")
    columns = [list(col.cells) for col in table.columns]
    for r in range(table.row_count):
        renamed = labels[r] if r < len(labels) else {}
        lines = [
            f"{renamed.get(str(table.columns[i].header), table.columns[i].header)} {columns[i][r]}"
            for i in range(len(table.columns))
            if i not in keep and _plain(columns[i][r]).strip()
        ]
        out.add_row(*(columns[i][r] for i in keep), "\n".join(lines))
    return out


def cli_settings(data_dir: Path | None) -> Settings:
    try:
        return load_settings(data_dir=data_dir)
    except ValueError as exc:  # pydantic ValidationError: name the variable
        first = str(exc).splitlines()
        raise AgenticError(f"bad configuration: {' '.join(first[1:3]).strip()} (see docs/configuration.md)") from exc
