"""Report activities: the weekly digest from the ledger, and its files (chart, Markdown, JSON).

The worker builds one `ReportActivities(ledger, data_dir)` and registers its bound methods:

| name                     | input        | output        | what it does                                    |
|--------------------------|--------------|---------------|-------------------------------------------------|
| `reports.compute_digest` | DigestQuery  | WeeklyDigest  | the week's numbers, one ledger snapshot         |
| `reports.write_digest`   | WeeklyDigest | DigestFiles   | `<data dir>/reports/<week>.png`, `.md`, `.json` |
|                          |              |               | and the same in the ledger (`weekly_digests`)   |

Both are safe to retry: the first only reads, the second rewrites the same files (each
written to a temporary name and renamed, so a reader never sees half a file) and replaces the
week's row in the ledger. The files are what the report message sends (the PNG) and what
`agentic report weekly` prints; the ledger's copy is what the gateway's console shows (in the
chart it runs in its own pod and cannot see the worker's data dir).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.reports.chart import render_chart
from activities.reports.queries import compute_digest
from agentic_core.reports import DigestFiles, DigestQuery, WeeklyDigest, render_markdown

if TYPE_CHECKING:
    from activities.ledger.repository import Ledger


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RenderedDigest:
    """What a digest is written as: the chart, the Markdown report (naming the chart beside it)."""

    png: bytes
    markdown: str


def render_digest(digest: WeeklyDigest) -> RenderedDigest:
    """Draw the chart and write the report (blocking: run it in a thread)."""
    return RenderedDigest(png=render_chart(digest), markdown=render_markdown(digest, chart_name=f"{digest.week}.png"))


def write_digest_files(digest: WeeklyDigest, folder: Path, rendered: RenderedDigest | None = None) -> DigestFiles:
    """Write the three files, drawing the chart unless given (blocking: run it in a thread)."""
    rendered = rendered or render_digest(digest)
    png = folder / f"{digest.week}.png"
    md = folder / f"{digest.week}.md"
    js = folder / f"{digest.week}.json"
    _write_atomic(png, rendered.png)
    _write_atomic(md, rendered.markdown.encode())
    _write_atomic(js, digest.model_dump_json(indent=2).encode())
    return DigestFiles(png=str(png), markdown=str(md), json_path=str(js))


class ReportActivities:
    """Reads the ledger, writes report files under `data_dir/reports` and the digests into the ledger."""

    def __init__(self, ledger: Ledger, data_dir: Path) -> None:
        self.ledger = ledger
        self.folder = Path(data_dir).expanduser().resolve() / "reports"

    @activity.defn(name="reports.compute_digest")
    async def compute_digest(self, inp: DigestQuery) -> WeeklyDigest:
        from activities.ledger.db import LedgerError, LedgerUnavailable

        try:
            return await compute_digest(self.ledger, inp.week, trend_weeks=inp.trend_weeks)
        except LedgerUnavailable:
            raise
        except LedgerError as exc:
            raise ApplicationError(
                f"reports.compute_digest: {exc}", type=type(exc).__name__, non_retryable=True
            ) from exc

    @activity.defn(name="reports.write_digest")
    async def write_digest(self, digest: WeeklyDigest) -> DigestFiles:
        from activities.ledger.db import LedgerError, LedgerUnavailable

        rendered = await asyncio.to_thread(render_digest, digest)
        try:
            files = await asyncio.to_thread(write_digest_files, digest, self.folder, rendered)
        except OSError as exc:
            raise ApplicationError(f"cannot write the digest under {self.folder}: {exc}", type="OSError") from exc
        try:
            await self.ledger.put_weekly_digest(
                digest.week, digest.model_dump(mode="json"), rendered.png, rendered.markdown
            )
        except LedgerUnavailable:
            raise
        except LedgerError as exc:
            raise ApplicationError(
                f"reports.write_digest: cannot store the digest of {digest.week} in the ledger: {exc}",
                type=type(exc).__name__,
                non_retryable=True,
            ) from exc
        return files
