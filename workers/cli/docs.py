"""`agentic docs …`: the operator documentation in the knowledge base (ingest, search: through Temporal)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated

import typer

from workers.cli.options import DataDir, JsonOut, console, err_console
from workers.cli.options import cli_settings as _settings
from workers.errors import AgenticError

app = typer.Typer(help="Operator documentation in the knowledge base.", no_args_is_help=True)


@app.command("ingest")
def docs_ingest(
    path: Annotated[Path, typer.Argument(help="a directory of markdown documents (or one file)")],
    data_dir: DataDir = None,
) -> None:
    """Chunk markdown documentation by section into the knowledge base (idempotent)."""
    from workers.knowledge_client import ingest_docs

    report = asyncio.run(ingest_docs(_settings(data_dir), path))
    console.print(
        f"ingested {report.total} sections: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )


@app.command("search")
def docs_search(
    text: Annotated[str, typer.Argument(help="what to look up")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Search the operator documentation."""
    from workers.knowledge_client import ingest_note, search_docs

    if not text.strip():
        raise AgenticError("search text is empty")
    hits, running = asyncio.run(search_docs(_settings(data_dir), text, limit))
    note = ingest_note(running, any_hits=bool(hits))
    if note:  # on stderr: --json stays one document
        err_console.print(f"note: {note}", highlight=False)
    if as_json:
        print(
            json.dumps(
                [
                    {"id": h.id, "title": h.title, "score": round(h.score, 6), "source": h.payload.get("source")}
                    for h in hits
                ],
                indent=2,
            )
        )
        return
    for i, h in enumerate(hits, 1):
        console.print(f"[bold]{i}. {h.title}[/]  ({h.payload.get('source', '')}, score {h.score:.4f})")
        console.print(f"   {excerpt(str(h.payload.get('text', '')), text)}", highlight=False, markup=False)


_ITEM = re.compile(r"^([-*+]|\d+[.)])\s")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def excerpt(section: str, query: str, width: int = 240) -> str:
    """A section's words for one search hit: from the start of its first paragraph, list item or
    table row that shares the most words with the query (a row as its cells, `a · b · c;`, not its
    pipes), about `width` characters."""
    from activities.knowledge.sparse import tokenize

    blocks: list[str] = []
    prose = False  # the last block is a paragraph that the next prose line continues
    for raw in section.splitlines():
        line = raw.strip()
        if not line or line.startswith("```") or _TABLE_RULE.match(line):
            prose = False
            continue
        if line.startswith("|") and line.endswith("|"):
            blocks.append(" · ".join(c.strip() for c in line.strip("|").split("|") if c.strip()) + ";")
            prose = False
        elif line.startswith("#") or _ITEM.match(line):
            blocks.append(line.lstrip("#").strip())
            prose = not line.startswith("#")
        elif prose:
            blocks[-1] += " " + line
        else:
            blocks.append(line)
            prose = True
    wanted = set(tokenize(query))
    shared = [len(wanted & set(tokenize(block))) for block in blocks]
    first = shared.index(max(shared)) if shared and max(shared) > 0 else 0
    text = " ".join(blocks[first:])
    cut = text[:width] + ("…" if len(text) > width else "")
    return ("… " if first else "") + cut
