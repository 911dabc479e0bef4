"""`agentic runbooks …`: the runbooks in the knowledge base and their trust records.

`import`, `list` and `search` go through Temporal (the knowledge workflows); `show` and `stats`
read the ledger (PostgreSQL: the trust record's truth) directly, read-only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentic_core.models import Collection
from agentic_core.wording import counted
from workers.autonomy_client import level_counts, runbook_record, runbook_records
from workers.cli.options import DataDir, JsonOut, console, err_console, print_table
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="Runbooks in the knowledge base.", no_args_is_help=True)


@app.command("show")
def show(
    runbook_id: Annotated[str, typer.Argument(help="runbook id, e.g. kubernetes/KubePodCrashLooping")],
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """A runbook with its trust record and its level history."""
    view = asyncio.run(runbook_record(_settings(data_dir), runbook_id))
    if as_json:
        print(view.model_dump_json(indent=2))
        return
    rb = view.runbook
    console.print(f"[bold]{rb.id}[/]  {rb.title}", highlight=False)
    console.print(f"level {rb.automation_level.value}   source {rb.source or '-'}", highlight=False)
    console.print("match: " + (", ".join(str(m) for m in rb.match) or "-"), highlight=False)
    for i, call in enumerate(rb.actions):
        console.print(f"  action[{i}] {call.tool} {json.dumps(call.arguments)}", highlight=False)
    r = view.record
    console.print(
        f"record: {counted(r.get('executions', 0), 'execution')},"
        f" {counted(r.get('successes', 0), 'success', 'successes')},"
        f" {counted(r.get('failures', 0), 'failure')}; {counted(r.get('approvals', 0), 'approval')},"
        f" {counted(r.get('ignores', 0), 'ignore')}, {counted(r.get('modifications', 0), 'modification')},"
        f" {r.get('automatic_decisions', 0)} automatic;"
        f" {counted(r.get('infra_errors', 0), 'infrastructure error')} (not failures)",
        highlight=False,
    )
    eligible = f"; eligible for {view.eligible_for}" if view.eligible_for else ""
    console.print(f"smoothed success (Wilson lower bound) {view.smoothed_success:.3f}{eligible}")
    table = Table(title="level history", title_justify="left")
    for col in ("when", "from", "to", "by", "reason"):
        table.add_column(col)
    for h in view.level_history:
        table.add_row(h.changed_at.strftime("%Y-%m-%d %H:%M"), h.from_level or "-", h.to_level, h.changed_by, h.reason)
    print_table(table)


@app.command("stats")
def stats(
    data_dir: DataDir = None,
    as_json: JsonOut = False,
    records: Annotated[
        bool, typer.Option("--records", help="each runbook's record (with --json: a list instead of the counts)")
    ] = False,
) -> None:
    """How many runbooks sit at each automation level; the records of the runbooks that ran.

    A run the platform could not carry out (an action's tool server unreachable or timed out) is
    an infrastructure error: shown apart, never a failure of the runbook's remedy."""
    settings = _settings(data_dir)
    if as_json and records:
        print(json.dumps([r.model_dump() for r in asyncio.run(runbook_records(settings))], indent=2))
        return
    counts = asyncio.run(level_counts(settings))
    if as_json:
        print(json.dumps(counts))
        return
    for level, n in counts.items():
        console.print(f"{level:9} {n}")
    lines = asyncio.run(runbook_records(settings))
    ran = [r for r in lines if records or r.executions or r.infra_errors]
    if not ran:
        return
    table = Table(title="records (runbooks that ran)" if not records else "records", title_justify="left")
    for col in ("id", "level", "executions", "successes", "failures", "infra errors", "smoothed"):
        table.add_column(col)
    for r in ran:
        table.add_row(
            r.runbook_id,
            r.level,
            str(r.executions),
            str(r.successes),
            str(r.failures),
            str(r.infra_errors),
            f"{r.smoothed_success:.3f}",
        )
    print_table(table, "id")
    errors = sum(r.infra_errors for r in lines)
    if errors:
        console.print(
            f"{counted(errors, 'infrastructure error')}: a tool server could not be reached or timed out; "
            "not counted against any runbook's remedy",
            highlight=False,
        )


@app.command("import")
def runbooks_import(
    path: Annotated[Path, typer.Argument(help="a directory of markdown runbooks (or one file)")],
    data_dir: DataDir = None,
) -> None:
    """Import markdown runbooks (idempotent: unchanged files are skipped)."""
    from activities.knowledge.markdown import load_runbooks
    from workers.knowledge_client import import_runbooks

    settings = _settings(data_dir)
    if not path.exists():
        raise AgenticError(f"no such file or directory: {path}")
    runbooks, errors = load_runbooks(path)
    for e in errors:
        err_console.print(f"[yellow]skipped[/] {e}", highlight=False)
    if not runbooks:
        raise AgenticError(f"no runbooks found under {path}")
    with Progress(
        TextColumn("importing runbooks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    ) as bar:
        task = bar.add_task("import", total=len(runbooks))
        report = asyncio.run(import_runbooks(settings, runbooks, progress=lambda n: bar.advance(task, n)))
    console.print(
        f"imported {counted(report.total, 'runbook')}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged; {len(errors)} skipped"
    )


@app.command("list")
def runbooks_list(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """List runbooks with their automation level."""
    from workers.knowledge_client import list_runbooks

    rbs = asyncio.run(list_runbooks(_settings(data_dir)))
    if as_json:
        print(json.dumps([r.model_dump() for r in rbs], indent=2))
        return
    table = Table(title=counted(len(rbs), "runbook"), title_justify="left")
    _add_rows(table, ("id", "level"), [(r.id, r.automation_level) for r in rbs], [(r.id, r.title) for r in rbs])
    print_table(table, "id")


def _add_rows(
    table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[str]], titled: Sequence[tuple[str, str]]
) -> None:
    """`columns` and `rows`, then each runbook's `shown_title` (from its (id, title)) in a last
    "title" column, left out when every title is blank."""
    titles = [shown_title(rid, title) for rid, title in titled]
    for col in (*columns, "title") if any(titles) else columns:
        table.add_column(col)
    for row, title in zip(rows, titles, strict=True):
        table.add_row(*row, *([title] if any(titles) else []))


def shown_title(runbook_id: str, title: str) -> str:
    """A runbook's title for a table: blank when it only repeats the id's last part, spaced out
    (the corpus's `alertmanager/AlertmanagerClusterDown` is titled "Alertmanager Cluster Down"),
    so a narrow terminal gives its room to the id and to the titles that say more. A table whose
    titles are all blank has no title column."""

    def letters(text: str) -> str:
        return "".join(c for c in text.casefold() if c.isalnum())

    return "" if letters(title) == letters(runbook_id.rsplit("/", 1)[-1]) else title


def _parse_labels(labels: list[str] | None) -> dict[str, str] | None:
    if not labels:
        return None
    out: dict[str, str] = {}
    for item in labels:
        if "=" not in item:
            raise AgenticError(f"bad --label {item!r}: expected name=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _print_hits(hits: list, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print(json.dumps([{"id": h.id, "title": h.title, "score": round(h.score, 6)} for h in hits], indent=2))
        return
    table = Table(show_header=True)
    rows = [(str(i), f"{h.score:.4f}", h.id) for i, h in enumerate(hits, 1)]
    _add_rows(table, ("#", "score", "id"), rows, [(h.id, h.title) for h in hits])
    print_table(table, "id")


@app.command("search")
def runbooks_search(
    text: Annotated[str, typer.Argument(help="what is happening, in words or as an alert text")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    label: Annotated[list[str] | None, typer.Option("--label", help="alert label name=value (repeatable)")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Hybrid search (dense + BM25) over runbooks, best first."""
    from workers.knowledge_client import search

    if not text.strip():
        raise AgenticError("search text is empty")
    hits = asyncio.run(search(_settings(data_dir), Collection.RUNBOOKS, text, limit, _parse_labels(label)))
    _print_hits(hits, as_json)
