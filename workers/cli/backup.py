"""`agentic backup …`: create a backup on the running stack (BackupWorkflow, on the worker that
owns the data), list the backups, restore one (offline). See docs/disaster-recovery.md."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from activities.backup.archive import human_size
from agentic_core.wording import counted
from workers.cli.options import DataDir, JsonOut, console, err_console, print_table
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="Backups: create (on the running stack), list, restore (offline).", no_args_is_help=True)

ToDir = Annotated[Path | None, typer.Option("--to", help="folder the backup goes in [default AGENTIC_BACKUP_DIR]")]
FromDir = Annotated[Path | None, typer.Option("--from", help="folder the backups are in [default AGENTIC_BACKUP_DIR]")]


WORKER_HAS_NO_KEY = (
    "note: AGENTIC_BACKUP_KEY is set in this shell, but the worker makes the backup and was started "
    "without it: set it in the environment `agentic up` starts from and start the stack again "
    "(docs/disaster-recovery.md)"
)


@app.command("create")
def backup_create(
    to: ToDir = None,
    name: Annotated[str | None, typer.Option(help="the backup's name [default backup-<UTC time>]")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Back up the ledger, Temporal's database, Qdrant, the runbooks and the secrets (encrypted
    with AGENTIC_BACKUP_KEY, or left out with a warning); waits and prints the result."""
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError

    from activities.backup.archive import BackupError, check_name
    from agentic_core.backup import BACKUP_WORKFLOW, BackupInput, BackupResult
    from workers.temporal import platform_client

    settings = _settings(data_dir)
    if name is not None:
        try:
            check_name(name)
        except BackupError as exc:
            raise AgenticError(str(exc)) from None
    target = to.expanduser().resolve() if to else None
    inp = BackupInput(to=str(target) if target else None, name=name)

    async def run() -> BackupResult:
        client, queue = await platform_client(settings)
        wf_id = f"backup-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{int(time.time() * 1000) % 1000:03d}"
        handle = await client.start_workflow(BACKUP_WORKFLOW, inp, id=wf_id, task_queue=queue, result_type=BackupResult)
        if not as_json:
            err_console.print(f"backing up on the worker (workflow {wf_id}) …", highlight=False)
        try:
            return await handle.result()
        except WorkflowFailureError as exc:
            cause: BaseException | None = exc.cause
            while getattr(cause, "cause", None) is not None:
                cause = getattr(cause, "cause", None)
            raise AgenticError(str(cause).removeprefix("backup failed: ")) from None

    try:
        result = asyncio.run(run())
    except RPCError as exc:
        raise AgenticError(f"cannot start the backup: {exc.message}") from None
    if settings.backup_key is not None and result.contents.get("secrets", "").startswith("omitted"):
        err_console.print(WORKER_HAS_NO_KEY, highlight=False)  # on stderr: --json's output stays JSON
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    console.print(
        f"backup {result.name}: {result.path} ({human_size(result.size)}, {result.seconds:.1f}s)", highlight=False
    )
    for part, what in result.contents.items():
        console.print(f"  {part:9} {what}", highlight=False)
    for w in result.warnings:
        err_console.print(f"warning: {w}", highlight=False)
    if result.pruned:
        console.print(f"retention: deleted {', '.join(result.pruned)}", highlight=False)


@app.command("list")
def backup_list(from_dir: FromDir = None, data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """The backups in the backup folder, newest first (incomplete ones marked)."""
    from activities.backup.archive import list_backups

    settings = _settings(data_dir)
    folder = from_dir.expanduser().resolve() if from_dir else settings.backup_path
    backups = list_backups(folder)
    if as_json:
        print(json.dumps([b.model_dump(mode="json") for b in backups], indent=2))
        return
    if not backups:
        console.print(f"no backups in {folder}", highlight=False)
        return
    table = Table(title=f"backups in {folder}", title_justify="left")
    for col in ("name", "created", "size", "secrets", "ledger schema", "state"):
        table.add_column(col)
    for b in backups:
        created = b.created_at.strftime("%Y-%m-%d %H:%M:%S %Z") if b.created_at else ""
        state = "complete" if b.complete else f"[red]incomplete[/]: {b.problem}"
        table.add_row(b.name, created, human_size(b.size), b.secrets, str(b.versions.get("ledger_schema") or ""), state)
    print_table(table, "name")


@app.command("restore")
def backup_restore(
    name: Annotated[str, typer.Argument(help="the backup's name (see `agentic backup list`), or its path")],
    from_dir: FromDir = None,
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into the data dir, offline (stop the stack first): verified first; the
    previous data is kept in DATA_DIR/before-restore-<time>/."""
    from workers.restore import find_backup, restore

    settings = _settings(data_dir)
    folder = from_dir.expanduser().resolve() if from_dir else settings.backup_path
    backup = find_backup(name, folder)
    t0 = time.monotonic()
    before = restore(settings, backup, out=lambda line: console.print(line, highlight=False))
    console.print(
        f"restored {backup.name} into {settings.data_path} in {time.monotonic() - t0:.1f}s; "
        f"the previous data is in {before}. Start the stack with `agentic up`.",
        highlight=False,
    )


knowledge_app = typer.Typer(help="The knowledge base (Qdrant): rebuild it from the ledger and the docs.")


@knowledge_app.command("rebuild")
def knowledge_rebuild(
    keep: Annotated[bool, typer.Option("--keep", help="do not empty the collections first")] = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Rebuild Qdrant from the ledger (runbooks, decisions) and the documentation sources: after a
    lost or damaged vector store, or a restore without one."""
    from temporalio.client import WorkflowFailureError

    from activities.knowledge.chunks import load_docs
    from agentic_core.backup import RebuildInput, RebuildResult
    from agentic_core.knowledge import IngestDocsInput
    from workers.stack.supervisor import docs_dir
    from workers.temporal import platform_client
    from workflows.knowledge import IngestDocsWorkflow

    settings = _settings(data_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())

    async def run() -> tuple[RebuildResult, int]:
        client, queue = await platform_client(settings)
        try:
            result = await client.execute_workflow(
                "KnowledgeRebuildWorkflow",
                RebuildInput(clear=not keep),
                id=f"knowledge-rebuild-{stamp}",
                task_queue=queue,
                result_type=RebuildResult,
            )
            src = docs_dir(settings)
            chunks = await asyncio.to_thread(load_docs, src) if src is not None else []
            if chunks:
                await client.execute_workflow(
                    IngestDocsWorkflow.run, IngestDocsInput(chunks=chunks), id=f"docs-rebuild-{stamp}", task_queue=queue
                )
        except WorkflowFailureError as exc:
            cause: BaseException | None = exc.cause
            while getattr(cause, "cause", None) is not None:
                cause = getattr(cause, "cause", None)
            raise AgenticError(f"the rebuild failed: {cause}") from None
        return result, len(chunks)

    result, docs = asyncio.run(run())
    if as_json:
        print(json.dumps({**result.model_dump(), "doc_chunks": docs}, indent=2))
        return
    console.print(
        f"knowledge base rebuilt: {counted(result.runbooks, 'runbook')} and"
        f" {counted(result.decisions, 'decision')} from the ledger, "
        f"{docs} documentation chunks",
        highlight=False,
    )
